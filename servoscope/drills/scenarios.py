"""The drill scenarios: each states its baseline, the one thing it changes, and the stage that
should show it. Rates come from a measured capacity run, so each drill means the same on any machine."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass

import psutil

from servoscope.drills.neighbours import NeighbourSpec, memory_target_bytes
from servoscope.drills.slowclient import Reader
from servoscope.drills.traffic import Capacity, Traffic
from servoscope.resources import available_cores
from servoscope.stages import TOTAL, Stage

SMALL: tuple[tuple[str, float], ...] = (("small", 1.0),)
PHONE: tuple[tuple[str, float], ...] = (("phone", 1.0),)
DRIFTED: tuple[tuple[str, float], ...] = (("small", 0.7), ("phone", 0.3))
# Every drill's stated baseline: static admission (max_pending alone). The adaptive limit would
# turn a latency degradation into 429s, a different symptom; the drills reproduce latency.
BASELINE_FLAGS: tuple[str, ...] = ("--admission", "static")


MIN_WINDOW_REQUESTS = 200  # per window: the doctor asks for 100 answered, with room for warm-up
MAX_STRETCHED_WINDOW_S = 40.0  # a window (and the service's start) must still fit the 1 min stats window


@dataclass(frozen=True, slots=True)
class Context:
    """What a scenario knows when it degrades: the capacity run, the baseline window, the drill form."""

    capacity: Capacity
    baseline: Traffic
    baseline_stage_p95_s: dict[str, float]
    short: bool
    window_s: float


@dataclass(frozen=True, slots=True)
class Degradation:
    what: str  # one sentence: what changed
    parameter: str
    baseline_value: str
    degraded_value: str
    flags: tuple[str, ...] = ()  # the degraded service's flags (the baseline's when empty and same_config)
    traffic: Traffic | None = None  # None: the baseline traffic again
    neighbours: tuple[NeighbourSpec, ...] = ()
    injected: bool = False  # a fault injected in servoscope itself (drills/faults.py)
    same_config: bool = True  # the degraded service runs the baseline flags


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    changes: str  # for --list: what it changes
    stage: str  # the stage the report should show rising (server-side, or "client:…")
    why: str  # for --list: why that stage
    degrade: Callable[[Context], Degradation]
    mix: tuple[tuple[str, float], ...] = SMALL
    load_fraction: float = 0.55  # baseline rate as a share of the measured capacity
    baseline_flags: tuple[str, ...] = BASELINE_FLAGS
    slow_share: float = 0.0
    slow_top_k: int = 5
    placed: bool = False  # baseline placed by the planner (drills/placement.py), not a fixed share

    def baseline_traffic(self, capacity: Capacity, window_s: float) -> Traffic:
        rate = capacity.placed_rps if self.placed else max(1.0, self.load_fraction * capacity.max_rps)
        # a slow mix (phone photos) gets a longer window: the doctor needs enough answers in each
        window_s = max(window_s, min(MIN_WINDOW_REQUESTS / rate, MAX_STRETCHED_WINDOW_S))
        return Traffic(self.mix, rate, window_s, slow_share=self.slow_share, slow_top_k=self.slow_top_k)


def _growth(ctx: Context) -> Degradation:
    t = dataclasses.replace(ctx.baseline, rate_per_s=ctx.baseline.rate_per_s * 1.15)
    placed = ctx.capacity.placement or {}
    return Degradation(
        f"request rate +15% from a baseline the planner placed at {placed.get('fraction', math.nan):.2f} of "
        f"saturation, where +15% crosses the knee ({placed.get('knee_fraction', math.nan):.2f}; closed-loop "
        f"capacity {ctx.capacity.max_rps:.1f} req/s)",
        "rate_per_s",
        f"{ctx.baseline.rate_per_s:.1f}",
        f"{t.rate_per_s:.1f}",
        traffic=t,
    )


def _drift(ctx: Context) -> Degradation:
    t = dataclasses.replace(ctx.baseline, mix=DRIFTED)
    return Degradation(
        "upload mix shifts to larger images: 30% phone photos 4032×3024 (~3 MB) among 320×240 thumbnails",
        "image mix",
        "100% small 320×240",
        "70% small 320×240 + 30% phone 4032×3024",
        traffic=t,
    )


def _cpu(ctx: Context) -> Degradation:
    cores = available_cores()
    seconds = ctx.window_s + 60
    return Degradation(
        f"{cores} busy-loop processes (one per core, normal priority) beside the service",
        "neighbour CPU burners",
        "0",
        str(cores),
        neighbours=tuple(NeighbourSpec("cpu", seconds) for _ in range(cores)),
    )


def _batching(ctx: Context) -> Degradation:
    return Degradation(
        "batcher delay set far too high: max_queue_delay 200 ms with max_batch_size 64",
        "max_queue_delay_ms / max_batch_size",
        "0 / 4 (model config)",
        "200 / 64",
        flags=("--max-queue-delay-ms", "200", "--max-batch-size", "64"),
        same_config=False,
    )


def _slow_inference(ctx: Context) -> Degradation:
    base = ctx.baseline_stage_p95_s.get(Stage.INFERENCE, 0.01)
    delay_ms = round(max(20.0, 3000 * base))
    return Degradation(
        f"INJECTED fault: +{delay_ms} ms per inference batch, slept in each instance's thread "
        "(3× baseline inference P95, at least 20 ms)",
        "faults.inference_delay_s",
        "0",
        f"{delay_ms / 1000:g}",
        flags=("--inject-inference-delay-ms", str(delay_ms)),
        injected=True,
        same_config=False,
    )


def _starvation(ctx: Context) -> Degradation:
    cores = available_cores()
    return Degradation(
        f"preprocess workers cut to 1 (from {cores}, one per core) under a phone-photo load",
        "preprocess_workers",
        f"{cores} (one per core)",
        "1",
        flags=("--preprocess-workers", "1"),
        same_config=False,
    )


def _memory(ctx: Context) -> Degradation:
    available = psutil.virtual_memory().available
    nbytes = memory_target_bytes(available, 0.3 if ctx.short else 0.75)  # short: quicker to allocate
    gib = 1024**3
    return Degradation(
        f"a neighbour process holds {nbytes / gib:.1f} GiB of the {available / gib:.1f} GiB available "
        "(≥ 4 GiB always left free) and keeps sweeping over its pages",
        "memory held by a neighbour",
        "0 GiB",
        f"{nbytes / gib:.1f} GiB",
        neighbours=(NeighbourSpec("memory", ctx.window_s + 90, nbytes),),
    )


SLOW_READER = Reader(chunk_bytes=1024, pause_s=0.01, rcvbuf_bytes=4096)


def _slow_clients(ctx: Context) -> Degradation:
    t = dataclasses.replace(ctx.baseline, reader=SLOW_READER)
    return Degradation(
        f"{100 * ctx.baseline.slow_share:g}% of clients (asking top_k {ctx.baseline.slow_top_k}, ~60 KB answers) "
        f"now {SLOW_READER.describe()}",
        "slow-reading clients",
        "0%",
        f"{100 * ctx.baseline.slow_share:g}%",
        traffic=t,
    )


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario(
            "traffic-growth",
            "request rate +15% from a baseline the planner places so that +15% crosses the knee",
            TOTAL,
            "queues form everywhere once the rate nears capacity: total (and the queues) rise",
            _growth,
            placed=True,
        ),
        Scenario(
            "image-drift",
            "upload mix shifts from 320×240 thumbnails to 30% phone photos (4032×3024)",
            Stage.PREPROCESS,
            "decoding a 12 MP JPEG costs far more than a thumbnail: preprocess (then queue) rise",
            _drift,
            load_fraction=0.4,
        ),
        Scenario(
            "cpu-contention",
            "one busy-loop process per core, normal priority, beside the service",
            Stage.INFERENCE,
            "inference and decode threads get a share of the cores: inference (and batch_wait) rise",
            _cpu,
        ),
        Scenario(
            "batching-misconfig",
            "batcher max_queue_delay 200 ms with max_batch_size 64 (baseline: the model's 0 ms / 4)",
            Stage.BATCH_WAIT,
            "requests sit in the batcher waiting for company: batch_wait rises",
            _batching,
        ),
        Scenario(
            "slow-inference",
            "INJECTED inference delay per batch (stands in for a throttled or shared accelerator)",
            Stage.INFERENCE,
            "the instance is busy longer per batch: inference (and batch_wait) rise",
            _slow_inference,
        ),
        Scenario(
            "preprocess-starvation",
            "preprocess workers cut to 1 under a phone-photo load",
            Stage.PREPROCESS_WAIT,
            "requests wait for the one decode worker: queue rises",
            _starvation,
            mix=PHONE,
            load_fraction=0.8,
        ),
        Scenario(
            "memory-pressure",
            "a neighbour holds most of the available memory (never all but 4 GiB) and keeps touching it",
            TOTAL,
            "no swap here: the squeeze shows as memory-bandwidth and CPU contention, a little in every "
            "stage (queue, batch_wait, inference): total rises",
            _memory,
        ),
        Scenario(
            "slow-clients",
            "25% of clients (top_k 1000, ~60 KB answers) read slowly through a 4 KB receive buffer",
            "client:delivery",
            "the answer leaves the server at once (kernel buffers hold it): only the client-side "
            "delivery time (client latency − server total) rises",
            _slow_clients,
            slow_share=0.25,
            slow_top_k=1000,
        ),
    )
}
