"""The ``tocsin`` command line (DESIGN.md §10 is the contract: names, flags, exit codes).

Exit 0 on success, 1 when a problem was found (bad config, failing rule test), 2 on usage errors.
"""

from __future__ import annotations

import argparse
import asyncio
import glob
import json
import os
import sys
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, NoReturn

from config.errors import ConfigError, Problem, sorted_problems
from config.load import LoadedConfig, load_config, load_rule_file
from escalation.incidents.policy import due_time
from escalation.incidents.steps import Step, level_tiers
from router.oncall_cli import add_oncall_parser, run_oncall
from router.opsgenie_import import add_import_parser, run_import
from router.terminal import escaped_output
from rules.alerts import Alert, Notification
from rules.classifier import Classification, Classifier
from rules.durations import format_duration, parse_duration
from rules.schema import Outcome, Rule

__all__ = ["main"]


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # argparse exits 2 on usage errors; keep that
        self.print_usage(sys.stderr)
        self.exit(2, f"{self.prog}: error: {message}\n")


def _pairs(text: str, flag: str) -> dict[str, str]:
    out: dict[str, str] = {}
    if not text:
        return out
    for part in text.split(","):
        if not part.strip():
            continue
        k, sep, v = part.partition("=")
        if not sep or not k.strip():
            # A malformed flag value is a usage error: exit 2, like argparse's own.
            print(f"tocsin: error: {flag} expects k=v[,k2=v2], got {part!r}", file=sys.stderr)
            raise SystemExit(2)
        out[k.strip()] = v.strip().strip('"')
    return out


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="tocsin", description="Alertmanager → PagerDuty router and auto-escalator")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    s = sub.add_parser("serve", help="run the service")
    s.add_argument("--config", required=True)
    s.add_argument("--listen", help="HOST:PORT, overrides server.listen")

    c = sub.add_parser("check", help="validate a config and every rule file it names")
    c.add_argument("config")
    c.add_argument("--strict", action="store_true", help="warnings (unset secrets) are errors")

    t = sub.add_parser("test", help="run rule unit tests")
    t.add_argument("files", nargs="+")

    e = sub.add_parser("explain", help="which rule matches these labels, and what follows")
    e.add_argument("--config", required=True)
    e.add_argument("--labels", required=True)
    e.add_argument("--annotations", default="")
    e.add_argument(
        "--at", type=_instant, help="ISO 8601 instant to judge calendars at (default: now)"
    )

    sim = sub.add_parser("simulate", help="run a payload through the real engine, virtual clock")
    sim.add_argument("--config", required=True)
    sim.add_argument("--payload", required=True, help="an Alertmanager webhook body (JSON file)")
    for flag in ("--ack-at", "--mitigate-at", "--resolve-at"):
        sim.add_argument(flag, type=_duration, help="offset from the first alert, e.g. 7m")
    sim.add_argument(
        "--until", type=_duration, default="4h", help="how long to simulate (default 4h)"
    )
    sim.add_argument(
        "--start", type=_instant, help="ISO 8601 start instant (default 2026-01-05T10:00Z)"
    )
    sim.add_argument("--json", action="store_true", help="one JSON object per line")

    inc = sub.add_parser("incidents", help="list, show and act on incidents of a running tocsin")
    isub = inc.add_subparsers(dest="incident_command", required=True, parser_class=_Parser)
    for name in ("list", "show", "ack", "mitigate", "resolve", "escalate"):
        ip = isub.add_parser(name)
        _client_args(ip)
        if name == "list":
            ip.add_argument("--status", default="open", help="comma-separated, or 'open' (default)")
            ip.add_argument("--severity", default="")
            ip.add_argument("--team")
            ip.add_argument("--json", action="store_true")
        else:
            ip.add_argument("id", help="incident id, number or key")
        if name == "show":
            ip.add_argument("--json", action="store_true")
        if name not in ("list", "show"):
            ip.add_argument("--note", default="")
            ip.add_argument("--actor", help="on whose behalf (the token's name is who acts)")

    add_oncall_parser(sub, _client_args, _instant)
    rv = sub.add_parser("review", help="print a post-incident review draft in markdown")
    rv.add_argument("id")
    _client_args(rv)
    add_import_parser(sub, _instant)
    return p


def _duration(text: str) -> timedelta:
    try:
        return parse_duration(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _instant(text: str) -> datetime:
    try:
        t = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an ISO 8601 instant, got {text!r}") from None
    if t.tzinfo is None:
        # Neither UTC nor local time is a safe guess for calendars and shift handoffs: ask.
        raise argparse.ArgumentTypeError(
            f"{text!r} has no UTC offset; add one, e.g. {text}Z or {text}+01:00"
        )
    return t


def _client_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--url",
        default=os.environ.get("TOCSIN_URL", "http://127.0.0.1:9095"),
        help="tocsin's base URL (env TOCSIN_URL)",
    )
    p.add_argument(
        "--token",
        default=os.environ.get("TOCSIN_API_TOKEN", ""),
        help="API token (env TOCSIN_API_TOKEN)",
    )


def main(argv: Sequence[str] | None = None) -> int:
    try:
        return _main(argv)
    except BrokenPipeError:
        # The reader went away (``tocsin simulate | head``): what it wanted, it got. Point stdout
        # at /dev/null so the interpreter's final flush does not fail again with a traceback.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0


def _main(argv: Sequence[str] | None) -> int:
    args = build_parser().parse_args(argv)
    handler = {
        "serve": _serve,
        "check": _check,
        "test": _test,
        "explain": _explain,
        "simulate": _simulate,
        "incidents": _incidents,
        "review": _review,
        "oncall": _oncall,
        "import": run_import,
    }
    if args.command == "serve":  # its output is the service's log, not a person's reading
        return handler[args.command](args)
    # Alert text reaches most of what the CLI prints: no print site may pass ESC through raw.
    with escaped_output():
        return handler[args.command](args)


def _print_problems(e: ConfigError) -> None:
    for p in e.problems:
        print(str(p), file=sys.stderr)


def _serve(args: argparse.Namespace) -> int:
    from escalation.store.base import StoreError
    from router.serve import CannotListen, serve

    try:
        return serve(args.config, listen=args.listen)
    except ConfigError as e:
        _print_problems(e)
        return 1
    except CannotListen as e:
        print(f"tocsin: {e}", file=sys.stderr)
        return 1
    except StoreError as e:
        print(f"tocsin: the store cannot be opened: {e}", file=sys.stderr)
        return 1


def _check(args: argparse.Namespace) -> int:
    # Secrets are deferred: a rules repository's CI has no production secrets. Unset ones are
    # warnings, errors only with --strict (serve always refuses them).
    problems: list[Problem] = []
    try:
        loaded = load_config(args.config, secrets="deferred")
        warnings = loaded.warnings
    except ConfigError as e:
        problems, warnings = e.problems, e.warnings
    if args.strict:
        problems, warnings = sorted_problems([*problems, *warnings]), []
    for w in warnings:
        print(f"warning: {w}", file=sys.stderr)
    if problems:
        for p in problems:
            print(str(p), file=sys.stderr)
        print(f"FAILED: {len(problems)} problem(s) in {args.config}", file=sys.stderr)
        return 1
    rules = sum(len(rf.rules) for _, rf in loaded.rule_files)
    print(
        f"SUCCESS: {args.config}: matrix {loaded.matrix.name!r} "
        f"({len(loaded.matrix.levels)} levels), {len(loaded.rule_files)} rule file(s), "
        f"{rules} rule(s), {len(loaded.config.policies)} polic(ies)"
        + (f", {len(warnings)} warning(s)" if warnings else "")
    )
    return 0


def _test(args: argparse.Namespace) -> int:
    from config.loader import load_document, validate
    from rules.testing import TestFile, run_case

    failed = 0
    for file in args.files:
        print(f"Unit Testing:  {file}")
        try:
            doc = load_document(file, read_secret_files=False)
            tf = validate(TestFile, doc)
            classifier = _classifier_for_test(Path(file), tf)
        except ConfigError as e:
            _print_problems(e)
            failed += 1
            continue
        results = [r for case in tf.tests for r in run_case(classifier, case, tf.at)]
        bad = [r for r in results if r.failures]
        if not bad:
            print(f"  SUCCESS ({len(results)} alert(s) in {len(tf.tests)} test(s))\n")
            continue
        failed += 1
        print("  FAILED:")
        for r in bad:
            labels = ", ".join(f'{k}="{v}"' for k, v in r.labels.items())
            print(f"    name: {r.case}, alert {r.index} {{{labels}}}")
            for f in r.failures:
                print(f"      {f}")
            print(f"      (rules matched: {', '.join(r.got.matched) or 'none, default applied'})")
        print()
    return 1 if failed else 0


def _classifier_for_test(file: Path, tf: object) -> Classifier:
    from rules.testing import TestFile

    assert isinstance(tf, TestFile)
    if tf.config is None:
        raise ConfigError(
            Problem(str(file), None, None, "config", "a rule test file needs 'config:'")
        )
    loaded = load_config(os.path.normpath(file.parent / tf.config), secrets="deferred")
    if tf.rule_files is None:
        return loaded.classifier
    files = []
    for i, pattern in enumerate(tf.rule_files):
        paths = sorted(glob.glob(os.path.normpath(file.parent / pattern)))
        if not paths:
            msg = f"no rule file matches {pattern!r}"
            raise ConfigError(Problem(str(file), None, None, f"rule_files[{i}]", msg))
        for path in paths:
            _, rf = load_rule_file(path)
            files.append((path, rf.rules))
    c = loaded.classifier
    return Classifier(files, c.matrix, c.default, c.calendars)


def _explain(args: argparse.Namespace) -> int:
    # Usage errors first: a malformed --labels is exit 2 whatever the config's state.
    labels = _pairs(args.labels, "--labels")
    annotations = _pairs(args.annotations, "--annotations")
    if not labels:
        print("tocsin: error: --labels must name at least one label", file=sys.stderr)
        return 2
    try:
        loaded = load_config(args.config, secrets="deferred")  # offline: needs no secrets
    except ConfigError as e:
        _print_problems(e)
        return 1
    now: datetime = args.at or datetime.now(UTC)
    alert = Alert(status="firing", labels=labels, annotations=annotations, startsAt=now)
    group = Notification(
        version="4", receiver="explain", status="firing", alerts=[alert], groupKey="{}:{}"
    )
    result, traces = loaded.classifier.explain(alert, group, now)
    print(f"Alert {{{', '.join(f'{k}={v!r}' for k, v in labels.items())}}} at {now.isoformat()}\n")
    print("Rules considered, in order:")
    if not traces:
        print("  (no rules)")
    for t in traces:
        mark = "APPLIED" if t.applied else ("matched" if t.matched else "no")
        print(f"  [{mark:>7}] {t.rule}  ({t.file})")
        if not t.matched:
            for why in t.why:
                print(f"            - {why}")
        elif not t.applied:
            print("            - matched, but an earlier rule without continue: true decided")
    print()
    print(f"Severity:     {result.severity} ({result.severity_name})")
    print(f"Rule:         {result.rule}")
    print(f"Policy:       {result.policy or '(the matrix tiers for ' + result.severity + ')'}")
    print(f"Team:         {result.team or '-'}")
    print(f"Incident key: {result.incident_key or '(receiver + groupKey)'}")
    print(f"Title:        {result.title}")
    if result.heartbeat is not None:
        print(f"Heartbeat:    {result.heartbeat} (a ping of that heartbeat, never an incident)")
    for r in result.reasons:
        print(f"  because {r}")
    if result.unknown_severity is not None:
        print(f"  note: severity label value {result.unknown_severity!r} is not in the matrix")
    for note in _untrusted_severity(loaded, labels, result):
        print(f"  note: {note}")
    print()
    _print_tiers(loaded, result.severity, result.policy, now)
    return 0


# Labels that look like the alert's own severity: trusting one is a rule's choice.
_SEVERITY_LABELS = ("severity", "priority")


def _untrusted_severity(
    loaded: LoadedConfig, labels: dict[str, str], result: Classification
) -> list[str]:
    """Why a severity label the matrix knows did not set the level (no rule trusts it)."""
    outcomes: list[Outcome] = [r for _, rf in loaded.rule_files for r in rf.rules]
    applied = {r.name for r in outcomes if isinstance(r, Rule) and r.name in result.matched}
    trusted = {
        label
        for o in [*outcomes, loaded.classifier.default]
        if not isinstance(o, Rule) or o.name in applied
        for label in o.severity_from
    }
    notes = []
    for label in _SEVERITY_LABELS:
        value = labels.get(label)
        level = loaded.matrix.resolve(value) if value else None
        if level is None or label in trusted:
            continue
        notes.append(
            f"{label}={value!r} would be {level} ({loaded.matrix.level(level).name}), but no "
            f"rule trusts the {label} label; add severity_from: [{label}] to a rule (or the "
            "default) to use it"
        )
    return notes


def _print_tiers(
    loaded: LoadedConfig, severity: str, policy_name: str | None, now: datetime
) -> None:
    level = loaded.matrix.level(severity)
    cfg = loaded.config
    if policy_name is None:
        policy_name = level.policy
    if policy_name is not None:
        policy = cfg.policies[policy_name]
        steps, repeat, title = policy.steps, policy.repeat, f"policy {policy_name!r}"
    else:
        own = level_tiers(level)
        steps, repeat, title = (
            own.tiers,
            own.repeat,
            f"matrix {loaded.matrix.name!r} tiers for {severity}",
        )
    print(f"Escalation ({title}):")
    for i, st in enumerate(steps):
        when = f"+{format_duration(st.after)}"
        if st.at:
            when += f" then at {st.at}{_calendar_instant(loaded, st, now)}"
        if st.during:
            when += f" (only during {st.during})"
        unless = f"unless {st.unless}" if st.unless else "regardless of status"
        via = ", ".join(st.via) or "each person's channels"
        print(f"  tier {i}: {when:<12} notify {', '.join(st.notify)} via {via}; {unless}")
    if repeat is not None and repeat.times:
        print(f"  repeat {repeat.times} more time(s), every {format_duration(repeat.every)}")
    targets = [
        ("ack target", level.ack_target),
        ("status updates every", level.update_every),
        ("resolution target", level.resolve_target),
        ("review due", level.review_due),
    ]
    for label, value in targets:
        if value is not None:
            print(f"  {label}: {format_duration(value)}")


def _calendar_instant(loaded: LoadedConfig, step: Step, now: datetime) -> str:
    """When a step moved to a calendar point would fire, in the calendar's own zone."""
    calendars = loaded.config.calendars
    cal = calendars.get(step.at.partition(":")[0]) if step.at else None
    if cal is None:
        return ""
    due = due_time(step, now, calendars).astimezone(cal.zone)
    return f" = {due.isoformat()} ({cal.timezone})"


def _simulate(args: argparse.Namespace) -> int:
    from router.errors import ApiError
    from router.simulate import render_json, render_text, simulate

    try:
        loaded = load_config(args.config, secrets="deferred")  # offline: needs no secrets
    except ConfigError as e:
        _print_problems(e)
        return 1
    try:
        payload = Path(args.payload).read_bytes()
    except OSError as e:
        print(f"tocsin: error: cannot read {args.payload}: {e.strerror}", file=sys.stderr)
        return 1
    try:
        sim = asyncio.run(
            simulate(
                loaded,
                payload,
                ack_at=args.ack_at,
                mitigate_at=args.mitigate_at,
                resolve_at=args.resolve_at,
                until=args.until,
                start=args.start,
            )
        )
    except ApiError as e:
        print(f"{args.payload}: {e.path or 'payload'}: {e.error}: {e.detail}", file=sys.stderr)
        return 1
    print(render_json(sim) if args.json else render_text(sim))
    return 0


async def _api(
    args: argparse.Namespace, method: str, path: str, body: dict[str, Any] | None = None
) -> tuple[int, dict[str, Any]]:
    import aiohttp

    headers = {"Authorization": f"Bearer {args.token}"} if args.token else {}
    url = args.url.rstrip("/") + path
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as s:
        async with s.request(method, url, json=body, headers=headers) as r:
            try:
                data = await r.json(content_type=None)
            except ValueError:
                data = {"error": "bad response", "detail": (await r.text())[:200]}
            return r.status, data if isinstance(data, dict) else {"data": data}


def _opened(stamp: str) -> str:
    """An ISO instant to the second with its offset (the API's has microseconds, and cutting
    the text at 25 characters used to drop the offset and leave half of them)."""
    try:
        return datetime.fromisoformat(stamp).isoformat(timespec="seconds")
    except ValueError:
        return stamp


def _call(
    args: argparse.Namespace, method: str, path: str, body: dict[str, Any] | None = None
) -> dict[str, Any] | None:
    import aiohttp

    try:
        status, data = asyncio.run(_api(args, method, path, body))
    except (aiohttp.ClientError, OSError) as e:
        print(f"tocsin: cannot reach {args.url}: {e}", file=sys.stderr)
        return None
    if status >= 400:
        print(
            f"tocsin: {status} {data.get('error', '')}: {data.get('detail', '')}", file=sys.stderr
        )
        return None
    return data


def _incidents(args: argparse.Namespace) -> int:
    from urllib.parse import quote, urlencode

    cmd = args.incident_command
    if cmd == "list":
        q = {"status": args.status}
        if args.severity:
            q["severity"] = args.severity
        if args.team:
            q["team"] = args.team
        data = _call(args, "GET", f"/api/v1/incidents?{urlencode(q)}")
        if data is None:
            return 1
        if args.json:
            print(json.dumps(data["incidents"], indent=2))
            return 0
        print(f"{'#':>5}  {'ID':<20}  {'SEVERITY':<9} {'STATUS':<13} {'OPENED':<25} TITLE")
        for i in data["incidents"]:
            print(
                f"{i['number']:>5}  {i['id']:<20}  {i['severity_name']:<9} {i['status']:<13} "
                f"{_opened(i['opened_at']):<25} {i['title']}"
            )
        return 0
    ref = quote(args.id, safe="")
    if cmd == "show":
        data = _call(args, "GET", f"/api/v1/incidents/{ref}")
        if data is None:
            return 1
        if args.json:
            print(json.dumps(data, indent=2))
            return 0
        _print_incident(data)
        return 0
    action = {"ack": "ack", "mitigate": "mitigate", "resolve": "resolve", "escalate": "escalate"}[
        cmd
    ]
    body: dict[str, Any] = {"note": args.note}
    if args.actor:
        body["actor"] = args.actor
    data = _call(args, "POST", f"/api/v1/incidents/{ref}/{action}", body)
    if data is None:
        return 1
    print(f"incident #{data['number']} {data['id']} is now {data['status']}")
    return 0


def _oncall(args: argparse.Namespace) -> int:
    return run_oncall(args, _call)


def _print_incident(d: dict[str, Any]) -> None:
    print(f"#{d['number']} {d['id']}  {d['severity_name']} ({d['severity']})  {d['status']}")
    print(f"  {d['title']}")
    print(f"  key {d['key']}, policy {d['policy']}, opened {d['opened_at']}")
    if d["pending_steps"]:
        print("  pending:")
        for s in d["pending_steps"]:
            print(f"    {s['due_at']}  {s['kind']} tier {s['tier']} round {s['round']}")
    print("  timeline:")
    for e in d["timeline"]:
        print(f"    {e['at']}  {e['kind']:<9} {e['actor']:<14} {e['message']}")


def _review(args: argparse.Namespace) -> int:
    from urllib.parse import quote

    from router.review import render_review

    data = _call(args, "GET", f"/api/v1/incidents/{quote(args.id, safe='')}")
    if data is None:
        return 1
    print(render_review(data))
    return 0


if __name__ == "__main__":
    sys.exit(main())
