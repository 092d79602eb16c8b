"""The system collector, against the real machine and the real test process."""

from __future__ import annotations

import json
import logging
import socket
import subprocess
import sys
import threading
import time

import psutil
import pytest

from servoscope.telemetry.system import SystemCollector, SystemReading, busy_ratio

RATES = (
    "net_sent_bytes_per_s",
    "net_recv_bytes_per_s",
    "disk_read_bytes_per_s",
    "disk_write_bytes_per_s",
    "ctx_switches_per_s",
    "process_voluntary_ctx_switches_per_s",
    "process_involuntary_ctx_switches_per_s",
)
INTERVAL_S = 0.1  # between the two samples of a rate; a window, not a wait for something


def two_samples(collector: SystemCollector) -> SystemReading:
    collector.sample()
    time.sleep(INTERVAL_S)
    return collector.sample()


def test_the_first_sample_primes() -> None:
    first = SystemCollector().sample()
    assert first.interval_s is None
    assert first.cpu_utilization_ratio is None and first.cpu_core_utilization_ratio is None
    assert first.process_cpu_cores is None
    assert all(getattr(first, rate) is None for rate in RATES)
    assert first.memory_total_bytes and first.process_rss_bytes  # levels need no interval


def test_the_second_sample_reports_cpu_and_rates_in_sane_ranges() -> None:
    reading = two_samples(SystemCollector())
    assert reading.interval_s is not None and reading.interval_s > 0
    assert reading.cpu_count is not None and reading.cpu_count == psutil.cpu_count()
    assert reading.cpu_utilization_ratio is not None and 0.0 <= reading.cpu_utilization_ratio <= 1.0
    per_core = reading.cpu_core_utilization_ratio
    assert per_core is not None and len(per_core) == reading.cpu_count
    assert all(0.0 <= r <= 1.0 for r in per_core)
    assert reading.process_cpu_cores is not None
    assert 0.0 <= reading.process_cpu_cores <= reading.cpu_count
    for rate in RATES:
        value = getattr(reading, rate)
        if rate.startswith("disk_") and psutil.disk_io_counters() is None:
            continue  # no block devices visible (some containers)
        assert value is not None and value >= 0.0, rate


def test_levels_in_sane_ranges() -> None:
    reading = SystemCollector().sample()
    assert reading.memory_total_bytes is not None and reading.memory_available_bytes is not None
    assert 0 < reading.memory_available_bytes <= reading.memory_total_bytes
    assert reading.memory_used_ratio is not None and 0.0 <= reading.memory_used_ratio <= 1.0
    assert reading.swap_total_bytes is not None and reading.swap_used_bytes is not None
    assert 0 <= reading.swap_used_bytes <= reading.swap_total_bytes
    assert reading.process_rss_bytes is not None and 0 < reading.process_rss_bytes < reading.memory_total_bytes
    assert reading.process_threads is not None and reading.process_threads >= threading.active_count()
    assert reading.load_average is not None and len(reading.load_average) == 3
    assert all(load >= 0.0 for load in reading.load_average)
    assert reading.process_tcp_connections is not None
    assert all(isinstance(k, str) and v > 0 for k, v in reading.process_tcp_connections.items())


def test_open_tcp_connections_are_counted_by_status() -> None:
    with (
        socket.create_server(("127.0.0.1", 0)) as listener,
        socket.create_connection(listener.getsockname()) as client,
        listener.accept()[0] as served,
    ):
        assert client.fileno() >= 0 and served.fileno() >= 0
        counts = SystemCollector().sample().process_tcp_connections
    assert counts is not None
    assert counts.get("LISTEN", 0) >= 1
    assert counts.get("ESTABLISHED", 0) >= 2  # both ends belong to this process


def test_a_burning_thread_shows_more_process_cpu_than_idle() -> None:
    collector = SystemCollector()
    idle = two_samples(collector).process_cpu_cores

    stop = threading.Event()

    def burn() -> None:
        # Until it has used 0.2 s of CPU time (or, on a starved machine, 30 s have passed).
        start, deadline = time.thread_time(), time.monotonic() + 30.0
        while time.thread_time() - start < 0.2 and time.monotonic() < deadline and not stop.is_set():
            sum(range(1000))

    collector.sample()
    burner = threading.Thread(target=burn, daemon=True)
    burner.start()
    burner.join(timeout=60.0)
    stop.set()
    busy = collector.sample().process_cpu_cores
    assert idle is not None and busy is not None
    assert busy > idle


def test_a_vanished_process_makes_only_its_fields_none(caplog: pytest.LogCaptureFixture) -> None:
    child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    collector = SystemCollector(process=psutil.Process(child.pid))
    collector.sample()
    assert child.stdin is not None
    child.stdin.close()
    child.wait(timeout=30)
    with caplog.at_level(logging.DEBUG, logger="servoscope.telemetry.system"):
        reading = collector.sample()
        collector.sample()
    assert reading.process_rss_bytes is None and reading.process_threads is None
    assert reading.process_cpu_cores is None and reading.process_tcp_connections is None
    assert reading.memory_total_bytes is not None and reading.cpu_utilization_ratio is not None
    rss = [r.levelno for r in caplog.records if r.getMessage().startswith("process_memory_info unavailable")]
    assert rss == [logging.WARNING, logging.DEBUG]


def test_a_psutil_error_becomes_none(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*_args: object, **_kwargs: object) -> None:
        raise psutil.AccessDenied()

    collector = SystemCollector()
    collector.sample()
    monkeypatch.setattr(psutil, "net_io_counters", broken)
    monkeypatch.setattr(psutil.Process, "net_connections", broken)
    reading = collector.sample()
    assert reading.net_sent_bytes_per_s is None and reading.net_recv_bytes_per_s is None
    assert reading.process_tcp_connections is None
    assert reading.memory_total_bytes is not None


def test_busy_ratio_follows_psutil() -> None:
    times = type(psutil.cpu_times())
    fields = times._fields
    before = times(*(0.0 for _ in fields))
    after = times(*(1.0 if f == "user" else 3.0 if f == "idle" else 0.0 for f in fields))
    assert busy_ratio(before, after) == 0.25
    assert busy_ratio(after, after) is None  # no time passed


def test_reading_is_json() -> None:
    data = json.loads(json.dumps(two_samples(SystemCollector()).to_dict()))
    assert set(data) == set(SystemReading.__dataclass_fields__)
    assert isinstance(data["cpu_core_utilization_ratio"], list)
