"""Overload: goodput and latency at 1×, 2× and 4× the saturation rate, with and without admission
control, side by side in one run.

    python bench/overload.py              # ~4 minutes
    python bench/overload.py --quick      # ~2 minutes
    python bench/overload.py --rounds 5   # + 4 paired rounds of saturation and --mode (time) at 4×, ~2.5 minutes more

The 4× figure is a ratio of two measurements, and on a shared machine the saturation alone moves
by ±5% from one minute to the next. ``--rounds N`` measures it N times, each round a fresh
saturation followed at once by the 4× window of ``--mode``, and states the median of the N ratios.

For each mode (time admission — the default, given the SLO as its objective —, the adaptive limit,
and no admission control: a static limit of 100 000 pending, i.e. queue forever) and each load factor,
a fresh `servoscope serve` takes an open-loop Poisson load for the window. Printed per run: goodput
(answered 200 within the SLO, per second), P95/P99 of the admitted requests (200s), the refused share
(429/503), and other errors, over the window less its first WARMUP_S seconds (the adaptive limit starts high and
learns from the first answers; that transient is excluded, and stated). The SLO defaults to
2 × the P95 measured at 70% load, the bound the admitted P95 should keep under 4× overload.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
from typing import Any

from serve import RESULTS, ROOT, Windows, classify_requests, progress, saturation, server, servoscope_argv
from servoscope.loadgen import open_loop, poisson_arrivals, run
from servoscope.loadgen.cpu import CpuMeter
from servoscope.loadgen.images import image_set
from servoscope.loadgen.schedule import percentile

MODES = {
    "time": ("--admission", "time"),
    "adaptive": ("--admission", "adaptive"),
    "none": ("--admission", "static", "--max-pending", "100000"),
}
FACTORS = (1.0, 2.0, 4.0)
REFUSED = {429, 503}
WARMUP_S = 2.0  # not counted: a fresh service learns its limit from the first answers


def window(mode: str, rate: float, images: list[bytes], duration_s: float, slo_s: float) -> dict[str, Any]:
    flags = (*MODES[mode], "--slo-p95-ms", f"{1000 * slo_s:.1f}") if mode == "time" else MODES[mode]
    with server(f"{mode} {rate:.0f}/s", servoscope_argv(flags), RESULTS / f"overload-{mode}.log") as (endpoint, pid):
        requests = classify_requests(endpoint, images)
        meter = CpuMeter([os.getpid(), pid])
        meter.start()
        result = run(open_loop(endpoint, requests, poisson_arrivals(rate, duration_s, seed=11), timeout_s=120.0))
        use = meter.stop()
    t0 = result.start
    samples = [
        s for s in result.samples if s.scheduled - t0 >= WARMUP_S
    ]  # steady state: the first seconds set the limit
    ok = [s.done - s.scheduled for s in samples if s.status == 200]
    refused = sum(1 for s in samples if s.status in REFUSED)
    other = len(samples) - len(ok) - refused
    row = {
        "mode": mode,
        "offered_per_s": rate,
        "requests": len(samples),
        "goodput_per_s": sum(1 for latency in ok if latency <= slo_s) / (duration_s - WARMUP_S),
        "admitted_p95_ms": 1000 * percentile(ok, 95) if ok else math.nan,
        "admitted_p99_ms": 1000 * percentile(ok, 99) if ok else math.nan,
        "refused_share": refused / max(1, len(samples)),
        "errors": other,
        "sender_late": result.sender_late_count,
    }
    progress(
        f"  {mode:>8} at {rate:6.1f}/s: goodput {row['goodput_per_s']:6.1f}/s, admitted p95 "
        f"{row['admitted_p95_ms']:7.1f} ms "
        f"p99 {row['admitted_p99_ms']:7.1f} ms, refused {100 * row['refused_share']:4.1f}%, errors {other}; "
        f"{use.note()}"
    )
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--duration", type=float, help="seconds per overload window (default 10, quick 5)")
    parser.add_argument("--slo-ms", type=float, help="latency SLO for goodput (default 2 × P95 at 70%% load)")
    parser.add_argument("--set", default="small")
    parser.add_argument(
        "--rounds", type=int, default=1, help="paired rounds of saturation and --mode at 4× (default 1)"
    )
    parser.add_argument(
        "--mode", choices=sorted(MODES), default="time", help="the mode of the paired rounds (default time)"
    )
    args = parser.parse_args()
    duration = args.duration or (5.0 if args.quick else 10.0)
    if not 1 <= duration <= 120:
        parser.error("--duration must be 1..120 s")
    if not 1 <= args.rounds <= 20:
        parser.error("--rounds must be 1..20")
    images = image_set(args.set, RESULTS / "images")
    windows = Windows.from_duration(duration / 2)
    # Saturation is measured without admission control: a closed loop against refusals measures
    # how fast clients are refused, not how fast the service serves.
    with server("capacity", servoscope_argv(MODES["none"]), RESULTS / "overload-capacity.log") as (endpoint, pid):
        saturated = saturation(endpoint, pid, images, windows, "capacity")["requests_per_s"]
        requests = classify_requests(endpoint, images)
        reference = run(open_loop(endpoint, requests, poisson_arrivals(0.7 * saturated, duration, seed=5)))
    ref_ok = [s.done - s.scheduled for s in reference.samples if s.status == 200]
    p95_70 = percentile(ref_ok, 95)
    slo_s = args.slo_ms / 1000 if args.slo_ms else 2 * p95_70
    progress(f"saturation {saturated:.1f} req/s; P95 at 70% load {1000 * p95_70:.1f} ms; SLO {1000 * slo_s:.0f} ms")
    rows = [window(mode, factor * saturated, images, duration, slo_s) for mode in MODES for factor in FACTORS]
    print(
        f"\n{args.set} images; saturation {saturated:.1f} req/s; P95 at 70% {1000 * p95_70:.1f} ms; SLO "
        f"{1000 * slo_s:.0f} ms; "
        f"each window {duration:g} s, the first {WARMUP_S:g} s not counted"
    )
    print(
        f"{'mode':<9} {'load':>5} {'goodput/s':>10} {'÷ sat':>6} {'p95 ms':>8} {'p99 ms':>8} {'refused':>8} "
        f"{'errors':>7}"
    )
    for row in rows:
        print(
            f"{row['mode']:<9} {row['offered_per_s'] / saturated:4.0f}× {row['goodput_per_s']:10.1f} "
            f"{row['goodput_per_s'] / saturated:6.2f} {row['admitted_p95_ms']:8.1f} {row['admitted_p99_ms']:8.1f} "
            f"{100 * row['refused_share']:7.1f}% {row['errors']:7d}"
        )
    at4 = next(r for r in rows if r["mode"] == args.mode and r["offered_per_s"] == 4 * saturated)
    rounds = [{"saturation_per_s": saturated, **at4}]
    for n in range(2, args.rounds + 1):
        progress(f"round {n} of {args.rounds}: saturation, then {args.mode} at 4×")
        with server("capacity", servoscope_argv(MODES["none"]), RESULTS / "overload-capacity.log") as (endpoint, pid):
            again = saturation(endpoint, pid, images, windows, "capacity")["requests_per_s"]
        rounds.append({"saturation_per_s": again, **window(args.mode, 4 * again, images, duration, slo_s)})
    goodput = [r["goodput_per_s"] / r["saturation_per_s"] for r in rounds]
    p95 = [r["admitted_p95_ms"] / (1000 * p95_70) for r in rounds]
    if len(rounds) > 1:
        print(f"\n{'round':>5} {'saturation/s':>13} {'goodput/s':>10} {'÷ sat':>6} {'p95 ÷ P95@70%':>14}")
        for i, (r, g, p) in enumerate(zip(rounds, goodput, p95), 1):
            print(f"{i:>5} {r['saturation_per_s']:13.1f} {r['goodput_per_s']:10.1f} {g:6.2f} {p:14.2f}")
    print(
        f"\n{args.mode} at 4×: goodput {statistics.median(goodput):.2f} × saturation (target ≥ 0.90); "
        f"admitted P95 {statistics.median(p95):.2f} × P95 at 70% (target ≤ 2)"
        + (
            f" — medians of {len(rounds)} paired rounds, goodput {min(goodput):.2f}–{max(goodput):.2f}"
            if len(rounds) > 1
            else ""
        )
    )
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "overload.json").write_text(
        json.dumps(
            {
                "saturation_per_s": saturated,
                "p95_70_ms": 1000 * p95_70,
                "slo_ms": 1000 * slo_s,
                "rows": rows,
                "rounds_at_4x": rounds,
            },
            indent=2,
        )
    )
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.exit(main())
