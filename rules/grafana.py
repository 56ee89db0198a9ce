"""Grafana alerting's webhook contact point body, turned into an Alertmanager ``Notification``.

Grafana sends Alertmanager's webhook body with ``version: "1"`` and a few fields of its own:
``orgId``, ``state``, ``title`` and ``message`` on the group, and ``values`` (or, before Grafana
9.4, ``valueString``), ``dashboardURL``, ``panelURL``, ``silenceURL`` and ``imageURL`` on each
alert (https://grafana.com/docs/grafana/latest/alerting/configure-notifications/
manage-contact-points/integrations/webhook-notifier/). Everything Alertmanager also has keeps its
meaning; Grafana's own fields become annotations, so they are stored with the alert, shown on
the console and, for the URLs, sent as links with pages. An annotation the alert rule set itself
wins over one made here.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from rules.alerts import Notification

__all__ = ["GRAFANA_LINKS", "GrafanaNotification", "is_grafana"]

GRAFANA_LINKS: tuple[tuple[str, str], ...] = (
    ("grafana_dashboard_url", "Dashboard"),
    ("grafana_panel_url", "Panel"),
    ("grafana_silence_url", "Silence"),
    ("grafana_image_url", "Image"),
)
"""(annotation, link text) for Grafana's per-alert URLs, in the order pages list them."""

_URL_FIELDS = (
    ("dashboard_url", "grafana_dashboard_url"),
    ("panel_url", "grafana_panel_url"),
    ("silence_url", "grafana_silence_url"),
    ("image_url", "grafana_image_url"),
)


def is_grafana(doc: Any) -> bool:
    """Whether a decoded webhook body is Grafana's: version "1" and Grafana's ``orgId``."""
    return isinstance(doc, dict) and doc.get("version") == "1" and "orgId" in doc


class GrafanaAlert(BaseModel):
    """One alert as Grafana sends it: Alertmanager's fields stay raw for ``Alert`` to check."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    dashboard_url: str = Field(default="", alias="dashboardURL")
    panel_url: str = Field(default="", alias="panelURL")
    silence_url: str = Field(default="", alias="silenceURL")
    image_url: str = Field(default="", alias="imageURL")
    values: dict[str, float | None] | None = None
    value_string: str = Field(default="", alias="valueString")

    def as_alertmanager(self, org_id: int) -> dict[str, Any]:
        """This alert as Alertmanager would have sent it, Grafana's fields as annotations."""
        raw = dict(self.model_extra or {})
        own = raw.get("annotations")
        added: dict[str, str] = {"grafana_org_id": str(org_id)}
        for attr, key in _URL_FIELDS:
            if value := getattr(self, attr):
                added[key] = value
        if self.values:
            added["grafana_values"] = ", ".join(
                f"{k}={_number(v)}" for k, v in sorted(self.values.items())
            )
        elif self.value_string:
            added["grafana_values"] = self.value_string
        # The rule's own annotations win; a malformed one is left for ``Alert`` to refuse.
        raw["annotations"] = added | own if isinstance(own, dict) else (own or added)
        return raw


def _number(v: float | None) -> str:
    if v is None:
        return "null"
    return str(int(v)) if v == int(v) and abs(v) < 1e15 else repr(v)


class GrafanaNotification(BaseModel):
    """The whole body of Grafana's webhook contact point."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    version: Literal["1"]
    org_id: int = Field(alias="orgId")
    alerts: list[GrafanaAlert]
    title: str = ""
    state: str = ""
    message: str = ""
    group_key: str = Field(default="", alias="groupKey")

    def to_notification(self) -> Notification:
        """Alertmanager's ``Notification`` with Grafana's extras kept as annotations."""
        raw = dict(self.model_extra or {})
        common = raw.get("commonAnnotations")
        group: dict[str, str] = {"grafana_org_id": str(self.org_id)}
        for key, value in (("title", self.title), ("state", self.state)):
            if value:
                group[f"grafana_{key}"] = value
        if self.message:
            group["grafana_message"] = self.message
        raw["commonAnnotations"] = group | common if isinstance(common, dict) else common or group
        raw["alerts"] = [a.as_alertmanager(self.org_id) for a in self.alerts]
        # Grafana leaves groupKey out of some versions' bodies; one per org and receiver then.
        raw["groupKey"] = self.group_key or f"grafana:{self.org_id}:{{}}"
        raw["version"] = "4"
        return Notification.model_validate(raw)
