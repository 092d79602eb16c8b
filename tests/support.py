"""Test helpers (no fixtures): real photos, real servers on loopback, and small assertions.

A server here is ``python -m servoscope serve`` in a subprocess on an unused 127.0.0.1 port,
waited for by polling ``/v2/health/ready`` until a deadline, never by sleeping a fixed time.
"""

from __future__ import annotations

import asyncio
import io
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
import numpy as np
from PIL import Image

from servoscope.models.prepare import DEFAULT_MODEL
from servoscope.pipeline.gauges import Gauges, ModelGauges

REPO_ROOT = Path(__file__).resolve().parents[1]
MODEL = DEFAULT_MODEL
CLASSIFY = f"/v1/models/{MODEL}/classify"
INFER = f"/v2/models/{MODEL}/infer"
READY_DEADLINE_S = 120.0
EXIT_DEADLINE_S = 30.0

# scikit-image's bundled photos whose ImageNet class is unambiguous for EfficientNet-Lite0.
EXPECTED_TOP1: dict[str, frozenset[str]] = {
    "chelsea": frozenset({"tabby", "tiger cat", "Egyptian cat"}),
    "coffee": frozenset({"espresso"}),
    "rocket": frozenset({"missile", "projectile"}),
    "camera": frozenset({"tripod"}),  # the grayscale cameraman: an L-mode image
}
# Top-1 with a wide margin over the second class, so it is the same whatever batch carries it.
CLEAR_TOP1 = ("coffee", "rocket", "camera")

_SAVE_OPTIONS: dict[str, dict[str, Any]] = {
    "JPEG": {"quality": 90},
    "PNG": {"compress_level": 1},
    "WEBP": {"quality": 90},
}


@dataclass(frozen=True)
class Photo:
    name: str
    pixels: np.ndarray
    accepted: frozenset[str]  # acceptable top-1 labels

    def encode(self, fmt: str, scale: int = 1) -> bytes:
        image = Image.fromarray(self.pixels)
        if scale != 1:
            image = image.resize((image.width * scale, image.height * scale), Image.Resampling.BICUBIC)
        out = io.BytesIO()
        image.save(out, fmt, **_SAVE_OPTIONS[fmt])
        return out.getvalue()

    @property
    def jpeg(self) -> bytes:
        return self.encode("JPEG")


# --- servers ---------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class ServerProcess:
    url: str
    process: subprocess.Popen[bytes]
    log: Path
    effective: dict[str, Any] = field(default_factory=dict)  # settings the test configured, as they should show

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self) -> int:
        """SIGTERM, then wait; killed if it outlives the deadline. Returns the exit status."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                return self.process.wait(EXIT_DEADLINE_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
        return self.process.wait(EXIT_DEADLINE_S)


# Time admission refuses what it predicts past the latency objective, and how much that is depends
# on the machine's speed: test servers get an objective no machine misses (a minute), so no test
# depends on speed; the tests of time admission set theirs (--slo-p95-ms, or the environment).
TEST_SLO_P95_MS = "60000"


def _clean_env(extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SERVOSCOPE_")}
    return {**env, "SERVOSCOPE_SLO_P95_MS": TEST_SLO_P95_MS, **extra}


def wait_ready(server: ServerProcess, deadline_s: float = READY_DEADLINE_S) -> None:
    """Poll readiness until ready, the process exits, or the deadline (then it is killed)."""
    with httpx.Client(base_url=server.url, timeout=2.0) as client:

        def ready() -> bool:
            if server.process.poll() is not None:
                raise RuntimeError(f"server exited with {server.process.returncode}:\n{server.log_tail()}")
            try:
                return client.get("/v2/health/ready").status_code == 200
            except httpx.TransportError:
                return False

        try:
            wait_for(ready, "the server ready", deadline_s)
        except AssertionError:
            server.process.kill()
            raise RuntimeError(f"server not ready within {deadline_s}s:\n{server.log_tail()}") from None


def start_server(
    repository: Path, workdir: Path, args: tuple[str, ...] = (), env: dict[str, str] | None = None
) -> ServerProcess:
    """``servoscope serve`` on a free loopback port, returned once ready. A port taken by another
    process between choosing and binding is retried with a new one (at most three tries)."""
    for attempt in range(3):
        port = free_port()
        log = workdir / f"server-{port}.log"
        command = [sys.executable, "-m", "servoscope", "serve", "--host", "127.0.0.1", "--port", str(port)]
        command += ["--model-repository", str(repository), "--grpc-port", "0", *args]  # gRPC when a test asks
        with log.open("wb") as out:
            process = subprocess.Popen(
                command, cwd=REPO_ROOT, env=_clean_env(env or {}), stdout=out, stderr=subprocess.STDOUT
            )
        server = ServerProcess(f"http://127.0.0.1:{port}", process, log)
        try:
            wait_ready(server)
            return server
        except RuntimeError:
            server.stop()
            if attempt < 2 and "address already in use" in server.log_tail().lower():
                continue
            raise
    raise AssertionError("unreachable")


T = TypeVar("T")
POLL_FIRST_S, POLL_MAX_S = 0.02, 0.5


def polls(deadline_s: float, what: str, first_s: float = POLL_FIRST_S, most_s: float = POLL_MAX_S) -> Iterator[float]:
    """The pauses between the polls of one wait, growing from ``first_s`` to ``most_s``; AssertionError
    naming ``what`` once ``deadline_s`` has passed. The tests' one deadline loop: synchronous waits use
    :func:`wait_for`; asynchronous ones ``for pause in polls(…): (check) … await asyncio.sleep(pause)``."""
    deadline = time.monotonic() + deadline_s
    pause = first_s
    while time.monotonic() < deadline:
        yield pause
        pause = min(pause * 1.5, most_s)
    raise AssertionError(f"not within {deadline_s:g} s: {what}")


async def wait_until(condition: Callable[[], bool], what: str = "the condition", deadline_s: float = 20.0) -> None:
    """:func:`wait_for` inside an event loop: the loop keeps running between polls."""
    for pause in polls(deadline_s, what):
        if condition():
            return
        await asyncio.sleep(pause)


def wait_for(condition: Callable[[], T], what: str = "the condition", deadline_s: float = 20.0) -> T:
    """The first truthy value of ``condition()``, polled with a growing pause; fails at the deadline."""
    for pause in polls(deadline_s, what):
        found = condition()
        if found:
            return found
        time.sleep(pause)
    raise AssertionError("unreachable: polls() fails at the deadline")


def metric_value(text: str, name: str, **labels: str) -> float | None:
    """The value of one series in a Prometheus text exposition (labels matched exactly; as in Prometheus,
    a label with an empty value is no label), or None."""
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()) if v)
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            series, _, value = line.rpartition(" ")
            found = ",".join(sorted(pair for pair in series[len(name) :].strip("{}").split(",") if '=""' not in pair))
            if found == want:
                return float(value)
    return None


def metric_sum(text: str, name: str, **labels: str) -> float:
    """The sum of every series of ``name`` whose labels include ``labels``."""
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{"):
            series, _, value = line.rpartition(" ")
            if all(f'{k}="{v}"' in series for k, v in labels.items()):
                total += float(value)
    return total


# --- requests and assertions -----------------------------------------------------------------


def classify(
    client: httpx.Client, body: bytes, content_type: str | None = "image/jpeg", **params: Any
) -> httpx.Response:
    headers = {"Content-Type": content_type} if content_type else {}
    return client.post(CLASSIFY, content=body, headers=headers, params=params)


def top1(response: httpx.Response) -> str:
    assert response.status_code == 200, response.text
    return response.json()["predictions"][0]["label"]


def assert_error(response: httpx.Response, status: int, *words: str) -> str:
    """A ``{"error": message}`` JSON answer with ``status``, its message naming each of ``words``."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"}, body
    message = body["error"]
    assert isinstance(message, str) and message.strip()
    for word in words:
        assert word.lower() in message.lower(), f"{word!r} not in error message {message!r}"
    return message


def idle_gauges(model: str) -> Gauges:
    """The gauges of a service at rest (nothing pending or queued), serving ``model`` on one instance."""
    idle = ModelGauges(
        pending=0,
        pending_limit=64,
        concurrency_limit=64,
        batch_queue=0,
        batch_queue_limit=64,
        batches_in_flight=0,
        instances=1,
    )
    return Gauges(preprocess_queue=0, preprocess_busy=0, preprocess_workers=2, models={model: idle})
