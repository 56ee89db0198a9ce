"""All the template renders of one notification share a deadline (rules.templates).

Each render is bounded on its own; without a shared deadline a notification of many alerts whose
key template hits the limit each time would hold the event loop for alerts x templates x 0.1 s.
With the notification's time spent, a costly template falls back at its next look at the clock,
while ordinary ones (too short to ever look at the clock) still render.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import rules.templates
from escalation.store.base import IncidentFilter
from tests.driver.app import MakeApp
from tests.driver.config import RECEIVER_TOKEN, write_config
from tests.driver.payloads import alert, notification

# The key template walks a loop long enough to look at the clock; the title is ordinary.
RULES = """\
rules:
  - name: per-instance
    match: 'alertname="DiskFull"'
    severity: P2
    incident_key: "{% for i in range(300) %}{% endfor %}disk/{{ labels.instance }}"
    title: "Disk full on {{ labels.instance }}"
"""

HEADERS = {"Authorization": f"Bearer {RECEIVER_TOKEN}", "Content-Type": "application/json"}


@pytest.mark.parametrize(("limit", "incidents"), [(3600.0, 3), (0.0, 1)])
async def test_a_spent_notification_budget_makes_costly_templates_fall_back(
    tmp_path: Path,
    make_app: MakeApp,
    monkeypatch: pytest.MonkeyPatch,
    limit: float,
    incidents: int,
) -> None:
    monkeypatch.setattr(rules.templates, "NOTIFICATION_TIME_LIMIT", limit)
    app = await make_app(write_config(tmp_path, rules=RULES))
    body = notification([alert(instance=f"db-{i}") for i in range(3)])
    await app.post(body, headers=HEADERS)
    found = await app.rt.store.list_incidents(IncidentFilter())
    # With time left every alert gets its own key; with none, the key falls back to
    # receiver + groupKey and the three alerts fold into one incident.
    assert len(found) == incidents
    titles = sorted(i.title for i in found)
    assert titles[0] == "Disk full on db-0"  # the ordinary title template rendered either way


def test_renders_outside_a_notification_keep_their_own_limit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(rules.templates, "NOTIFICATION_TIME_LIMIT", 0.0)
    costly = rules.templates.Template("{% for i in range(300) %}{% endfor %}ok")
    assert costly.render({}) == "ok"
    with rules.templates.notification_budget():
        assert costly.render({}) is None
        with pytest.raises(rules.templates.TemplateLimitExceeded, match="one notification"):
            costly.check_limits({})
        assert rules.templates.Template("{{ 'short' }}").render({}) == "short"
    assert costly.render({}) == "ok"
