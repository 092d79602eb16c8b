"""A peer server's process tree: start it on a free loopback port in a session of its own,
watch the tree's memory, and stop the whole tree, whatever happens.

Stopping: SIGTERM to the server (each shuts its own children down: Ray its cluster, PyTriton
its ``tritonserver``), then, after a grace period, SIGTERM and SIGKILL to whatever of the tree
is left — every descendant seen while it ran, and everything still in its session.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from servoscope.loadgen import Endpoint

RSS_PERIOD_S = 0.25
STOP_GRACE_S = 30.0
KILL_GRACE_S = 5.0


def tree(pid: int) -> list[psutil.Process]:
    """The process and all its descendants (empty once it is gone)."""
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def tree_rss_bytes(processes: list[psutil.Process]) -> int:
    total = 0
    for process in processes:
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            total += process.memory_info().rss
    return total


@dataclass
class TreeWatch:
    """Samples the tree every :data:`RSS_PERIOD_S` on a thread: peak RSS (the sum over the tree;
    pages shared between processes count once per process) and every pid seen."""

    pid: int
    peak_rss_bytes: int = 0
    seen: dict[int, psutil.Process] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=f"tree-watch-{self.pid}", daemon=True)
        self._thread.start()

    def sample(self) -> list[psutil.Process]:
        processes = tree(self.pid)
        for process in processes:
            self.seen.setdefault(process.pid, process)
        self.peak_rss_bytes = max(self.peak_rss_bytes, tree_rss_bytes(processes))
        return processes

    def pids(self) -> list[int]:
        return [p.pid for p in tree(self.pid)]

    def _run(self) -> None:
        while not self._stop.wait(RSS_PERIOD_S):
            self.sample()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()


@dataclass(frozen=True)
class Launched:
    endpoint: Endpoint
    process: subprocess.Popen[bytes]
    watch: TreeWatch


@contextlib.contextmanager
def launched(argv: list[str], port: int, environment: dict[str, str], log_path: Path, cwd: Path) -> Iterator[Launched]:
    """Run ``argv --host 127.0.0.1 --port <port>`` in a new session; always stop its whole tree."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    cwd.mkdir(parents=True, exist_ok=True)
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [*argv, "--host", "127.0.0.1", "--port", str(port)],
            cwd=cwd,
            env={**os.environ, **environment},
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
        watch = TreeWatch(process.pid)
        watch.start()
        try:
            yield Launched(Endpoint("127.0.0.1", port), process, watch)
        finally:
            watch.stop()
            stop_tree(process, watch)


def stop_tree(process: subprocess.Popen[bytes], watch: TreeWatch) -> None:
    watch.sample()  # the descendants alive now, before the server takes them down
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=STOP_GRACE_S)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        left = [p for p in watch.seen.values() if _alive(p)]
        if not left and process.poll() is not None:
            break
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, sig)  # the session's group: its id is the server's pid
        for p in left:
            with contextlib.suppress(psutil.NoSuchProcess):
                p.send_signal(sig)
        psutil.wait_procs(left, timeout=KILL_GRACE_S)
    process.wait(timeout=KILL_GRACE_S)


def _alive(process: psutil.Process) -> bool:
    """Still running and still the same process (its pid not reused since it was seen)."""
    with contextlib.suppress(psutil.NoSuchProcess):
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    return False
