"""Compare `servoscope serve` configurations side by side, in one run: saturation throughput,
unloaded latency, and P50/P95 under open-loop load at 70% of each configuration's own saturation.

    python bench/sweep.py --config "" --config "--instances 2 --intra-op-threads 1"
    python bench/sweep.py --set phone --duration 5 --config "--preprocess-workers 1" --config ""

Each --config is a string of serve flags (empty: the defaults). Figures go to
bench/results/sweep.json. This is how the defaults in servoscope.resources were chosen.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys

from serve import CAPACITY_FLAGS, RESULTS, ROOT, Windows, latency_profile, progress, saturation, server, servoscope_argv
from servoscope.loadgen.images import image_set


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", action="append", required=True, help="serve flags of one configuration")
    parser.add_argument("--set", default="small", help="image set: small or phone")
    parser.add_argument("--duration", type=float, default=4.0, help="closed-loop window, seconds")
    args = parser.parse_args()
    if not 1 <= args.duration <= 120 or len(args.config) > 12:
        parser.error("--duration must be 1..120 s, and at most 12 configurations")
    windows = Windows.from_duration(args.duration)
    images = image_set(args.set, RESULTS / "images")
    rows = []
    for i, config in enumerate(args.config):
        flags = tuple(shlex.split(config))
        progress(f"config {i}: {config or '(defaults)'}")
        with server(f"config {i}", servoscope_argv(CAPACITY_FLAGS + flags), RESULTS / f"sweep-{i}.log") as (
            endpoint,
            pid,
        ):
            service = saturation(endpoint, pid, images, windows, f"config {i}")
            latency = latency_profile(endpoint, pid, images, service["requests_per_s"], windows)
        rows.append({"config": config, "service": service, "latency": latency})
    print(f"\n{args.set} images; closed loop best of C=16/64; open loop at 70% of each one's saturation")
    print(f"{'config':<60} {'req/s':>7} {'unloaded':>9} {'p50@70%':>8} {'p95@70%':>8} {'p95/unl':>7}")
    for row in rows:
        unloaded = row["latency"]["unloaded"]["p50_ms"]
        loaded = row["latency"]["loaded"]
        print(
            f"{row['config'] or '(defaults)':<60} {row['service']['requests_per_s']:7.1f} {unloaded:9.1f} "
            f"{loaded['p50_ms']:8.1f} {loaded['p95_ms']:8.1f} {loaded['p95_ms'] / unloaded:7.2f}"
        )
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "sweep.json").write_text(json.dumps({"set": args.set, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.exit(main())
