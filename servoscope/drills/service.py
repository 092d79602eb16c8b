"""The service under drill: ``servoscope serve`` in a subprocess on a free 127.0.0.1 port,
waited for by polling readiness with a deadline, always stopped; and its documents read back."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from servoscope.loadgen import Endpoint
from servoscope.models.prepare import DEFAULT_MODEL

READY_DEADLINE_S = 120.0
STOP_DEADLINE_S = 30.0
HTTP_TIMEOUT_S = 10.0


class ServiceError(RuntimeError):
    """The service under drill did not start, or did not answer."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Service:
    endpoint: Endpoint
    process: subprocess.Popen[bytes]
    log: Path
    flags: tuple[str, ...]

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def url(self) -> str:
        return f"http://{self.endpoint.host}:{self.endpoint.port}"

    def get(self, path: str) -> bytes:
        with urllib.request.urlopen(self.url + path, timeout=HTTP_TIMEOUT_S) as response:  # loopback only
            return bytes(response.read())

    def json(self, path: str) -> dict[str, Any]:
        return dict(json.loads(self.get(path)))

    def log_tail(self, lines: int = 30) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        return "(no log)"

    def wait_ready(self, deadline_s: float = READY_DEADLINE_S) -> None:
        deadline = time.monotonic() + deadline_s
        delay = 0.05
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ServiceError(f"servoscope serve exited with {self.process.returncode}:\n{self.log_tail()}")
            with contextlib.suppress(OSError, urllib.error.URLError):
                if self.get("/v2/health/ready") is not None:
                    return
            time.sleep(delay)  # poll backoff while waiting for a condition with a deadline
            delay = min(delay * 1.5, 0.5)
        raise ServiceError(f"servoscope serve not ready within {deadline_s}s:\n{self.log_tail()}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(STOP_DEADLINE_S)
                return
            except subprocess.TimeoutExpired:
                self.process.kill()
        self.process.wait(STOP_DEADLINE_S)


def serve_command(repository: Path, port: int, flags: tuple[str, ...]) -> list[str]:
    return [
        sys.executable,
        "-m",
        "servoscope",
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--grpc-port",
        "0",
        "--model-repository",
        str(repository),
        "--models",
        DEFAULT_MODEL,
        "--log-level",
        "warning",
        *flags,
    ]


def clean_env() -> dict[str, str]:
    """This environment without SERVOSCOPE_* settings: the drill states the whole configuration."""
    return {k: v for k, v in os.environ.items() if not k.startswith("SERVOSCOPE_")}


@contextlib.contextmanager
def running(repository: Path, flags: tuple[str, ...], log: Path) -> Iterator[Service]:
    """A ready service with ``flags``; stopped on exit whatever happened."""
    port = free_port()
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("wb") as out:
        process = subprocess.Popen(
            serve_command(repository, port, flags), env=clean_env(), stdout=out, stderr=subprocess.STDOUT
        )
    service = Service(Endpoint("127.0.0.1", port), process, log, flags)
    try:
        service.wait_ready()
        yield service
    finally:
        service.stop()
