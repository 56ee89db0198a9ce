"""``tocsin check`` refuses an ``adapters.phone.sms_responders`` entry that names no role: a
misspelt role would quietly let nobody acknowledge by number an incident not paged to them."""

from __future__ import annotations

from pathlib import Path

import pytest

from config.errors import ConfigError
from config.load import load_config

CONFIG = """\
auth:
  receiver:
    bearer_tokens: ["t0ken"]
people:
  lee: {{phone: "+14155550101", channels: [sms]}}
roles:
  leads: [lee]
  oncall: [lee]
adapters:
  phone:
    account_sid: AC0123
    auth_token: s3cret
    from_number: "+14155550000"
    sms_responders: [{responders}]
"""


def write(tmp_path: Path, responders: str) -> Path:
    path = tmp_path / "tocsin.yaml"
    path.write_text(CONFIG.format(responders=responders))
    return path


def test_an_unknown_responder_role_is_refused_where_it_is_written(tmp_path: Path) -> None:
    path = write(tmp_path, "oncall, lead, nobody")

    with pytest.raises(ConfigError) as info:
        load_config(path, env={})

    assert [str(p) for p in info.value.problems] == [
        f"{path}:14:30: adapters.phone.sms_responders[1]: unknown role 'lead'"
        " (known: leads, oncall); did you mean 'leads'?",
        f"{path}:14:36: adapters.phone.sms_responders[2]: unknown role 'nobody'"
        " (known: leads, oncall)",
    ]


def test_known_responder_roles_pass(tmp_path: Path) -> None:
    loaded = load_config(write(tmp_path, "oncall, leads"), env={})

    phone = loaded.config.adapters.phone
    assert phone is not None and phone.sms_responders == ["oncall", "leads"]
