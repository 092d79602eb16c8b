"""Instance isolation: servoscope's saturation throughput with each model instance's session in the
serving process (``thread``) and in a child process of its own (``process``), side by side in one run.

Both servers start once and stay up (an idle one costs nothing: ONNX Runtime does not spin); the
measurement windows alternate between them (thread, process, process, thread …) so that drift on a
shared machine falls on both alike. The figure is the ratio of the medians, process / thread.

    python bench/isolation.py            # ~1.5 minutes
    python bench/isolation.py --rounds 2 --duration 5
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

from serve import CAPACITY_FLAGS, RESULTS, ROOT, classify_requests, progress, server, servoscope_argv
from servoscope.loadgen import Endpoint, closed_loop, run, summarize
from servoscope.loadgen.cpu import CpuMeter
from servoscope.loadgen.images import image_set

CONCURRENCY = 16
MODES = ("thread", "process")


def measure(mode: str, endpoint: Endpoint, pid: int, images: list[bytes], duration_s: float) -> dict[str, Any]:
    requests = classify_requests(endpoint, images)
    meter = CpuMeter([os.getpid(), pid, *children(pid)])
    meter.start()
    summary = summarize(run(closed_loop(endpoint, requests, CONCURRENCY, duration_s)))
    use = meter.stop()
    progress(
        f"  {mode:>7}: {summary.throughput_rps:7.1f} req/s, p50 {summary.p50_ms:6.1f} ms, "
        f"p95 {summary.p95_ms:6.1f} ms, "
        f"errors {summary.errors}; {use.note()}"
    )
    if summary.errors:
        raise RuntimeError(f"{summary.errors} errors with {mode} isolation")
    return {**summary.to_json(), "cpu": use.to_json()}


def children(pid: int) -> list[int]:
    """The server's child processes (its instances, in process isolation), for the CPU meter."""
    with contextlib.suppress(OSError):
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    return []


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="pairs of windows (thread, process)")
    parser.add_argument("--duration", type=float, default=8.0, help="seconds per window")
    parser.add_argument("--set", default="small", help="image set: small or phone")
    args = parser.parse_args()
    if not 1 <= args.rounds <= 20 or not 1 <= args.duration <= 120:
        parser.error("--rounds must be 1..20 and --duration 1..120 s")
    images = image_set(args.set, RESULTS / "images")
    windows: dict[str, list[dict[str, Any]]] = {mode: [] for mode in MODES}
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        endpoints = {}
        for mode in MODES:
            config = Path(tmp) / f"{mode}.toml"
            config.write_text(f'[model_overrides]\nisolation = "{mode}"\n')
            argv = servoscope_argv((*CAPACITY_FLAGS, "--config", str(config)))
            endpoints[mode] = stack.enter_context(
                server(f"servoscope {mode} isolation", argv, RESULTS / f"isolation-{mode}.log")
            )
        for endpoint, _ in endpoints.values():  # warm-up, each alone
            run(closed_loop(endpoint, classify_requests(endpoint, images), CONCURRENCY, max(1.0, args.duration / 4)))
        for i in range(args.rounds):
            for mode in MODES if i % 2 == 0 else MODES[::-1]:
                endpoint, pid = endpoints[mode]
                windows[mode].append(measure(mode, endpoint, pid, images, args.duration))
    rates = {mode: [w["throughput_rps"] for w in windows[mode]] for mode in MODES}
    medians = {mode: statistics.median(rates[mode]) for mode in MODES}
    ratio = medians["process"] / medians["thread"]
    print(f"\nsaturation, {args.set} images, C={CONCURRENCY}, median of {args.rounds} windows of {args.duration:g}s:")
    for mode in MODES:
        print(f"  {mode:>7} isolation: {medians[mode]:7.1f} req/s   {[round(r, 1) for r in rates[mode]]}")
    print(f"  process / thread = {ratio:.3f}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    report = {
        "set": args.set,
        "concurrency": CONCURRENCY,
        "windows": windows,
        "medians": medians,
        "process_over_thread": ratio,
    }
    (RESULTS / "isolation.json").write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.exit(main())
