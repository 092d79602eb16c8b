"""``servoscope snapshot``: save a live service's ``/v1/stats`` (with URL and time) for the doctor."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from servoscope.doctor import live
from servoscope.doctor.evidence import EvidenceError


def add_parser(subparsers: Any) -> None:
    snap = subparsers.add_parser(
        "snapshot", help="save a service's /v1/stats (plus URL and time) to diagnose offline or keep as a baseline"
    )
    source = snap.add_mutually_exclusive_group(required=True)
    source.add_argument("--url", help="the service, e.g. http://127.0.0.1:8000")
    source.add_argument(
        "--replica",
        action="append",
        metavar="URL",
        help="one replica of a fleet (repeat for each): a fleet snapshot, merged from their sketches, "
        "gray replicas named",
    )
    snap.add_argument("--model", help="keep only this model (default: every model)")
    snap.add_argument(
        "--watch-s",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="with --replica: first run the gray-replica test live for up to SECONDS (reads every 5 s; "
        "stops at the first flag)",
    )
    snap.add_argument("-o", "--output", type=Path, required=True, help="write the snapshot (JSON) here")
    snap.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        if args.replica:
            from servoscope.fleet.view import fleet_snapshot

            doc = fleet_snapshot(args.replica, args.model, args.watch_s)
        else:
            doc = live.snapshot(args.url, args.model)
    except (OSError, EvidenceError) as exc:
        print(f"servoscope snapshot: {exc}", file=sys.stderr)
        return 2 if isinstance(exc, EvidenceError) else 1
    args.output.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.output.with_name(args.output.name + ".tmp")
    tmp.write_text(json.dumps(doc, indent=1) + "\n")
    tmp.replace(args.output)
    models = ", ".join(sorted(doc["stats"]["models"])) or "no models"
    print(f"snapshot of {doc['url']} ({models}) at {doc['taken_at']}: {args.output}", file=sys.stderr)
    return 0
