"""Record per-request latencies of this service once, for bench/canary.py's replays.

Starts ``servoscope serve`` on a free 127.0.0.1 port, sends an open-loop Poisson load of small
JPEGs through the load generator (bounded: ``--duration`` ≤ 60 s), stops the server, and saves
each answered request's total latency and per-stage durations (from ``Server-Timing``) to a
compressed ``.npz`` (microseconds, uint32)::

    python bench/canary_record.py                       # → bench/data/latency_sample.npz
    python bench/canary_record.py --rate 40 --duration 30
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

import numpy as np

from serve import ROOT, server, servoscope_argv

MAX_DURATION_S = 60.0
DEFAULT_OUT = Path(__file__).resolve().parent / "data" / "latency_sample.npz"


def record(rate: float, duration_s: float, out: Path) -> Path:
    from servoscope.loadgen import mixes, profiles
    from servoscope.loadgen.runner import LoadPlan, execute
    from servoscope.loadgen.targets import Target
    from servoscope.stages import STAGE_NAMES, parse_server_timing

    mix = mixes.generated(mixes.parse_mix("100%:320x240"), 0.0, ROOT / "bench" / "results" / "images")
    with server("servoscope", servoscope_argv(()), ROOT / "bench" / "results" / "canary_record.log") as (endpoint, _):
        plan = LoadPlan(endpoint, Target("v1"), mix, "open", profiles.constant(rate, duration_s), duration_s=duration_s)
        samples = asyncio.run(execute(plan)).result.samples
    answered = [s for s in samples if s.status]
    columns = {"status": np.array([s.status for s in answered], dtype=np.uint16)}
    columns["latency_us"] = np.array([round(s.latency_s * 1e6) for s in answered], dtype=np.uint32)
    stages = [parse_server_timing(s.server_timing) for s in answered]
    for name in STAGE_NAMES:
        columns[f"{name}_us"] = np.array([round(t.get(name, 0.0) * 1e6) for t in stages], dtype=np.uint32)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out, rate_per_s=np.float64(rate), **columns)
    ok = columns["status"] == 200
    p50, p95, p99 = np.percentile(columns["latency_us"][ok] / 1000.0, [50, 95, 99])
    print(
        f"{len(answered)} answered ({ok.sum()} ok) at {rate:g} req/s: P50 {p50:.1f} ms, P95 {p95:.1f} ms, "
        f"P99 {p99:.1f} ms → {out} ({out.stat().st_size / 1024:.0f} KiB)",
        file=sys.stderr,
    )
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=60.0, help="requests per second (open loop)")
    parser.add_argument("--duration", type=float, default=40.0, help=f"seconds of load, at most {MAX_DURATION_S:g}")
    parser.add_argument("-o", "--output", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    if not 0 < args.duration <= MAX_DURATION_S or args.rate <= 0:
        parser.error(f"--duration must be in (0, {MAX_DURATION_S:g}] and --rate > 0, got {args.duration}, {args.rate}")
    sys.path.insert(0, str(ROOT))
    record(args.rate, args.duration, args.output)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
