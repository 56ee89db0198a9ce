"""Opsgenie's Alert API on tocsin: create (alias dedups, priority → matrix level), close,
acknowledge and notes by id, alias or tiny id, GenieKey auth, and Opsgenie's own answers.

Requests are the samples of Opsgenie's Alert API documentation; every answer is checked against
Opsgenie's OpenAPI document (tests/fakes/opsgenie_alert_api.py). The whole app runs in-process.
"""

from __future__ import annotations

import copy
import logging
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from config.errors import ConfigError
from config.load import load_config
from tests.driver.app import READ, App, MakeApp
from tests.driver.config import READ_TOKEN, RECEIVER_TOKEN, WRITE_TOKEN, write_config
from tests.fakes.opsgenie_alert_api import SAMPLES, response_errors

pytestmark = pytest.mark.usefixtures("strict_logs")

KEY = "eb243592-faa2-4ba2-a551-1afdf565c889"
GENIE = {"Authorization": f"GenieKey {KEY}", "Content-Type": "application/json"}
ALERTS = "/v2/alerts"
ACTION = "/v2/alerts/{identifier}/"

AUTH = f"""\
auth:
  receiver: {{bearer_tokens: [{RECEIVER_TOKEN}]}}
  api_tokens:
    - {{name: writer, token: {WRITE_TOKEN}, scope: write}}
    - {{name: reader, token: {READ_TOKEN}, scope: read}}
  genie_keys: [{{name: grafana, key: %s}}]
teams:
  NOC: {{members: []}}
  ops-team: {{members: []}}
policies:
  ops_escalation:
    steps: [{{after: 0s, notify: [team:ops-team]}}]
heartbeats:
  nightly-backup: {{expect_every: 10m, grace: 2m, severity: P1, title: Nightly backup stopped}}
"""


@pytest.fixture
async def app(tmp_path: Path, make_app: MakeApp) -> App:
    return await make_app(write_config(tmp_path, AUTH % KEY))


async def genie(
    app: App, path: str, body: Any = None, *, template: str = ALERTS, **headers: str
) -> tuple[int, dict[str, Any]]:
    """POST ``body`` with the GenieKey; check the answer against Opsgenie's documented one."""
    resp = await app.client.post(path, json=body, headers={**GENIE, **headers})
    doc = await resp.json()
    assert response_errors(template, resp.status, doc) == [], doc
    assert resp.headers["X-Request-ID"] == doc["requestId"]
    return resp.status, doc


async def act(app: App, ident: str, verb: str, kind: str, body: Any = None) -> int:
    path = f"/v2/alerts/{ident}/{verb}?identifierType={kind}"
    status, doc = await genie(app, path, body, template=ACTION + verb)
    assert doc["result"] == "Request will be processed"
    return status


def create_sample(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = copy.deepcopy(SAMPLES["create_request"])
    body.update(changes)
    return body


async def test_the_documented_create_opens_an_incident_at_the_mapped_level(app: App) -> None:
    status, doc = await genie(app, ALERTS, create_sample())
    assert (status, doc["result"]) == (202, "Request will be processed")
    [inc] = await app.incidents()
    assert inc["key"] == "opsgenie:Life is too short for no alias"
    assert inc["severity"] == "P0"  # P1 → the matrix's first level by default
    assert inc["title"] == "An example alert message"
    assert inc["team"] == "NOC"  # the responder team that names a configured team
    full = await app.incident(inc["id"])
    [alert] = full["alerts"]
    labels = alert["labels"]
    assert labels["key1"] == "value1" and labels["entity"] == "An example entity"
    assert labels["tags"] == "OverwriteQuietHours,Critical" and labels["priority"] == "P1"
    assert alert["annotations"]["description"] == "Every alert needs a description"


async def test_the_same_alias_deduplicates_while_open_and_opens_anew_once_closed(
    app: App,
) -> None:
    await genie(app, ALERTS, create_sample())
    await genie(app, ALERTS, create_sample(message="again", priority="P5"))
    [inc] = await app.incidents()
    assert (inc["title"], inc["severity"]) == ("An example alert message", "P0")
    assert len((await app.incident(inc["id"]))["alerts"]) == 1
    assert await act(app, "Life is too short for no alias", "close", "alias") == 202
    await app.advance(timedelta(hours=2))  # past the monitoring window
    await genie(app, ALERTS, create_sample(message="second time"))
    # (The configured heartbeat, never pinged, has expired meanwhile: not ours.)
    incidents = [i for i in await app.incidents() if i["key"].startswith("opsgenie:")]
    assert [i["title"] for i in incidents] == ["second time", "An example alert message"]
    assert [i["status"] for i in incidents] == ["triggered", "resolved"]


@pytest.mark.parametrize(
    ("priority", "level"), [("P1", "P0"), ("P2", "P1"), ("P3", "P2"), ("P4", "P3"), ("P5", "P4")]
)
async def test_default_priority_table_spreads_p1_to_p5_over_the_levels(
    app: App, priority: str, level: str
) -> None:
    await genie(app, ALERTS, {"message": "disk full", "alias": "a1", "priority": priority})
    [inc] = await app.incidents()
    assert inc["severity"] == level


async def test_without_priority_an_alert_is_p3_and_the_table_is_configurable(
    tmp_path: Path, make_app: MakeApp
) -> None:
    table = "opsgenie:\n  priorities: {P3: SEV-1, P4: high}\n"
    app = await make_app(write_config(tmp_path, AUTH % KEY, table))
    await genie(app, ALERTS, {"message": "no priority", "alias": "a"})
    await genie(app, ALERTS, {"message": "p4", "alias": "b", "priority": "P4"})
    await genie(app, ALERTS, {"message": "p5", "alias": "c", "priority": "P5"})
    levels = {i["title"]: i["severity"] for i in await app.incidents()}
    assert levels == {"no priority": "P0", "p4": "P1", "p5": "P4"}


def test_a_priority_naming_no_level_is_a_config_problem(tmp_path: Path) -> None:
    path = write_config(tmp_path, AUTH % KEY, "opsgenie:\n  priorities: {P2: SEV-9}\n")
    with pytest.raises(ConfigError) as e:
        load_config(path, env={})
    [problem] = e.value.problems
    assert problem.path == "opsgenie.priorities.P2" and "SEV-9" in problem.message


async def test_acknowledge_notes_and_close_by_alias_tiny_and_id(app: App) -> None:
    await genie(app, ALERTS, create_sample())
    [inc] = await app.incidents()
    sample_ack = SAMPLES["acknowledge_request"]
    assert (
        await act(app, "Life is too short for no alias", "acknowledge", "alias", sample_ack) == 202
    )
    assert (await app.incident(inc["id"]))["status"] == "acknowledged"
    note = {"note": "looking at the disk", "user": "Monitoring Script"}
    assert await act(app, str(inc["number"]), "notes", "tiny", note) == 202
    assert await act(app, inc["id"], "close", "id", SAMPLES["close_request"]) == 202
    full = await app.incident(inc["id"])
    assert full["status"] == "resolved"
    # What the engine wrote when tier 0 fired at ingest (nobody mapped: a skip) is not acted.
    timeline = [e for e in full["timeline"] if e["source"] != "engine"]
    acted = [(e["kind"], e["actor"], e["source"], e["message"]) for e in timeline[2:]]
    assert acted == [
        (
            "ack",
            "grafana",  # the key's name acts; the body's user is "on behalf of"
            "opsgenie",
            "acknowledged by grafana on behalf of Monitoring Script: Action executed via Alert API",
        ),
        ("note", "grafana", "opsgenie", "looking at the disk"),
        (
            "resolve",
            "grafana",
            "opsgenie",
            "resolved by grafana on behalf of Monitoring Script: Action executed via Alert API",
        ),
    ]


async def test_close_without_identifier_type_means_id_and_without_body(app: App) -> None:
    await genie(app, ALERTS, create_sample())
    [inc] = await app.incidents()
    resp = await app.client.post(f"/v2/alerts/{inc['id']}/close", headers=GENIE)
    assert resp.status == 202
    assert (await app.incident(inc["id"]))["status"] == "resolved"


async def test_an_action_on_an_unknown_alert_is_accepted_and_changes_nothing(
    app: App, caplog: pytest.LogCaptureFixture
) -> None:
    await genie(app, ALERTS, create_sample())
    for kind, ident in (("alias", "nope"), ("tiny", "999"), ("id", "nope"), ("tiny", "x1")):
        assert await act(app, ident, "acknowledge", kind) == 202
    assert [i["status"] for i in await app.incidents()] == ["triggered"]
    assert "opsgenie action names no incident" in caplog.text
    # Closing twice: Opsgenie accepts the repeat too; the incident stays resolved.
    assert await act(app, "Life is too short for no alias", "close", "alias") == 202
    assert await act(app, "Life is too short for no alias", "close", "alias") == 202
    assert [i["status"] for i in await app.incidents()] == ["resolved"]


async def test_an_alias_is_never_read_as_an_incident_number(app: App) -> None:
    await genie(app, ALERTS, {"message": "first", "alias": "a"})
    [inc] = await app.incidents()
    assert await act(app, str(inc["number"]), "close", "alias") == 202
    assert [i["status"] for i in await app.incidents()] == ["triggered"]


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "GenieKey wrong"}, {"Authorization": f"Bearer {KEY}"}],
    ids=["none", "wrong key", "bearer"],
)
async def test_without_the_genie_key_opsgenie_answers_401(
    app: App, headers: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    sent = {"Content-Type": "application/json", **headers}
    resp = await app.client.post(ALERTS, json=create_sample(), headers=sent)
    doc = await resp.json()
    assert (resp.status, doc["message"]) == (401, "Could not authenticate")
    assert response_errors(ALERTS, 401, doc) == []
    resp = await app.client.post("/v2/alerts/x/close?identifierType=alias", headers=sent)
    assert resp.status == 401
    assert await app.incidents() == []
    assert KEY not in caplog.text


async def test_a_key_is_never_logged(app: App, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    await genie(app, ALERTS, create_sample())
    await act(app, "nope", "close", "alias")
    assert KEY not in caplog.text


@pytest.mark.parametrize(
    ("body", "errors"),
    [
        ({"alias": "a"}, {"message": "Message can not be empty."}),
        ({"message": "  "}, {"message": "Message can not be empty."}),
        ({"message": "m", "priority": "P9"}, {"priority": "Priority should be one of"}),
        ({"message": "m", "details": {"k": 1}}, {"details.k": "string"}),
    ],
)
async def test_a_semantically_bad_create_is_opsgenies_422(
    app: App, body: dict[str, Any], errors: dict[str, str]
) -> None:
    status, doc = await genie(app, ALERTS, body)
    assert status == 422
    assert doc["message"] == "Request body is not processable. Please check the errors."
    assert set(doc["errors"]) == set(errors)
    for field, words in errors.items():
        assert words.lower() in doc["errors"][field].lower()
    assert await app.incidents() == []


async def test_bad_json_is_400_and_a_bad_identifier_type_422(app: App) -> None:
    resp = await app.client.post(ALERTS, data=b"{not json", headers=GENIE)
    doc = await resp.json()
    assert (resp.status, doc["message"]) == (400, "Invalid JSON body")
    assert response_errors(ALERTS, 400, doc) == []
    status, doc = await genie(
        app, "/v2/alerts/a/close?identifierType=name", {}, template=ACTION + "close"
    )
    assert status == 422 and "identifierType" in doc["errors"]
    status, doc = await genie(
        app, "/v2/alerts/a/notes?identifierType=alias", {}, template=ACTION + "notes"
    )
    assert status == 422 and doc["errors"] == {"note": "Note can not be empty."}


async def test_over_long_fields_are_cut_to_opsgenies_limits(app: App) -> None:
    body = {"message": "m" * 200, "alias": "a", "tags": [f"t{i}" for i in range(30)]}
    await genie(app, ALERTS, body)
    [inc] = await app.incidents()
    assert inc["title"] == "m" * 130
    labels = (await app.incident(inc["id"]))["alerts"][0]["labels"]
    assert labels["tags"].split(",") == [f"t{i}" for i in range(20)]


async def test_grafanas_opsgenie_contact_point_opens_and_closes(app: App) -> None:
    body = SAMPLES["grafana_create"]
    status, _ = await genie(app, ALERTS, body)
    assert status == 202
    [inc] = await app.incidents()
    assert (inc["title"], inc["severity"], inc["team"]) == ("[FIRING:1]  (val1)", "P2", "NOC")
    labels = (await app.incident(inc["id"]))["alerts"][0]["labels"]
    assert labels["url"] == "http://localhost/alerting/list"
    assert labels["tags"] == "alertname:alert1,lbl1:val1" and labels["source"] == "Grafana"
    # Grafana closes by alias, with its api url (".../v2/alerts") + "/<alias>/close".
    path = f"/v2/alerts/{body['alias']}/close?identifierType=alias"
    status, _ = await genie(app, path, SAMPLES["grafana_close"], template=ACTION + "close")
    assert status == 202
    assert (await app.incident(inc["id"]))["status"] == "resolved"


async def test_while_the_store_is_down_a_create_is_503_so_the_sender_retries(
    app: App, caplog: pytest.LogCaptureFixture
) -> None:
    await app.rt.store.close()  # every store call now fails as a store failure
    resp = await app.client.post(ALERTS, json=create_sample(), headers=GENIE)
    doc = await resp.json()
    assert resp.status == 503 and set(doc) == {"message", "took", "requestId"}
    assert "retry" in doc["message"]
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == [
        "store unavailable; asking the Opsgenie sender to retry"
    ]
    caplog.clear()  # the outage's error line is expected (strict_logs)


async def test_metrics_count_an_opsgenie_alert_at_its_priority_level(app: App) -> None:
    await genie(app, ALERTS, {"message": "m", "alias": "a", "priority": "P2"})
    resp = await app.client.get("/metrics")
    text = await resp.text()
    assert 'tocsin_alerts_classified_total{rule="default",severity="P1"} 1.0' in text


async def test_responders_reach_teams_and_policies_by_their_imported_names(app: App) -> None:
    responders = [
        {"name": "Ops Team", "type": "team"},  # `tocsin import opsgenie` made it ops-team
        {"name": "ops_escalation", "type": "escalation"},
    ]
    await genie(app, ALERTS, {"message": "m", "alias": "a", "responders": responders})
    [inc] = await app.incidents()
    assert (inc["team"], inc["policy"]) == ("ops-team", "ops_escalation")


PING = "/v2/heartbeats/nightly-backup/ping"


async def heartbeat(app: App) -> dict[str, Any]:
    [hb] = (await app.api("GET", "/api/v1/heartbeats", headers=READ))[1]["heartbeats"]
    return dict(hb)


@pytest.mark.parametrize("method", ["GET", "POST", "PUT", "PATCH"])
async def test_opsgenies_heartbeat_ping_keeps_a_configured_heartbeat_alive(
    app: App, method: str
) -> None:
    await app.run_until(app.start + timedelta(minutes=5))
    resp = await app.client.request(method, PING, headers={"Authorization": f"GenieKey {KEY}"})
    doc = await resp.json()
    assert (resp.status, doc["result"]) == (202, "PONG - Heartbeat received")
    assert set(doc) == {"result", "took", "requestId"}
    hb = await heartbeat(app)
    assert (hb["state"], hb["last_ping"]) == ("ok", (app.start + timedelta(minutes=5)).isoformat())


async def test_a_heartbeat_that_expired_resolves_on_an_opsgenie_ping(app: App) -> None:
    await app.run_until(app.start + timedelta(minutes=12))  # never pinged: one window and grace
    [inc] = await app.incidents()
    assert (inc["title"], inc["status"]) == ("Nightly backup stopped", "triggered")
    status, _ = await genie(app, PING, template=ALERTS)
    assert status == 202
    assert [i["status"] for i in await app.incidents()] == ["resolved"]


async def test_an_opsgenie_ping_for_an_unknown_heartbeat_is_pong_and_changes_nothing(
    app: App, caplog: pytest.LogCaptureFixture
) -> None:
    resp = await app.client.get("/v2/heartbeats/nope/ping", headers=GENIE)
    assert (resp.status, (await resp.json())["result"]) == (202, "PONG - Heartbeat received")
    assert "opsgenie ping names no configured heartbeat" in caplog.text
    assert (await heartbeat(app))["state"] == "unknown"
    resp = await app.client.get(PING, headers={"Authorization": "GenieKey wrong"})
    assert resp.status == 401
    assert (await heartbeat(app))["state"] == "unknown"
