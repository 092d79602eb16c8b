"""The live progress line, once a second on stderr, while a load runs:

    [  12s] sent 20.0/s answered 19.0/s | last 1s p50 31.2 p95 44.0 p99 52.1 ms | all p50 30.8 p95 47.5 p99 88.0 ms \
        | errors 0 | sender late max 0.6 ms

(one line, here folded at the backslash)

It is fed by the run's hooks (``started`` with the live result, ``ended`` per finished
sample), so it costs one histogram record per request and a short scan once a second.
"""

from __future__ import annotations

import asyncio
import math
import sys
import time
from typing import TextIO

from servoscope.loadgen.results import hist_ms, histogram, record
from servoscope.loadgen.schedule import RunResult, Sample, percentile


class Progress:
    def __init__(self, stream: TextIO | None = None, interval_s: float = 1.0) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.interval_s = interval_s
        self.result: RunResult | None = None
        self.overall = histogram(())
        self.errors = 0
        self._second: list[float] = []  # latencies (s) of successes since the last line
        self._answered = 0
        self._seen = 0  # samples already counted as sent
        self._last = time.perf_counter()

    def started(self, result: RunResult) -> None:
        self.result = result
        self._last = time.perf_counter()

    def ended(self, sample: Sample) -> None:
        if sample.status:
            self._answered += 1
        if sample.ok:
            record(self.overall, sample.latency_s)
            self._second.append(sample.latency_s)
        else:
            self.errors += 1

    def line(self) -> str:
        """The line for the interval since the previous one; resets the interval's figures."""
        now = time.perf_counter()
        span = max(1e-3, now - self._last)
        samples = self.result.samples if self.result else []
        fresh = samples[self._seen :]
        late_ms = 1000 * max((s.late_s for s in fresh), default=0.0)
        second = [1000 * x for x in self._second]
        elapsed = now - self.result.start if self.result else 0.0
        text = (
            f"[{elapsed:5.0f}s] sent {len(fresh) / span:.1f}/s answered {self._answered / span:.1f}/s"
            f" | last 1s p50 {_ms(percentile(second, 50))} p95 {_ms(percentile(second, 95))}"
            f" p99 {_ms(percentile(second, 99))} ms"
            f" | all p50 {_ms(hist_ms(self.overall, 50))} p95 {_ms(hist_ms(self.overall, 95))}"
            f" p99 {_ms(hist_ms(self.overall, 99))} ms"
            f" | errors {self.errors} | sender late max {late_ms:.1f} ms"
        )
        self._seen = len(samples)
        self._second.clear()
        self._answered = 0
        self._last = now
        return text

    async def report(self) -> None:
        """Print a line every ``interval_s`` until cancelled."""
        while True:
            await asyncio.sleep(self.interval_s)
            print(self.line(), file=self.stream, flush=True)


def _ms(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.1f}"
