"""Telemetry overhead: servoscope's saturation throughput with telemetry on (tracing off) and
with all telemetry disabled, measured side by side in one run.

Windows alternate (on, off, on, off …) so that drift on a shared machine falls on both alike;
the figure is the ratio of the medians.

    python bench/telemetry.py            # ~2 minutes
    python bench/telemetry.py --rounds 2 --duration 5
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys

from serve import CAPACITY_FLAGS, RESULTS, ROOT, classify_requests, progress, server, servoscope_argv
from servoscope.loadgen import closed_loop, run, summarize
from servoscope.loadgen.cpu import CpuMeter
from servoscope.loadgen.images import image_set

CONCURRENCY = 16
MODES = {"on": ("--telemetry",), "off": ("--no-telemetry",)}


def measure(mode: str, images: list[bytes], duration_s: float) -> float:
    with server(
        f"servoscope telemetry {mode}", servoscope_argv(CAPACITY_FLAGS + MODES[mode]), RESULTS / f"telemetry-{mode}.log"
    ) as (endpoint, pid):
        requests = classify_requests(endpoint, images)
        run(closed_loop(endpoint, requests, CONCURRENCY, max(1.0, duration_s / 4)))  # warm-up
        meter = CpuMeter([os.getpid(), pid])
        meter.start()
        summary = summarize(run(closed_loop(endpoint, requests, CONCURRENCY, duration_s)))
        use = meter.stop()
    progress(f"  telemetry {mode:>3}: {summary.throughput_rps:7.1f} req/s, errors {summary.errors}; {use.note()}")
    if summary.errors:
        raise RuntimeError(f"{summary.errors} errors with telemetry {mode}")
    return summary.throughput_rps


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="pairs of windows (on, off)")
    parser.add_argument("--duration", type=float, default=8.0, help="seconds per window")
    parser.add_argument("--set", default="small", help="image set: small or phone")
    args = parser.parse_args()
    if not 1 <= args.rounds <= 20 or not 1 <= args.duration <= 120:
        parser.error("--rounds must be 1..20 and --duration 1..120 s")
    images = image_set(args.set, RESULTS / "images")
    rates: dict[str, list[float]] = {"on": [], "off": []}
    for i in range(args.rounds):
        order = ("on", "off") if i % 2 == 0 else ("off", "on")
        for mode in order:
            rates[mode].append(measure(mode, images, args.duration))
    on, off = statistics.median(rates["on"]), statistics.median(rates["off"])
    overhead = 1 - on / off
    print(f"\nsaturation, {args.set} images, C={CONCURRENCY}, median of {args.rounds} windows of {args.duration:g}s:")
    print(f"  telemetry on (tracing off): {on:7.1f} req/s   {rates['on']}")
    print(f"  telemetry off:              {off:7.1f} req/s   {rates['off']}")
    print(f"  on / off = {on / off:.3f}  → overhead {100 * overhead:.1f}%  (target ≤ 3%)")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "telemetry.json").write_text(
        json.dumps({"rates": rates, "on_over_off": on / off, "overhead": overhead}, indent=2)
    )
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.exit(main())
