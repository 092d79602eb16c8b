"""Background readings: event-loop lag, and the system and GPU collectors once a second.

Loop lag is how late a timer fires: time the event loop spent busy elsewhere, which every
request waiting on the loop also waits. Collector samples run in a thread (NVML calls block).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
from dataclasses import dataclass, field

from servoscope.telemetry.gpu import GpuCollector, GpuReading
from servoscope.telemetry.recorder import Telemetry
from servoscope.telemetry.system import SystemCollector, SystemReading

log = logging.getLogger(__name__)

LAG_INTERVAL_S = 0.25
SAMPLE_INTERVAL_S = 1.0
HISTORY = 300  # samples kept: five minutes at one a second
# System readings also averaged over each stats window (one 1 s sample is too noisy to compare windows),
# counting only the seconds in which the service answered requests: the machine as it was while serving.
# With a GPU, its utilization and SM clock share too (GpuReading.window_values).
WINDOW_MEANS = ("cpu_utilization_ratio", "process_cpu_cores", "memory_available_bytes", "swap_used_ratio")


@dataclass
class Readings:
    system: SystemReading | None = None
    gpu: GpuReading | None = None
    cpu_history: collections.deque[tuple[float, float]] = field(
        default_factory=lambda: collections.deque(maxlen=HISTORY)
    )


class Monitor:
    def __init__(self, telemetry: Telemetry, system: SystemCollector, gpu: GpuCollector) -> None:
        self.telemetry = telemetry
        self.system = system
        self.gpu = gpu
        self.readings = Readings()
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._watch_lag(), name="loop-lag"),
            loop.create_task(self._sample(), name="sampler"),
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self.gpu.close()

    async def _watch_lag(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            before = loop.time()
            await asyncio.sleep(LAG_INTERVAL_S)
            self.telemetry.record_loop_lag(max(0.0, loop.time() - before - LAG_INTERVAL_S))

    async def _sample(self) -> None:
        clock = self.telemetry.clock
        answered = self.telemetry.answered
        while True:
            system, gpu = await asyncio.to_thread(self._read)
            self.readings.system, self.readings.gpu = system, gpu
            if system.cpu_utilization_ratio is not None:
                self.readings.cpu_history.append((clock.now(), system.cpu_utilization_ratio))
            if self.telemetry.answered != answered:
                answered = self.telemetry.answered
                self.telemetry.record_system(
                    {**{name: getattr(system, name) for name in WINDOW_MEANS}, **gpu.window_values()}
                )
            await asyncio.sleep(SAMPLE_INTERVAL_S)

    def _read(self) -> tuple[SystemReading, GpuReading]:
        return self.system.sample(), self.gpu.sample()
