"""What a model can do on this machine without a server: offline throughput and inference latency.

Throughput is measured as bench/serve.py's offline limit does: a pool of one decode thread per
core prepares images ahead (the service's own decode and preprocess), and one driver thread per
model session stacks batches and runs them, in a plain loop. Latency is batch-1 inference
alone, on an already prepared tensor.
"""

from __future__ import annotations

import collections
import itertools
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np

from servoscope.pipeline.decode import DecodeLimits
from servoscope.pipeline.preprocess import PreprocessSpec, prepare
from servoscope.pipeline.runtime import Runtime
from servoscope.resources import available_cores


def offline_rate(
    models: Sequence[Runtime], images: Sequence[bytes], spec: PreprocessSpec, batch_size: int, duration_s: float
) -> float:
    """Images/s over ``duration_s``: decode ahead on every core; one driver thread per model
    session. The first batch of each session warms its kernels and is not counted."""
    limits = DecodeLimits()
    lock = threading.Lock()
    counter = itertools.count()
    done = [0] * len(models)
    with ThreadPoolExecutor(max_workers=available_cores(), thread_name_prefix="offline-decode") as pool:

        def decode_ahead(queue: collections.deque[Future[Any]]) -> None:
            while len(queue) < 2 * batch_size:
                with lock:
                    i = next(counter)
                queue.append(pool.submit(prepare, images[i % len(images)], limits, spec))

        def drive(index: int, stop_at: float) -> None:
            queue: collections.deque[Future[Any]] = collections.deque()
            first = True
            while first or time.perf_counter() < stop_at:
                decode_ahead(queue)
                batch = np.stack([queue.popleft().result().tensor for _ in range(batch_size)])
                decode_ahead(queue)
                models[index].run(batch)
                if not first:
                    done[index] += batch_size
                first = False
            for future in queue:
                future.cancel()

        start = time.perf_counter()
        with ThreadPoolExecutor(max_workers=len(models), thread_name_prefix="offline-infer") as drivers:
            list(drivers.map(drive, range(len(models)), [start + duration_s] * len(models)))
        elapsed = time.perf_counter() - start
    return sum(done) / elapsed


def latency_ms(run: Callable[[np.ndarray], Any], tensor: np.ndarray, runs: int) -> dict[str, float]:
    """P50 and P95 of ``runs`` batch-1 inferences of ``tensor`` (after two warm-up runs), in ms."""
    batch = tensor[None]
    for _ in range(2):
        run(batch)
    times = np.empty(runs)
    for i in range(runs):
        start = time.perf_counter()
        run(batch)
        times[i] = time.perf_counter() - start
    return {"p50_ms": float(np.percentile(times, 50) * 1e3), "p95_ms": float(np.percentile(times, 95) * 1e3)}
