"""``tocsin check`` (and serve, and reload: one ``load_config``) refuses phone providers that could
not work: a gateway template that does not compile or fails on a sample text, a JSON body that
does not render JSON, a Vonage private key that cannot sign."""

from __future__ import annotations

import textwrap
from pathlib import Path

from config.errors import ConfigError
from config.load import load_config

BASE = """\
auth:
  receiver:
    bearer_tokens: ["t0ken"]
adapters:
  phone:
    providers: [vonage, gateway]
    vonage:
      application_id: app-1
      private_key: {key}
      signature_secret: s3cret
      from_number: "+447700900001"
    gateway:
      url: "https://sms.example.net/send?to={{{{ to }}}}"
      headers: {{Authorization: "{auth}"}}
      json_body: '{body}'
"""
GOOD_BODY = '{"text": {{ message|tojson }}}'


def problems(tmp_path: Path, **kw: str) -> list[str]:
    path = tmp_path / "tocsin.yaml"
    path.write_text(BASE.format(**kw))
    try:
        load_config(path, env={})
    except ConfigError as e:
        return [str(p).removeprefix(f"{path}:") for p in e.problems]
    return []


def pem_key() -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    return "|\n" + textwrap.indent(pem, " " * 8)


def test_a_broken_template_and_a_key_that_cannot_sign_are_refused(tmp_path: Path) -> None:
    found = problems(tmp_path, key='"not a key"', auth="Bearer {{ token", body=GOOD_BODY)
    assert found == [
        "14:17: adapters.phone.gateway.headers.Authorization: bad template 'Bearer {{ token':"
        " unexpected end of template, expected 'end of print statement'.",
        "9:7: adapters.phone.vonage.private_key: vonage.private_key is not a PEM private key"
        " without a passphrase",
    ]


def test_a_json_body_that_is_not_json_on_a_sample_is_refused(tmp_path: Path) -> None:
    found = problems(
        tmp_path, key=pem_key(), auth="Bearer {{ token }}", body='{"text": {{ message }}}'
    )
    [problem] = found
    assert "adapters.phone.gateway: on a sample text: json_body does not render JSON" in problem


def test_a_working_setup_passes(tmp_path: Path) -> None:
    assert problems(tmp_path, key=pem_key(), auth="Bearer {{ token }}", body=GOOD_BODY) == []


def test_the_phone_channel_needs_a_provider_that_rings(tmp_path: Path) -> None:
    path = tmp_path / "tocsin.yaml"
    path.write_text(
        textwrap.dedent(
            """\
            auth:
              receiver:
                bearer_tokens: ["t0ken"]
            adapters:
              phone:
                provider: gateway
                gateway: {url: "https://sms.example.net/send"}
            people:
              alice: {phone: "+14155550100", channels: [phone], fallback: [sms]}
            policies:
              default:
                steps:
                  - {notify: [person:alice], via: [phone]}
            """
        )
    )
    try:
        load_config(path, env={})
    except ConfigError as e:
        found = [str(p).removeprefix(f"{path}:") for p in e.problems]
    assert found == [
        "13:40: policies.default.steps[0].via[0]: no adapter is configured for channel 'phone'"
        " (configured: log, sms)"
    ]
    path.write_text(path.read_text().replace("via: [phone]", "via: [sms]"))
    assert load_config(path, env={}) is not None


def test_twilio_in_the_order_without_its_keys_names_what_is_missing_and_where(
    tmp_path: Path,
) -> None:
    # Twilio's keys sit at the top of adapters.phone; a newcomer who lists twilio after vonage
    # and sets only from_number must be told which keys are missing, not "got a mapping".
    path = tmp_path / "tocsin.yaml"
    path.write_text(
        "auth: {receiver: {bearer_tokens: [t0ken]}}\n"
        "adapters:\n"
        "  phone:\n"
        "    providers: [gateway, twilio]\n"
        '    from_number: "+15005550006"\n'
        "    gateway: {url: 'https://sms.example.net/send', json_body: '{}'}\n"
    )
    try:
        load_config(path, env={})
    except ConfigError as e:
        found = [str(p).removeprefix(f"{path}:") for p in e.problems]
    else:
        found = []
    assert found == [
        "3:3: adapters.phone: twilio needs account_sid, auth_token and from_number at the top"
        " of adapters.phone; missing: account_sid, auth_token"
    ]
