"""The ``store:`` section of the service configuration and the factory it feeds."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from escalation.store.factory import StoreConfig, make_store
from escalation.store.postgres import PostgresStore
from escalation.store.sqlite import SqliteStore


def test_store_config_defaults_and_sqlite_factory() -> None:
    cfg = StoreConfig()
    assert (cfg.backend, cfg.path, cfg.dsn, cfg.pool_min, cfg.pool_max, cfg.schema) == (
        "sqlite",
        "tocsin.db",
        None,
        1,
        10,
        None,
    )
    store = make_store(cfg)
    assert isinstance(store, SqliteStore)
    assert store.path == "tocsin.db"


def test_store_config_postgres() -> None:
    cfg = StoreConfig.model_validate(
        {
            "backend": "postgres",
            "dsn": "postgresql://u:hunter2@db/tocsin",
            "schema": "tocsin",
            "pool_min": 2,
            "pool_max": 4,
        }
    )
    assert "hunter2" not in repr(cfg)
    store = make_store(cfg)
    assert isinstance(store, PostgresStore)
    assert store.schema == "tocsin"
    assert "hunter2" not in repr(store)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"backend": "postgres"}, "store.dsn is required when store.backend is 'postgres'"),
        ({"backend": "postgres", "dsn": " "}, "store.dsn is required"),
        ({"backend": "mysql"}, "Input should be 'sqlite' or 'postgres'"),
        ({"pth": "x.db"}, "Extra inputs are not permitted"),
        ({"pool_min": 5, "pool_max": 2}, "store.pool_min (5) must not exceed store.pool_max (2)"),
        ({"pool_max": 0}, "greater than or equal to 1"),
    ],
)
def test_store_config_errors(data: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError) as caught:
        StoreConfig.model_validate(data)
    assert message in str(caught.value)
