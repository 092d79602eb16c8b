"""``servoscope rollout start|status|promote|abort``: drive a running server's rollout ladder through its
admin endpoints (``/v1/rollouts/<model>``, loopback), and show its progress while it climbs."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

import httpx

from servoscope.rollout.ladder import STEPS_PERCENT

DEFAULT_URL = "http://127.0.0.1:8000"
TIMEOUT_S = 60.0  # loading a canary variant takes a few seconds
GATE_FLAGS = (
    "min_canary_requests",
    "min_baseline_requests",
    "min_mirrored_requests",
    "refresh_every",
    "baseline_window",
)


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    top = sub.add_parser("rollout", help="roll a variant out on a running server: ladder, gate, audit log")
    commands = top.add_subparsers(dest="rollout_command", required=True)
    start = commands.add_parser("start", help="load a canary variant beside the model and climb the ladder")
    _common(start)
    start.add_argument("--canary-model", help="the variant's model (default: the same model)")
    start.add_argument("--canary-version", help="the variant's <version>/ folder")
    start.add_argument("--max-batch-size", type=int, help="the variant's batching: largest batch")
    start.add_argument("--max-queue-delay-ms", type=float, help="the variant's batching: longest wait for more")
    start.add_argument("--instances", type=int, help="the variant's model instances")
    start.add_argument(
        "--inject-inference-delay-ms",
        type=float,
        default=0.0,
        help="slow the variant's every batch on purpose (a drill's injected fault)",
    )
    start.add_argument("--steps", default=",".join(f"{s:g}" for s in STEPS_PERCENT), help="percent per step")
    start.add_argument("--mirror", type=float, default=0.0, help="share of baseline requests mirrored to the canary")
    start.add_argument("--max-disagreement", type=float, help="top-1 disagreement budget on mirrored requests")
    start.add_argument("--signoff", help="who of the model owners signed off (needed with --max-disagreement)")
    start.add_argument("--audit-log", type=Path, default=Path("rollout-audit.jsonl"), help="JSON lines, on the server")
    for name in GATE_FLAGS:
        start.add_argument("--" + name.replace("_", "-"), type=int, help="the gate's " + name.replace("_", " "))
    start.add_argument("--alpha", type=float, help="the gate's bound on a false FAIL (default 0.01)")
    start.add_argument("--seed", type=int, help="the split's random draws (for reproducible drills)")
    start.set_defaults(func=run_start)
    actions = (("status", "show the rollout"), ("promote", "promote to 100%% now"), ("abort", "back to 0%% now"))
    for name, helptext in actions:
        command = commands.add_parser(name, help=helptext)
        _common(command)
        command.set_defaults(func=run_status if name == "status" else run_action, action=name)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="the served model whose traffic is split")
    parser.add_argument("--url", default=DEFAULT_URL, help="the server (its admin endpoints answer loopback only)")
    parser.add_argument("--watch", action="store_true", help="show progress until the rollout ends")
    parser.add_argument("--watch-timeout-s", type=float, default=600.0, help="stop watching after this long")


def start_body(args: argparse.Namespace) -> dict[str, Any]:
    overrides = {
        "max_batch_size": args.max_batch_size,
        "instances": args.instances,
        "max_queue_delay_s": None if args.max_queue_delay_ms is None else args.max_queue_delay_ms / 1000.0,
    }
    gate: dict[str, Any] = {name: getattr(args, name) for name in GATE_FLAGS if getattr(args, name) is not None}
    for name in ("max_disagreement", "alpha"):
        if getattr(args, name) is not None:
            gate[name] = getattr(args, name)
    try:
        steps = [float(s) for s in args.steps.split(",")]
    except ValueError:
        raise SystemExit(
            f"servoscope rollout: --steps must be percentages separated by commas, got {args.steps!r}"
        ) from None
    return {
        "canary": {
            "model": args.canary_model,
            "version": args.canary_version,
            "overrides": {k: v for k, v in overrides.items() if v is not None},
            "inference_delay_ms": args.inject_inference_delay_ms,
        },
        "steps_percent": steps,
        "mirror_share": args.mirror,
        "audit_log": str(args.audit_log.resolve()),
        "signoff": args.signoff,
        "gate": gate,
        "seed": args.seed,
    }


def run_start(args: argparse.Namespace) -> int:
    return _call(args, lambda c: c.post(_path(args), json=start_body(args)))


def run_action(args: argparse.Namespace) -> int:
    return _call(args, lambda c: c.post(f"{_path(args)}/{args.action}"))


def run_status(args: argparse.Namespace) -> int:
    return _call(args, lambda c: c.get(_path(args)))


def _path(args: argparse.Namespace) -> str:
    return f"/v1/rollouts/{args.model}"


def _call(args: argparse.Namespace, send: Callable[[httpx.Client], httpx.Response]) -> int:
    try:
        with httpx.Client(base_url=args.url, timeout=TIMEOUT_S) as client:
            response = send(client)
            if response.status_code >= 400:
                print(f"servoscope rollout: {response.status_code}: {response.json().get('error')}", file=sys.stderr)
                return 1
            status = response.json()
            print(progress_line(status), flush=True)
            if args.watch and status["state"] == "running":
                status = watch(client, _path(args), args.watch_timeout_s, sys.stdout, _shown(status))
    except httpx.HTTPError as exc:
        print(f"servoscope rollout: cannot reach {args.url}: {exc}", file=sys.stderr)
        return 1
    return 0 if status["state"] in ("running", "promoted") else 3


def _shown(status: dict[str, Any]) -> tuple[Any, ...]:
    return status["state"], status["step"], status["verdict"]["outcome"]


def watch(
    client: httpx.Client,
    path: str,
    timeout_s: float,
    out: TextIO,
    shown: tuple[Any, ...] = (),
    pause_s: float = 0.25,
    every_s: float = 5.0,
) -> dict[str, Any]:
    """Poll the status until the rollout ends or ``timeout_s``: a line at each change of state, step or
    outcome (``shown``: the one already shown), and one every ``every_s`` between them."""
    deadline = time.monotonic() + timeout_s
    shown_at = time.monotonic()
    while True:
        status: dict[str, Any] = client.get(path).raise_for_status().json()
        now = time.monotonic()
        key = _shown(status)
        if key != shown or now - shown_at >= every_s:
            print(progress_line(status), file=out, flush=True)
            shown, shown_at = key, now
        if status["state"] != "running" or now >= deadline:
            return status
        time.sleep(pause_s)


def progress_line(status: dict[str, Any]) -> str:
    verdict = status["verdict"]
    counts = f"{verdict['canary_requests']} canary / {verdict['baseline_requests']} baseline"
    if status["mirror"]["share"]:
        m = status["mirror"]
        counts += f", mirrored {m['sent']} ({m['disagreed']} disagreed, {m['shed']} shed)"
    gated = len(status["steps_percent"]) - 1  # the last step, 100%, is the promotion
    step = f"step {min(status['step'], gated)}/{gated} at {status['share'] * 100:g}%"
    return f"{status['state']:<11} {step:<18} {verdict['outcome']:<12} {counts} — {verdict['reason']}"
