"""``tocsin check`` refuses what ``serve`` refuses, and the offline tools need no secret files.

Every option an adapter reads a file for when it is built (a TLS CA to trust, a private key) is
checked by the adapter's own ``check``, so ``tocsin check``, ``serve`` and a reload share one
validation path. A ``*_file`` secret the offline tools cannot read is deferred like an unset
``${VAR}``: a warning in ``check``, an error with ``--strict`` and in ``serve``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import trustme
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from adapters.registry import AdapterBuildError, AdapterContext, build_notifiers
from config.errors import ConfigError
from config.load import load_config
from config.loader import load_document
from config.schema import TocsinConfig
from escalation.engine.clock import VirtualClock
from router.runtime import Runtime
from tests.driver.cli import run

REPO = Path(__file__).resolve().parents[2]

PUBLIC = "https://tocsin.example.com"
LINK = "email-link-secret-0123456789"
PD_KEY = "R0UT1NGKEY0000000000000000000001"

OFFICE = """\
auth:
  receiver:
    bearer_tokens: ["t0ken"]
people:
  alice: {name: Alice, channels: [log]}
policies:
  office:
    steps:
      - {name: first, after: 0s, notify: [person:alice], via: [log]}
rules:
  default: {severity: P3, policy: office}
"""

ALERT = (
    '{"version": "4", "status": "firing", "receiver": "r", "groupKey": "{}:{}", "alerts":'
    ' [{"status": "firing", "labels": {"alertname": "A"}, "startsAt": "2026-01-05T20:00:00Z"}]}'
)


@pytest.fixture(autouse=True)
def _in_repo(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)


@pytest.fixture
def files(tmp_path: Path) -> dict[str, str]:
    """What the table's configs point at: a real CA and key, and things that are not."""
    ca = tmp_path / "ca.pem"
    trustme.CA().cert_pem.write_to_path(str(ca))
    key = tmp_path / "key.pem"
    pem = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    key.write_bytes(pem)
    text = tmp_path / "notes.txt"
    text.write_text("not a certificate, not a key\n")
    (tmp_path / "folder").mkdir()
    return {
        "ca": str(ca),
        "key": str(key),
        "text": str(text),
        "folder": str(tmp_path / "folder"),
        "missing": str(tmp_path / "missing.pem"),
    }


def _email(ca: str) -> str:
    return f"  email: {{link_secret: {LINK}, tls_ca_path: '{ca}'}}\n"


def _pagerduty(ca: str) -> str:
    return f"  pagerduty: {{services: {{api: {PD_KEY}}}, tls_ca_path: '{ca}'}}\n"


def _vonage(key: str) -> str:
    return (
        "  phone:\n    provider: vonage\n    vonage:\n      application_id: app\n"
        f"      private_key_file: '{key}'\n      signature_secret: vonage-signature-secret\n"
        "      from_number: '+15550100'\n"
    )


# (adapter section, file it reads, the problem check reports: (path, message) or None if fine).
TABLE = [
    (_email, "ca", None),
    (_email, "missing", ("adapters.email.tls_ca_path", "No such file or directory")),
    (_email, "text", ("adapters.email.tls_ca_path", "it holds no PEM certificate")),
    (_email, "folder", ("adapters.email.tls_ca_path", "Is a directory")),
    (_pagerduty, "ca", None),
    (_pagerduty, "missing", ("adapters.pagerduty.tls_ca_path", "No such file or directory")),
    (_pagerduty, "text", ("adapters.pagerduty.tls_ca_path", "it holds no PEM certificate")),
    (_vonage, "key", None),
    (_vonage, "text", ("adapters.phone.vonage.private_key", "not a PEM private key")),
]


@pytest.mark.parametrize(("section", "file", "problem"), TABLE)
def test_check_refuses_exactly_what_serve_refuses_to_build(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    files: dict[str, str],
    section: object,
    file: str,
    problem: tuple[str, str] | None,
) -> None:
    assert callable(section)
    header = (
        "auth:\n  receiver:\n    bearer_tokens: [t0ken]\n"
        f"server: {{public_url: '{PUBLIC}'}}\n"
        f"store: {{backend: sqlite, path: '{tmp_path / 'tocsin.db'}'}}\n"
    )
    config = tmp_path / "tocsin.yaml"
    config.write_text(header + "adapters:\n" + section(files[file]))

    # serve's build on its own, without the config loader's checks: what it refuses.
    cfg = TocsinConfig.model_validate(load_document(config).data)
    ctx = AdapterContext(PUBLIC, lambda: pytest.fail("no request"), VirtualClock())
    try:
        build_notifiers(cfg.adapters, ctx)
        build_refused = False
    except AdapterBuildError:
        build_refused = True

    code, out, err = run(capsys, "check", str(config))
    assert (code == 1) == build_refused == (problem is not None), (out, err)
    if problem is None:
        assert (err, out.startswith("SUCCESS:")) == ("", True)
        Runtime(load_config(config))  # serve builds it
        return
    path, message = problem
    [line] = err.splitlines()[:-1]
    assert line.startswith(f"{config}:"), line
    assert f": {path}: " in line and message in line, line
    # serve (and a reload) loads and builds the same way: refused, at the same place.
    with pytest.raises(ConfigError) as refused:
        Runtime(load_config(config))
    assert [str(p) for p in refused.value.problems] == [line]


# --------------------------------------------------------------- deferred *_file secrets

SECRETS = """\
adapters:
  email:
    link_secret_file: secrets/link      # relative: to the config's directory
    username: tocsin
    password_file: {folder}
  phone:
    provider: vonage
    vonage:
      application_id: app
      private_key_file: /nonexistent/vonage.pem
      signature_secret: vonage-signature-secret
      from_number: "+15550100"
server: {{public_url: "https://tocsin.example.com"}}
"""


def _secrets_config(tmp_path: Path) -> Path:
    (tmp_path / "folder").mkdir()
    config = tmp_path / "tocsin.yaml"
    config.write_text(OFFICE + SECRETS.format(folder=tmp_path / "folder"))
    return config


def _unreadable(tmp_path: Path, config: Path) -> list[str]:
    """Where and why each secret file cannot be read (a missing one, a directory)."""
    return [
        f"{config}:14:5: adapters.email.link_secret_file: "
        f"'{tmp_path / 'secrets' / 'link'}' cannot be read: No such file or directory",
        f"{config}:16:5: adapters.email.password_file: "
        f"'{tmp_path / 'folder'}' cannot be read: Is a directory",
        f"{config}:21:7: adapters.phone.vonage.private_key_file: "
        "'/nonexistent/vonage.pem' cannot be read: No such file or directory",
    ]


def test_check_warns_of_secret_files_it_cannot_read_and_strict_refuses_them(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    config = _secrets_config(tmp_path)
    where = [
        w.replace(": '", ": serve will refuse to start: '", 1)
        for w in _unreadable(tmp_path, config)
    ]
    code, out, err = run(capsys, "check", str(config))
    assert code == 0, err
    assert err.splitlines() == [f"warning: {w}" for w in where]
    assert out.startswith(f"SUCCESS: {config}: ") and out.endswith(", 3 warning(s)\n")

    code, out, err = run(capsys, "check", "--strict", str(config))
    assert (code, out) == (1, "")
    assert err.splitlines() == [*where, f"FAILED: 3 problem(s) in {config}"]


def test_serve_refuses_secret_files_it_cannot_read(tmp_path: Path) -> None:
    config = _secrets_config(tmp_path)
    proc = subprocess.run(
        [sys.executable, "-m", "router.cli", "serve", "--config", str(config)],
        cwd=REPO,
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1
    assert proc.stderr.splitlines() == [
        w.replace(": '", ": cannot read file '", 1).replace("' cannot be read: ", "': ")
        for w in _unreadable(tmp_path, config)
    ]


def test_explain_simulate_and_test_need_no_secret_files(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    config = _secrets_config(tmp_path)
    explain = ["explain", "--config", str(config), "--labels", "alertname=A"]
    code, out, err = run(capsys, *explain, "--at", "2026-01-05T10:00:00Z")
    assert (code, err) == (0, "")
    assert "Policy:       office" in out

    payload = tmp_path / "payload.json"
    payload.write_text(ALERT)
    simulate = ["simulate", "--config", str(config), "--payload", str(payload), "--until", "1h"]
    code, out, err = run(capsys, *simulate)
    assert (code, err) == (0, "")
    assert "incident opened: A" in out

    tests = tmp_path / "rules_test.yaml"
    tests.write_text(
        textwrap.dedent(
            """\
            config: tocsin.yaml
            tests:
              - name: the default
                alerts:
                  - labels: {alertname: A}
                    expect: {severity: P3, policy: office}
            """
        )
    )
    code, out, err = run(capsys, "test", str(tests))
    assert (code, err) == (0, "")
    assert out == f"Unit Testing:  {tests}\n  SUCCESS (1 alert(s) in 1 test(s))\n\n"


def test_a_secret_file_that_is_not_text_is_an_error_even_offline(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """There to be read but wrong: no environment would make it right, so check says so."""
    (tmp_path / "link").write_bytes(b"\xff\xfe not utf-8")
    config = tmp_path / "tocsin.yaml"
    config.write_text(OFFICE + "adapters:\n  email: {link_secret_file: link}\n")
    code, _out, err = run(capsys, "check", str(config))
    assert code == 1
    assert err.splitlines()[0] == (
        f"{config}:13:11: adapters.email.link_secret_file: "
        f"cannot read file '{tmp_path / 'link'}': not UTF-8 text"
    )
