"""Build the configured store backend from the ``store:`` section of the service config."""

from __future__ import annotations

import warnings
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from escalation.store.base import Store

__all__ = ["StoreConfig", "make_store"]

# ``schema`` is the natural YAML key; it shadows the deprecated BaseModel.schema() classmethod,
# which nothing here uses, so pydantic's warning about it is noise.
with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message='Field name "schema"', category=UserWarning)

    class StoreConfig(BaseModel):
        """Where incidents live: a SQLite file (default, one replica) or PostgreSQL (several)."""

        model_config = ConfigDict(extra="forbid")

        backend: Literal["sqlite", "postgres"] = "sqlite"
        path: str = Field(default="tocsin.db", min_length=1)  # SQLite file, relative to cwd
        dsn: SecretStr | None = None  # PostgreSQL; required when backend is postgres
        pool_min: int = Field(default=1, ge=0)
        pool_max: int = Field(default=10, ge=1)
        # PostgreSQL search_path (the override of BaseModel.schema is the one explained above)
        schema: str | None = Field(default=None, min_length=1)  # type: ignore[assignment]

        @model_validator(mode="after")
        def _check(self) -> StoreConfig:
            if self.backend == "postgres" and (
                self.dsn is None or not self.dsn.get_secret_value().strip()
            ):
                raise ValueError("store.dsn is required when store.backend is 'postgres'")
            if self.pool_min > self.pool_max:
                raise ValueError(
                    f"store.pool_min ({self.pool_min}) must not exceed"
                    f" store.pool_max ({self.pool_max})"
                )
            return self


def make_store(cfg: StoreConfig) -> Store:
    """A closed store for ``cfg``; call ``await store.open()`` before use."""
    if cfg.backend == "postgres":
        from escalation.store.postgres import PostgresStore

        assert cfg.dsn is not None  # guaranteed by StoreConfig's validator
        return PostgresStore(
            cfg.dsn.get_secret_value(),
            pool_min=cfg.pool_min,
            pool_max=cfg.pool_max,
            schema=cfg.schema,
        )
    from escalation.store.sqlite import SqliteStore

    return SqliteStore(cfg.path)
