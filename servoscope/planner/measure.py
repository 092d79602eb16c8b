"""``servoscope profile``: measure a profile on this machine with the in-process pipeline.

For each configuration family (instances × intra-op threads) it builds the service's own pipeline
(build_pipeline: the preprocess pool, the batcher, the instances) and drives it in a closed loop
at rising concurrency (1, 2, 4 … up to two full batches per instance), so the batches come in every
size the batcher makes and every stage runs beside the others, as under load. It measures nothing
itself: the pipeline's own online service-time model (:mod:`servoscope.pipeline.cost`, what time
admission predicts with) learns from each answered request's :class:`~servoscope.stages.Timing`
as in the server, and keeps the samples behind its means (:class:`~servoscope.pipeline.cost.Kept`):
``inference`` and ``postprocess`` by batch size, ``preprocess`` by the image's pixels (each image-size
class of the mix is its pixels). Only the hand-off between one instance's consecutive batches, which
the cost model does not learn, comes from the :class:`~servoscope.stages.BatchRecord` s. Ingest and
respond happen in HTTP, outside the pipeline: they are fixed overheads given by flags.

At most 60 s per family.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import io
import itertools
import math
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PIL import Image

from servoscope.clock import SYSTEM_CLOCK
from servoscope.loadgen.command import DEFAULT_CACHE, DEFAULT_MIX
from servoscope.loadgen.mixes import Mix, generated, parse_mix
from servoscope.models.config import BatchingConfig, ModelConfigError, ModelOverrides
from servoscope.models.repository import ModelEntry, find
from servoscope.pipeline.admission import AdmissionPolicy
from servoscope.pipeline.cost import Kept
from servoscope.pipeline.decode import DecodeLimits
from servoscope.pipeline.service import ModelService, Pipeline, build_pipeline
from servoscope.planner import profile as pf
from servoscope.planner import words
from servoscope.planner.words import mix_classes
from servoscope.planner.words import seconds as parse_seconds
from servoscope.resources import available_cores, plan_threads
from servoscope.stages import BatchRecord, Stage, Timing

MAX_FAMILY_S = 60.0
MAX_LEVEL = 256
Say = Callable[[str], None]


@dataclasses.dataclass(frozen=True)
class Spec:
    instances: int
    intra_op_threads: int
    preprocess_workers: int
    max_batch_size: int
    max_queue_delay_s: float


@dataclasses.dataclass
class Samples:
    """What a profile run leaves: the service's cost model (its samples kept) and the batch records."""

    cost: Kept = dataclasses.field(default_factory=Kept)
    records: list[BatchRecord] = dataclasses.field(default_factory=list)

    def batch(self, record: BatchRecord) -> None:
        self.records.append(record)

    @property
    def batches(self) -> int:
        return len(self.records)

    def handoffs(self) -> list[float]:
        """Each instance's gaps from a batch finishing to its next starting, where the next batch's
        requests were already waiting when the first finished (the instance held, not idle)."""
        by_instance: dict[int, list[BatchRecord]] = {}
        for record in self.records:
            by_instance.setdefault(record.instance, []).append(record)
        gaps = []
        for batches in by_instance.values():
            batches.sort(key=lambda r: r.started)
            for previous, following in itertools.pairwise(batches):
                queued = min(m.ended(Stage.PREPROCESS) or math.inf for m in following.members)
                if queued <= previous.finished:
                    gaps.append(following.started - previous.finished)
        return gaps


def levels(spec: Spec) -> list[int]:
    """Closed-loop concurrencies: powers of two up to two full batches per instance."""
    top = min(MAX_LEVEL, 2 * spec.instances * spec.max_batch_size)
    out = [1]
    while out[-1] < top:
        out.append(min(top, out[-1] * 2))
    return out


async def _drive(service: ModelService, mix: Mix, concurrency: int, until: float, rng: random.Random) -> int:
    clock = SYSTEM_CLOCK
    done = 0

    async def client() -> None:
        nonlocal done
        while clock.now() < until:
            i = rng.choices(range(len(mix.images)), weights=mix.weights)[0]
            image = mix.images[i]
            timing = Timing(clock.now())
            timing.end(Stage.INGEST, timing.start)
            with service.admitted():
                await service.classify(image.data, 1, timing, timing.start + 60.0)  # the cost model learns
            done += 1

    await asyncio.gather(*(client() for _ in range(concurrency)))
    return done


def build(entry: ModelEntry, spec: Spec) -> Pipeline:
    """The service's own pipeline for ``entry`` at ``spec`` (instances in threads)."""
    overrides = ModelOverrides(
        instances=spec.instances,
        intra_op_threads=spec.intra_op_threads,
        max_batch_size=spec.max_batch_size,
        max_queue_delay_s=spec.max_queue_delay_s,
        isolation="thread",
    )
    entry = dataclasses.replace(entry, config=overrides.apply(entry.config))
    return build_pipeline(
        [entry], spec.preprocess_workers, DecodeLimits(), AdmissionPolicy("static", max_pending=1_000_000)
    )


async def measure_pipeline(pipeline: Pipeline, spec: Spec, mix: Mix, seconds: float, seed: int, say: Say) -> Samples:
    """Drive ``pipeline``'s one model at rising concurrency for ``seconds`` in all; stops the pipeline."""
    samples = Samples()
    pipeline.observe_batches(samples.batch)
    (service,) = pipeline.services.values()
    service.cost.kept = samples.cost  # from here on (after build_pipeline's warm-up batches)
    pipeline.start()
    rng = random.Random(seed)
    try:
        steps = levels(spec)
        for c in steps:
            before = samples.batches
            started = time.perf_counter()
            done = await _drive(service, mix, c, started + seconds / len(steps), rng)
            batches = samples.batches - before
            say(
                f"  {spec.instances}x{spec.intra_op_threads} C={c:>3}: "
                f"{done / (time.perf_counter() - started):6.1f} req/s, "
                f"{batches} batches, mean batch {done / max(1, batches):.1f}"
            )
    finally:
        await pipeline.stop()
    return samples


def size_classes(mix: Mix) -> dict[str, set[int]]:
    """Each image-size class of ``mix`` (its images' label before the dot, e.g. "320x240") → its images' pixels."""
    out: dict[str, set[int]] = {}
    for image in mix.images:
        with Image.open(io.BytesIO(image.data)) as decoded:  # the header only
            out.setdefault(image.label.split(".", 1)[0], set()).add(decoded.width * decoded.height)
    return out


def family(spec: Spec, samples: Samples, classes: dict[str, set[int]]) -> pf.Family:
    """The profile family of ``spec`` from the cost model's kept samples; ``classes``: size_classes(mix)."""
    kept = samples.cost
    preprocess = {name: [x for p in sorted(ps) for x in kept.preprocess.get(p, [])] for name, ps in classes.items()}
    missing = sorted(name for name, values in preprocess.items() if not values)
    if missing:
        raise ValueError(f"no request of the image-size classes {missing} was answered while profiling")
    return pf.Family(
        instances=spec.instances,
        intra_op_threads=spec.intra_op_threads,
        preprocess_workers=spec.preprocess_workers,
        batching=BatchingConfig(max_batch_size=spec.max_batch_size, max_queue_delay_s=spec.max_queue_delay_s),
        preprocess_s={name: pf.thin(values) for name, values in preprocess.items()},
        inference_s={k: pf.thin(v) for k, v in sorted(kept.inference.items())},
        postprocess_s={k: pf.thin(v) for k, v in sorted(kept.postprocess.items())},
        dispatch_s=pf.thin(samples.handoffs()) or [0.0],
    )


def parse_families(text: str | None, workers: int) -> list[tuple[int, int]]:
    """``"2x1,1x2"`` → [(2, 1), (1, 2)]; None: this machine's default thread plan."""
    if not text:
        plan = plan_threads(workers)
        return [(plan.instances, plan.intra_op_threads)]
    out = []
    for part in text.split(","):
        n, x, t = part.strip().lower().partition("x")
        try:
            if not x:
                raise ValueError
            pair = (int(n), int(t))
        except ValueError:
            raise ValueError(f"a family is INSTANCESxTHREADS, like 2x1, got {part!r}") from None
        if not (1 <= pair[0] <= 64 and pair[1] >= 1):
            raise ValueError(f"a family needs 1..64 instances and >= 1 thread, got {part!r}")
        out.append(pair)
    return out


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "profile",
        help="measure a profile of this machine for `servoscope plan` (≤ 60 s per family)",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    p.add_argument("-o", "--output", type=Path, required=True, help="the profile file to write (JSON)")
    p.add_argument("--model-repository", type=Path, default=Path("models"))
    p.add_argument("--model", default="efficientnet_lite0")
    p.add_argument("--families", help="instances x threads to measure, e.g. 2x1,1x2 (default: this machine's plan)")
    p.add_argument("--preprocess-workers", type=int, default=0, help="0: one per core")
    p.add_argument("--max-batch-size", type=int, help="default: the model's")
    p.add_argument("--max-queue-delay-ms", type=float, help="default: the model's")
    p.add_argument(
        "--mix",
        default=DEFAULT_MIX,
        help=f"image sizes, e.g. 70%%:4032x3024,30%%:320x240 (default {DEFAULT_MIX.replace('%', '%%')})",
    )
    p.add_argument("--seconds", default="30s", help="measuring time per family, at most 60s (default 30s)")
    p.add_argument(
        "--ingest-ms", type=float, default=0.0, help="fixed HTTP ingest overhead per request (not measured in process)"
    )
    p.add_argument(
        "--respond-ms",
        type=float,
        default=0.0,
        help="fixed HTTP respond overhead per request (not measured in process)",
    )
    p.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    say: Say = lambda line: print(line, file=sys.stderr, flush=True)  # noqa: E731
    try:
        seconds = parse_seconds(args.seconds)
        if seconds > MAX_FAMILY_S:
            raise ValueError(f"--seconds is at most {MAX_FAMILY_S:g} s per family, got {args.seconds!r}")
        if args.ingest_ms < 0 or args.respond_ms < 0:
            raise ValueError("--ingest-ms and --respond-ms must be >= 0")
        if args.preprocess_workers < 0:
            raise ValueError(f"--preprocess-workers must be >= 0 (0: one per core), got {args.preprocess_workers}")
        workers = plan_threads(args.preprocess_workers).preprocess_workers
        pairs = parse_families(args.families, args.preprocess_workers)
        sizes = parse_mix(args.mix)
        entry = find(args.model_repository, args.model)
        batching = words.batching(entry.config.batching, args.max_batch_size, args.max_queue_delay_ms, None, None)
    except (ValueError, ModelConfigError) as exc:
        print(f"servoscope profile: {exc}", file=sys.stderr)
        return 2
    max_batch, delay = batching.max_batch_size, batching.max_queue_delay_s
    mix = generated(sizes, 0.0, args.cache_dir)
    families = []
    for n, t in pairs:
        spec = Spec(n, t, workers, max_batch, delay)
        say(
            f"servoscope profile: {entry.name} v{entry.version}, {n} instance(s) x {t} thread(s), "
            f"{workers} preprocess workers, "
            f"{seconds:g} s; images: {mix.description}"
        )
        samples = asyncio.run(measure_pipeline(build(entry, spec), spec, mix, seconds, args.seed, say))
        families.append(family(spec, samples, size_classes(mix)))
    profile = pf.Profile(
        schema=pf.SCHEMA,
        version=pf.VERSION,
        model=entry.name,
        created_at=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        machine=pf.this_machine(),
        families=families,
        overheads=pf.Overheads(ingest=[args.ingest_ms / 1000], respond=[args.respond_ms / 1000], source="flags"),
        mix=mix_classes(args.mix),
    )
    pf.save(profile, args.output)
    say(f"profile: {args.output} ({available_cores()} cores)")
    return 0
