"""``servoscope doctor``: diagnose a latency regression — current evidence against a baseline.

Current evidence comes from one of: a saved snapshot (``--snapshot``), a live service's
``/v1/stats`` (``--url``), or a Prometheus server through PromQL (``--prometheus`` at ``--at``).
The baseline is a snapshot file (``--baseline``), an earlier window of the same document
(``--baseline-window before``: the four minutes before the last one) or, with Prometheus,
another instant (``--baseline-at``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

from servoscope.doctor import evidence, live, report
from servoscope.doctor.evidence import Evidence
from servoscope.doctor.rules import diagnose


def add_parser(subparsers: Any) -> None:
    doctor = subparsers.add_parser(
        "doctor", help="diagnose a latency regression: confirm, attribute, explain, prescribe"
    )
    source = doctor.add_mutually_exclusive_group()
    source.add_argument(
        "--snapshot", type=Path, help="current /v1/stats JSON (or a drill or `servoscope snapshot` file)"
    )
    source.add_argument("--url", help="a live service, e.g. http://127.0.0.1:8000: read its /v1/stats now")
    source.add_argument("--prometheus", help="a Prometheus server: read the evidence through PromQL")
    baseline = doctor.add_mutually_exclusive_group()
    baseline.add_argument(
        "--baseline", type=Path, help="baseline /v1/stats JSON (or a drill or `servoscope snapshot` file)"
    )
    baseline.add_argument(
        "--baseline-window",
        metavar="WINDOW",
        help="baseline from the same document's window WINDOW, e.g. 'before' (the 4 minutes before the last one)",
    )
    prom = doctor.add_argument_group("with --prometheus")
    prom.add_argument(
        "--at", default="now", help="instant of the current window: RFC 3339, Unix seconds or 'now' (default)"
    )
    prom.add_argument("--baseline-at", help="instant of the baseline window (instead of --baseline)")
    prom.add_argument(
        "--range", default="5m", dest="range_", metavar="RANGE", help="PromQL rate window, e.g. 1m, 5m (default 5m)"
    )
    check = doctor.add_argument_group("--verify: measure the effect of a fix that was applied")
    check.add_argument(
        "--verify",
        action="store_true",
        help="diagnose --before against --baseline, then set the first fix's predicted P95 against --after",
    )
    check.add_argument("--before", type=Path, help="snapshot of the degraded window, before the fix")
    check.add_argument("--after", type=Path, help="snapshot of a window after the fix")
    doctor.add_argument("--model", help="model to diagnose (default: the busiest)")
    doctor.add_argument("--window", help="stats window: 1m, 5m or before (default: the snapshot's, else 1m)")
    doctor.add_argument("--json", action="store_true", help="print the diagnosis as JSON")
    doctor.add_argument("--markdown", type=Path, help="also write a Markdown report here, with a PNG plot beside it")
    doctor.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.verify:
        return _verify(args)
    try:
        if not (args.snapshot or args.url or args.prometheus):
            raise ValueError("one of --snapshot, --url or --prometheus is required (or --verify)")
        base, now = _evidence(args)
    except (OSError, ValueError) as exc:
        print(f"servoscope doctor: {exc}", file=sys.stderr)
        return 1 if isinstance(exc, OSError) and not isinstance(exc, FileNotFoundError) else 2
    diagnosis = diagnose(base, now)
    try:
        where = _fleet_scope(args, diagnosis.model, diagnosis.window)
    except ValueError as exc:
        print(f"servoscope doctor: the fleet snapshot's replicas: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(report.to_json(diagnosis) | ({"fleet": dataclasses.asdict(where)} if where else {}), indent=2))
    else:
        report.print_report(diagnosis)
        if where is not None:
            print(f"fleet: {where.summary}")
    if args.markdown:
        from servoscope.doctor import markdown

        written = markdown.write(diagnosis, base, now, args.markdown)
        print(f"report: {', '.join(str(p) for p in written)}", file=sys.stderr)
    return 0


def _verify(args: argparse.Namespace) -> int:
    from servoscope.doctor.verify import verify

    try:
        if args.baseline is None or args.before is None or args.after is None:
            raise ValueError("--verify needs --baseline, --before and --after (snapshot files)")
        base, before = evidence.pair(
            json.loads(args.baseline.read_text()), json.loads(args.before.read_text()), args.model, args.window
        )
        after = evidence.pair(
            json.loads(args.before.read_text()), json.loads(args.after.read_text()), before.model, args.window
        )[1]
    except (OSError, ValueError) as exc:
        print(f"servoscope doctor: {exc}", file=sys.stderr)
        return 2
    diagnosis, checked = verify(base, before, after)
    if args.json:
        print(json.dumps({"diagnosis": report.to_json(diagnosis), "verify": checked and checked.to_json()}, indent=2))
    else:
        print(f"diagnosis: {report.one_line(diagnosis)}")
        print(checked.describe() if checked else "no prescribed fix carries a predicted effect: nothing to verify")
    return 0


def _fleet_scope(args: argparse.Namespace, model: str, window: str) -> Any:  # a doctor.fleet.Scope or None
    """One replica or the whole fleet, for a fleet snapshot (``servoscope snapshot --replica``)."""
    if args.snapshot is None:
        return None
    from servoscope.doctor import fleet

    return fleet.scope(json.loads(args.snapshot.read_text()), model, window)


def _evidence(args: argparse.Namespace) -> tuple[Evidence, Evidence]:
    """(baseline, current) from the sources the flags name; ValueError says what is missing."""
    if args.prometheus:
        return _from_prometheus(args)
    if args.baseline is None and args.baseline_window is None:
        raise ValueError("--baseline FILE or --baseline-window WINDOW is required with --snapshot or --url")
    doc = json.loads(args.snapshot.read_text()) if args.snapshot is not None else live.fetch_stats(args.url)
    if args.baseline_window is not None:
        now = evidence.from_document(doc, args.model, args.window)
        if args.baseline_window == now.window:
            raise ValueError(f"--baseline-window {args.baseline_window} is the current window too; name an earlier one")
        return evidence.from_document(doc, now.model, args.baseline_window), now
    return evidence.pair(json.loads(args.baseline.read_text()), doc, args.model, args.window)


def _from_prometheus(args: argparse.Namespace) -> tuple[Evidence, Evidence]:
    from servoscope.doctor import promql

    if args.baseline_window is not None:
        raise ValueError("--baseline-window reads a /v1/stats document; with --prometheus, use --baseline-at")
    source = promql.PromSource(args.prometheus, args.range_)
    now = source.evidence(args.at, args.model)
    if args.baseline_at is not None:
        return source.evidence(args.baseline_at, now.model), now
    if args.baseline is not None:
        return evidence.load(args.baseline, now.model, args.window), now
    raise ValueError("--baseline-at TIME (or --baseline FILE) is required with --prometheus")
