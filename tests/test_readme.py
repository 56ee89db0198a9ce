"""The README stays honest: what it tells a newcomer to run works as written.

Each test reads the README itself, so it fails when the README drifts from the code (a command
that no longer parses, a setting missing from the reference, a preset missing from the table)
or the code drifts from the README (a route that answers differently, a quick start that no
longer gets through).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import types
import typing
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel

from config.schema import TocsinConfig
from escalation.incidents.steps import Step
from escalation.oncall.calendars import WeeklyHours
from escalation.oncall.schedules import Layer
from router.cli import build_parser, main
from rules.matrix import load_preset, preset_names
from tests.driver.app import MakeApp
from tests.driver.process import free_port, http_status, wait_for

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")


# --------------------------------------------------------------------------- reading the README


def section(title: str) -> str:
    """The README's section headed ``title`` (``## title`` or ``### title``), up to the next
    heading of the same or a higher level (a ``#`` line inside a code block is no heading)."""
    lines = README.splitlines(keepends=True)
    start = next(
        (i for i, line in enumerate(lines) if re.fullmatch(rf"#+ {re.escape(title)}\n", line)), None
    )
    assert start is not None, f"README.md has no section {title!r}"
    level = len(lines[start]) - len(lines[start].lstrip("#"))
    fenced = False
    for i in range(start + 1, len(lines)):
        fenced ^= lines[i].lstrip().startswith("```")
        hashes = len(lines[i]) - len(lines[i].lstrip("#"))
        if not fenced and 0 < hashes <= level and lines[i][hashes : hashes + 1] == " ":
            return "".join(lines[start + 1 : i])
    return "".join(lines[start + 1 :])


def code_blocks(text: str, lang: str) -> list[str]:
    """The ``lang`` fenced code blocks of ``text``, dedented (blocks may sit in a list item)."""
    blocks = []
    for m in re.finditer(rf"^( *)```{lang}\n(.*?)^ *```", text, re.M | re.S):
        indent = len(m.group(1))
        blocks.append("".join(line[indent:] for line in m.group(2).splitlines(keepends=True)))
    return blocks


def table(text: str, header: str) -> list[list[str]]:
    """The rows (cells stripped, ``\\|`` unescaped) of the table whose header row starts with
    ``| header |``."""
    m = re.search(rf"^\| {re.escape(header)} \|.*\n\|[-| ]+\|\n((?:\|.*\|\n)*)", text, re.M)
    assert m is not None, f"no table headed {header!r} in the README section"
    rows = []
    for line in m.group(1).splitlines():
        cells = re.split(r"(?<!\\)\|", line.strip())[1:-1]
        rows.append([c.strip().replace("\\|", "|") for c in cells])
    return rows


@dataclass
class Command:
    """One shell command of a README block: its ``NAME=value`` prefixes and its words."""

    env: dict[str, str]
    argv: list[str]


def commands(block: str) -> list[Command]:
    """The commands of a ``sh`` block: continuations joined, ``&&`` split, comments dropped;
    ``export NAME=value`` becomes a command with an empty ``argv``."""
    out = []
    for line in _lines(block):
        words = shlex.split(line, comments=True)
        while words:
            cut = words.index("&&") if "&&" in words else len(words)
            cmd, words = words[:cut], words[cut + 1 :]
            if cmd[:1] == ["export"]:
                out.append(Command(dict(w.split("=", 1) for w in cmd[1:]), []))
                continue
            env = {}
            while cmd and re.match(r"^[A-Z_][A-Z0-9_]*=", cmd[0]):
                name, _, value = cmd.pop(0).partition("=")
                env[name] = value
            out.append(Command(env, cmd))
    return out


def _lines(block: str) -> Iterator[str]:
    """The block's command lines: continuations joined, a quote left open spanning lines."""
    pending = ""
    for line in block.replace("\\\n", " ").splitlines():
        pending = f"{pending}\n{line}" if pending else line
        try:
            shlex.split(pending, comments=True)
        except ValueError:  # "No closing quotation": the command goes on
            continue
        yield pending
        pending = ""
    assert not pending, f"unterminated quote in a README block: {pending!r}"


def tocsin_commands(text: str) -> list[Command]:
    return [c for b in code_blocks(text, "sh") for c in commands(b) if c.argv[:1] == ["tocsin"]]


# --------------------------------------------------------------------------- commands parse


def test_every_tocsin_command_in_the_readme_parses() -> None:
    found = tocsin_commands(README)
    assert len(found) >= 5, "the README's code blocks should show tocsin commands"
    for cmd in found:
        try:
            build_parser().parse_args(cmd.argv[1:])
        except SystemExit as e:
            pytest.fail(f"README command does not parse (exit {e.code}): {shlex.join(cmd.argv)}")


def test_the_quick_start_names_simulates_default_start(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = newcomer_checkout(tmp_path) / "config" / "example.yaml"
    payload = tmp_path / "tests" / "fixtures" / "alertmanager-0.25-firing.json"
    assert main(["simulate", "--config", str(config), "--payload", str(payload)]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    when = datetime.fromisoformat(first.removeprefix("Simulation from "))
    text = " ".join(section("Quick start").split())
    assert f"{when:%A %Y-%m-%d %H:%M} UTC" in text, "the quick start says when simulate starts"


def test_the_cli_table_names_every_command_subcommand_and_option() -> None:
    rows = table(section("CLI"), "command")
    top = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    missing = []
    for name, parser in top.choices.items():
        row = next((" ".join(r) for r in rows if r[0].startswith(f"`tocsin {name}")), None)
        if row is None:
            missing.append(name)
            continue
        missing += [f"{name} {word}" for word in _words(parser) if word not in row]
    assert missing == [], "commands, subcommands or options the CLI table does not name"


def _words(parser: argparse.ArgumentParser) -> Iterator[str]:
    """A parser's long options and subcommands, and theirs."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield name
                yield from _words(sub)
        yield from (o for o in action.option_strings if o.startswith("--") and o != "--help")


# --------------------------------------------------------------------------- the quick start


def newcomer_checkout(tmp: Path) -> Path:
    """The files the quick start reads, at the paths it names (a fresh clone, in small)."""
    shutil.copytree(ROOT / "config" / "rules", tmp / "config" / "rules")
    shutil.copy(ROOT / "config" / "example.yaml", tmp / "config" / "example.yaml")
    fixture = Path("tests/fixtures/alertmanager-0.25-firing.json")
    (tmp / fixture.parent).mkdir(parents=True)
    shutil.copy(ROOT / fixture, tmp / fixture)
    return tmp


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without tocsin's settings (a newcomer's shell has none)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOCSIN_")}
    env.pop("PYTHONWARNINGS", None)
    path = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    return {**env, "PYTHONPATH": path, "PYTHONUNBUFFERED": "1", **extra}


def run_tocsin(cmd: Command, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "router.cli", *cmd.argv[1:]],
        cwd=cwd,
        env={**env, **cmd.env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def curl(cmd: Command, port: int, cwd: Path) -> tuple[int, Any]:
    """Do what the README's ``curl`` line does (headers, ``--data-binary @file``, the URL)."""
    headers: dict[str, str] = {}
    data: bytes | None = None
    url = ""
    args = iter(cmd.argv[1:])
    for arg in args:
        if arg == "-H":
            name, _, value = next(args).partition(":")
            headers[name.strip()] = value.strip()
        elif arg == "--data-binary":
            data = (cwd / next(args).removeprefix("@")).read_bytes()
        elif not arg.startswith("-"):
            url = arg.replace("127.0.0.1:9095", f"127.0.0.1:{port}")
    req = urllib.request.Request(url, data=data, headers=headers, method="POST" if data else "GET")
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return int(r.status), json.loads(r.read())
    except urllib.error.HTTPError as e:
        return int(e.code), e.read().decode(errors="replace")


@dataclass
class QuickStart:
    """The quick start's commands, in the order the README gives them."""

    serve: Command
    curl: Command
    others: list[Command] = field(default_factory=list)

    @classmethod
    def read(cls) -> QuickStart:
        serve: Command | None = None
        posted: Command | None = None
        others: list[Command] = []
        for block in code_blocks(section("Quick start"), "sh"):
            for cmd in commands(block):
                if cmd.argv[:2] == ["tocsin", "serve"]:
                    serve = cmd
                elif cmd.argv[:1] == ["curl"]:
                    posted = cmd
                elif not cmd.argv or cmd.argv[0] == "tocsin":
                    others.append(cmd)
        assert serve is not None, "the quick start should start `tocsin serve`"
        assert posted is not None, "the quick start should post the sample payload with curl"
        return cls(serve, posted, others)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], int, Path]]:
    """The quick start's ``tocsin serve`` line, run in a fresh checkout on a free port."""
    cwd = newcomer_checkout(tmp_path)
    qs = QuickStart.read()
    port = free_port()
    log = (tmp_path / "serve.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "router.cli", *qs.serve.argv[1:], "--listen", f"127.0.0.1:{port}"],
        cwd=cwd,
        env=clean_env(**qs.serve.env),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for(
            lambda: (
                proc.poll() is not None or http_status(f"http://127.0.0.1:{port}/readyz") == 200
            ),
            timeout=60,
            what="tocsin serve /readyz",
            describe=lambda: (tmp_path / "serve.log").read_text(errors="replace")[-2000:],
        )
        assert proc.poll() is None, (tmp_path / "serve.log").read_text(errors="replace")
        yield proc, port, cwd
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=15)
        log.close()


def _notification_lines(log: Path) -> list[dict[str, Any]]:
    out = []
    for line in log.read_text(errors="replace").splitlines():
        if line.startswith("{"):
            rec = json.loads(line)
            if rec.get("msg") == "notification":
                out.append(rec)
    return out


def test_the_quick_start_works_as_written(
    served: tuple[subprocess.Popen[bytes], int, Path],
) -> None:
    proc, port, cwd = served
    qs = QuickStart.read()

    status, answer = curl(qs.curl, port, cwd)
    assert status == 200, answer
    (opened,) = answer["incidents"]
    assert (opened["action"], opened["severity"]) == ("opened", "P0")

    # "the on-call at once": the first tier's notification line appears without moving time.
    log = cwd / "serve.log"
    pages = wait_for(
        lambda: [r for r in _notification_lines(log) if r.get("tier") == 0],
        timeout=60,
        what="the on-call's notification line",
        describe=lambda: log.read_text(errors="replace")[-2000:],
    )
    assert pages[0]["incident"] == opened["incident"]

    env = clean_env(TOCSIN_URL=f"http://127.0.0.1:{port}")
    ran: dict[str, str] = {}
    for cmd in qs.others:
        if not cmd.argv:  # `export NAME=value`: the rest of that shell sees it
            env.update(cmd.env)
            continue
        r = run_tocsin(cmd, cwd, env)
        assert r.returncode == 0, f"{shlex.join(cmd.argv)} exited {r.returncode}:\n{r.stderr}"
        ran[" ".join(cmd.argv[1:3])] = r.stdout
    assert proc.poll() is None

    steps = ("simulate --config", "incidents list", "incidents show", "incidents ack")
    assert [s for s in steps if s not in ran] == [], "quick start steps a newcomer needs"
    # The whole timeline without waiting, including the VP at +30m the text promises.
    assert "tier 3 (VP)" in ran["simulate --config"], ran["simulate --config"]
    # The incident just opened is listed, shown and acknowledged with the README's token.
    assert opened["incident"] in ran["incidents list"], ran["incidents list"]
    assert opened["incident"] in ran["incidents show"]
    assert ran["incidents ack"].rstrip().endswith("is now acknowledged"), ran["incidents ack"]


# --------------------------------------------------------------------------- rule examples


def readme_rule_files(tmp: Path) -> Path:
    """A copy of ``config/example.yaml`` whose rules directory also holds the README's
    rule-file example and its rule unit test example; the copied config's path."""
    checkout = newcomer_checkout(tmp)
    blocks = code_blocks(section("Rule-file reference"), "yaml")
    rules = next(b for b in blocks if b.startswith("rules:"))
    (checkout / "config" / "rules" / "readme.yaml").write_text(rules, encoding="utf-8")
    unit = next(b for b in blocks if "\ntests:" in b)
    (checkout / "config" / "rules" / "readme_test.yaml").write_text(unit, encoding="utf-8")
    return checkout / "config" / "example.yaml"


def test_the_rule_example_passes_check_against_the_example_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    config = readme_rule_files(tmp_path)
    monkeypatch.delenv("TOCSIN_RECEIVER_TOKEN", raising=False)  # a rules CI has no secrets
    code = main(["check", str(config)])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "2 rule file(s)" in out, out


def test_the_rule_unit_test_example_passes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    config = readme_rule_files(tmp_path)
    monkeypatch.delenv("TOCSIN_RECEIVER_TOKEN", raising=False)  # a rules CI has no secrets
    code = main(["test", str(config.parent / "rules" / "readme_test.yaml")])
    out, err = capsys.readouterr()
    assert code == 0, out + err
    assert "SUCCESS" in out, out


# --------------------------------------------------------------------------- configuration reference


def _models(annotation: Any) -> list[type[BaseModel]]:
    """The pydantic models a field's annotation holds (``M``, ``M | None``, ``list[M]``...)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is not None:
        return [m for a in typing.get_args(annotation) for m in _models(a)]
    return []


def _unnamed(path: str, annotation: Any, rows: dict[str, str]) -> Iterator[str]:
    """``path.field`` for each field of ``annotation``'s models that its row does not name;
    a field with a row of its own is checked in that row."""
    for model in _models(annotation):
        for name, info in model.model_fields.items():
            sub = f"{path}.{name}"
            if sub in rows:
                yield from _unnamed(sub, info.annotation, rows)
            elif path not in rows or not re.search(
                rf"(?<![\w-]){re.escape(name)}(?![\w-])", rows[path]
            ):
                yield sub


def test_the_configuration_reference_names_every_setting() -> None:
    rows = {m.group(1): r[1] for r in table(section("Configuration reference"), "section")
            if (m := re.fullmatch(r"`([\w.]+)`", r[0]))}  # fmt: skip
    adapters = TocsinConfig.model_fields["adapters"].annotation
    assert isinstance(adapters, type) and issubclass(adapters, BaseModel)
    need = [*TocsinConfig.model_fields, *(f"adapters.{a}" for a in adapters.model_fields)]
    unlisted = [s for s in need if s not in rows and not any(r.startswith(f"{s}.") for r in rows)]
    assert unlisted == [], "sections without a row of their own"
    missing = [
        s
        for top, info in TocsinConfig.model_fields.items()
        for s in _unnamed(top, info.annotation, rows)
    ]
    assert missing == [], "settings the configuration reference does not name"


def test_the_schedules_row_names_every_setting_of_a_layer() -> None:
    # A layer is a model inside a list inside a mapping, which the walk above does not reach.
    row = next(r[1] for r in table(section("Configuration reference"), "section")
               if r[0] == "`schedules`")  # fmt: skip
    missing = [
        name
        for model in (Layer, WeeklyHours)
        for name in model.model_fields
        if name != "holidays" and not re.search(rf"(?<![\w-]){name}(?![\w-])", row)
    ]
    assert missing == [], "layer settings the schedules row does not name"


def test_a_step_without_unless_is_documented_as_the_default() -> None:
    text = " ".join(section("Policies and escalation").split())
    m = re.search(r"without `unless` means `unless: (\w+)`", text)
    assert m is not None, "the README should say what a step without `unless` means"
    assert m.group(1) == Step.model_fields["unless"].default


async def test_routes_without_their_secret_or_adapter_answer_as_documented(
    tmp_path: Path, make_app: MakeApp
) -> None:
    config = newcomer_checkout(tmp_path) / "config" / "example.yaml"
    text = config.read_text(encoding="utf-8")
    config.write_text(text.replace("path: tocsin.db", f"path: {tmp_path / 'tocsin.db'}"))
    app = await make_app(config, env={"TOCSIN_RECEIVER_TOKEN": "secret"})
    rows = table(section("Configuration reference"), "route")
    assert rows, "the configuration reference should list the routes that need configuring"
    checked = []
    for cells in rows:
        expected = int(re.match(r"\d+", cells[1]).group())  # type: ignore[union-attr]
        for route in re.findall(r"`([A-Z|]+ /[^`]+)`", cells[0]):
            for method, path in _expand(route):
                r = await app.client.request(method, path, **_request_for(path))
                assert r.status == expected, (method, path, r.status, await r.text())
                checked.append(path)
    assert len(checked) >= 10, checked


async def test_the_http_api_table_lists_every_route_and_only_routes_that_exist(
    tmp_path: Path, make_app: MakeApp
) -> None:
    """Every route the app registers is in the HTTP API table, and every route the table lists
    is registered (with the methods it names)."""
    config = newcomer_checkout(tmp_path) / "config" / "example.yaml"
    text = config.read_text(encoding="utf-8")
    config.write_text(text.replace("path: tocsin.db", f"path: {tmp_path / 'tocsin.db'}"))
    app = await make_app(config, env={"TOCSIN_RECEIVER_TOKEN": "secret"})
    registered = [
        (r.method, _route_regex(r.resource.canonical))
        for r in app.client.server.app.router.routes()
        if r.method != "HEAD" and r.resource is not None
    ]
    listed = [
        (method, re.sub(r"\?.*$", "", path))
        for cells in table(section("HTTP API"), "route")
        for route in re.findall(r"`([A-Z|]+ /[^`]*)`", cells[0])
        for method, path in _expand(re.sub(r"\[\?[^\]]*\]", "", route))
    ]
    unlisted = [
        (m, rx.pattern) for m, rx in registered if not any(m == lm and rx.fullmatch(lp)
                                                           for lm, lp in listed)
    ]  # fmt: skip
    assert unlisted == [], "routes the HTTP API table does not list"
    absent = [(m, p) for m, p in listed if not any(m == rm and rx.fullmatch(p)
                                                   for rm, rx in registered)]  # fmt: skip
    assert absent == [], "routes the HTTP API table lists that are not registered"


def _route_regex(canonical: str) -> re.Pattern[str]:
    """aiohttp's ``/a/{id:[^/]+}/{action}`` as a regex over concrete paths."""
    out, pos = "", 0
    for m in re.finditer(r"\{(\w+)(?::((?:[^{}]|\{[^{}]*\})+))?\}", canonical):
        out += re.escape(canonical[pos : m.start()]) + f"(?:{m.group(2) or '[^/]+'})"
        pos = m.end()
    return re.compile(out + re.escape(canonical[pos:]))


def _expand(route: str) -> Iterator[tuple[str, str]]:
    """``GET|POST /a/{b|c}/{id}`` → (GET, /a/b/1), (GET, /a/c/1), (POST, /a/b/1)..."""
    methods, _, path = route.partition(" ")
    paths = [path]
    while any("{" in p for p in paths):
        nxt = []
        for p in paths:
            m = re.search(r"\{([^}]*)\}", p)
            if m is None:
                nxt.append(p)
                continue
            choices = m.group(1).split("|") if "|" in m.group(1) else ["1"]
            nxt += [p[: m.start()] + c + p[m.end() :] for c in choices]
        paths = nxt
    for method in methods.split("|"):
        for p in paths:
            yield method, p


def _request_for(path: str) -> dict[str, Any]:
    """What the caller of ``path`` would send: a credential of the kind the route checks."""
    if path.startswith("/api/v1/pagerduty/"):
        return {"data": b"{}", "headers": {"X-PagerDuty-Signature": "v1=00"}}
    if path.startswith(("/api/v1/email/", "/api/v1/teams/", "/api/v1/ntfy/")):
        return {"params": {"token": "x"}}
    if path.startswith("/api/v1/phone/"):
        return {"data": {"From": "+15005550006"}, "headers": {"X-Twilio-Signature": "x"}}
    return {"headers": {"Authorization": "Bearer some-token"}, "json": {}}


def test_the_metrics_table_lists_every_metric_tocsin_exports() -> None:
    """Every metric the code defines (a Counter exported with ``_total``) is in the Metrics
    table, and the table lists no other."""
    kinds = r"(Counter|Gauge|Histogram|Summary)\(\s*\"(tocsin_\w+)\""
    defined = set()
    for room in ("router", "config", "adapters", "escalation", "rules"):
        for path in (ROOT / room).rglob("*.py"):
            for kind, name in re.findall(kinds, path.read_text(encoding="utf-8")):
                counter = kind == "Counter" and not name.endswith("_total")
                defined.add(f"{name}_total" if counter else name)
    assert len(defined) >= 20, defined  # the scan still finds them
    listed = {n for row in table(section("Metrics"), "metric")
              for n in re.findall(r"`(tocsin_\w+)`", row[0])}  # fmt: skip
    assert sorted(defined - listed) == [], "metrics the README's table does not list"
    assert sorted(listed - defined) == [], "metrics the README's table lists that do not exist"


def test_every_alertmanager_yml_in_the_readme_passes_amtool(tmp_path: Path) -> None:
    blocks = [b for b in code_blocks(README, "yaml") if b.startswith("# alertmanager.yml\n")]
    assert len(blocks) >= 3, "the README's alertmanager.yml examples start with that comment"
    amtool = shutil.which("amtool")
    if amtool is None:
        pytest.skip("amtool not installed (Debian package prometheus-alertmanager)")
    for i, block in enumerate(blocks):
        (tmp_path / f"am{i}.yml").write_text(block, encoding="utf-8")
        argv = [amtool, "check-config", str(tmp_path / f"am{i}.yml")]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, block + done.stdout + done.stderr


# --------------------------------------------------------------------------- presets


def test_the_presets_table_lists_every_preset_as_it_is() -> None:
    text = section("Severity presets")
    rows = {re.match(r"`([\w-]+)`", r[0]).group(1): r  # type: ignore[union-attr]
            for r in table(text, "preset")}  # fmt: skip
    assert sorted(rows) == sorted(preset_names())
    words = ("critical", "error", "warning", "info")
    for name, (_, seed, levels, resolved) in rows.items():
        m = load_preset(name)
        assert seed == (f"`{m.source}`" if m.source else "— (tocsin's own)"), name
        described = levels.split(", P")
        assert len(described) == len(m.levels), (name, levels)
        for (key, level), text_ in zip(m.levels.items(), described, strict=True):
            text_ = text_ if text_.startswith("P") else "P" + text_
            assert text_.startswith(f"{key} → {level.name}"), (name, text_)
            assert text_.endswith(f"({level.label})"), (name, text_)
        assert resolved == " / ".join(str(m.resolve(w)) for w in words), name
        assert re.search(rf"^### `{re.escape(name)}`", README, re.M), f"no section for {name}"


# --------------------------------------------------------------------------- the test command


def test_what_the_test_suite_needs_is_listed_in_the_quick_start() -> None:
    binaries: set[str] = set()
    variables: set[str] = set()
    for path in (ROOT / "tests").rglob("*.py"):
        source = path.read_text(encoding="utf-8")
        binaries |= set(re.findall(r"shutil\.which\(\"([\w.-]+)\"\)", source))
        variables |= set(re.findall(r"environ(?:\.get)?[(\[]\"(TOCSIN_\w+)\"", source))
        variables |= set(re.findall(r"_ENV = \"(TOCSIN_\w+)\"", source))
    assert {"helm", "hadolint", "prometheus"} <= binaries  # the scan still finds them
    text = section("Quick start")
    unlisted = sorted(
        n for n in binaries | variables if f"`{n}`" not in text and f"{n}=" not in text
    )
    assert unlisted == [], "tools or settings the tests use that the quick start does not list"


# --------------------------------------------------------------------------- channel examples

CHANNEL_EXAMPLES = (
    "Chat webhooks: presets and templates",
    "Microsoft Teams",
    "Push: ntfy and Pushover",
)


@pytest.mark.parametrize("title", CHANNEL_EXAMPLES)
def test_the_channel_examples_pass_check(
    title: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Each ``adapters:`` example, added to the example config with its secrets set, passes
    ``tocsin check`` (templates rendered on the sample notification included)."""
    config = newcomer_checkout(tmp_path) / "config" / "example.yaml"
    blocks = code_blocks(section(title), "yaml")
    assert blocks, f"the README's {title!r} section should show its configuration"
    text = config.read_text(encoding="utf-8")
    for block in blocks:
        assert block.startswith("adapters:\n"), block
        # The example config ends with its adapters section: the example's keys join it.
        added = block.removeprefix("adapters:\n").replace("/run/secrets/", f"{tmp_path}/")
        text += added
        for name in re.findall(r"\$\{(\w+)\}", added):
            monkeypatch.setenv(name, f"https://chat.example.com/{name.lower()}-0123456789abcdef")
        for secret in re.findall(rf"{re.escape(str(tmp_path))}/([\w.-]+)", added):
            (tmp_path / secret).write_text("0123456789:secret-value-0123456789abcdef\n")
    config.write_text(text, encoding="utf-8")
    code = main(["check", str(config)])
    out, err = capsys.readouterr()
    assert code == 0, err + out


MERGED_EXAMPLES = (
    "PagerDuty and email",
    "SMS and voice providers",
    "Slack app",
    "Signing in: two ways",
    "Migrating from Opsgenie",
)


@pytest.mark.parametrize("title", MERGED_EXAMPLES)
def test_each_config_example_merged_into_the_example_config_passes_check(
    title: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Each config block of these sections, on its own, merged key by key into the example
    config (as a reader adds it to theirs), passes ``tocsin check``: no example leans on a
    channel, provider or key that only another block configures."""
    config = newcomer_checkout(tmp_path) / "config" / "example.yaml"
    base = yaml.safe_load(config.read_text(encoding="utf-8"))
    blocks = code_blocks(section(title), "yaml")
    assert blocks, f"the README's {title!r} section should show its configuration"
    for block in blocks:
        block = block.replace("/run/secrets/", f"{tmp_path}/")
        for name in re.findall(r"\$\{(\w+)\}", block):
            monkeypatch.setenv(name, "0123456789abcdef0123456789abcdef")  # a routing key's 32
        for secret in re.findall(rf"{re.escape(str(tmp_path))}/([\w.-]+)", block):
            text = _pem_key() if "private-key" in secret else "secret-value-0123456789abcdef\n"
            (tmp_path / secret).write_text(text)
        merged = _merged(base, yaml.safe_load(block))
        config.write_text(yaml.safe_dump(merged, sort_keys=False), encoding="utf-8")
        code = main(["check", str(config)])
        out, err = capsys.readouterr()
        assert code == 0, block + err + out


def _merged(base: Any, extra: Any) -> Any:
    if not (isinstance(base, dict) and isinstance(extra, dict)):
        return extra
    return {**base, **{k: _merged(base.get(k), v) for k, v in extra.items()}}


def _pem_key() -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


async def test_the_curl_examples_of_heartbeats_and_opsgenie_work_as_written(
    tmp_path: Path, make_app: MakeApp
) -> None:
    """The README's ``curl`` commands for heartbeat pings and Opsgenie's Alert API, sent to
    the example config with those sections' config blocks added, get the answers it says."""
    config = newcomer_checkout(tmp_path) / "config" / "example.yaml"
    data = yaml.safe_load(config.read_text(encoding="utf-8"))
    data["store"]["path"] = str(tmp_path / "tocsin.db")
    for title in ("Heartbeats", "Migrating from Opsgenie"):
        for block in code_blocks(section(title), "yaml"):
            if block.startswith(("# tocsin.yaml", "auth:")):
                data = _merged(data, yaml.safe_load(block))
    config.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    env = {
        "TOCSIN_RECEIVER_TOKEN": "secret",
        "TOCSIN_API_TOKEN": "ops-secret",
        "OPSGENIE_KEY_ALERTMANAGER": "key-am",
        "OPSGENIE_KEY_GRAFANA": "key-grafana",
    }
    app = await make_app(config, env=env)
    sent = []
    for title in ("Heartbeats", "Migrating from Opsgenie"):
        for cmd in (c for b in code_blocks(section(title), "sh") for c in commands(b)):
            if cmd.argv[:1] != ["curl"]:
                continue
            method, path, kw = _curl_request(cmd.argv[1:], env)
            r = await app.client.request(method, path, **kw)
            assert r.status in (200, 202), (cmd.argv, r.status, await r.text())
            sent.append(path)
    assert len(sent) == 4, sent
    r = await app.client.get(
        "/api/v1/incidents/opsgenie:disk-db1", headers={"Authorization": "Bearer ops-secret"}
    )
    inc = await r.json()
    assert inc["status"] == "resolved"
    assert any(e["actor"] == "grafana" and e["data"].get("on_behalf_of") == "alice"
               for e in inc["timeline"]), inc["timeline"]  # fmt: skip


def _curl_request(args: list[str], env: dict[str, str]) -> tuple[str, str, dict[str, Any]]:
    """curl's ``-X``, ``-H`` and ``-d`` (``$VAR`` expanded from ``env``) as a request to the
    URL's path and query."""
    method, headers, body, url = "", {}, None, ""
    it = iter(args)
    for arg in it:
        if arg == "-X":
            method = next(it)
        elif arg == "-H":
            name, _, value = next(it).partition(": ")
            headers[name] = re.sub(r"\$(\w+)", lambda m: env[m.group(1)], value)
        elif arg == "-d":
            body = next(it).encode()
        elif arg.startswith("http"):
            url = arg
        else:
            assert re.fullmatch(r"-[fsSL]+", arg), f"a curl option the test does not know: {arg}"
    path = "/" + url.split("/", 3)[3]
    return (
        method or ("POST" if body is not None else "GET"),
        path,
        {"headers": headers, "data": body},
    )


def test_the_heartbeats_snippets_pass_check_promtool_and_amtool(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The Heartbeats section's config and rule pass ``tocsin check`` with the example config
    (its rule first, ahead of the example's own); its Prometheus rule passes ``promtool check
    rules``, its Alertmanager route ``amtool check-config`` (the Debian packages' tools)."""
    blocks = {b.splitlines()[0]: b for b in code_blocks(section("Heartbeats"), "yaml")}
    names = [
        "# tocsin.yaml",
        "# prometheus rules",
        "# alertmanager.yml",
        "# rules/00-watchdog.yaml",
    ]
    assert sorted(blocks) == sorted(names)
    config = newcomer_checkout(tmp_path) / "config" / "example.yaml"
    config.write_text(config.read_text(encoding="utf-8") + "\n" + blocks["# tocsin.yaml"])
    (config.parent / "rules" / "00-watchdog.yaml").write_text(blocks["# rules/00-watchdog.yaml"])
    assert main(["check", str(config)]) == 0, capsys.readouterr()
    capsys.readouterr()
    labels = "alertname=Watchdog,severity=none"
    assert main(["explain", "--config", str(config), "--labels", labels]) == 0
    assert "Heartbeat:    alertmanager (a ping" in capsys.readouterr().out

    tools = {"promtool": shutil.which("promtool"), "amtool": shutil.which("amtool")}
    missing = [name for name, path in tools.items() if path is None]
    if missing:
        pytest.skip(
            f"{', '.join(missing)} not installed (Debian packages prometheus, alertmanager)"
        )
    (tmp_path / "rules.yml").write_text(blocks["# prometheus rules"])
    (tmp_path / "am.yml").write_text(blocks["# alertmanager.yml"])
    for argv in (
        [tools["promtool"], "check", "rules", str(tmp_path / "rules.yml")],
        [tools["amtool"], "check-config", str(tmp_path / "am.yml")],
    ):
        done = subprocess.run(argv, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stdout + done.stderr
