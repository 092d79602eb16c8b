"""Noisy neighbours: processes that compete with the service for CPU or memory, for a bounded
time, always killed. Each is ``python -m servoscope.drills.neighbours KIND`` and exits by itself
after ``--seconds`` even if its parent dies; :func:`running` also kills it on the way out.

- ``cpu``: one busy loop at normal priority (``os.nice(0)``: no lower than the service).
- ``memory``: allocates ``--bytes``, touches every page so it is resident, says ``ready``,
  then keeps sweeping over the pages (they stay resident, and the sweeps load the memory bus).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import select
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

GIB = 1024**3
PAGE = 4096
READY = b"ready\n"
READY_DEADLINE_S = 90.0
MAX_SECONDS = 3600.0


class NeighbourError(RuntimeError):
    """A neighbour could not be started safely."""


@dataclass(frozen=True, slots=True)
class NeighbourSpec:
    kind: str  # "cpu" or "memory"
    seconds: float
    nbytes: int = 0

    def argv(self) -> list[str]:
        argv = [sys.executable, "-m", "servoscope.drills.neighbours", self.kind, "--seconds", f"{self.seconds:.1f}"]
        return argv + (["--bytes", str(self.nbytes)] if self.kind == "memory" else [])


@dataclass
class Neighbours:
    """The neighbour processes started by :func:`running` (their pids stay for the report)."""

    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.processes]

    def stop(self) -> None:
        for p in self.processes:
            if p.poll() is None:
                p.kill()
        for p in self.processes:
            p.wait(10.0)
            if p.stdout is not None:
                p.stdout.close()


def memory_target_bytes(available: int, fraction: float, margin: int = 4 * GIB) -> int:
    """How much a memory neighbour may take: ``fraction`` of what is available, never more than
    available minus ``margin``; an error when that leaves nothing to take."""
    if not 0 < fraction < 1:
        raise ValueError(f"fraction must be in (0, 1), got {fraction}")
    target = min(int(available * fraction), available - margin)
    if target < GIB:
        raise NeighbourError(
            f"only {available / GIB:.1f} GiB available: no room to squeeze beside a {margin / GIB:.0f} GiB margin"
        )
    return target


def _wait_ready(process: subprocess.Popen[bytes], deadline_s: float) -> None:
    assert process.stdout is not None
    ready, _, _ = select.select([process.stdout], [], [], deadline_s)
    line = process.stdout.readline() if ready else b""
    if line != READY:
        raise NeighbourError(
            f"neighbour {process.pid} not ready within {deadline_s}s (said {line!r}, exit {process.poll()})"
        )


@contextlib.contextmanager
def running(specs: Sequence[NeighbourSpec], ready_deadline_s: float = READY_DEADLINE_S) -> Iterator[Neighbours]:
    """Start every neighbour, wait until each says it is ready; kill them all on the way out."""
    started = Neighbours()
    try:
        for spec in specs:
            started.processes.append(subprocess.Popen(spec.argv(), stdout=subprocess.PIPE, stdin=subprocess.DEVNULL))
        for process in started.processes:
            _wait_ready(process, ready_deadline_s)
        yield started
    finally:
        started.stop()


def alive(pid: int) -> bool:
    """Whether process ``pid`` still exists (and is not a zombie)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


# ------------------------------------------------------------------ the neighbour processes


def _say_ready() -> None:
    sys.stdout.buffer.write(READY)
    sys.stdout.buffer.flush()


def burn_cpu(seconds: float) -> None:
    os.nice(0)  # normal priority: the same as the service's inference threads
    end = time.monotonic() + seconds
    _say_ready()
    x = 0
    while time.monotonic() < end:
        for i in range(20_000):
            x ^= i


def hold_memory(nbytes: int, seconds: float) -> None:
    import numpy as np

    end = time.monotonic() + seconds
    block = np.empty(nbytes, dtype=np.uint8)
    block[::PAGE] = 1  # every page touched: resident now
    _say_ready()
    sweep = 0
    while time.monotonic() < end:
        sweep += 1
        block[::PAGE] = sweep & 0xFF


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m servoscope.drills.neighbours", description=__doc__)
    parser.add_argument("kind", choices=("cpu", "memory"))
    parser.add_argument("--seconds", type=float, required=True)
    parser.add_argument("--bytes", type=int, default=0)
    args = parser.parse_args(argv)
    if not 0 < args.seconds <= MAX_SECONDS:
        parser.error(f"--seconds must be in (0, {MAX_SECONDS}], got {args.seconds}")
    if args.kind == "cpu":
        burn_cpu(args.seconds)
    else:
        hold_memory(args.bytes, args.seconds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
