"""The GPU collector: NVIDIA devices read through NVML (``nvidia-ml-py``, imported as ``pynvml``).

NVML is initialised once, lazily, on the first :meth:`GpuCollector.sample`. Where it cannot
be (no driver, no permission), every sample says ``available=False`` with the reason, and
initialisation is tried again at most once per ``retry_interval_s``. A field a device does not
support (``NVMLError_NotSupported``…) is ``None``; sampling never raises.

Run ``python -m servoscope.telemetry.gpu`` to print one reading as JSON.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import psutil
import pynvml

from servoscope.clock import SYSTEM_CLOCK, Clock
from servoscope.telemetry._guard import FieldGuard

logger = logging.getLogger(__name__)

# NVML's stable ABI values, so an injected module need not define them.
_CLOCK_SM = 1  # NVML_CLOCK_SM
_TEMPERATURE_GPU = 0  # NVML_TEMPERATURE_GPU
_ERROR_NO_PERMISSION = 4
_ERROR_DRIVER_NOT_LOADED = 9
_ERROR_LIBRARY_NOT_FOUND = 12
_ERROR_FUNCTION_NOT_FOUND = 13

THROTTLE_REASONS: tuple[tuple[int, str], ...] = (
    (0x001, "gpu_idle"),
    (0x002, "applications_clocks_setting"),
    (0x004, "sw_power_cap"),
    (0x008, "hw_slowdown"),
    (0x010, "sync_boost"),
    (0x020, "sw_thermal_slowdown"),
    (0x040, "hw_thermal_slowdown"),
    (0x080, "hw_power_brake_slowdown"),
    (0x100, "display_clock_setting"),
    (0x200, "board_limit"),
    (0x400, "reliability"),
)
"""NVML's throttle reason bits (since driver 535 "clocks event reasons") and our names for them."""


# The reasons that slow a busy GPU down (idle and the application clock setting do not).
SLOWING_REASONS = frozenset(
    {"sw_power_cap", "hw_slowdown", "sw_thermal_slowdown", "hw_thermal_slowdown", "hw_power_brake_slowdown"}
)


def decode_throttle_reasons(mask: int) -> tuple[str, ...]:
    """Names of the reasons set in an NVML clock event mask; an unknown bit reads ``bit_<n>``."""
    names = [name for bit, name in THROTTLE_REASONS if mask & bit]
    known = sum(bit for bit, _ in THROTTLE_REASONS)
    names += [f"bit_{n}" for n in range(64) if mask & ~known & (1 << n)]
    return tuple(names)


class Nvml(Protocol):
    """The part of ``pynvml`` the collector uses (the real module, or a recorded fake in tests)."""

    @property
    def NVMLError(self) -> type[Exception]: ...

    def nvmlInit(self) -> None: ...
    def nvmlShutdown(self) -> None: ...
    def nvmlSystemGetDriverVersion(self) -> str: ...
    def nvmlDeviceGetCount(self) -> int: ...
    def nvmlDeviceGetHandleByIndex(self, index: int) -> Any: ...
    def nvmlDeviceGetName(self, handle: Any) -> str: ...
    def nvmlDeviceGetUUID(self, handle: Any) -> str: ...
    def nvmlDeviceGetUtilizationRates(self, handle: Any) -> Any: ...
    def nvmlDeviceGetMemoryInfo(self, handle: Any) -> Any: ...
    def nvmlDeviceGetClockInfo(self, handle: Any, clock: int) -> int: ...
    def nvmlDeviceGetMaxClockInfo(self, handle: Any, clock: int) -> int: ...
    def nvmlDeviceGetCurrentClocksThrottleReasons(self, handle: Any) -> int: ...
    def nvmlDeviceGetTemperature(self, handle: Any, sensor: int) -> int: ...
    def nvmlDeviceGetPowerUsage(self, handle: Any) -> int: ...
    def nvmlDeviceGetEnforcedPowerLimit(self, handle: Any) -> int: ...
    def nvmlDeviceGetComputeRunningProcesses(self, handle: Any) -> Sequence[Any]: ...
    def nvmlDeviceGetGraphicsRunningProcesses(self, handle: Any) -> Sequence[Any]: ...


@dataclass(frozen=True, slots=True)
class GpuProcess:
    pid: int
    kind: str
    """``compute``, ``graphics`` or ``compute+graphics``."""
    used_memory_bytes: int | None
    name: str | None
    """From psutil; ``None`` when the pid is not visible here (another pid namespace, gone)."""


@dataclass(frozen=True, slots=True)
class GpuDevice:
    index: int
    name: str | None = None
    uuid: str | None = None
    utilization_ratio: float | None = None
    """Share of the last sample period a kernel ran (NVML's utilization.gpu ÷ 100)."""
    memory_utilization_ratio: float | None = None
    """Share of it the memory was read or written (NVML's utilization.memory ÷ 100)."""
    memory_used_bytes: int | None = None
    memory_total_bytes: int | None = None
    sm_clock_mhz: int | None = None
    sm_clock_max_mhz: int | None = None
    throttle_reasons: tuple[str, ...] | None = None
    """Why the clocks are below their maximum, decoded (see :data:`THROTTLE_REASONS`)."""
    temperature_c: int | None = None
    power_draw_w: float | None = None
    power_limit_w: float | None = None
    processes: tuple[GpuProcess, ...] | None = None


@dataclass(frozen=True, slots=True)
class GpuReading:
    available: bool
    reason: str | None = None
    """Why ``available`` is False; ``None`` when it is True."""
    driver_version: str | None = None
    devices: tuple[GpuDevice, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def window_values(self) -> dict[str, float | None]:
        """What is averaged per stats window: the busiest device's utilization (0–1) and its SM
        clock as a share of the maximum. Empty without a GPU."""
        devices = [d for d in self.devices if d.utilization_ratio is not None] if self.available else []
        if not devices:
            return {}
        busiest = max(devices, key=lambda d: d.utilization_ratio or 0)
        clock = (
            busiest.sm_clock_mhz / busiest.sm_clock_max_mhz
            if busiest.sm_clock_mhz and busiest.sm_clock_max_mhz
            else None
        )
        return {"gpu_utilization_ratio": float(busiest.utilization_ratio or 0), "gpu_sm_clock_ratio": clock}


def _unavailable_reason(exc: Exception) -> str:
    code = getattr(exc, "value", None)
    if code in (_ERROR_LIBRARY_NOT_FOUND, _ERROR_DRIVER_NOT_LOADED):
        return f"no NVIDIA driver: {exc}"
    if code == _ERROR_NO_PERMISSION:
        return f"no permission to use NVML: {exc}"
    return f"NVML failed to initialise: {exc}"


class GpuCollector:
    """Samples every NVIDIA device NVML sees. Thread-safe; call :meth:`close` to release NVML."""

    def __init__(self, nvml: Nvml = pynvml, clock: Clock = SYSTEM_CLOCK, retry_interval_s: float = 60.0) -> None:
        if retry_interval_s < 0:
            raise ValueError(f"retry_interval_s must be >= 0, got {retry_interval_s}")
        self._nvml = nvml
        self._clock = clock
        self._retry_interval_s = retry_interval_s
        self._guard = FieldGuard(logger)
        self._lock = threading.Lock()
        self._initialised = False
        self._last_attempt: float | None = None
        self._reason: str | None = None
        self._driver_version: str | None = None
        self._use_event_reasons = hasattr(nvml, "nvmlDeviceGetCurrentClocksEventReasons")

    def sample(self) -> GpuReading:
        with self._lock:
            if not self._ensure_initialised():
                return GpuReading(available=False, reason=self._reason)
            try:
                count = int(self._nvml.nvmlDeviceGetCount())
            except Exception as exc:
                self._guard.report("device_count", exc)
                return GpuReading(False, f"cannot count devices: {exc}", self._driver_version)
            if count == 0:
                return GpuReading(False, "NVML sees no GPU", self._driver_version)
            devices = tuple(self._device(i) for i in range(count))
            return GpuReading(True, None, self._driver_version, devices)

    def close(self) -> None:
        with self._lock:
            if self._initialised:
                self._initialised = False
                self._last_attempt = None
                self._guard.read("shutdown", self._nvml.nvmlShutdown)

    def _ensure_initialised(self) -> bool:
        if self._initialised:
            return True
        now = self._clock.now()
        if self._last_attempt is not None and now - self._last_attempt < self._retry_interval_s:
            return False
        self._last_attempt = now
        try:
            self._nvml.nvmlInit()
        except Exception as exc:
            reason = _unavailable_reason(exc)
            if reason != self._reason:
                logger.info("GPU telemetry off: %s", reason)
            self._reason = reason
            return False
        self._initialised, self._reason = True, None
        self._driver_version = self._guard.read("driver_version", lambda: str(self._nvml.nvmlSystemGetDriverVersion()))
        return True

    def _device(self, index: int) -> GpuDevice:
        nvml = self._nvml
        handle = self._read(index, "handle", lambda: nvml.nvmlDeviceGetHandleByIndex(index))
        if handle is None:
            return GpuDevice(index)

        def read(field: str, reader: Callable[[Any], Any]) -> Any:
            return self._read(index, field, lambda: reader(handle))

        utilization = read("utilization", nvml.nvmlDeviceGetUtilizationRates)
        memory = read("memory", nvml.nvmlDeviceGetMemoryInfo)
        power_mw = read("power_draw", nvml.nvmlDeviceGetPowerUsage)
        limit_mw = read("power_limit", nvml.nvmlDeviceGetEnforcedPowerLimit)
        reasons = read("throttle_reasons", self._throttle_mask)
        return GpuDevice(
            index=index,
            name=read("name", lambda h: str(nvml.nvmlDeviceGetName(h))),
            uuid=read("uuid", lambda h: str(nvml.nvmlDeviceGetUUID(h))),
            utilization_ratio=None if utilization is None else int(utilization.gpu) / 100.0,
            memory_utilization_ratio=None if utilization is None else int(utilization.memory) / 100.0,
            memory_used_bytes=None if memory is None else int(memory.used),
            memory_total_bytes=None if memory is None else int(memory.total),
            sm_clock_mhz=read("sm_clock", lambda h: int(nvml.nvmlDeviceGetClockInfo(h, _CLOCK_SM))),
            sm_clock_max_mhz=read("sm_clock_max", lambda h: int(nvml.nvmlDeviceGetMaxClockInfo(h, _CLOCK_SM))),
            throttle_reasons=None if reasons is None else decode_throttle_reasons(int(reasons)),
            temperature_c=read("temperature", lambda h: int(nvml.nvmlDeviceGetTemperature(h, _TEMPERATURE_GPU))),
            power_draw_w=None if power_mw is None else power_mw / 1000.0,
            power_limit_w=None if limit_mw is None else limit_mw / 1000.0,
            processes=read("processes", lambda h: self._processes(index, h)),
        )

    def _read(self, index: int, field: str, reader: Callable[[], Any]) -> Any:
        return self._guard.read(f"gpu {index} {field}", reader)

    def _throttle_mask(self, handle: Any) -> int:
        """The throttle reason mask: ``…ClocksEventReasons`` where NVML has it, else ``…ClocksThrottleReasons``."""
        if self._use_event_reasons:
            try:
                return int(self._nvml.nvmlDeviceGetCurrentClocksEventReasons(handle))
            except self._nvml.NVMLError as exc:
                if getattr(exc, "value", None) != _ERROR_FUNCTION_NOT_FOUND:
                    raise
                self._use_event_reasons = False  # a newer pynvml over an older driver
        return int(self._nvml.nvmlDeviceGetCurrentClocksThrottleReasons(handle))

    def _processes(self, index: int, handle: Any) -> tuple[GpuProcess, ...]:
        """Compute and graphics processes, one entry per pid; raises only if neither list can be read."""
        found: dict[int, tuple[list[str], int | None]] = {}
        failures: list[Exception] = []
        for kind, lister in (
            ("compute", self._nvml.nvmlDeviceGetComputeRunningProcesses),
            ("graphics", self._nvml.nvmlDeviceGetGraphicsRunningProcesses),
        ):
            try:
                listed = lister(handle)
            except self._nvml.NVMLError as exc:
                failures.append(exc)
                self._guard.report(f"gpu {index} {kind} processes", exc)
                continue
            for proc in listed:
                kinds, used = found.setdefault(int(proc.pid), ([], None))
                memory = getattr(proc, "usedGpuMemory", None)  # None: NVML_VALUE_NOT_AVAILABLE
                kinds.append(kind)
                found[int(proc.pid)] = (kinds, used if memory is None else max(int(memory), used or 0))
        if len(failures) == 2:
            raise failures[0]
        return tuple(
            GpuProcess(pid, "+".join(kinds), used, _process_name(pid)) for pid, (kinds, used) in sorted(found.items())
        )


def _process_name(pid: int) -> str | None:
    try:
        return psutil.Process(pid).name()
    except (psutil.Error, OSError):
        return None


def main() -> None:
    collector = GpuCollector()
    try:
        print(json.dumps(collector.sample().to_dict(), indent=2))
    finally:
        collector.close()


if __name__ == "__main__":
    main()
