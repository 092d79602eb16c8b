"""Fault injection: the one place where servoscope is made slower on purpose.

Off by default. A drill (or an explicit ``servoscope serve --inject-…`` flag) switches a fault
on; an active fault is logged loudly at start-up, shown under ``faults`` in ``/v1/config``
and exported as the gauge ``servoscope_fault_injected{fault}`` (value: the setting).

- ``inference_delay_s``: extra seconds slept *inside* each model instance's thread, per batch,
  before the real inference. The instance stays busy meanwhile, as a throttled or shared
  accelerator would; the time shows in the ``inference`` stage and in the busy ratios.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

import numpy as np
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from pydantic import BaseModel, ConfigDict, Field

if TYPE_CHECKING:  # the settings import this module: keep it free of the pipeline (and ONNX Runtime)
    from servoscope.pipeline.runtime import Runtime
    from servoscope.pipeline.service import Pipeline

log = logging.getLogger(__name__)

FAULT_GAUGE = "servoscope_fault_injected"


class Faults(BaseModel):
    """Injected faults (all zero: none). Only drills and explicit serve flags set these."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    inference_delay_s: float = Field(
        0.0, ge=0.0, le=10.0, description="INJECTED: extra seconds per inference batch, slept in the instance's thread"
    )

    def active(self) -> dict[str, float]:
        """The faults switched on, by name, with their settings."""
        return {name: float(value) for name, value in self.model_dump().items() if value}


class DelayedRuntime:
    """A runtime whose every batch takes ``delay_s`` longer (an injected fault)."""

    def __init__(self, inner: Runtime, delay_s: float) -> None:
        self.inner = inner
        self.delay_s = delay_s

    def run(self, batch: np.ndarray) -> np.ndarray:
        time.sleep(self.delay_s)  # on the instance's own thread: the instance is busy meanwhile
        return self.inner.run(batch)

    @property
    def providers(self) -> list[str]:
        return list(getattr(self.inner, "providers", []))


def inject(pipeline: Pipeline, faults: Faults) -> dict[str, float]:
    """Apply the active ``faults`` to a loaded pipeline (wrapping each instance's runtime once);
    returns what was applied. Nothing happens when no fault is active."""
    active = faults.active()
    if not active:
        return active
    for service in pipeline.services.values():
        for instance in service.batcher.instances:
            if faults.inference_delay_s and not isinstance(instance.runtime, DelayedRuntime):
                instance.runtime = DelayedRuntime(instance.runtime, faults.inference_delay_s)
    log.warning(
        "!!! INJECTED FAULTS ACTIVE (servoscope drill / --inject-* flag): %s — this service is slowed on purpose",
        active,
    )
    return active


class FaultCollector(Collector):
    """``servoscope_fault_injected{fault}``: the active faults' settings (registered only when some are)."""

    def __init__(self, faults: Faults) -> None:
        self.faults = faults

    def collect(self) -> Iterator[Metric]:
        gauge = GaugeMetricFamily(
            FAULT_GAUGE, "Faults injected on purpose (drills), by setting value.", labels=["fault"]
        )
        for name, value in self.faults.active().items():
            gauge.add_metric([name], value)
        yield gauge
