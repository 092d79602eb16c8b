"""The GPU collector, against a recorded fake of NVML's answers and against the real pynvml here."""

from __future__ import annotations

import ctypes
import json
import logging
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import psutil
import pytest

from servoscope.clock import ManualClock
from servoscope.telemetry.gpu import THROTTLE_REASONS, GpuCollector, GpuProcess, GpuReading, decode_throttle_reasons
from servoscope.telemetry.live import LiveCollector
from servoscope.telemetry.monitor import Readings

RECORDING = Path(__file__).parent / "data" / "nvml" / "two_devices.json"
NVML_ERRORS = {  # name: (NVML return code, pynvml's message)
    "Uninitialized": (1, "Uninitialized"),
    "NotSupported": (3, "Not Supported"),
    "NoPermission": (4, "Insufficient Permissions"),
    "DriverNotLoaded": (9, "Driver Not Loaded"),
    "LibraryNotFound": (12, "NVML Shared Library Not Found"),
    "FunctionNotFound": (13, "Function Not Found"),
    "GpuIsLost": (15, "GPU is lost"),
}


class FakeNvmlError(Exception):
    """Like ``pynvml.NVMLError``: carries NVML's return code as ``value``."""

    def __init__(self, name: str) -> None:
        self.value, self.message = NVML_ERRORS[name]
        super().__init__(self.message)

    def __str__(self) -> str:
        return self.message


@dataclass(frozen=True)
class FakeHandle:
    index: int


class FakeNvml:
    """A fake ``pynvml`` that answers each device call from a recording (tests/data/nvml/*.json).

    It has exactly the device functions the recording names (``without`` removes some, as an
    older pynvml would lack them), refuses device calls before ``nvmlInit`` as NVML does, and
    counts init and shutdown calls.
    """

    NVMLError = FakeNvmlError

    def __init__(self, recording: dict[str, Any], init_error: str | None = None, without: tuple[str, ...] = ()) -> None:
        self.recording = recording
        self.init_error = init_error
        self.without = without
        self.init_calls = 0
        self.shutdown_calls = 0
        self.initialised = False

    def nvmlInit(self) -> None:
        self.init_calls += 1
        if self.init_error is not None:
            raise FakeNvmlError(self.init_error)
        self.initialised = True

    def nvmlShutdown(self) -> None:
        self.shutdown_calls += 1
        self.initialised = False

    def nvmlSystemGetDriverVersion(self) -> str:
        return str(self._answer(self.recording["nvmlSystemGetDriverVersion"]))

    def nvmlDeviceGetCount(self) -> int:
        self._require_init()
        return len(self.recording["devices"])

    def nvmlDeviceGetHandleByIndex(self, index: int) -> FakeHandle:
        self._require_init()
        if not 0 <= index < len(self.recording["devices"]):
            raise FakeNvmlError("NotSupported")
        return FakeHandle(index)

    def __getattr__(self, name: str) -> Callable[..., Any]:
        if not name.startswith("nvmlDevice") or name in self.without:
            raise AttributeError(name)

        def call(handle: FakeHandle, *_args: int) -> Any:
            self._require_init()
            device = self.recording["devices"][handle.index]
            if name not in device:
                raise AttributeError(f"the recording has no answer for {name}")
            return self._answer(device[name])

        return call

    def _require_init(self) -> None:
        if not self.initialised:
            raise FakeNvmlError("Uninitialized")

    def _answer(self, recorded: Any) -> Any:
        if isinstance(recorded, dict) and "nvml_error" in recorded:
            raise FakeNvmlError(recorded["nvml_error"])
        if isinstance(recorded, dict):
            return SimpleNamespace(**recorded)
        if isinstance(recorded, list):
            return [SimpleNamespace(**{**r, "pid": os.getpid() if r["pid"] == "self" else r["pid"]}) for r in recorded]
        return recorded


@pytest.fixture
def recording() -> dict[str, Any]:
    answers: dict[str, Any] = json.loads(RECORDING.read_text())
    return answers


@pytest.fixture
def fake(recording: dict[str, Any]) -> FakeNvml:
    return FakeNvml(recording)


def test_every_field_of_a_busy_h100_is_decoded(fake: FakeNvml) -> None:
    reading = GpuCollector(nvml=fake).sample()
    assert (reading.available, reading.reason, reading.driver_version) == (True, None, "550.54.15")
    assert len(reading.devices) == 2
    h100 = reading.devices[0]
    assert h100.index == 0
    assert h100.name == "NVIDIA H100 80GB HBM3"
    assert h100.uuid == "GPU-5b3e6c1a-9f2d-4e7b-8a41-0c6d2f9e7b13"
    assert (h100.utilization_ratio, h100.memory_utilization_ratio) == (0.87, 0.41)
    assert (h100.memory_used_bytes, h100.memory_total_bytes) == (62304124928, 85520809984)
    assert (h100.sm_clock_mhz, h100.sm_clock_max_mhz) == (1755, 1980)
    assert h100.throttle_reasons == ("sw_power_cap", "sw_thermal_slowdown")
    assert h100.temperature_c == 71
    assert h100.power_draw_w == pytest.approx(684.512)
    assert h100.power_limit_w == pytest.approx(700.0)
    assert h100.processes == (
        GpuProcess(os.getpid(), "compute+graphics", 61203283968, psutil.Process().name()),
        GpuProcess(4194304, "compute", None, None),  # above any Linux pid_max: not visible here
    )


def test_window_values_and_throttle_metric_of_a_recorded_reading(fake: FakeNvml) -> None:
    """From the recording (a FAKE NVML: no GPU here): the busiest device's utilization and clock share,
    averaged per stats window, and the throttle reasons as a Prometheus gauge."""
    reading = GpuCollector(nvml=fake).sample()
    values = reading.window_values()
    assert values["gpu_utilization_ratio"] == 0.87
    assert values["gpu_sm_clock_ratio"] == pytest.approx(1755 / 1980)
    assert GpuReading(False, reason="none").window_values() == {}
    collector = LiveCollector(None, lambda: None, Readings(gpu=reading), lambda: 0)  # type: ignore[arg-type]
    families = {f.name: f for f in collector._gpu()}
    reasons = {(s.labels["gpu"], s.labels["reason"]) for s in families["servoscope_gpu_throttle_reason"].samples}
    assert {("0", "sw_power_cap"), ("0", "sw_thermal_slowdown")} <= reasons


def test_a_field_the_device_does_not_support_is_none(fake: FakeNvml) -> None:
    vgpu = GpuCollector(nvml=fake).sample().devices[1]
    assert (vgpu.power_draw_w, vgpu.power_limit_w, vgpu.processes) == (None, None, None)
    assert vgpu.name == "GRID A100D-40C"
    assert (vgpu.memory_used_bytes, vgpu.memory_total_bytes) == (543162368, 42949672960)
    assert (vgpu.sm_clock_mhz, vgpu.sm_clock_max_mhz, vgpu.temperature_c) == (210, 1410, 34)
    assert vgpu.throttle_reasons == ("gpu_idle",)


def test_one_process_list_failing_leaves_the_other(recording: dict[str, Any]) -> None:
    recording["devices"][0]["nvmlDeviceGetGraphicsRunningProcesses"] = {"nvml_error": "NotSupported"}
    processes = GpuCollector(nvml=FakeNvml(recording)).sample().devices[0].processes
    assert processes is not None
    assert [(p.pid, p.kind) for p in processes] == [(os.getpid(), "compute"), (4194304, "compute")]


def test_a_failing_field_is_logged_once(fake: FakeNvml, caplog: pytest.LogCaptureFixture) -> None:
    collector = GpuCollector(nvml=fake)
    with caplog.at_level(logging.DEBUG, logger="servoscope.telemetry.gpu"):
        for _ in range(3):
            collector.sample()
    power = [r for r in caplog.records if "gpu 1 power_draw" in r.getMessage()]
    assert [r.levelno for r in power] == [logging.WARNING, logging.DEBUG, logging.DEBUG]
    assert "Not Supported" in power[0].getMessage()


def test_a_lost_gpu_makes_its_fields_none(recording: dict[str, Any]) -> None:
    device = recording["devices"][0]
    for name in list(device):
        device[name] = {"nvml_error": "GpuIsLost"}
    lost = GpuCollector(nvml=FakeNvml(recording)).sample().devices[0]
    assert lost.index == 0
    assert all(getattr(lost, f) is None for f in lost.__dataclass_fields__ if f != "index")


def test_init_failure_reports_unavailable_with_the_reason(recording: dict[str, Any]) -> None:
    reading = GpuCollector(nvml=FakeNvml(recording, init_error="LibraryNotFound")).sample()
    assert (reading.available, reading.reason) == (False, "no NVIDIA driver: NVML Shared Library Not Found")
    assert (reading.driver_version, reading.devices) == (None, ())


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        ("DriverNotLoaded", "no NVIDIA driver: Driver Not Loaded"),
        ("NoPermission", "no permission to use NVML: Insufficient Permissions"),
        ("GpuIsLost", "NVML failed to initialise: GPU is lost"),
    ],
)
def test_init_failure_reasons(recording: dict[str, Any], error: str, reason: str) -> None:
    assert GpuCollector(nvml=FakeNvml(recording, init_error=error)).sample().reason == reason


def test_init_is_retried_at_most_once_per_interval(recording: dict[str, Any]) -> None:
    fake, clock = FakeNvml(recording, init_error="DriverNotLoaded"), ManualClock()
    collector = GpuCollector(nvml=fake, clock=clock, retry_interval_s=60.0)
    for _ in range(5):
        assert not collector.sample().available
    clock.advance(59.0)
    assert not collector.sample().available
    assert fake.init_calls == 1
    clock.advance(1.0)
    fake.init_error = None  # the driver got loaded
    assert collector.sample().available
    for _ in range(3):
        collector.sample()
    assert fake.init_calls == 2


def test_close_shuts_nvml_down_once(fake: FakeNvml) -> None:
    collector = GpuCollector(nvml=fake)
    collector.sample()
    collector.close()
    collector.close()
    assert fake.shutdown_calls == 1


def test_without_the_event_call_the_throttle_call_is_used(recording: dict[str, Any]) -> None:
    fake = FakeNvml(recording, without=("nvmlDeviceGetCurrentClocksEventReasons",))
    devices = GpuCollector(nvml=fake).sample().devices
    assert [d.throttle_reasons for d in devices] == [("sw_power_cap", "sw_thermal_slowdown"), ("gpu_idle",)]


def test_a_driver_without_the_event_function_falls_back(recording: dict[str, Any]) -> None:
    for device in recording["devices"]:
        device["nvmlDeviceGetCurrentClocksEventReasons"] = {"nvml_error": "FunctionNotFound"}
    devices = GpuCollector(nvml=FakeNvml(recording)).sample().devices
    assert [d.throttle_reasons for d in devices] == [("sw_power_cap", "sw_thermal_slowdown"), ("gpu_idle",)]


def test_no_devices_reports_unavailable(recording: dict[str, Any]) -> None:
    recording["devices"] = []
    reading = GpuCollector(nvml=FakeNvml(recording)).sample()
    assert (reading.available, reading.reason, reading.driver_version) == (False, "NVML sees no GPU", "550.54.15")


@pytest.mark.parametrize(
    ("mask", "names"),
    [
        (0, ()),
        (0x24, ("sw_power_cap", "sw_thermal_slowdown")),
        (0x48, ("hw_slowdown", "hw_thermal_slowdown")),
        (0x1FF, tuple(name for bit, name in THROTTLE_REASONS if bit <= 0x100)),
        (0x800 | 0x1, ("gpu_idle", "bit_11")),
    ],
)
def test_decode_throttle_reasons(mask: int, names: tuple[str, ...]) -> None:
    assert decode_throttle_reasons(mask) == names


def test_throttle_reason_names_match_pynvml_bits() -> None:
    import pynvml

    for bit, name in THROTTLE_REASONS:
        camel = "".join(part.capitalize() for part in name.split("_"))
        assert getattr(pynvml, f"nvmlClocksThrottleReason{camel}") == bit, name


def test_reading_is_json(fake: FakeNvml) -> None:
    data = json.loads(json.dumps(GpuCollector(nvml=fake).sample().to_dict()))
    assert data["devices"][0]["throttle_reasons"] == ["sw_power_cap", "sw_thermal_slowdown"]
    assert data["devices"][1]["processes"] is None


def _nvml_library_present() -> bool:
    try:
        ctypes.CDLL("libnvidia-ml.so.1")
    except OSError:
        return False
    return True


@pytest.mark.skipif(_nvml_library_present(), reason="this machine has an NVIDIA driver")
def test_real_nvml_without_a_driver_reports_unavailable() -> None:
    collector = GpuCollector()
    for _ in range(3):
        reading = collector.sample()
        assert (reading.available, reading.devices) == (False, ())
        assert reading.reason == "no NVIDIA driver: NVML Shared Library Not Found"
    collector.close()


@pytest.mark.skipif(not _nvml_library_present(), reason="no NVIDIA driver on this machine")
def test_real_nvml_with_a_driver_reports_devices() -> None:
    collector = GpuCollector()
    try:
        reading = collector.sample()
    finally:
        collector.close()
    assert reading.available, reading.reason
    assert reading.driver_version and reading.devices
    for device in reading.devices:
        assert device.name and device.uuid
        assert device.memory_total_bytes and device.memory_total_bytes > 0


def test_module_prints_one_reading_as_json() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "servoscope.telemetry.gpu"], capture_output=True, text=True, timeout=60, check=True
    )
    reading = json.loads(done.stdout)
    assert set(reading) == {"available", "reason", "driver_version", "devices"}
    assert reading["available"] == bool(reading["devices"])
