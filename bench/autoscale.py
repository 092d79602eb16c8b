"""Autoscaling on the objective against the defaults (issue #19, item 3), in simulation.

Every policy (servoscope's; HPA, KEDA, Knative's KPA and Ray Serve as their defaults behave)
runs the same arrivals through the planner's simulator extended to a fleet whose replica count
changes (servoscope.fleet.autoscale): a +15% step, a 3x spike for 60 s, a diurnal ramp and a
steady hour, at the issue's 10,000 req/min, for each replica start-up delay asked for. It prints,
per trace and policy: objective-violation seconds, replica-seconds and scaling-direction
reversals an hour, then servoscope's ratios against the best of the others.

    python bench/autoscale.py                 # start-up 10 s and 5 s: ~3 min of CPU (93 s each)
    python bench/autoscale.py --quick         # shorter traces, start-up 10 s: ~30 s
    python bench/autoscale.py --startup-s 30
    python bench/autoscale.py --profile profile.json    # a replica measured by `servoscope profile`
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from servoscope.fleet.autoscale import traces
from servoscope.fleet.autoscale.compare import (
    FLEET_RPM,
    OBJECTIVE_S,
    Row,
    compare,
    example_replica,
    profile_replica,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--startup-s", type=float, action="append", help="replica start-up delay (repeat; default 10 and 5)"
    )
    parser.add_argument("--quick", action="store_true", help="traces of 10 min (the steady one too)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--profile", type=Path, help="a `servoscope profile` file (default: a 2-core CPU replica's shape)"
    )
    args = parser.parse_args()
    chosen = (
        (traces.step(600), traces.spike(600), traces.diurnal(600), traces.steady(600))
        if args.quick
        else (traces.scenarios())
    )
    service, config, shares = profile_replica(args.profile) if args.profile else (*example_replica(), (1.0,))
    for startup_s in args.startup_s or ([10.0] if args.quick else [10.0, 5.0]):
        started = time.process_time()
        cap, rows = compare(chosen, startup_s, service, config, seed=args.seed, shares=shares)
        print(
            f"\nreplica start-up {startup_s:g} s; {FLEET_RPM:g} req/min; objective P95 {OBJECTIVE_S * 1000:g} ms; "
            f"one replica holds it to {cap.per_s:.1f} req/s ({cap.ongoing:.1f} in progress)"
        )
        print(f"{'trace':16} {'policy':30} {'violation s':>11} {'replica-s':>10} {'reversals/h':>11} {'peak':>5}")
        for row in rows:
            s = row.score
            print(
                f"{row.trace:16} {row.policy:30} {s.violation_s:11d} {s.replica_s:10.0f} "
                f"{s.reversals_per_h:11.1f} {s.peak_replicas:5d}"
            )
        verdict(rows)
        print(f"({time.process_time() - started:.0f} s of CPU)")


def verdict(rows: list[Row]) -> None:
    """servoscope against the best other policy, over all traces together."""
    totals: dict[str, list[float]] = {}
    for row in rows:
        t = totals.setdefault(row.policy, [0.0, 0.0])
        t[0] += row.score.violation_s
        t[1] += row.score.replica_s
    ours_v, ours_r = totals.pop("servoscope")
    best = min(totals, key=lambda p: (totals[p][0], totals[p][1]))
    best_v, best_r = totals[best]
    ratio = best_v / ours_v if ours_v else float("inf")
    print(
        f"all traces: servoscope {ours_v:.0f} violation s, {ours_r:.0f} replica-s; the best other, {best}: "
        f"{best_v:.0f} violation s ({ratio:.1f}x servoscope's), {best_r:.0f} replica-s "
        f"(servoscope uses {ours_r / best_r:.2f}x)"
    )
    for trace in dict.fromkeys(r.trace for r in rows):
        ours = next(r.score for r in rows if r.trace == trace and r.policy == "servoscope")
        other = min(
            (r for r in rows if r.trace == trace and r.policy != "servoscope"),
            key=lambda r: (r.score.violation_s, r.score.replica_s),
        )
        print(
            f"{trace}: servoscope {ours.violation_s} violation s, {ours.replica_s:.0f} replica-s; the best other, "
            f"{other.policy}: {other.score.violation_s}, {other.score.replica_s:.0f}"
        )
    steady = [r for r in rows if r.trace.startswith("steady") and r.policy == "servoscope"]
    if steady:
        print(f"steady: servoscope reverses {steady[0].score.reversals_per_h:.1f} times an hour")


if __name__ == "__main__":
    main()
