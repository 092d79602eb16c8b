"""A served model — preprocessing spec, batcher, instances, postprocessing — and the set of them.

This is the request path without HTTP: the server, tests and a distributed engine call
:meth:`ModelService.classify` with image bytes and a timing record.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from servoscope.clock import SYSTEM_CLOCK, Clock
from servoscope.errors import InvalidParameter, ModelNotFound, Overloaded
from servoscope.models.config import batch_buckets
from servoscope.models.repository import ModelEntry
from servoscope.pipeline.admission import SHARE, AdmissionPolicy, GradientLimit, Priority, admits, budget_s, in_time
from servoscope.pipeline.batcher import Batcher, BatchPolicy, Queued, RestartSink
from servoscope.pipeline.cost import Backlog, CostModel, predict_s
from servoscope.pipeline.decode import DecodeLimits
from servoscope.pipeline.engines import load_runtime
from servoscope.pipeline.gauges import Gauges, ModelGauges
from servoscope.pipeline.gpu_decode import FallbackSink, GpuDecoder, torchvision_crops
from servoscope.pipeline.instance_messages import ChildSpec
from servoscope.pipeline.postprocess import Postprocessor, Prediction
from servoscope.pipeline.preprocess import PreprocessSpec, prepare
from servoscope.pipeline.process_runtime import ProcessRuntime
from servoscope.pipeline.runtime import Instance, InstanceInfo, RuntimeWrapper
from servoscope.pipeline.workers import PreprocessPool
from servoscope.resources import ThreadPlan, plan_threads
from servoscope.stages import BatchSink, Stage, Timing

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Classification:
    model: str
    version: str
    predictions: list[Prediction]
    batch_size: int


def adaptive_limit(max_pending: int, instances: int, max_batch_size: int) -> GradientLimit:
    """The adaptive limit of a model with ``instances`` taking batches of up to ``max_batch_size``.

    Its floor is one full batch for every instance: below that an instance waits for work while
    requests are refused, and latency hardly falls, since a batch's inference is most of it.
    Paired rounds at 4× capacity (2 instances of 4): goodput +1.2 points in 5 of 5 rounds against
    a floor of one request per instance, at the same admitted P95.
    """
    initial = min(128, max_pending)
    return GradientLimit(
        initial=initial, max_limit=max_pending, min_limit=min(initial, max(2, instances * max_batch_size))
    )


class ModelService:
    def __init__(
        self,
        entry: ModelEntry,
        pool: PreprocessPool,
        instances: list[Instance],
        limits: DecodeLimits,
        policy: AdmissionPolicy,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.entry = entry
        self.name = entry.name
        self.version = entry.version
        self.labels = entry.labels()
        cfg = entry.config.input
        self.spec = PreprocessSpec(cfg.size, cfg.resize, cfg.mean, cfg.std)
        self.gpu_decoder = (
            GpuDecoder(entry.name, torchvision_crops(cfg.decode), self.spec, limits) if cfg.decode != "cpu" else None
        )
        self.pool = pool
        self.limits = limits
        self.policy = policy
        self.max_pending = policy.max_pending
        self.clock = clock
        self.pending = 0  # admitted and not yet answered
        self.cost = CostModel()  # service times, learned from the answered requests (time admission)
        # adaptive: the concurrency limit follows the latency (admission.py); else max_pending alone
        batch = entry.config.batching.max_batch_size
        adaptive = policy.mode == "adaptive"
        self.concurrency = adaptive_limit(policy.max_pending, len(instances), batch) if adaptive else None
        postprocess = Postprocessor(self.labels, entry.config.output.kind)
        self.batcher = Batcher(entry.name, BatchPolicy.of(entry.config.batching), instances, postprocess, clock)

    @property
    def num_classes(self) -> int:
        return len(self.labels)

    def check_top_k(self, top_k: int) -> int:
        if not 1 <= top_k <= self.num_classes:
            raise InvalidParameter(f"top_k must be between 1 and {self.num_classes}, got {top_k}")
        return top_k

    def instances(self) -> list[InstanceInfo]:
        return [instance.info() for instance in self.batcher.instances]

    @property
    def limit(self) -> int:
        """Requests admitted at once, now (adaptive) or always (max_pending)."""
        return self.concurrency.limit if self.concurrency else self.max_pending

    def predicted_s(self, upload_bytes: int, count: int = 1) -> float | None:
        """Seconds until ``count`` more uploads of ``upload_bytes`` each would be answered, if admitted now."""
        pool = self.pool
        batcher = self.batcher
        backlog = Backlog(
            self.pending, len(batcher.instances), batcher.policy.max_batch_size, pool.waiting, pool.workers
        )
        return predict_s(self.cost, backlog, upload_bytes, count)

    def refusal(
        self,
        count: int = 1,
        priority: Priority = Priority.NORMAL,
        upload_bytes: int = 0,
        deadline_s: float | None = None,
    ) -> Overloaded | None:
        """Why ``count`` more requests of ``priority`` (uploads of ``upload_bytes``, due within
        ``deadline_s``) may not enter now, or None when they may. An idle model admits anything."""
        if self.policy.mode == "time":
            return self._late(count, priority, upload_bytes, deadline_s)
        limit = self.limit
        if self.pending + count <= self.max_pending and admits(limit, self.pending, priority, count):
            return None
        if self.concurrency is not None:
            self.concurrency.refused()
        return Overloaded(
            f"model {self.name!r} is at capacity: {self.pending} requests in progress "
            f"(limit {limit} now, for {priority.name.lower()} priority {int(limit * SHARE[priority])})",
            reason="concurrency_limit" if self.concurrency else "pending_limit",
        )

    def _late(self, count: int, priority: Priority, upload_bytes: int, deadline_s: float | None) -> Overloaded | None:
        if self.pending + count > self.max_pending:
            return Overloaded(
                f"model {self.name!r} has {self.pending} requests in progress, the limit (max_pending "
                f"{self.max_pending})",
                reason="pending_limit",
            )
        predicted = self.predicted_s(upload_bytes, count)
        if self.pending == 0 or in_time(predicted, self.policy.objective_s, priority, deadline_s):
            return None
        assert predicted is not None
        budget = budget_s(self.policy.objective_s, priority, deadline_s)
        by_deadline = budget == deadline_s
        return Overloaded(
            f"model {self.name!r} would answer in {predicted * 1000:.0f} ms, past "
            f"{'its deadline' if by_deadline else 'the latency objective'} ({budget * 1000:.0f} ms for "
            f"{priority.name.lower()} priority): {self.pending} requests are ahead",
            retry_after_s=max(predicted - budget, self.cost.batch_time(1) or 0.0),
            reason="deadline" if by_deadline else "objective",
        )

    @contextlib.contextmanager
    def admitted(
        self,
        count: int = 1,
        priority: Priority = Priority.NORMAL,
        upload_bytes: int = 0,
        deadline_s: float | None = None,
    ) -> Iterator[None]:
        """Hold ``count`` places: admitted once the body has arrived (a slow upload holds no place),
        refused at once (429, ``Retry-After``) when it cannot be answered in time."""
        refused = self.refusal(count, priority, upload_bytes, deadline_s)
        if refused is not None:
            raise refused
        self.pending += count
        try:
            yield
        finally:
            self.pending -= count

    async def classify(
        self, data: bytes, top_k: int, timing: Timing, deadline: float, priority: Priority = Priority.NORMAL
    ) -> Classification:
        """Image bytes → top-k predictions, for an admitted request (see :meth:`admitted`).
        Raises a :mod:`servoscope.errors` error for anything refused."""
        self.check_top_k(top_k)
        timing.model = self.name
        timing.input_bytes = len(data)
        job = functools.partial(prepare, data, self.limits, self.spec)
        if self.gpu_decoder is not None:
            job = functools.partial(self.gpu_decoder.prepare, data)
        prepared = await self.pool.run(job, timing, deadline)
        timing.input_pixels = prepared.pixels
        timing.ignored_metadata = prepared.ignored_metadata
        future: asyncio.Future[list[Prediction]] = asyncio.get_running_loop().create_future()
        self.batcher.submit(Queued(prepared, top_k, deadline, timing, future, priority=priority))
        predictions = await future
        self._learn(timing)
        return Classification(self.name, self.version, predictions, timing.batch_size)

    def _learn(self, timing: Timing) -> None:
        """Tell the cost model what this request's stages took, and the concurrency limit how long
        it waited and how long it was served."""
        seconds = timing.durations()
        self.cost.learn(seconds, timing.batch_size, timing.input_bytes, timing.input_pixels)
        if self.concurrency is None:
            return
        wait = sum(seconds.get(stage, 0.0) for stage in (Stage.PREPROCESS_WAIT, Stage.BATCH_WAIT))
        service = sum(seconds.get(stage, 0.0) for stage in (Stage.PREPROCESS, Stage.INFERENCE, Stage.POSTPROCESS))
        self.concurrency.update(wait, service, self.pending)


def load_instances(entry: ModelEntry, plan: ThreadPlan) -> list[Instance]:
    cfg = entry.config
    if cfg.instances.isolation == "process":
        return [process_instance(entry, plan, i) for i in range(plan.instances)]
    return [Instance(entry.name, i, load_runtime(entry, plan.intra_op_threads)) for i in range(plan.instances)]


def process_instance(entry: ModelEntry, plan: ThreadPlan, index: int) -> Instance:
    """An instance whose session runs in a child process (started now; loaded by the first batch)."""
    cfg = entry.config
    shape = PreprocessSpec(cfg.input.size, cfg.input.resize, cfg.input.mean, cfg.input.std).shape
    spec = ChildSpec(
        str(entry.model_file), cfg.instances.provider, plan.intra_op_threads, cfg.input.name, cfg.output.name, shape
    )
    runtime = ProcessRuntime(spec, cfg.batching.max_batch_size, f"{entry.name}#{index}")
    return Instance(entry.name, index, runtime, process=runtime)


def warm_up(service: ModelService) -> None:
    """Run every batch bucket (1, the preferred sizes, the largest) on every instance before serving:
    kernels loaded and selected, memory arenas grown, CUDA graphs captured and code compiled, so the
    first real requests don't pay for it. Checks the output width against the label count. The last
    instance runs each bucket once more, warm, and its time is the cost model's first word on batches
    (admission can predict from the first request on)."""
    sizes = batch_buckets(service.entry.config.batching)
    for instance in service.batcher.instances:
        for size in sizes:
            out = instance.runtime.run(np.zeros((size, *service.spec.shape), dtype=np.float32))
            width = out.reshape(size, -1).shape[1]
            if width != service.num_classes:
                raise ValueError(f"model {service.name!r} outputs {width} classes but has {service.num_classes} labels")
    for size in sizes:
        started = time.perf_counter()
        service.batcher.instances[-1].runtime.run(np.zeros((size, *service.spec.shape), dtype=np.float32))
        service.cost.learn({Stage.INFERENCE: time.perf_counter() - started}, size, 0)


class Pipeline:
    """Every served model, sharing one preprocessing pool."""

    def __init__(self, services: dict[str, ModelService], pool: PreprocessPool) -> None:
        self.services = services
        self.pool = pool

    def get(self, name: str) -> ModelService:
        try:
            return self.services[name]
        except KeyError:
            raise ModelNotFound(f"model {name!r} is not served; models: {sorted(self.services)}") from None

    def start(self) -> None:
        for service in self.services.values():
            service.batcher.start()

    def observe_batches(self, sink: BatchSink) -> None:
        for service in self.services.values():
            service.batcher.on_batch = sink

    def observe_restarts(self, sink: RestartSink) -> None:
        for service in self.services.values():
            service.batcher.on_restart = sink

    def observe_decode_fallbacks(self, sink: FallbackSink) -> None:
        for service in self.services.values():
            if service.gpu_decoder is not None:
                service.gpu_decoder.on_fallback = sink

    def gauges(self) -> Gauges:
        models = {
            name: ModelGauges(
                s.pending,
                s.max_pending,
                s.limit,
                s.batcher.depth,
                s.batcher.policy.max_queue_size,
                s.batcher.batches_in_flight,
                len(s.batcher.instances),
            )
            for name, s in self.services.items()
        }
        return Gauges(self.pool.waiting, self.pool.busy, self.pool.workers, models)

    async def stop(self) -> None:
        await asyncio.gather(*(s.batcher.stop() for s in self.services.values()))
        self.pool.close()


def build_pipeline(
    entries: list[ModelEntry],
    preprocess_workers: int,
    limits: DecodeLimits,
    admission: AdmissionPolicy,
    clock: Clock = SYSTEM_CLOCK,
    preprocess_nice: int = 0,
    wrap_runtime: RuntimeWrapper | None = None,
) -> Pipeline:
    """Load, warm up and (with ``wrap_runtime``, after warming up) wrap every model's instances."""
    pool = PreprocessPool(plan_threads(preprocess_workers).preprocess_workers, clock, preprocess_nice)
    services = {}
    for entry in entries:
        cfg = entry.config.instances
        plan = plan_threads(preprocess_workers, cfg.count, cfg.intra_op_threads, entry.config.accelerator)
        service = ModelService(entry, pool, load_instances(entry, plan), limits, admission, clock)
        warm_up(service)
        if wrap_runtime is not None:
            for instance in service.batcher.instances:
                instance.runtime = wrap_runtime(instance.runtime)
        log.info(
            "model %s v%s: %s, engine %s on %s, %s isolation, batching %s",
            entry.name,
            entry.version,
            plan.describe(),
            entry.config.engine.describe(),
            service.batcher.instances[0].runtime.providers,
            cfg.isolation,
            entry.config.batching.model_dump(),
        )
        services[entry.name] = service
    return Pipeline(services, pool)
