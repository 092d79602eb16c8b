"""``servoscope doctor``: diagnose a latency regression from a snapshot and a baseline."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from servoscope.doctor import evidence, report
from servoscope.doctor.rules import diagnose


def add_parser(subparsers: Any) -> None:
    doctor = subparsers.add_parser("doctor", help="diagnose a latency regression: confirm, attribute, explain, prescribe")
    doctor.add_argument("--snapshot", type=Path, required=True, help="current /v1/stats JSON (or a drill snapshot)")
    doctor.add_argument("--baseline", type=Path, required=True, help="baseline /v1/stats JSON (or a drill snapshot)")
    doctor.add_argument("--model", help="model to diagnose (default: the busiest)")
    doctor.add_argument("--window", choices=("1m", "5m"), help="stats window (default: the snapshot's, else 1m)")
    doctor.add_argument("--json", action="store_true", help="print the diagnosis as JSON")
    doctor.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        now = evidence.load(args.snapshot, args.model, args.window)
        base = evidence.load(args.baseline, now.model, args.window or now.window)
    except (OSError, ValueError) as exc:
        print(f"servoscope doctor: {exc}", file=sys.stderr)
        return 2
    diagnosis = diagnose(base, now)
    print(json.dumps(report.to_json(diagnosis), indent=2) if args.json else report.to_text(diagnosis))
    return 0
