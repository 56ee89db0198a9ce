"""Severity matrices: the levels an organisation uses, their names, SLAs and escalation tiers.

Canonical levels are ``P0`` (worst) … ``P4``; a matrix maps the ones an organisation uses to its
own names (``SEV-1``, ``Severity 2``…) and aliases, and gives per level the acknowledgement,
update, resolution and review targets plus the tiers of people to page. Built-in presets (one per
incident-response procedure in the seeds) live in ``rules/presets/*.yaml``; a user's ``matrix:``
config section picks one and overrides parts of it (see :func:`build_matrix`).

Pure and synchronous; the only I/O is reading the packaged preset files.
"""

from __future__ import annotations

import copy
import re
from datetime import timedelta
from functools import cache
from importlib import resources
from importlib.resources.abc import Traversable
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    field_validator,
    model_validator,
)

from rules.durations import Duration

__all__ = [
    "BUSINESS_HOURS",
    "CALENDAR_NAME",
    "LEVELS",
    "Level",
    "Matrix",
    "MatrixConfig",
    "build_matrix",
    "check_calendar",
    "load_preset",
    "normalise_name",
    "preset_names",
    "rank",
]

LEVELS: tuple[str, ...] = ("P0", "P1", "P2", "P3", "P4")
"""Canonical severity keys; the rank of a level is its index here (P0 is the worst)."""

BUSINESS_HOURS = "business-hours"
"""The calendar that ``Level.business_hours_only`` refers to."""

CALENDAR_NAME = r"[A-Za-z0-9][A-Za-z0-9_.-]*"
"""What a calendar name looks like (levels and escalation steps name calendars)."""

_CALENDAR_RE = re.compile(rf"^{CALENDAR_NAME}$")
_NORMALISE_RE = re.compile(r"[\s_-]+")


def rank(level: str) -> int:
    """Rank of a canonical level key (``"P0"`` → 0 … ``"P4"`` → 4); ValueError if not one."""
    key = level.strip().upper() if isinstance(level, str) else level
    if key not in LEVELS:
        raise ValueError(f"unknown severity level {level!r}; expected one of {', '.join(LEVELS)}")
    return LEVELS.index(key)


def normalise_name(value: str) -> str:
    """Fold a severity name for matching: case-insensitive, ignoring spaces, ``-`` and ``_``."""
    return _NORMALISE_RE.sub("", value).casefold()


def check_calendar(value: str | None, what: str) -> str | None:
    """``value`` if it is None or a calendar name; ValueError naming ``what`` otherwise."""
    if value is not None and not _CALENDAR_RE.match(value):
        raise ValueError(f"{what} must be a calendar name like 'business-hours', got {value!r}")
    return value


class Level(BaseModel):
    """One severity level of a matrix: its names, SLA targets and escalation tiers."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1)
    label: str = ""
    description: str = ""
    aliases: list[str] = []
    ack_target: Duration | None = None
    # When the first status update is due after the incident opens.
    first_update: Duration | None = None
    update_every: Duration | None = None
    # Calendar the update cadence applies in (e.g. "every 30 minutes during business hours").
    update_during: str | None = None
    resolve_target: Duration | None = None
    review_due: Duration | None = None
    review_required: bool = False
    monitoring_window: Duration = Field(default=timedelta(0))
    # The procedure opens a dedicated chat channel for incidents of this level
    # (``#<incident_channel_prefix>-YYYYMMDD-HHMM-<slug>``): made, joined by everyone paged,
    # given the status-update reminders, and archived after the monitoring window.
    incident_channel: bool = False
    incident_channel_prefix: str = Field(default="incident", pattern=r"^[a-z0-9][a-z0-9_-]{0,20}$")
    pagerduty_severity: Literal["critical", "error", "warning", "info"]
    pagerduty_priority: str | None = None
    policy: str | None = None
    # The level's own escalation tiers and repeat, kept as written: they are escalation's terms
    # (steps, targets, channels), which escalation validates where it builds policies.
    tiers: list[dict[str, Any]] = []
    repeat: dict[str, Any] | None = None
    # Shorthand: expanded at validation into `during: business-hours` on every tier that has no
    # `during` of its own, so escalation only ever has to honour a step's `during`.
    business_hours_only: bool = False

    @field_validator("update_during")
    @classmethod
    def _check_update_during(cls, v: str | None) -> str | None:
        return check_calendar(v, "'update_during'")

    @field_validator("aliases")
    @classmethod
    def _check_aliases(cls, v: list[str]) -> list[str]:
        for alias in v:
            if not normalise_name(alias):
                raise ValueError(f"alias {alias!r} is empty once spaces, '-' and '_' are ignored")
        return v

    @model_validator(mode="after")
    def _check_level(self) -> Level:
        if self.policy is not None and self.tiers:
            raise ValueError("set either 'policy' (a named policy) or 'tiers', not both")
        if self.business_hours_only:
            self.tiers = [
                t if t.get("during") is not None else {**t, "during": BUSINESS_HOURS}
                for t in self.tiers
            ]
        return self


class Matrix(BaseModel):
    """The severity levels an organisation uses, keyed by canonical level (``P0`` … ``P4``)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1)
    title: str = ""
    source: str = ""
    levels: dict[str, Level]
    default_level: str

    _index: dict[str, str] = PrivateAttr(default_factory=dict)
    _memo: dict[str, str | None] = PrivateAttr(default_factory=dict)  # resolve() is hot

    @field_validator("levels", mode="before")
    @classmethod
    def _canonical_keys(cls, v: Any) -> Any:
        # Accept "p1" as a key but store canonical "P1", ordered worst first.
        if not isinstance(v, dict):
            return v
        out: dict[str, Any] = {}
        for key, level in v.items():
            canon = key.strip().upper() if isinstance(key, str) else key
            if canon not in LEVELS:
                raise ValueError(
                    f"level key {key!r} is not a canonical level; use one of {', '.join(LEVELS)}"
                )
            if canon in out:
                raise ValueError(f"level {canon} is defined twice")
            out[canon] = level
        return dict(sorted(out.items(), key=lambda kv: LEVELS.index(kv[0])))

    @model_validator(mode="after")
    def _check_matrix(self) -> Matrix:
        if not self.levels:
            raise ValueError("a matrix needs at least one level")
        index: dict[str, str] = {}
        origin: dict[str, str] = {}
        for key, level in self.levels.items():
            for what, token in (
                ("key", key),
                ("name", level.name),
                *(("alias", a) for a in level.aliases),
            ):
                norm = normalise_name(token)
                other = index.get(norm)
                if other is not None and other != key:
                    raise ValueError(
                        f"{what} {token!r} of level {key} ({level.name}) is ambiguous: "
                        f"{origin[norm]} of level {other} ({self.levels[other].name}) "
                        f"matches it too"
                    )
                if other is None:
                    index[norm] = key
                    origin[norm] = f"{what} {token!r}"
        self._index = index
        resolved = index.get(normalise_name(self.default_level))
        if resolved is None:
            raise ValueError(
                f"default_level {self.default_level!r} is not a level of this matrix "
                f"({', '.join(self.levels)})"
            )
        self.default_level = resolved
        return self

    def resolve(self, value: str) -> str | None:
        """Level key for a key, the organisation's name or any alias; None if unknown.

        Matching is case-insensitive and ignores spaces, ``-`` and ``_``, so ``"sev 2"``,
        ``"SEV-2"`` and ``"Sev_2"`` are the same.
        """
        if not isinstance(value, str):
            return None
        memo: dict[str, str | None] = self.__pydantic_private__["_memo"]  # type: ignore[index]
        try:
            return memo[value]
        except KeyError:
            found = self._index.get(normalise_name(value))
            if len(memo) < 4096:  # label values are few; never let odd ones grow it unbounded
                memo[value] = found
            return found

    def level(self, key: str) -> Level:
        """The Level for a key (or any name/alias that resolves); KeyError if unknown."""
        resolved = self.resolve(key)
        if resolved is None:
            raise KeyError(f"unknown severity {key!r} in matrix {self.name!r}")
        return self.levels[resolved]

    def worst(self, a: str, b: str) -> str:
        """The more severe of two levels (keys, names or aliases), as a level key."""
        ka, kb = self.resolve(a), self.resolve(b)
        for given, got in ((a, ka), (b, kb)):
            if got is None:
                raise KeyError(f"unknown severity {given!r} in matrix {self.name!r}")
        assert ka is not None and kb is not None
        return ka if rank(ka) <= rank(kb) else kb

    def level_keys(self) -> list[str]:
        """The level keys this matrix uses, worst first."""
        return list(self.levels)


class MatrixConfig(BaseModel):
    """The ``matrix:`` section of the user's configuration.

    ``preset`` names a built-in matrix; ``levels`` then holds per-level overrides deep-merged
    over it (dicts merge, lists replace). Without a preset, ``levels`` is the full definition
    and ``default_level`` is required.
    """

    model_config = ConfigDict(extra="forbid")

    preset: str | None = None
    name: str | None = None
    default_level: str | None = None
    levels: dict[str, dict[str, Any]] = {}

    @field_validator("preset")
    @classmethod
    def _known_preset(cls, v: str | None) -> str | None:
        if v is not None and v not in preset_names():
            raise ValueError(_unknown_preset(v))
        return v


def _presets_dir() -> Traversable:
    return resources.files("rules").joinpath("presets")


def preset_names() -> list[str]:
    """Names of the built-in severity presets (``rules/presets/<name>.yaml``), sorted."""
    return sorted(
        entry.name.removesuffix(".yaml")
        for entry in _presets_dir().iterdir()
        if entry.name.endswith(".yaml")
    )


def _unknown_preset(name: str) -> str:
    return f"unknown severity preset {name!r}; available: {', '.join(preset_names())}"


@cache
def _preset_text(name: str) -> str:
    return _presets_dir().joinpath(f"{name}.yaml").read_text(encoding="utf-8")


def _preset_data(name: str) -> dict[str, Any]:
    if name not in preset_names():
        raise ValueError(_unknown_preset(name))
    data = yaml.safe_load(_preset_text(name))
    if not isinstance(data, dict):
        raise ValueError(f"severity preset {name!r} is not a mapping")
    return data


def load_preset(name: str) -> Matrix:
    """The built-in matrix ``name``; ValueError listing the available ones if unknown."""
    return Matrix.model_validate(_preset_data(name))


def _deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Merge ``override`` into a copy of ``base``: nested dicts merge, everything else replaces."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _merge_level(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = _deep_merge(base, override)
    # Switching a preset level to a named policy (or back to tiers) must not trip the
    # "policy or tiers, not both" check on what the preset left behind.
    if override.get("policy") is not None and "tiers" not in override:
        merged["tiers"] = []
        if "repeat" not in override:
            merged.pop("repeat", None)
    if override.get("tiers") and "policy" not in override:
        merged.pop("policy", None)
    return merged


def build_matrix(cfg: MatrixConfig) -> Matrix:
    """The effective matrix for a config section: the preset with overrides, or a full definition.

    Override keys may be canonical keys (``P1``) or, with a preset, any name/alias of a preset
    level (``SEV-2``). Raises ValueError (or pydantic's ValidationError, whose ``loc`` points at
    ``levels.<key>.<field>``) when the result is not a valid matrix.
    """
    if cfg.preset is None:
        if not cfg.levels:
            raise ValueError(
                "matrix: set 'preset' (one of " + ", ".join(preset_names()) + ") or define 'levels'"
            )
        if cfg.default_level is None:
            raise ValueError("matrix: 'default_level' is required when no preset is used")
        data: dict[str, Any] = {
            "name": cfg.name or "custom",
            "levels": cfg.levels,
            "default_level": cfg.default_level,
        }
        return Matrix.model_validate(data)

    data = _preset_data(cfg.preset)
    base = Matrix.model_validate(data)
    levels: dict[str, Any] = {k.strip().upper(): v for k, v in data["levels"].items()}
    for key, override in cfg.levels.items():
        canon = key.strip().upper()
        if canon not in LEVELS:
            resolved = base.resolve(key)
            if resolved is None:
                raise ValueError(
                    f"matrix.levels: {key!r} is neither a canonical level ({', '.join(LEVELS)}) "
                    f"nor a level of preset {cfg.preset!r}"
                )
            canon = resolved
        if canon in levels:
            levels[canon] = _merge_level(levels[canon], override)
        else:
            levels[canon] = copy.deepcopy(override)
    data = {**data, "levels": levels}
    if cfg.name is not None:
        data["name"] = cfg.name
    if cfg.default_level is not None:
        data["default_level"] = cfg.default_level
    return Matrix.model_validate(data)
