"""One inference request of one or more images through the pipeline, the same for every protocol
(the Open Inference Protocol over HTTP and over gRPC): one timing record per image, all admitted
together, the first error raised."""

from __future__ import annotations

import asyncio
import dataclasses

from servoscope.clock import Clock
from servoscope.pipeline.admission import Priority
from servoscope.pipeline.service import Classification, ModelService
from servoscope.stages import Stage, Timing


def per_image(first: Timing, count: int) -> list[Timing]:
    """The request's record for its first image, and a copy of it for each further one."""
    return [first, *(dataclasses.replace(first, ends=list(first.ends), trace=None) for _ in range(count - 1))]


async def classify_all(
    service: ModelService,
    images: list[bytes],
    timings: list[Timing],
    top_k: int,
    deadline: float,
    rank: Priority,
    clock: Clock,
) -> list[Classification]:
    """Classify ``images`` (``timings[i]`` is image i's record): ingest ends now for all of them;
    once all are classified, they are marked answered (200), ``respond`` ending then (and again
    when the answer has been handed over)."""
    ingested = clock.now()
    for timing in timings:
        timing.end(Stage.INGEST, ingested)
    upload_bytes = sum(map(len, images)) // max(1, len(images))
    with service.admitted(len(images), rank, upload_bytes, deadline - clock.now()):
        outcomes = await asyncio.gather(
            *(service.classify(image, top_k, t, deadline, rank) for image, t in zip(images, timings)),
            return_exceptions=True,
        )
    errors = [o for o in outcomes if isinstance(o, BaseException)]
    if errors:
        raise errors[0]
    finished = clock.now()
    for timing in timings:
        timing.end(Stage.RESPOND, finished)
        timing.status = 200
    return [o for o in outcomes if isinstance(o, Classification)]
