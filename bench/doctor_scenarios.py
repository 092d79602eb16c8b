"""Scenarios made outside the drill code, for ``bench/doctor_accuracy.py``: every part is a separate
process — ``servoscope serve`` (fresh for each window, so its 1 min window holds that window's traffic
only), ``servoscope load`` as the independent load generator, ``servoscope snapshot``, and the faults:
busy-loop neighbours (sustained or bursty), a restart with other settings, a deploy of another model
version, clients uploading over a slow link. Other magnitudes and image sizes than the drills'.

Each scenario names the causes the doctor may rightly give (a combined fault: either of its parts).
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MODEL = "efficientnet_lite0"
READY_DEADLINE_S = 120.0
SMALL = "100%:320x240"
LARGE = "100%:1920x1440"
BUSY = "while True: pass"
BURSTY = (  # 3 s busy, 3 s idle
    "import time\nwhile True:\n    end = time.monotonic() + 3\n"
    "    while time.monotonic() < end: pass\n    time.sleep(3)"
)


@dataclass(frozen=True)
class Window:
    """One window's service flags, offered load and what runs beside it."""

    rate: float
    mix: str = SMALL
    serve: tuple[str, ...] = ()
    neighbours: tuple[str, ...] = ()  # Python sources, each run as its own process
    slow_uploads: int = 0  # clients sending their bodies at SLOW_RATE_BYTES_S
    deploy: bool = False  # serve version 2 of the model: its INT8 variant


@dataclass(frozen=True)
class OutsideScenario:
    name: str
    expected: frozenset[str]
    degraded: Window
    baseline: Window = field(default_factory=lambda: Window(rate=BASE_RATE))


BASE_RATE = 40.0  # req/s of small images: about a third of a 2-core machine's capacity
SLOW_RATE_BYTES_S = 16 * 1024
SCENARIOS: tuple[OutsideScenario, ...] = (
    OutsideScenario("outside-no-change", frozenset({"no-regression"}), Window(BASE_RATE)),
    OutsideScenario(
        "outside-neighbour-2-cores", frozenset({"cpu-contention"}), Window(BASE_RATE, neighbours=(BUSY, BUSY))
    ),
    OutsideScenario(
        "outside-bursty-neighbour", frozenset({"cpu-contention"}), Window(BASE_RATE, neighbours=(BURSTY,) * 2)
    ),
    OutsideScenario("outside-traffic-x1.6", frozenset({"traffic-growth"}), Window(1.6 * BASE_RATE)),
    OutsideScenario("outside-larger-images", frozenset({"input-drift"}), Window(BASE_RATE, mix=LARGE)),
    OutsideScenario(
        "outside-traffic-and-neighbour",
        frozenset({"traffic-growth", "cpu-contention"}),
        Window(1.3 * BASE_RATE, neighbours=(BUSY,)),
    ),
    OutsideScenario(
        "outside-one-instance",
        frozenset({"capacity-change"}),
        Window(BASE_RATE, serve=("--instances", "1", "--intra-op-threads", "1")),
    ),
    OutsideScenario(
        "outside-batch-delay-50ms",
        frozenset({"batching-misconfig"}),
        Window(BASE_RATE, serve=("--max-queue-delay-ms", "50", "--max-batch-size", "16")),
    ),
    OutsideScenario(
        "outside-slow-uploads",
        frozenset({"slow-uploads"}),  # slow ones ~15 % of the requests
        Window(BASE_RATE / 4, slow_uploads=18),
        Window(BASE_RATE / 4),
    ),
    OutsideScenario("outside-deploy-int8", frozenset({"deploy", "no-regression"}), Window(BASE_RATE, deploy=True)),
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "servoscope", *args]


@contextlib.contextmanager
def served(window: Window, repository: Path) -> Iterator[int]:
    port = free_port()
    flags = ("--port", str(port), "--grpc-port", "0", "--models", MODEL, "--model-repository", str(repository))
    proc = subprocess.Popen(cli("serve", *flags, *window.serve), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + READY_DEADLINE_S
        while not _ready(port):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"servoscope serve {' '.join(window.serve)} did not become ready")
            time.sleep(0.5)
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/health/ready", timeout=2) as answer:
            return answer.status == 200
    except OSError:
        return False


@contextlib.contextmanager
def beside(window: Window, port: int) -> Iterator[None]:
    """The window's neighbours and slow uploaders, each its own process, stopped after."""
    procs = [subprocess.Popen([sys.executable, "-c", source]) for source in window.neighbours]
    procs += [
        subprocess.Popen([sys.executable, "-c", SLOW_UPLOADER, str(port), str(SLOW_RATE_BYTES_S)])
        for _ in range(window.slow_uploads)
    ]
    try:
        yield
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()


# One client on a slow link: POSTs a 320×240 JPEG (about 40 KB, like the others') at the given bytes per
# second, again and again.
SLOW_UPLOADER = """
import io, socket, sys, time
from PIL import Image
port, rate = int(sys.argv[1]), int(sys.argv[2])
out = io.BytesIO()
Image.effect_noise((320, 240), 40).convert("RGB").save(out, "JPEG", quality=85)
body = out.getvalue()
while True:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=60) as s:
            head = "POST /v1/models/efficientnet_lite0/classify HTTP/1.1\\r\\nHost: x\\r\\n"
            s.sendall((head + "Content-Type: image/jpeg\\r\\nContent-Length: %d\\r\\n\\r\\n" % len(body)).encode())
            for i in range(0, len(body), rate // 4):
                s.sendall(body[i:i + rate // 4]); time.sleep(0.25)
            s.recv(4096)
    except OSError:
        time.sleep(0.5)
"""


def repository(tmp: Path, deploy: bool) -> Path:
    """The shared models, or a copy whose model has a version 2: the INT8 variant under the same name."""
    if not deploy:
        return ROOT / "models"
    repo = tmp / "repo"
    shutil.rmtree(repo, ignore_errors=True)
    v1, v2 = repo / MODEL / "1", repo / MODEL / "2"
    shutil.copytree(ROOT / "models" / MODEL / "1", v1, symlinks=True)
    source = ROOT / "models" / f"{MODEL}_int8" / "1"
    shutil.copytree(source, v2, symlinks=True)
    config = (v2 / "config.toml").read_text().replace(f'name = "{MODEL}_int8"', f'name = "{MODEL}"')
    (v2 / "config.toml").write_text(config)
    shutil.rmtree(v1)  # only version 2 is served now
    return repo


def run_window(window: Window, out: Path, tmp: Path, duration_s: float) -> None:
    with served(window, repository(tmp, window.deploy)) as port, beside(window, port):
        load = (
            "--port",
            str(port),
            "--rate",
            f"{window.rate:g}",
            "--duration",
            f"{duration_s:g}s",
            "--quiet",
            "--mix",
            window.mix,
            "--cache-dir",
            str(tmp / "images"),
            "--output",
            str(tmp / "load.json"),
        )
        subprocess.run(cli("load", *load), check=True, stdout=subprocess.DEVNULL, timeout=duration_s + 120)
        subprocess.run(
            cli("snapshot", "--url", f"http://127.0.0.1:{port}", "--model", MODEL, "-o", str(out)),
            check=True,
            timeout=60,
        )


def run(scenario: OutsideScenario, folder: Path, duration_s: float) -> None:
    """``baseline.json`` and ``degraded.json`` in ``folder``: one fresh service per window."""
    folder.mkdir(parents=True, exist_ok=True)
    run_window(scenario.baseline, folder / "baseline.json", folder, duration_s)
    run_window(scenario.degraded, folder / "degraded.json", folder, duration_s)
