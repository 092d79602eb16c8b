"""``servoscope deploy ray``: run the fleet on Ray Serve, in the foreground, until SIGINT or SIGTERM;
then everything it started is stopped (the replicas drain first). Without ``--address`` it starts a
Ray cluster on this machine bound to 127.0.0.1; with one it joins that cluster (``auto``, or the
head's ``host:port``) and runs the replicas wherever Ray places them.

It sits beside ``fleet/ray/``, not in it: the command line imports it at start, and it imports Ray's
side (the ``fleet`` extra) only when the command runs."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from servoscope.fleet.plan import PlanError, plan_and_settings
from servoscope.settings import SettingsError

REPORT_PERIOD_S = 2.0


def add_parser(subparsers: Any) -> None:
    ray = subparsers.add_parser(
        "ray",
        help="run the fleet live on Ray Serve, HAProxy in front (foreground; Ctrl-C stops it all)",
    )
    ray.add_argument("--address", help="an existing Ray cluster to join (default: start one on 127.0.0.1)")
    ray.add_argument("--config", type=Path, help="servoscope settings (TOML, as serve's; and SERVOSCOPE_*)")
    ray.add_argument("--plan", type=Path, help="fleet plan (JSON): replicas min/max, cpu_cores, queue_wait_target_s …")
    ray.add_argument("--host", default="127.0.0.1", help="where the balancer listens (default: 127.0.0.1)")
    ray.add_argument("--port", type=int, default=8000, help="the balancer's port (default: 8000)")
    ray.add_argument("--replicas", type=int, help="replicas to start with (default: the plan's minimum)")
    ray.add_argument("--num-cpus", type=int, help="CPUs of a local Ray cluster (default: the machine's)")
    ray.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        plan, settings = plan_and_settings(args.plan, args.config)
    except (PlanError, SettingsError) as exc:
        print(f"servoscope deploy ray: {exc}", file=sys.stderr)
        return 2
    if args.replicas is not None and not plan.replicas.min <= args.replicas <= plan.replicas.max:
        print(
            f"servoscope deploy ray: --replicas must be within the plan's {plan.replicas.min} … {plan.replicas.max}, "
            f"got {args.replicas}",
            file=sys.stderr,
        )
        return 2
    if args.address is None:
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # before Ray is imported: see fleet.py
    try:
        from servoscope.fleet.ray.fleet import FleetError, FleetOptions, RayFleet
    except ImportError as exc:
        print(f"servoscope deploy ray: needs Ray Serve ({exc}): pip install 'servoscope[fleet]'", file=sys.stderr)
        return 2

    options = FleetOptions(
        host=args.host, port=args.port, address=args.address, replicas=args.replicas, num_cpus=args.num_cpus
    )
    fleet = RayFleet(settings, plan, options)
    try:
        fleet.start()
    except FleetError as exc:
        print(f"servoscope deploy ray: {exc}", file=sys.stderr)
        return 2
    try:
        _report_until_stopped(fleet)
    finally:
        fleet.stop()
    return 0


def _report_until_stopped(fleet: Any) -> None:
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    print(f"servoscope fleet on Ray Serve: http://{fleet.balancer.address} (Ctrl-C stops it)", file=sys.stderr)
    shown: list[str] = []
    while not stop.wait(REPORT_PERIOD_S):
        members = [f"{m.address} (replica {m.replica}, pid {m.pid})" for m in fleet.members()]
        if members != shown:
            print(f"{len(members)} replicas: " + ", ".join(members), file=sys.stderr)
            shown = members
