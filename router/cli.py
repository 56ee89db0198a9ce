"""The ``tocsin`` command line (DESIGN.md §10 is the contract: names, flags, exit codes).

Exit 0 on success, 1 when a problem was found (bad config, failing rule test), 2 on usage errors.
"""

from __future__ import annotations

import argparse
import glob
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from config.errors import ConfigError
from config.load import LoadedConfig, load_config, load_rule_file
from rules.alerts import Alert, Notification
from rules.classifier import Classifier
from rules.durations import format_duration

__all__ = ["main"]


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse exits 2 on usage errors; keep that
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
            raise SystemExit(f"tocsin: error: {flag} expects k=v[,k2=v2], got {part!r}")
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

    t = sub.add_parser("test", help="run rule unit tests")
    t.add_argument("files", nargs="+")

    e = sub.add_parser("explain", help="which rule matches these labels, and what follows")
    e.add_argument("--config", required=True)
    e.add_argument("--labels", required=True)
    e.add_argument("--annotations", default="")
    e.add_argument("--at", help="ISO 8601 instant to judge calendars at (default: now)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler = {"serve": _serve, "check": _check, "test": _test, "explain": _explain}
    return handler[args.command](args)


def _print_problems(e: ConfigError) -> None:
    for p in e.problems:
        print(str(p), file=sys.stderr)


def _serve(args: argparse.Namespace) -> int:
    from router.serve import serve

    try:
        return serve(args.config, listen=args.listen)
    except ConfigError as e:
        _print_problems(e)
        return 1


def _check(args: argparse.Namespace) -> int:
    try:
        loaded = load_config(args.config)
    except ConfigError as e:
        _print_problems(e)
        print(f"FAILED: {len(e.problems)} problem(s) in {args.config}", file=sys.stderr)
        return 1
    rules = sum(len(rf.rules) for _, rf in loaded.rule_files)
    print(
        f"SUCCESS: {args.config}: matrix {loaded.matrix.name!r} "
        f"({len(loaded.matrix.levels)} levels), {len(loaded.rule_files)} rule file(s), "
        f"{rules} rule(s), {len(loaded.config.policies)} polic(ies)"
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
    from config.errors import Problem
    from rules.testing import TestFile

    assert isinstance(tf, TestFile)
    if tf.config is None:
        raise ConfigError(Problem(str(file), None, None, "config", "a rule test file needs 'config:'"))
    loaded = load_config(file.parent / tf.config)
    if tf.rule_files is None:
        return loaded.classifier
    files = []
    for pattern in tf.rule_files:
        for path in sorted(glob.glob(str(file.parent / pattern))):
            _, rf = load_rule_file(path)
            files.append((path, rf.rules))
    c = loaded.classifier
    return Classifier(files, c.matrix, c.default, c.calendars)


def _explain(args: argparse.Namespace) -> int:
    try:
        loaded = load_config(args.config)
    except ConfigError as e:
        _print_problems(e)
        return 1
    now = datetime.fromisoformat(args.at) if args.at else datetime.now(UTC)
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    labels = _pairs(args.labels, "--labels")
    annotations = _pairs(args.annotations, "--annotations")
    if not labels:
        print("tocsin: error: --labels must name at least one label", file=sys.stderr)
        return 2
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
    for r in result.reasons:
        print(f"  because {r}")
    if result.unknown_severity is not None:
        print(f"  note: severity label value {result.unknown_severity!r} is not in the matrix")
    print()
    _print_tiers(loaded, result.severity, result.policy)
    return 0


def _print_tiers(loaded: LoadedConfig, severity: str, policy_name: str | None) -> None:
    level = loaded.matrix.level(severity)
    cfg = loaded.config
    if policy_name is None:
        policy_name = level.policy
    if policy_name is not None:
        policy = cfg.policies[policy_name]
        steps, repeat, title = policy.steps, policy.repeat, f"policy {policy_name!r}"
    else:
        steps, repeat, title = level.tiers, level.repeat, f"matrix {loaded.matrix.name!r} tiers for {severity}"
    print(f"Escalation ({title}):")
    for i, st in enumerate(steps):
        when = f"+{format_duration(st.after)}"
        if st.at:
            when += f" then at {st.at}"
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


if __name__ == "__main__":
    sys.exit(main())
