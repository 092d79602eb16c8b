"""``servoscope drill SCENARIO``: reproduce a known degradation end to end, and report it."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from servoscope.drills.scenarios import SCENARIOS


def add_parser(subparsers: Any) -> None:
    drill = subparsers.add_parser("drill", help="reproduce a latency degradation on purpose and report it")
    drill.add_argument("scenario", nargs="?", choices=sorted(SCENARIOS), help="the scenario to run")
    drill.add_argument("--list", action="store_true", help="describe the scenarios")
    drill.add_argument("--short", action="store_true", help="short form: ≤ 60 s (short capacity run and windows)")
    drill.add_argument("-o", "--output", type=Path, help="report folder (default: drills/<scenario>-<time>)")
    drill.add_argument("--model-repository", type=Path, default=Path("models"))
    drill.set_defaults(func=run)


def describe() -> str:
    lines = []
    for s in SCENARIOS.values():
        lines += [f"{s.name}", f"    changes: {s.changes}", f"    shows in: {s.stage} — {s.why}"]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    if args.list:
        print(describe())
        return 0
    if not args.scenario:
        print("servoscope drill: name a scenario, or --list", file=sys.stderr)
        return 2
    from servoscope.drills.runner import run_drill
    from servoscope.models import prepare
    from servoscope.settings import load_settings

    settings = load_settings(model_repository=args.model_repository)
    prepare.ensure_default(settings.model_repository, settings.models_to_prepare())
    out = args.output or Path("drills") / f"{args.scenario}-{time.strftime('%Y%m%d-%H%M%S')}"
    report = run_drill(
        SCENARIOS[args.scenario], args.model_repository, out, args.short, say=lambda m: print(m, flush=True)
    )
    a = report["affected"]
    print(
        f"{report['scenario']}: {a['stage']} P95 {a['baseline_p95_ms']:.1f} → {a['degraded_p95_ms']:.1f} ms "
        f"(×{a['p95_ratio']:.2f})"
    )
    return 0
