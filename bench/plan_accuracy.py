"""The planner's fidelity: predicted against measured P95, P99 and saturation (issue #17's figures).

For each configuration (the machine's default; a batching change; an instance change; a thread
change) it measures a profile with the in-process pipeline (``servoscope profile``'s own code),
starts ``servoscope serve`` with the same settings, measures its saturation (closed loop, best
concurrency, as bench/serve.py), then for each arrival process (Poisson; on/off bursts, CV² 4)
and load (30/50/70/85/95% of the measured saturation) sends the *same* schedule to the server
(open loop, latency from the scheduled send times) and to the simulator, and prints the ratios.
Targets: P95 within ±10%, P99 within ±15%, saturation within ±5%.

HTTP ingest and respond are not in the in-process profile: they are taken from the server's
``Server-Timing`` means of a short warm-up run at 30% load before the measured loads.

    python bench/plan_accuracy.py --smoke       # one configuration, one load, Poisson: under a minute
    python bench/plan_accuracy.py               # 4 configurations × 2 arrival processes × 5 loads: long

Figures to stdout and bench/results/plan_accuracy.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from serve import RESULTS, ROOT, Windows, classify_requests, progress, saturation, server, servoscope_argv
from servoscope.loadgen import open_loop, run, summarize
from servoscope.loadgen.images import image_set
from servoscope.loadgen.mixes import Mix, MixImage
from servoscope.models.repository import find
from servoscope.planner import arrivals, measure, plan
from servoscope.planner import profile as pf
from servoscope.planner.service import from_family
from servoscope.planner.sim import SimConfig
from servoscope.resources import plan_threads
from servoscope.stages import Stage

MODEL = "efficientnet_lite0"
LOADS = (0.3, 0.5, 0.7, 0.85, 0.95)
BURSTY_CV2 = 4.0


@dataclass(frozen=True)
class Config:
    name: str
    instances: int
    threads: int
    max_batch_size: int
    delay_ms: float

    def flags(self) -> tuple[str, ...]:
        return (
            "--admission",
            "static",
            "--instances",
            str(self.instances),
            "--intra-op-threads",
            str(self.threads),
            "--max-batch-size",
            str(self.max_batch_size),
            "--max-queue-delay-ms",
            f"{self.delay_ms:g}",
        )


def configs(smoke: bool) -> list[Config]:
    base = plan_threads()
    default = Config("default", base.instances, base.intra_op_threads, 4, 0.0)
    if smoke:
        return [default]
    return [
        default,
        Config("batching", base.instances, base.intra_op_threads, 8, 5.0),
        Config("instances", max(1, base.instances // 2), base.intra_op_threads, 4, 0.0),
        Config("threads", 1, max(1, base.instances * base.intra_op_threads), 4, 0.0),
    ]


def profile_replica(config: Config, images: list[bytes], seconds: float) -> plan.Replica:
    entry = find(ROOT / "models", MODEL)
    spec = measure.Spec(
        config.instances,
        config.threads,
        plan_threads().preprocess_workers,
        config.max_batch_size,
        config.delay_ms / 1000,
    )
    mix = Mix(
        tuple(MixImage(b, "image/jpeg", "small.jpeg") for b in images), tuple(1 / len(images) for _ in images), "small"
    )
    samples = asyncio.run(measure.measure_pipeline(measure.build(entry, spec), spec, mix, seconds, 0, progress))
    family = measure.family(spec, samples, measure.size_classes(mix))
    service = from_family(family, pf.Overheads(), config.max_batch_size)
    return plan.Replica(
        service, SimConfig(spec.preprocess_workers, spec.instances, family.batching), (1.0,), spec.intra_op_threads
    )


def with_http(replica: plan.Replica, stage_means_ms: dict[str, float]) -> plan.Replica:
    service = replica.service
    overheads = {
        "ingest_s": stage_means_ms.get(Stage.INGEST, 0.0) / 1000,
        "respond_s": stage_means_ms.get(Stage.RESPOND, 0.0) / 1000,
    }
    return replace(replica, service=replace(service, **overheads))


def schedule(kind: str, rate: float, duration_s: float, seed: int) -> np.ndarray:
    if kind == "poisson":
        return arrivals.poisson(rate, duration_s, seed)
    return arrivals.on_off(rate, BURSTY_CV2, duration_s, seed)


def bench_config(
    config: Config, images: list[bytes], windows: Windows, kinds: tuple[str, ...], loads: tuple[float, ...]
) -> dict[str, Any]:
    progress(f"{config.name}: profile ({windows.offline_s:g} s)")
    replica = profile_replica(config, images, windows.offline_s)
    predicted_sat = plan.saturation(replica)
    rows = []
    with server(config.name, servoscope_argv(config.flags()), RESULTS / f"plan_accuracy-{config.name}.log") as (
        endpoint,
        pid,
    ):
        measured_sat = saturation(endpoint, pid, images, windows, config.name)["requests_per_s"]
        requests = classify_requests(endpoint, images)
        warm = summarize(
            run(open_loop(endpoint, requests, arrivals.poisson(0.3 * measured_sat, windows.warmup_s, 1).tolist()))
        )
        replica = with_http(replica, warm.server_stage_mean_ms)
        for kind in kinds:
            for load in loads:
                offsets = schedule(kind, load * measured_sat, windows.open_s, seed=11)
                real = summarize(run(open_loop(endpoint, requests, offsets.tolist())))
                sim = replica.run(offsets, seed=11)
                row = {
                    "arrivals": kind,
                    "load": load,
                    "measured": real.to_json(),
                    "predicted": sim.to_json(),
                    "p95_ratio": sim.p95_ms / real.p95_ms,
                    "p99_ratio": sim.p99_ms / real.p99_ms,
                }
                progress(
                    f"  {kind:8} {100 * load:3.0f}%: P95 measured {real.p95_ms:7.1f} predicted {sim.p95_ms:7.1f} "
                    f"(×{row['p95_ratio']:.2f}); P99 {real.p99_ms:7.1f} / {sim.p99_ms:7.1f} (×{row['p99_ratio']:.2f})"
                )
                rows.append(row)
    progress(
        f"{config.name}: saturation measured {measured_sat:.1f}, predicted {predicted_sat:.1f} "
        f"(×{predicted_sat / measured_sat:.2f})"
    )
    return {
        "config": config.__dict__,
        "saturation": {"measured": measured_sat, "predicted": predicted_sat},
        "rows": rows,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--smoke", action="store_true", help="one configuration, one load (50%%), Poisson, short windows"
    )
    parser.add_argument("--duration", type=float, default=20.0, help="the windows' base length, seconds (default 20)")
    args = parser.parse_args()
    windows = Windows.from_duration(5.0 if args.smoke else args.duration)
    kinds = ("poisson",) if args.smoke else ("poisson", "on-off")
    loads = (0.5,) if args.smoke else LOADS
    images = image_set("small", RESULTS / "images")
    results = [bench_config(c, images, windows, kinds, loads) for c in configs(args.smoke)]
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / "plan_accuracy.json"
    out.write_text(json.dumps({"smoke": args.smoke, "results": results}, indent=1, default=float) + "\n")
    progress(f"figures: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
