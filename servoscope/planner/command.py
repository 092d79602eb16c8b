"""``servoscope plan``: simulate a replica from a profile — saturation, the knee, a load, a fleet.

``servoscope profile`` (measure a profile on this machine) and ``servoscope tune`` (search the
settings live) are registered here too; their work is in :mod:`servoscope.planner.measure` and
:mod:`servoscope.planner.tune`.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

from servoscope.loadgen.command import _finite
from servoscope.loadgen.profiles import parse_duration
from servoscope.planner import arrivals, fleet, report, words
from servoscope.planner.plan import PlanError, Replica, Traffic, at_rate, knee, saturation, warmup_s
from servoscope.planner.profile import ProfileError, load
from servoscope.planner.service import from_family
from servoscope.planner.sim import SimConfig, static_admission
from servoscope.planner.summary import summarize

EPILOG = """\
examples:
  servoscope plan --profile p.json                                   # saturation and the knee
  servoscope plan --profile p.json --rate 120 --arrivals on-off --cv2 4
  servoscope plan --profile p.json --replay result.json              # a recorded `servoscope load` run
  servoscope plan --profile p.json --fleet-rpm 10000 --slo-p95 200ms --growth 15% --burst 3x/10s
"""


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "plan",
        help="predict P95, saturation, the knee and replicas from a profile (simulation)",
        description="Simulate the service from a measured profile: saturation, the knee, a load's P95, a fleet plan.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--profile", type=Path, required=True, help="a profile file from `servoscope profile`")
    setup = p.add_argument_group("the replica (default: the profile's first family and its batching)")
    setup.add_argument("--instances", type=int, help="pick the profile's family measured at this many instances")
    setup.add_argument("--intra-op-threads", type=int, help="… and this many threads per instance")
    setup.add_argument("--preprocess-workers", type=int)
    setup.add_argument("--max-batch-size", type=int)
    setup.add_argument("--max-queue-delay-ms", type=float)
    setup.add_argument("--preferred-batch-sizes", help="comma-separated, e.g. 4,8")
    setup.add_argument("--max-queue-size", type=int)
    setup.add_argument("--max-pending", type=int, help="the server's static admission: most requests in progress")
    setup.add_argument("--mix", help="image mix, e.g. 70%%:4032x3024,30%%:320x240 (default: the profile's)")
    load_ = p.add_argument_group("the load (none: saturation and the knee only)")
    which = load_.add_mutually_exclusive_group()
    which.add_argument("--rate", type=float, help="one replica's requests per second")
    which.add_argument("--replay", type=Path, help="the scheduled send times of a `servoscope load -o` result")
    which.add_argument("--fleet-rpm", type=float, help="the fleet's requests per minute (with --slo-p95)")
    load_.add_argument("--arrivals", choices=("poisson", "on-off"), default="poisson")
    load_.add_argument(
        "--cv2",
        type=float,
        default=4.0,
        help="on-off: squared CV of the gaps (default 4; with --fleet-rpm, of the fleet's)",
    )
    load_.add_argument("--on-s", type=float, default=1.0, help="on-off: mean on period, seconds (default 1)")
    fleet_ = p.add_argument_group("the fleet")
    fleet_.add_argument("--slo-p95", help="the objective, e.g. 200ms")
    fleet_.add_argument("--growth", default="0%", help="traffic growth to plan for, e.g. 15%% (default 0%%)")
    fleet_.add_argument("--burst", help="a burst to ride out within the objective, e.g. 3x/10s")
    fleet_.add_argument("--replicas", type=int, help="replicas today (default: the least meeting the objective today)")
    how = p.add_argument_group("simulation")
    how.add_argument(
        "--duration", default="120s", help="simulated time per load point (at least 40,000 requests; default 120s)"
    )
    how.add_argument("--seed", type=int, default=0)
    how.add_argument(
        "--knee-k", type=float, default=10.0, help="the knee's slope threshold, × the low-load P95 per saturation"
    )
    out = p.add_argument_group("output")
    out.add_argument("--json", type=Path, help="also write the figures as JSON here")
    out.add_argument("--plot", type=Path, help="write a PNG of P95 against load here")
    out.add_argument("--quiet", action="store_true", help="no progress lines")
    p.set_defaults(func=run)

    from servoscope.planner import measure, tune

    measure.add_parser(subparsers)
    tune.add_parser(subparsers)


def replica_from_args(args: argparse.Namespace, mix: dict[str, float] | None = None) -> Replica:
    profile = load(args.profile)
    family = profile.family(args.instances, args.intra_op_threads)
    batching = words.batching(
        family.batching, args.max_batch_size, args.max_queue_delay_ms, args.preferred_batch_sizes, args.max_queue_size
    )
    service = from_family(family, profile.overheads, batching.max_batch_size)
    shares = mix or (words.mix_classes(args.mix) if args.mix else profile.mix)
    weights = [0.0] * len(service.classes)
    for name, share in shares.items():
        weights[service.class_index(name)] += share
    config = SimConfig(args.preprocess_workers or family.preprocess_workers, family.instances, batching)
    if args.max_pending is not None and args.max_pending < 1:
        raise PlanError(f"--max-pending must be >= 1, got {args.max_pending}")
    admits = static_admission(args.max_pending) if args.max_pending else None
    return Replica(service, config, tuple(weights), family.intra_op_threads, admits)


def run(args: argparse.Namespace) -> int:
    say = (lambda _: None) if args.quiet else (lambda line: print(line, file=sys.stderr, flush=True))
    try:
        return _run(args, say)
    except (ProfileError, PlanError, arrivals.ArrivalError, ValueError) as exc:
        print(f"servoscope plan: {exc}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace, say: Any) -> int:
    duration_s = parse_duration(args.duration)
    if not 0 < duration_s <= 3600:
        raise PlanError(f"--duration must be in (0, 1h], got {args.duration!r}")
    _check_numbers(args)
    if args.fleet_rpm is not None and args.slo_p95 is None:
        raise PlanError("--fleet-rpm needs --slo-p95 (the objective the fleet must hold), e.g. --slo-p95 200ms")
    question = _question(args) if args.fleet_rpm is not None else None
    replay = arrivals.replay(args.replay) if args.replay else None
    replica = replica_from_args(args, replay.mix if replay else None)
    traffic = Traffic("on_off", args.cv2, args.on_s) if args.arrivals == "on-off" else Traffic()
    say(f"servoscope plan: {report.describe_replica(replica)}; {traffic.describe()} arrivals")
    sat = saturation(replica, duration_s, args.seed)
    say(f"saturation: {sat:.1f} req/s (service bound {replica.bound_per_s():.1f}); the P95 curve:")
    points, knee_ = knee(replica, traffic, sat, duration_s, args.seed, args.knee_k, say)
    out: dict[str, Any] = {
        "replica": report.replica_json(replica),
        "saturation_per_s": sat,
        "traffic": traffic.describe(),
    }
    lines = report.curve_lines(sat, knee_, points)
    out["knee"] = report.knee_json(knee_)
    out["curve"] = [report.point_json(p) for p in points]
    if replay is not None:
        result = replica.simulate(replay.times, args.seed)
        summary = summarize(result, warmup_s=warmup_s(float(replay.times[-1])))
        lines += report.summary_lines(summary, sat, f"replay of {replay.source}")
        lines += report.phase_lines(result, replay.phases, sat)
        out["at_load"] = summary.to_json()
    elif args.rate is not None:
        summary = at_rate(replica, traffic, args.rate, duration_s, args.seed)
        lines += report.summary_lines(summary, sat, f"{args.rate:g} req/s")
        out["at_load"] = summary.to_json()
    plan = None
    if question is not None:
        q = question
        say(f"the fleet: {q.fleet_rpm:g} req/min, P95 ≤ {q.slo_p95_ms:g} ms, growth {100 * q.growth:+g}%")
        plan = fleet.plan_fleet(replica, q, sat, knee_, duration_s, args.seed, say, traffic)
        lines += report.fleet_lines(plan, replica)
        out["fleet"] = report.fleet_json(plan)
    print("\n".join(lines))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(_finite(out), indent=1) + "\n")
        say(f"figures: {args.json}")
    if args.plot:
        say(f"plot: {report.plot(points, sat, knee_, plan, args.plot)}")
    return 0


def _check_numbers(args: argparse.Namespace) -> None:
    """Numbers that must be positive and finite, checked before any simulation."""
    given = {"--rate": args.rate, "--knee-k": args.knee_k, "--on-s": args.on_s}
    for flag, value in given.items():
        if value is not None and not (value > 0 and math.isfinite(value)):
            raise PlanError(f"{flag} must be a positive number, got {value}")
    if args.arrivals == "on-off" and not (args.cv2 > 1 and math.isfinite(args.cv2)):
        raise PlanError(f"--cv2 of on-off arrivals must be > 1 (1 is Poisson), got {args.cv2}")


def _question(args: argparse.Namespace) -> fleet.Question:
    burst = words.burst(args.burst) if args.burst else (1.0, 0.0)
    return fleet.Question(
        args.fleet_rpm, 1000 * words.seconds(args.slo_p95), words.percent(args.growth), *burst, args.replicas
    )
