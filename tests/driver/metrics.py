"""Reading ``/metrics``: one sample's value out of Prometheus' text exposition."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

__all__ = ["metric_value"]


def metric_value(
    text: str, name: str, labels: dict[str, str] | None = None, *, exact: bool = True
) -> float | None:
    """The value of sample ``name`` in exposition ``text``, or None if there is none.

    ``exact``: the sample's labels are exactly ``labels`` (None: no labels). Otherwise the
    first sample carrying every label given (None: any sample of that name).
    """
    want = labels or {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name != name:
                continue
            if s.labels == want or (
                not exact and all(s.labels.get(k) == v for k, v in want.items())
            ):
                return float(s.value)
    return None
