"""Where the server's CPU goes: CPU per request, by component, from py-spy's stacks of `servoscope serve`.

For each image set (~320×240 JPEGs, 4032×3024 phone photos) it starts the service as bench/serve.py
does, warms it up, drives it with servoscope's closed-loop load generator and, for ``--duration``
seconds, has py-spy sample every thread of the server while the kernel's account of each thread's
CPU time (``/proc/<pid>/task/<tid>/schedstat``) is read at both ends of the window.

Each sample is put in one component by its frames, innermost first (``RULES``). py-spy counts a
thread as active while it is runnable, also while it waits for a core, so on a busy machine raw
sample counts overstate CPU; here each thread's measured CPU time is shared among its own samples,
so the components of a thread add up to exactly what that thread used. CPU of threads py-spy saw
no sample of goes to ``other``. Figures are milliseconds of CPU per answered request. What is left
of the bias: a thread just woken (a worker taking a job, one that has just woken the event loop)
often waits for a core right there, so ``threads`` is an upper bound and the rest slightly low.
``--native`` pauses the process for each sample (more overhead), and drops samples of threads
asleep in a lock, a condition or the GIL by their C frames.

py-spy attaches with ptrace: run as root, or allow it (``kernel.yama.ptrace_scope = 0``).

    python bench/profile.py                          # both sets, 15 s each (~1 minute)
    python bench/profile.py --sets phone --duration 5 --baseline bench/results/profile-before.json

Table to stdout; figures to bench/results/profile.json, py-spy's raw stacks to
bench/results/profile-<set>.txt (one line per distinct stack and its sample count).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import re
import shlex
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from serve import CAPACITY_FLAGS, RESULTS, classify_requests, server, servoscope_argv
from servoscope.loadgen import Endpoint, closed_loop, run
from servoscope.loadgen.images import image_set


@dataclass(frozen=True, slots=True)
class Rule:
    """Frames of ``file`` (a path fragment), optionally only ``functions``, belong to ``component``;
    ``leaf``: only when the frame is the innermost one (native code running under it)."""

    component: str
    file: str
    functions: tuple[str, ...] = ()
    leaf: bool = False

    def matches(self, function: str, file: str, innermost: bool) -> bool:
        if self.leaf and not innermost:
            return False
        return self.file in file and (not self.functions or function in self.functions)


# First match wins, innermost frame first: a library frame (PIL, NumPy, the timing record's
# methods) matches nothing and takes the component of the servoscope function that called it.
RULES: tuple[Rule, ...] = (
    Rule("inference", "onnxruntime/"),
    Rule("inference", "servoscope/pipeline/runtime.py"),
    Rule("inference", "servoscope/pipeline/process_runtime.py"),
    Rule("postprocess", "servoscope/pipeline/postprocess.py"),
    Rule(
        "normalize",
        "servoscope/pipeline/preprocess.py",
        ("normalize", "Prepared.write", "Prepared.tensor", "BatchBuffer.fill"),
    ),
    Rule("resize", "servoscope/pipeline/preprocess.py"),  # resize_crop, and the crop's pixels as an array
    Rule("decode", "servoscope/pipeline/decode.py"),
    Rule("batching", "servoscope/pipeline/batcher.py"),
    Rule("json", "servoscope/stages.py", ("Timing.server_timing",)),
    Rule("json", "servoscope/server/http.py", ("json_response", "error_response")),
    Rule("json", "servoscope/server/api.py", ("classification_json", "timings_ms", "timings_ms.<locals>.<dictcomp>")),
    Rule("telemetry", "servoscope/telemetry/"),
    Rule("telemetry", "servoscope/server/observe.py"),
    Rule("telemetry", "servoscope/server/delivery.py"),
    Rule("telemetry", "servoscope/server/state.py", ("ServerState._record", "ServerState.arrived")),
    Rule("telemetry", "prometheus_client/"),
    Rule("telemetry", "opentelemetry/"),
    Rule("telemetry", "psutil/"),
    Rule("body read", "servoscope/server/http.py", ("read_body", "_read_limited")),
    Rule("body read", "starlette/requests.py", ("Request.stream", "Request.body")),
    Rule("body read", "httptools_impl.py", ("HttpToolsProtocol.on_body", "RequestResponseCycle.receive")),
    Rule("threads", "servoscope/pipeline/workers.py"),
    Rule("threads", "asyncio/futures.py"),
    Rule("threads", "asyncio/base_events.py", ("BaseEventLoop.run_in_executor",)),
    Rule("threads", "concurrent/futures/"),
    Rule("threads", "threading.py"),
    Rule("http", "uvicorn/"),
    Rule("http", "starlette/"),
    Rule("http", "servoscope/server/"),
    Rule("event loop", "asyncio/runners.py", leaf=True),
)
COMPONENTS: dict[str, str] = {
    "http": "HTTP parsing, routing, handler and response write (uvicorn, starlette)",
    "body read": "receiving the request body",
    "event loop": "uvloop's native loop: socket reads and writes, C HTTP parser, callbacks",
    "decode": "JPEG/PNG/WebP decode to RGB (DCT-scaled for big JPEGs)",
    "resize": "resize + center crop to the model's input",
    "normalize": "uint8 → float32 (x - mean) / std, CHW",
    "batching": "batch schedule and stacking the batch",
    "inference": "ONNX Runtime session.run",
    "postprocess": "softmax, top-k, labels",
    "json": "JSON body and Server-Timing header",
    "telemetry": "timing records, metrics, windows, delivery probe, system collector",
    "threads": "thread-pool handoffs: workers waking, futures, waking the event loop",
    "other": "anything else, and threads py-spy saw no sample of",
}
# Native frames of a thread that sleeps (--native: py-spy pauses the threads, and counts sleeping ones too).
WAITS = (
    "pthread_cond_timedwait",
    "pthread_cond_wait",
    "pthread_cond_clockwait",
    "sem_wait",
    "sem_timedwait",
    "sem_clockwait",
    "epoll_wait",
    "epoll_pwait",
    "poll",
    "select",
    "take_gil",
    "futex_wait",
    "nanosleep",
    "PyThread_acquire_lock_timed",
)
FRAME = re.compile(r"^(?P<function>.*) \((?P<file>[^()]*?)(?::\d+)?\)$")
THREAD = re.compile(r"^thread \((?P<tid>0x[0-9a-fA-F]+|\d+)\)")


def sleeping(frames: list[str]) -> bool:
    """A stack of a thread waiting on a lock, a condition, the GIL or the network: no CPU."""
    return any(frame.split(" (", 1)[0] in WAITS for frame in frames[-4:])


def classify(frames: list[str]) -> str:
    """The component of one stack (outermost frame first)."""
    parsed = [FRAME.match(frame) for frame in frames]
    python = [i for i, p in enumerate(parsed) if p is not None and ".py" in p["file"]]
    innermost = python[-1] if python else -1  # native frames below it (--native) run on its behalf
    for depth in range(len(frames) - 1, -1, -1):
        frame = parsed[depth]
        if frame is None:
            continue
        for rule in RULES:
            if rule.matches(frame["function"], frame["file"], depth == innermost):
                return rule.component
    return "other"


@dataclass(slots=True)
class ThreadSamples:
    name: str
    samples: collections.Counter[str]  # component → samples


def parse_raw(text: str) -> dict[int, ThreadSamples]:
    """py-spy's raw output (``--threads``): per thread id, samples by component."""
    threads: dict[int, ThreadSamples] = {}
    for line in text.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = [f for f in stack.split(";") if not f.startswith("process ")]
        head = THREAD.match(frames[0]) if frames else None
        if head is None:
            continue
        if sleeping(frames):
            continue
        tid = int(head["tid"], 0)
        name = frames[0].partition(": ")[2] or "?"
        thread = threads.setdefault(tid, ThreadSamples(name, collections.Counter()))
        thread.samples[classify(frames[1:])] += int(count)
    return threads


@dataclass(frozen=True, slots=True)
class ThreadTime:
    name: str
    cpu_s: float  # on a core
    waited_s: float  # runnable, waiting for a core


def thread_cpu(pid: int) -> dict[int, ThreadTime]:
    """Seconds so far of every thread of ``pid`` and of its child processes, by thread id."""
    out: dict[int, ThreadTime] = {}
    pids = [pid]
    try:
        import psutil

        pids += [child.pid for child in psutil.Process(pid).children(recursive=True)]
    except Exception:
        pass
    for p in pids:
        with_tasks = Path(f"/proc/{p}/task")
        for task in with_tasks.iterdir() if with_tasks.is_dir() else ():
            try:
                run_ns, wait_ns = (int(v) for v in (task / "schedstat").read_text().split()[:2])
                comm = (task / "comm").read_text().strip()
            except (OSError, ValueError):
                continue
            out[int(task.name)] = ThreadTime(comm, run_ns / 1e9, wait_ns / 1e9)
    return out


def account(
    threads: dict[int, ThreadSamples], before: dict[int, ThreadTime], after: dict[int, ThreadTime]
) -> tuple[dict[str, float], list[dict[str, Any]]]:
    """CPU seconds by component: each thread's CPU shared among its samples; unsampled CPU to ``other``."""
    seconds: dict[str, float] = collections.defaultdict(float)
    report = []
    for tid, end in after.items():
        start = before.get(tid, ThreadTime(end.name, 0.0, 0.0))
        used, waited = max(0.0, end.cpu_s - start.cpu_s), max(0.0, end.waited_s - start.waited_s)
        sampled = threads.get(tid)
        total = sum(sampled.samples.values()) if sampled else 0
        for component, n in sampled.samples.items() if total else [("other", 1)]:
            seconds[component] += used * n / (total or 1)
        name = sampled.name if sampled else end.name
        report.append(
            {"tid": tid, "name": name, "cpu_s": round(used, 4), "waited_s": round(waited, 4), "samples": total}
        )
    return dict(seconds), sorted(report, key=lambda r: -r["cpu_s"])


async def measure(
    endpoint: Endpoint, pid: int, images: list[bytes], args: argparse.Namespace, raw: Path
) -> dict[str, Any]:
    """Load for warm-up + window + margin; py-spy and the CPU readings cover the window."""
    requests = classify_requests(endpoint, images)
    load = asyncio.ensure_future(closed_loop(endpoint, requests, args.concurrency, args.warmup + args.duration + 2.0))
    await asyncio.sleep(args.warmup)
    spy_argv = [
        "py-spy",
        "record",
        "-p",
        str(pid),
        "-r",
        str(args.rate),
        "-d",
        str(args.duration),
        "--threads",
        "--subprocesses",
        "-f",
        "raw",
        "-o",
        str(raw),
    ]
    spy_argv.append("--native" if args.native else "--nonblocking")  # native stacks need the threads paused
    spy = await asyncio.create_subprocess_exec(
        *spy_argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    assert spy.stdout is not None
    log = [await spy.stdout.readline()]
    while log[-1] and b"Sampling" not in log[-1]:
        log.append(await spy.stdout.readline())
    start, before = time.perf_counter(), thread_cpu(pid)
    log.append(await spy.stdout.read())
    if await spy.wait() != 0:
        raise RuntimeError(f"py-spy failed: {b''.join(log).decode(errors='replace')}")
    end, after = time.perf_counter(), thread_cpu(pid)
    result = await load
    answered = sum(1 for s in result.samples if s.ok and start <= s.done <= end)
    seconds, threads = account(parse_raw(raw.read_text()), before, after)
    return {
        "window_s": end - start,
        "requests": answered,
        "requests_per_s": answered / (end - start),
        "errors": sum(1 for s in result.samples if not s.ok),
        "cpu_s": seconds,
        "threads": threads,
    }


def per_request(figures: dict[str, Any]) -> dict[str, Any]:
    n = max(1, figures["requests"])
    total = sum(figures["cpu_s"].values())
    ms = {c: 1000 * figures["cpu_s"].get(c, 0.0) / n for c in COMPONENTS}
    return {
        "cpu_ms_per_request": ms,
        "total_cpu_ms_per_request": 1000 * total / n,
        "share": {c: (figures["cpu_s"].get(c, 0.0) / total if total else 0.0) for c in COMPONENTS},
    }


def table(name: str, result: dict[str, Any], baseline: dict[str, Any] | None) -> str:
    ms, share = result["cpu_ms_per_request"], result["share"]
    head = f"{'component':<12} {'CPU ms/req':>10} {'share':>6}"
    head += f" {'before':>8} {'after/before':>12}" if baseline else ""
    window = result["window_s"]
    cpu, waited = (sum(t[key] for t in result["threads"]) / window for key in ("cpu_s", "waited_s"))
    lines = [
        f"{name}: {result['requests']} requests in {window:.1f} s ({result['requests_per_s']:.1f}/s), "
        f"{result['errors']} errors; server CPU {cpu:.2f} cores, its threads waiting for a core {waited:.2f}",
        head,
    ]
    rows = [*COMPONENTS, "total"]
    for c in rows:
        value = result["total_cpu_ms_per_request"] if c == "total" else ms[c]
        line = f"{c:<12} {value:>10.2f} {1.0 if c == 'total' else share[c]:>6.1%}"
        if baseline:
            old = baseline["total_cpu_ms_per_request"] if c == "total" else baseline["cpu_ms_per_request"][c]
            line += f" {old:>8.2f} {value / old if old > 0.005 else float('nan'):>12.2f}"
        lines.append(line)
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", default="small,phone", help="image sets, comma-separated: small, phone")
    parser.add_argument("--duration", type=int, default=15, help="profiled window per set, seconds (default 15)")
    parser.add_argument("--warmup", type=float, default=3.0, help="load before the window, seconds (default 3)")
    parser.add_argument("--concurrency", type=int, default=16, help="closed-loop connections (default 16)")
    parser.add_argument("--rate", type=int, default=200, help="py-spy samples per second per thread (default 200)")
    parser.add_argument(
        "--native",
        action="store_true",
        help="py-spy --native: C frames too, threads paused for each sample (more overhead)",
    )
    parser.add_argument("--serve-args", default="", help="extra `servoscope serve` flags")
    parser.add_argument("--output", type=Path, default=RESULTS / "profile.json")
    parser.add_argument("--baseline", type=Path, help="an earlier profile.json to print side by side")
    args = parser.parse_args()
    if not 1 <= args.duration <= 600:
        parser.error(f"--duration must be in [1, 600] seconds, got {args.duration}")
    baseline = json.loads(args.baseline.read_text())["sets"] if args.baseline else {}
    results: dict[str, Any] = {}
    for name in args.sets.split(","):
        images = image_set(name, RESULTS / "images")
        raw = args.output.with_name(f"{args.output.stem}-{name}.txt")
        with server(
            "servoscope",
            servoscope_argv(CAPACITY_FLAGS + tuple(shlex.split(args.serve_args))),
            RESULTS / f"profile-{name}.log",
        ) as (endpoint, pid):
            figures = run(measure(endpoint, pid, images, args, raw))
        results[name] = {**figures, **per_request(figures), "raw": raw.name}
        print(table(name, results[name], baseline.get(name)), end="\n\n", flush=True)
    report = {
        "duration_s": args.duration,
        "concurrency": args.concurrency,
        "rate": args.rate,
        "native": args.native,
        "serve_args": args.serve_args,
        "loadavg": os.getloadavg(),
        "components": COMPONENTS,
        "sets": results,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2))
    print(f"figures in {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
