"""``servoscope load``: drive a service with open- or closed-loop load (see the package README)."""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

from servoscope.loadgen import mixes, profiles
from servoscope.loadgen.client import ClientError, Endpoint
from servoscope.loadgen.client import run as run_loop
from servoscope.loadgen.progress import Progress
from servoscope.loadgen.runner import DEFAULT_MAX_REQUESTS, LoadPlan, execute, result_json, summary_lines
from servoscope.loadgen.targets import KINDS, Target

DEFAULT_MIX = "100%:320x240"
DEFAULT_CACHE = Path.home() / ".cache" / "servoscope" / "images"

EPILOG = """\
examples:
  servoscope load --rate 20 --duration 60s -o result.json --plot result.png
  servoscope load --rate 20 --step 15%@60s --duration 2m            # +15% from minute 1
  servoscope load --ramp 5:40@30s --duration 60s --arrivals constant
  servoscope load --fleet-rpm 10000 --fleet-size 8 --duration 5m    # 20.8 req/s here
  servoscope load --concurrency 16 --duration 30s                   # closed loop, capacity
  servoscope load --rate 10 --mix 70%:4032x3024,30%:320x240 --png-share 0.2
  servoscope load --rate 10 --target v2 --port 8001 --model resnet  # any KServe/Triton server
  servoscope load --rate 500 --target raw --method GET --path /v2/health/live

Latency runs from each request's scheduled send time (open loop: no coordinated omission);
percentiles are over 200 responses, every other outcome is counted. The sender's own
lateness is reported apart. Loopback hosts only, unless --allow-host names your own host.
Its own cost: ~70 us of CPU per request; ~2,000 req/s on one core with the median sender
within 0.1 ms and 98% of sends within 2 ms on a busy shared VM (servoscope/loadgen/README.md).
"""


def add_parser(subparsers: Any) -> None:
    load = subparsers.add_parser(
        "load",
        help="drive a service (loopback) with open- or closed-loop load",
        description="Drive a service with open-loop (a rate) or closed-loop (N clients) load and record the latency.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    where = load.add_argument_group("where")
    where.add_argument("--host", default="127.0.0.1", help="loopback address or localhost (default 127.0.0.1)")
    where.add_argument("--port", type=int, default=8000)
    where.add_argument(
        "--allow-host",
        action="append",
        default=[],
        metavar="HOST",
        help="a non-loopback host of your own to allow (repeatable)",
    )
    where.add_argument(
        "--target", choices=KINDS, default="v1", help="v1: /v1 classify; v2: Open Inference Protocol; raw: any path"
    )
    where.add_argument("--model", default="efficientnet_lite0", help="model name for v1 and v2")
    where.add_argument("--path", default="", help="raw: the path to request")
    where.add_argument("--method", default="POST", help="raw: the HTTP method (GET sends no body)")
    where.add_argument("--content-type", default="", help="raw: Content-Type (default: the image's)")
    where.add_argument("--input-name", default="image", help="v2: the input tensor's name")

    rate = load.add_argument_group("how much (open loop: a rate; closed loop: --concurrency)")
    rate.add_argument("--rate", type=float, help="open loop: requests per second")
    rate.add_argument("--fleet-rpm", type=float, help="open loop: requests per minute for the whole fleet …")
    rate.add_argument("--fleet-size", type=int, default=1, help="… spread over this many instances (default 1)")
    rate.add_argument(
        "--step",
        action="append",
        default=[],
        metavar="PCT@T",
        help="change the rate by PCT from time T, e.g. 15%%@60s (repeatable)",
    )
    rate.add_argument(
        "--ramp", metavar="FROM:TO[@T]", help="ramp the rate FROM→TO req/s over T (default the whole run)"
    )
    rate.add_argument("--arrivals", choices=("poisson", "constant"), default="poisson")
    rate.add_argument("--concurrency", type=int, help="closed loop: this many clients sending back to back")
    rate.add_argument("--connections", type=int, default=256, help="open loop: most connections at once (default 256)")

    bounds = load.add_argument_group("bounds")
    bounds.add_argument("--duration", default="30s", help="how long to send, e.g. 30s, 2m (default 30s; at most 1h)")
    bounds.add_argument(
        "--max-requests",
        type=int,
        default=DEFAULT_MAX_REQUESTS,
        help=f"most requests sent (default {DEFAULT_MAX_REQUESTS})",
    )
    bounds.add_argument("--timeout", type=float, default=30.0, help="per-request timeout, seconds (default 30)")

    images = load.add_argument_group("images")
    images.add_argument("--images", type=Path, help="a folder of .jpg/.png/.webp images, each equally likely")
    images.add_argument(
        "--mix",
        default=DEFAULT_MIX,
        help=f"generated sizes, e.g. 70%%:4032x3024,30%%:320x240 (default {DEFAULT_MIX.replace('%', '%%')})",
    )
    images.add_argument(
        "--png-share", type=float, default=0.0, help="share of generated images sent as PNG (default 0)"
    )
    images.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE, help="where generated images are kept")
    images.add_argument("--seed", type=int, default=0, help="seed of the arrivals and of the image draws")

    out = load.add_argument_group("output")
    out.add_argument("-o", "--output", type=Path, help="write the result (JSON) here")
    out.add_argument("--plot", type=Path, help="write a PNG of latency and throughput over time here")
    out.add_argument("--quiet", action="store_true", help="no progress line")
    load.set_defaults(func=run)


def plan_from_args(args: argparse.Namespace) -> LoadPlan:
    """The run the flags describe; ValueError says what is wrong with them."""
    duration_s = profiles.parse_duration(args.duration)
    closed = args.concurrency is not None
    given = [
        name
        for name, value in (("--rate", args.rate), ("--fleet-rpm", args.fleet_rpm), ("--ramp", args.ramp))
        if value is not None
    ]
    if closed and (given or args.step):
        raise ValueError(f"--concurrency (closed loop) cannot be combined with {given + ['--step'] * bool(args.step)}")
    if not closed and len(given) != 1:
        raise ValueError("give one of --rate, --fleet-rpm or --ramp (open loop), or --concurrency (closed loop)")
    extra: dict[str, Any] = {}
    profile = None
    if not closed:
        if args.fleet_rpm is not None:
            extra["fleet"] = {
                "rpm": args.fleet_rpm,
                "size": args.fleet_size,
                "rate_per_s": profiles.fleet_rate(args.fleet_rpm, args.fleet_size),
            }
        profile = _profile(args, duration_s)
    endpoint = Endpoint(args.host, args.port, tuple(args.allow_host))
    target = Target(args.target, args.model, args.path, args.method, args.content_type, args.input_name)
    mix = (
        mixes.folder(args.images)
        if args.images
        else mixes.generated(mixes.parse_mix(args.mix), args.png_share, args.cache_dir)
    )
    return LoadPlan(
        endpoint,
        target,
        mix,
        "closed" if closed else "open",
        profile,
        args.arrivals,
        args.concurrency or 1,
        duration_s,
        args.max_requests,
        args.timeout,
        args.connections,
        args.seed,
        extra,
    )


def _profile(args: argparse.Namespace, duration_s: float) -> profiles.Profile:
    if args.ramp is not None:
        if args.step:
            raise ValueError("--step and --ramp cannot be combined")
        low, high, over = profiles.parse_ramp(args.ramp)
        return profiles.ramp(low, high, over if over is not None else duration_s, duration_s)
    base = args.rate if args.rate is not None else profiles.fleet_rate(args.fleet_rpm, args.fleet_size)
    if args.step:
        return profiles.step(base, duration_s, [profiles.parse_step(s) for s in args.step])
    return profiles.constant(base, duration_s)


def run(args: argparse.Namespace) -> int:
    try:
        plan = plan_from_args(args)
    except ValueError as exc:  # NotLoopback is a ValueError too
        print(f"servoscope load: {exc}", file=sys.stderr)
        return 2
    print(_announce(plan), file=sys.stderr, flush=True)
    try:
        outcome = run_loop(execute(plan, None if args.quiet else Progress()))
    except (OSError, TimeoutError, ClientError) as exc:
        print(f"servoscope load: cannot reach {plan.endpoint.host}:{plan.endpoint.port}: {exc}", file=sys.stderr)
        return 1
    result = result_json(plan, outcome)
    for line in summary_lines(result):
        print(line, file=sys.stderr)
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(_finite(result), indent=1) + "\n")
        print(f"result: {args.output}", file=sys.stderr)
    if args.plot:
        from servoscope.loadgen.plot import plot

        print(f"plot: {plot(result, args.plot)}", file=sys.stderr)
    return 0


def _announce(plan: LoadPlan) -> str:
    where = f"{plan.endpoint.host}:{plan.endpoint.port}{plan.target.url_path} ({plan.target.kind})"
    if plan.profile is not None and plan.loop == "open":
        profile = plan.profile
        how = f"open loop, {plan.arrivals} arrivals, {profile.name} profile, ~{profile.expected_count:.0f} requests"
    else:
        how = f"closed loop, {plan.concurrency} clients"
    return f"servoscope load: {where}: {how} over {plan.duration_s:g} s; images: {plan.mix.description}"


def _finite(value: Any) -> Any:
    """NaN and infinities as null, so the file is strict JSON."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value
