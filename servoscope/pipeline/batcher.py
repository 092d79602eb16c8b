"""Dynamic batching, per model.

The dispatch rule is a pure function of (queued count, oldest wait, policy), so a simulator
can batch exactly as the server does. The batcher itself:

- the request's future exists before it is queued; the queue is bounded (``Overloaded``);
- the wait window starts when the oldest queued request arrived, never earlier;
- it wakes on an event (a new request, an instance coming free, the window closing), never polls;
- cancelled and expired requests are dropped before a batch runs (expired → ``DeadlineExceeded``);
- a batch runs on an idle instance, so batches in flight ≤ instances; while all instances are
  busy, requests accumulate and the next free instance takes up to ``max_batch_size`` of them;
- outputs must match inputs one to one, and an exception reaches every request of its batch;
- except :class:`InstanceLost` (the instance's process died and is being replaced): its requests go
  back to the head of the queue once, still subject to their deadlines, and are answered with it
  (503) only if their second batch is lost too. Every request gets exactly one answer.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import numpy as np

from servoscope.clock import SYSTEM_CLOCK, Clock
from servoscope.errors import DeadlineExceeded, InferenceFailed, InstanceLost, Overloaded, Unavailable
from servoscope.pipeline.postprocess import Prediction
from servoscope.pipeline.preprocess import BatchBuffer, BatchRow
from servoscope.pipeline.runtime import Instance
from servoscope.stages import BatchRecord, BatchSink, Stage, Timing, discard

if TYPE_CHECKING:
    from servoscope.models.config import BatchingConfig

log = logging.getLogger(__name__)


class DispatchRule(Protocol):
    """What :func:`dispatch_size` reads: a :class:`BatchPolicy`, or a model's validated batching config."""

    @property
    def max_batch_size(self) -> int: ...
    @property
    def max_queue_delay_s(self) -> float: ...
    @property
    def preferred_batch_sizes(self) -> tuple[int, ...]: ...


@dataclass(frozen=True, slots=True)
class BatchPolicy:
    """What the batcher needs to know of a model's configuration, and nothing more
    (built from the validated ``BatchingConfig`` by :meth:`of`)."""

    max_batch_size: int
    max_queue_delay_s: float
    preferred_batch_sizes: tuple[int, ...]  # ascending
    max_queue_size: int

    @classmethod
    def of(cls, config: BatchingConfig) -> BatchPolicy:
        return cls(config.max_batch_size, config.max_queue_delay_s, config.preferred_batch_sizes, config.max_queue_size)


def dispatch_size(queued: int, oldest_wait_s: float, policy: DispatchRule) -> int:
    """How many queued requests to run now on an idle instance; 0 means wait for more.

    Full batch: go. A preferred size reachable: go with the largest one. The oldest request
    has waited ``max_queue_delay_s``: go with what there is.
    """
    if queued <= 0:
        return 0
    if queued >= policy.max_batch_size:
        return policy.max_batch_size
    if oldest_wait_s >= policy.max_queue_delay_s:
        return queued
    preferred = [size for size in policy.preferred_batch_sizes if size <= queued]
    return preferred[-1] if preferred else 0


@dataclass(slots=True, eq=False)
class Queued:
    """One request queued in the batcher (the batch queue): ``Lanes`` holds them until a batch takes them."""

    tensor: BatchRow  # the preprocessed image (normalized into the batch), or a ready float32 row
    top_k: int
    deadline: float
    timing: Timing
    future: asyncio.Future[list[Prediction]]
    enqueued: float = 0.0
    priority: int = 1  # 0 high, 1 normal, 2 low: batches are filled high-first
    attempts: int = 0  # batches that carried it (a second one only after an instance was lost)


@dataclass(frozen=True, slots=True)
class InstanceRestart:
    """An instance's process was lost running a batch, and a replacement started."""

    model: str
    instance: int
    error: str


Postprocess = Callable[[np.ndarray, list[int]], list[list[Prediction]]]
RestartSink = Callable[[InstanceRestart], None]
PRIORITIES = 3
MAX_ATTEMPTS = 2  # a request whose instance died is run once more


class Lanes:
    """The batch queue: one FIFO lane per priority, taken high-first."""

    def __init__(self) -> None:
        self._lanes: list[collections.deque[Queued]] = [collections.deque() for _ in range(PRIORITIES)]

    def __len__(self) -> int:
        return sum(len(lane) for lane in self._lanes)

    def __iter__(self) -> Iterator[Queued]:
        for lane in self._lanes:
            yield from lane

    def _lane(self, queued: Queued) -> collections.deque[Queued]:
        return self._lanes[min(max(queued.priority, 0), PRIORITIES - 1)]

    def append(self, queued: Queued) -> None:
        self._lane(queued).append(queued)

    def push_front(self, entries: list[Queued]) -> None:
        """Back to the head of their lanes, in their order (they arrived before anything queued)."""
        for queued in reversed(entries):
            self._lane(queued).appendleft(queued)

    def take(self, n: int) -> list[Queued]:
        taken: list[Queued] = []
        for lane in self._lanes:
            while lane and len(taken) < n:
                taken.append(lane.popleft())
        return taken

    def oldest(self) -> float:
        """When the longest-waiting request was queued (each lane is in arrival order)."""
        return min(lane[0].enqueued for lane in self._lanes if lane)

    def keep(self, alive: Callable[[Queued], bool]) -> None:
        """Keep the requests ``alive`` says yes to; it is asked once per request."""
        for i, lane in enumerate(self._lanes):
            kept = [p for p in lane if alive(p)]
            if len(kept) != len(lane):
                self._lanes[i] = collections.deque(kept)


class Batcher:
    def __init__(
        self,
        model: str,
        policy: BatchPolicy,
        instances: list[Instance],
        postprocess: Postprocess,
        clock: Clock = SYSTEM_CLOCK,
        on_batch: BatchSink = discard,
        on_restart: RestartSink = discard,
    ) -> None:
        self.model = model
        self.on_batch = on_batch  # told of every batch that ran, on the event loop
        self.on_restart = on_restart  # told of every instance process lost (and replaced), on the event loop
        self.policy = policy
        self.instances = instances
        self.postprocess = postprocess
        self.clock = clock
        self._queue = Lanes()
        self._wake = asyncio.Event()
        self._idle: collections.deque[Instance] = collections.deque(instances)
        self._buffers = {
            i: BatchBuffer(policy.max_batch_size) for i in instances
        }  # each filled on its instance's thread only
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self.batches_in_flight = 0  # batches running now

    @property
    def depth(self) -> int:
        return len(self._queue)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._schedule(), name=f"batcher-{self.model}")

    async def stop(self) -> None:
        """Refuse new work, let queued and running batches finish, then stop the schedule."""
        self._closed = True
        self._wake.set()
        if self._task is not None:
            await self._task
        for instance in self.instances:
            instance.close()

    def submit(self, queued: Queued) -> None:
        if self._closed:
            raise Unavailable(f"model {self.model!r} is shutting down", reason="shutting_down")
        if len(self._queue) >= self.policy.max_queue_size:
            raise Overloaded(
                f"batch queue of model {self.model!r} is full ({self.policy.max_queue_size} waiting)",
                reason="batch_queue_full",
            )
        queued.enqueued = self.clock.now()
        self._queue.append(queued)
        self._wake.set()

    async def _schedule(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            self._drop_dead()
            if self._closed and not self._queue and self.batches_in_flight == 0:
                return
            size = self._ready_size() if self._idle else 0
            if size:
                self._launch(loop, self._idle.popleft(), self._queue.take(size))
                continue
            await self._sleep(loop)

    def _ready_size(self) -> int:
        if not self._queue:
            return 0
        if self._closed:  # draining: no reason to wait for company
            return min(len(self._queue), self.policy.max_batch_size)
        oldest_wait = self.clock.now() - self._queue.oldest()
        return dispatch_size(len(self._queue), oldest_wait, self.policy)

    async def _sleep(self, loop: asyncio.AbstractEventLoop) -> None:
        """Until something changes: a submit, a batch finishing, or the oldest request's window closing."""
        self._wake.clear()
        timer = None
        if self._queue and self._idle:
            remaining = self._queue.oldest() + self.policy.max_queue_delay_s - self.clock.now()
            timer = loop.call_later(max(0.0, remaining), self._wake.set)
        try:
            await self._wake.wait()
        finally:
            if timer is not None:
                timer.cancel()

    def _drop_dead(self) -> None:
        """Cancelled requests (the client went away) leave; expired ones are answered 504."""
        if not len(self._queue):
            return
        now = self.clock.now()

        def alive(p: Queued) -> bool:
            if p.future.done():
                return False
            if p.deadline <= now:
                p.future.set_exception(
                    DeadlineExceeded(f"deadline passed after {now - p.timing.start:.3f}s, before inference")
                )
                return False
            return True

        self._queue.keep(alive)

    def _launch(self, loop: asyncio.AbstractEventLoop, instance: Instance, batch: list[Queued]) -> None:
        self.batches_in_flight += 1
        for p in batch:
            p.attempts += 1
        done = loop.run_in_executor(instance.executor, self._run, instance, batch)
        done.add_done_callback(lambda f: self._finish(instance, batch, f))

    def _run(self, instance: Instance, batch: list[Queued]) -> tuple[BatchRecord, list[list[Prediction]]]:
        """On the instance's thread: assemble (normalize into the instance's buffer), infer, postprocess;
        each request's timing stamped (the assembly counts in ``inference``: see stages.py)."""
        clock = self.clock
        started = clock.now()
        for p in batch:
            p.timing.end(Stage.BATCH_WAIT, started)
            p.timing.batch_size = len(batch)
        inputs = self._buffers[instance].fill([p.tensor for p in batch])
        outputs = instance.runtime.run(inputs)
        if outputs.shape[0] != len(batch):
            raise InferenceFailed(f"model {self.model!r} returned {outputs.shape[0]} rows for a batch of {len(batch)}")
        inferred = clock.now()
        results = self.postprocess(outputs, [p.top_k for p in batch])
        finished = clock.now()
        for p in batch:
            p.timing.end(Stage.INFERENCE, inferred)
            p.timing.end(Stage.POSTPROCESS, finished)
        record = BatchRecord(self.model, instance.index, started, inferred, finished, tuple(p.timing for p in batch))
        return record, results

    def _finish(
        self, instance: Instance, batch: list[Queued], done: asyncio.Future[tuple[BatchRecord, list[list[Prediction]]]]
    ) -> None:
        self.batches_in_flight -= 1
        self._idle.append(instance)
        self._wake.set()
        error = done.exception()
        if isinstance(error, InstanceLost):
            self._lost(instance, batch, error)
            return
        if error is not None and not isinstance(error, InferenceFailed):
            log.error("inference failed on model %s instance %d", self.model, instance.index, exc_info=error)
            error = InferenceFailed(f"inference failed on model {self.model!r}: {type(error).__name__}: {error}")
        if error is not None:
            for p in batch:
                if not p.future.done():
                    p.future.set_exception(error)
            return
        record, results = done.result()
        for p, result in zip(batch, results):
            if not p.future.done():
                p.future.set_result(result)
        self.on_batch(record)

    def _lost(self, instance: Instance, batch: list[Queued], error: InstanceLost) -> None:
        """The instance's process died with ``batch``: run its requests once more, else answer 503."""
        self.on_restart(InstanceRestart(self.model, instance.index, str(error)))
        waiting = [p for p in batch if not p.future.done()]
        again = [p for p in waiting if p.attempts < MAX_ATTEMPTS]
        log.warning(
            "model %s instance %d lost a batch of %d: %d requests queued again, %d answered 503",
            self.model,
            instance.index,
            len(batch),
            len(again),
            len(waiting) - len(again),
        )
        for p in waiting:
            if p.attempts >= MAX_ATTEMPTS:
                p.future.set_exception(error)
        self._queue.push_front(again)
