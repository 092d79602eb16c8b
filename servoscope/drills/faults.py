"""Fault injection: the one place where servoscope is made slower on purpose.

Off by default. A drill (or an explicit ``servoscope serve --inject-…`` flag) switches a fault
on (the setting ``faults``, :class:`servoscope.settings.Faults`); ``servoscope serve`` then hands
:func:`runtime_wrapper` to the pipeline's start-up seam, so no production module imports this one.
An active fault is logged loudly at start-up, shown under ``faults`` in ``/v1/config``
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

from servoscope.settings import Faults

if TYPE_CHECKING:  # the serve command imports this module: keep it free of ONNX Runtime until a model loads
    from servoscope.pipeline.runtime import Runtime, RuntimeWrapper

__all__ = ["FAULT_GAUGE", "DelayedRuntime", "FaultCollector", "Faults", "delayed", "runtime_wrapper"]

log = logging.getLogger(__name__)

FAULT_GAUGE = "servoscope_fault_injected"


def delayed(delay_s: float) -> RuntimeWrapper:
    """A wrapper that slows every batch by ``delay_s`` (a rollout's slowed variant, for drills)."""
    return lambda runtime: DelayedRuntime(runtime, delay_s)


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


def runtime_wrapper(faults: Faults) -> RuntimeWrapper | None:
    """The wrapper that applies the active ``faults`` to each instance's runtime, for the pipeline's
    start-up seam (``build_pipeline(wrap_runtime=…)``); None when no fault is active."""
    active = faults.active()
    if not active:
        return None
    log.warning(
        "!!! INJECTED FAULTS ACTIVE (servoscope drill / --inject-* flag): %s — this service is slowed on purpose",
        active,
    )

    def wrap(runtime: Runtime) -> Runtime:
        return DelayedRuntime(runtime, faults.inference_delay_s) if faults.inference_delay_s else runtime

    return wrap


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
