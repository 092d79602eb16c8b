"""The service-time model: what a request will cost, learned online from the requests already served.

Learned from each finished request's timing record (``stages.py``), as everything else is:

- ``inference`` seconds by batch size — the batch the request ran in, on one instance;
- ``preprocess`` seconds by upload-size class — known from ``Content-Length`` before the body is read;
- ``postprocess`` seconds.

Each is an exponentially weighted mean, so the model follows the machine (contention, a slower variant,
a thermal throttle) within a few dozen requests. A batch size never seen is interpolated between the
nearest seen ones, or extrapolated from the largest at its per-image cost. Until a stage has been seen
the model knows nothing (``None``): admission then admits (it cannot predict a miss).

:func:`predict_s` is the prediction itself, a pure function: the work ahead of a request divided over
the instances at the measured time per batch, plus the request's own service. Admission uses it to
refuse what cannot be answered in time; the capacity planner simulates the same numbers.

With :class:`Kept` attached, the model also keeps the samples behind its means (bounded, by the same
keys): ``servoscope profile`` reads its distributions from there rather than timing the stages again.
"""

from __future__ import annotations

import bisect
import math
import random
from dataclasses import dataclass, field

from servoscope.stages import Stage

# Upload-size classes (bytes): a thumbnail, a web image, a camera image, a phone photo, larger.
SIZE_CLASSES_BYTES: tuple[int, ...] = (64 * 1024, 256 * 1024, 1024 * 1024, 4 * 1024 * 1024)
WEIGHT = 0.05  # of each new sample in the weighted means: about the last 20–40 samples count


def size_class(upload_bytes: int) -> int:
    return bisect.bisect_left(SIZE_CLASSES_BYTES, upload_bytes)


@dataclass
class Mean:
    """An exponentially weighted mean that starts as the plain mean of its first samples."""

    value: float = 0.0
    samples: int = 0

    def add(self, x: float) -> None:
        self.samples += 1
        self.value += (x - self.value) * max(WEIGHT, 1.0 / self.samples)


@dataclass
class Kept:
    """The samples behind the means, seconds, for a profile: ``inference`` and ``postprocess`` by batch
    size, ``preprocess`` by the image's pixels (the record's ``input_pixels``: exact, where the
    upload-size class is coarse). At most ``limit`` per key, a uniform sample of all (reservoir)."""

    limit: int = 20_000
    inference: dict[int, list[float]] = field(default_factory=dict)
    postprocess: dict[int, list[float]] = field(default_factory=dict)
    preprocess: dict[int, list[float]] = field(default_factory=dict)
    _seen: dict[tuple[str, int], int] = field(default_factory=dict)
    _rng: random.Random = field(default_factory=lambda: random.Random(0))

    def add(self, stage: str, key: int, seconds: float) -> None:
        table: dict[int, list[float]] = getattr(self, stage)
        values = table.setdefault(key, [])
        seen = self._seen[stage, key] = self._seen.get((stage, key), 0) + 1
        if len(values) < self.limit:
            values.append(seconds)
        elif (at := self._rng.randrange(seen)) < self.limit:
            values[at] = seconds


@dataclass
class CostModel:
    batch_s: dict[int, Mean] = field(default_factory=dict)  # batch size → inference seconds
    preprocess_s: dict[int, Mean] = field(default_factory=dict)  # size class → seconds
    postprocess_s: Mean = field(default_factory=Mean)
    kept: Kept | None = None  # the samples too, when a profile is being measured

    _sizes: list[int] = field(default_factory=list)  # the batch sizes seen, sorted (asked at every admission)

    def learn(self, durations: dict[str, float], batch_size: int, upload_bytes: int, pixels: int = 0) -> None:
        """One finished request: its stage durations (``Timing.durations()``), batch size, upload size
        and image pixels."""
        if self.kept is not None:
            self._keep(durations, batch_size, pixels)
        if Stage.INFERENCE in durations and batch_size > 0:
            if batch_size not in self.batch_s:
                bisect.insort(self._sizes, batch_size)
                self.batch_s[batch_size] = Mean()
            self.batch_s[batch_size].add(durations[Stage.INFERENCE])
        if Stage.PREPROCESS in durations:
            self.preprocess_s.setdefault(size_class(upload_bytes), Mean()).add(durations[Stage.PREPROCESS])
        if Stage.POSTPROCESS in durations:
            self.postprocess_s.add(durations[Stage.POSTPROCESS])

    def _keep(self, durations: dict[str, float], batch_size: int, pixels: int) -> None:
        assert self.kept is not None
        if batch_size > 0:
            for stage in (Stage.INFERENCE, Stage.POSTPROCESS):
                if stage in durations:
                    self.kept.add(stage, batch_size, durations[stage])
        if Stage.PREPROCESS in durations and pixels > 0:
            self.kept.add(Stage.PREPROCESS, pixels, durations[Stage.PREPROCESS])

    def batch_time(self, size: int) -> float | None:
        """Seconds one instance takes for a batch of ``size``, or None before any batch was seen."""
        seen = self.batch_s.get(size)
        if seen is not None:
            return seen.value
        sizes = self._sizes
        if not sizes:
            return None
        at = bisect.bisect_left(sizes, size)
        if at == len(sizes):  # larger than any seen: the largest, at its cost per image
            largest = sizes[-1]
            return self.batch_s[largest].value * size / largest
        if at == 0:  # smaller than any seen: no cheaper than the smallest per image, nor than it
            smallest = sizes[0]
            return self.batch_s[smallest].value * max(size / smallest, 0.5)
        low, high = sizes[at - 1], sizes[at]
        share = (size - low) / (high - low)
        return self.batch_s[low].value + share * (self.batch_s[high].value - self.batch_s[low].value)

    def preprocess_time(self, upload_bytes: int) -> float | None:
        """Seconds to decode and preprocess an upload of this size; the nearest class seen stands in."""
        wanted = size_class(upload_bytes)
        seen = self.preprocess_s.get(wanted)
        if seen is not None:
            return seen.value
        if not self.preprocess_s:
            return None
        nearest = min(self.preprocess_s, key=lambda c: abs(c - wanted))
        return self.preprocess_s[nearest].value

    @property
    def postprocess_time(self) -> float:
        return self.postprocess_s.value


@dataclass(frozen=True, slots=True)
class Backlog:
    """What is ahead of a new request now."""

    requests: int  # admitted and not yet answered, of this model
    instances: int
    max_batch_size: int
    preprocess_waiting: int = 0  # images waiting for a preprocess worker (all models)
    preprocess_workers: int = 1


def predict_s(cost: CostModel, backlog: Backlog, upload_bytes: int, images: int = 1) -> float | None:
    """Seconds until a new request of ``images`` uploads of ``upload_bytes`` each would be answered, if
    admitted now; None while the model has not seen enough to tell.

    The work ahead is served in rounds of one batch per instance: with ``n`` requests to serve
    (those ahead and this one), ``ceil(n / (instances × max_batch))`` rounds, each as long as one
    batch of the size the queue fills. Before that, the images waiting for a preprocess worker share
    the workers, and this request's own images are preprocessed.
    """
    own_preprocess = cost.preprocess_time(upload_bytes)
    if own_preprocess is None or not cost.batch_s:
        return None
    n = backlog.requests + images
    per_round = backlog.instances * backlog.max_batch_size
    rounds = math.ceil(n / per_round)
    size = backlog.max_batch_size if rounds > 1 else math.ceil(n / backlog.instances)
    batch = cost.batch_time(size)
    assert batch is not None
    queued_preprocess = backlog.preprocess_waiting * own_preprocess / max(1, backlog.preprocess_workers)
    return (
        queued_preprocess
        + own_preprocess * math.ceil(images / max(1, backlog.preprocess_workers))
        + rounds * batch
        + cost.postprocess_time
    )
