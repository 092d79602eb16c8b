"""Hostile uploads: for each case of ``tests/data/hostile/``, the answer, the server's CPU time, the
wall time and the growth of its resident memory — with servoscope's limits, and side by side in the
same run with the structure limits lifted (scans, segments and chunks, frames, metadata), which shows
the work each limit refuses to spend.

    python bench/hostile.py              # ~1 minute
    python bench/hostile.py --repeats 5

Each mode gets a fresh `servoscope serve` on a loopback port, with the hostile tests' metadata limit
(256 KiB) and an 8 MiB body limit (the corpus's files are all under the tests' 1 MiB). The whole corpus
is sent once to warm the server up (lazy imports, pools), then each case ``--repeats`` times, one at a
time: the server's CPU time (user + system of every thread, the scheduler's nanosecond account, read
before and after each answer) is the median over the repeats. Phone photos
(4032×3024, ~2.7 MB) are sent too, as the legitimately large uploads the 100 ms bound exempts.
Printed: one row per case, and the cases over 100 ms of server CPU.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from servoscope.drills.service import Service, running  # noqa: E402
from servoscope.loadgen.images import image_set  # noqa: E402

CORPUS = ROOT / "tests" / "data" / "hostile"
CLASSIFY = "/v1/models/efficientnet_lite0/classify"
CPU_BOUND_MS = 100.0
SETTINGS = "max_body_bytes = 8388608\nmax_image_metadata_bytes = 262144\n"
LIFTED = (
    "max_body_bytes = 8388608\nmax_image_scans = 1000000000\nmax_image_chunks = 1000000000\n"
    "max_image_frames = 1000000000\nmax_image_metadata_bytes = 1000000000\n"
)


@dataclass(frozen=True, slots=True)
class Upload:
    name: str
    data: bytes
    content_type: str | None


@dataclass(frozen=True, slots=True)
class Measured:
    status: int
    cpu_ms: float
    wall_ms: float
    rss_growth_mib: float


def uploads(cache: Path) -> list[Upload]:
    manifest = json.loads((CORPUS / "manifest.json").read_text())["files"]
    cases = [
        Upload(name, (CORPUS / name).read_bytes(), entry["content_type"]) for name, entry in sorted(manifest.items())
    ]
    phones = [
        Upload(f"phone_photo_{i}.jpg", data, "image/jpeg") for i, data in enumerate(image_set("phone", cache)[:2])
    ]
    return cases + phones


def post(client: httpx.Client, upload: Upload) -> int:
    headers = {"Content-Type": upload.content_type} if upload.content_type else {}
    return client.post(CLASSIFY, content=upload.data, headers=headers).status_code


def cpu_s(process: psutil.Process) -> float:
    """The process's CPU seconds, all threads, at nanosecond resolution (the scheduler's own account;
    /proc/PID/stat counts in 10 ms ticks)."""
    total = 0
    for task in Path(f"/proc/{process.pid}/task").iterdir():
        try:
            total += int((task / "schedstat").read_text().split()[0])
        except (OSError, IndexError, ValueError):  # a thread that ended meanwhile
            continue
    return total / 1e9


def measure(service: Service, cases: list[Upload], repeats: int) -> dict[str, Measured]:
    process = psutil.Process(service.pid)
    results: dict[str, Measured] = {}
    with httpx.Client(base_url=service.url, timeout=60.0) as client:
        for upload in cases:  # warm-up
            post(client, upload)
        for upload in cases:
            rss_before = process.memory_info().rss
            cpu, wall, statuses = [], [], set()
            for _ in range(repeats):
                before, started = cpu_s(process), time.perf_counter()
                statuses.add(post(client, upload))
                wall.append(time.perf_counter() - started)
                cpu.append(cpu_s(process) - before)
            growth = (process.memory_info().rss - rss_before) / 2**20
            status = statuses.pop() if len(statuses) == 1 else -1
            results[upload.name] = Measured(
                status, 1000 * statistics.median(cpu), 1000 * statistics.median(wall), growth
            )
    return results


def run_mode(name: str, settings: str, cases: list[Upload], repeats: int, workdir: Path) -> dict[str, Measured]:
    config = workdir / f"{name}.toml"
    config.write_text(settings)
    print(f"[{time.strftime('%H:%M:%S')}] {name}: serving on loopback, {len(cases)} cases x {repeats}", flush=True)
    with running(ROOT / "models", ("--config", str(config)), workdir / f"{name}.log") as service:
        return measure(service, cases, repeats)


def report(limited: dict[str, Measured], lifted: dict[str, Measured]) -> None:
    print(
        f"\n{'case':40} {'status':>6} {'cpu ms':>8} {'wall ms':>8} {'RSS +MiB':>8} | {'lifted':>6} {'cpu ms':>8} "
        f"{'x cpu':>6}"
    )
    for name, m in limited.items():
        other = lifted[name]
        ratio = f"{other.cpu_ms / m.cpu_ms:6.1f}" if m.cpu_ms > 0 and other.status != m.status else "     ="
        print(
            f"{name:40} {m.status:6d} {m.cpu_ms:8.1f} {m.wall_ms:8.1f} {m.rss_growth_mib:8.1f} | "
            f"{other.status:6d} {other.cpu_ms:8.1f} {ratio}"
        )
    over = [n for n, m in limited.items() if m.cpu_ms > CPU_BOUND_MS]
    print(f"\ncases over {CPU_BOUND_MS:.0f} ms of server CPU with the limits: {', '.join(over) or 'none'}")
    over_lifted = [f"{n} ({m.cpu_ms:.0f} ms)" for n, m in lifted.items() if m.cpu_ms > CPU_BOUND_MS]
    print(f"… and with the structure limits lifted: {', '.join(over_lifted) or 'none'}")
    print(
        "CPU is the server process's CPU time per request (all threads), median of the repeats; 'x cpu' is "
        "lifted ÷ limited where the answer differs (the work a limit refused)"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="servoscope-hostile-") as tmp:
        workdir = Path(tmp)
        cases = uploads(workdir / "images")
        limited = run_mode("limits", SETTINGS, cases, args.repeats, workdir)
        lifted = run_mode("lifted", LIFTED, cases, args.repeats, workdir)
    report(limited, lifted)
    return 0


if __name__ == "__main__":
    sys.exit(main())
