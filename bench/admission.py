"""Admission with clients as they behave: closed loops that retry refusals, slow uplinks beside fast
clients, and a slowloris crowd — time admission (the default), the adaptive limit and static
(max_pending alone) side by side in one run.

    python bench/admission.py                      # ~6 minutes
    python bench/admission.py --quick              # ~3 minutes: 4 s windows
    python bench/admission.py --parts closed       # closed loops only (also: slow, slowloris)

closed: C = 4, 16, 64, 256 closed-loop clients, each retrying a refusal — ``honour`` waits what
Retry-After says (jittered), ``fixed`` retries after 50 ms whatever it says. Printed per mode, C and
behaviour: answered/s, the P95 of answered attempts (the service's view) and of requests from their
first attempt (the client's), refusals/s; and each mode's answered/s ÷ static's at the same C and
behaviour. Targets (#14): time ≥ 0.9 × static's answered/s, and its P95 within the objective
wherever static's is.

slow: 30% of the clients (closed loops) upload at 16 KiB/s (paced writes), the rest are fast,
total load below capacity: the fast clients' answered/s and refusals, against a run with the fast
clients alone. Target: ≥ 0.95 × without the slow clients, and no fast client refused.

slowloris: 1,000 connections trickling their headers (half) or their bodies (half) while 16 fast
closed-loop clients are served: their answered/s against a run without the crowd, and the server's
RSS and open file descriptors. Target: ≥ 0.9 ×, bounded memory and descriptors.

Every server is fresh, on a loopback port; every loop is bounded by its window.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Iterator
from typing import Any

import psutil

from serve import RESULTS, ROOT, classify_requests, progress, server, servoscope_argv
from servoscope.loadgen.client import EXPECT_CONTINUE_BYTES, Endpoint, run
from servoscope.loadgen.images import image_set
from servoscope.loadgen.retrying import Population, RetryPolicy, retrying_closed_loop
from servoscope.loadgen.schedule import percentile

MODES: dict[str, tuple[str, ...]] = {
    "time": ("--admission", "time"),
    "adaptive": ("--admission", "adaptive"),
    "static": ("--admission", "static"),
}
CLIENTS = (4, 16, 64, 256)
BEHAVIOURS = ("honour", "fixed")


def p95_ms(values: list[float]) -> float:
    return 1000 * percentile(values, 95) if values else float("nan")


def cpu_s(process: psutil.Process) -> float:
    times = process.cpu_times()
    return times.user + times.system


def row(population: Population, server_cpu_s: float = 0.0, client_cpu_s: float = 0.0) -> dict[str, Any]:
    return {
        "server_cores": server_cpu_s / population.window_s,
        "client_cores": client_cpu_s / population.window_s,
        "answered_per_s": population.answered_per_s,
        "p95_ms": p95_ms(population.answered),
        "request_p95_ms": p95_ms(population.requests),
        "refused_per_s": population.refused_per_s,
        "errors": population.errors,
    }


def closed(
    images: list[bytes],
    window_s: float,
    slo_ms: float,
    clients_list: tuple[int, ...] = CLIENTS,
    modes: tuple[str, ...] = tuple(MODES),
    expect_continue_bytes: int | None = EXPECT_CONTINUE_BYTES,
) -> dict[str, dict[str, Any]]:
    rows: dict[str, dict[str, Any]] = {}
    for mode in modes:
        flags = MODES[mode]
        argv = servoscope_argv((*flags, "--slo-p95-ms", str(slo_ms)))
        with server(mode, argv, RESULTS / f"admission-{mode}.log") as (endpoint, pid):
            requests = classify_requests(endpoint, images, expect_continue_bytes)
            serving, loading = psutil.Process(pid), psutil.Process()
            run(retrying_closed_loop(endpoint, requests, 8, 2.0, RetryPolicy()))  # warm-up
            for clients in clients_list:
                for behaviour in BEHAVIOURS:
                    before = cpu_s(serving), cpu_s(loading)
                    seen_ = run(retrying_closed_loop(endpoint, requests, clients, window_s, RetryPolicy(behaviour)))
                    seen = row(seen_, cpu_s(serving) - before[0], cpu_s(loading) - before[1])
                    rows[f"{mode} C={clients} {behaviour}"] = seen
                    progress(
                        f"  {mode:>8} C={clients:>3} {behaviour:>6}: {seen['answered_per_s']:6.1f} answered/s, "
                        f"p95 {seen['p95_ms']:7.1f} ms (requests {seen['request_p95_ms']:7.1f}), "
                        f"refused {seen['refused_per_s']:7.1f}/s, errors {seen['errors']}; cores: server "
                        f"{seen['server_cores']:.2f}, load generator {seen['client_cores']:.2f}"
                    )
    return rows


def print_closed(rows: dict[str, dict[str, Any]], slo_ms: float) -> None:
    if not all(f"{m} C={c} {b}" in rows for m in MODES for c in CLIENTS for b in BEHAVIOURS):
        return  # a partial run (--clients, --modes): its progress lines are the figures
    print(f"\nclosed loops (objective {slo_ms:g} ms): answered/s, P95 ms of answered attempts (of requests), refused/s")
    print(f"{'C':>4} {'retry':>7} | " + " | ".join(f"{m:^34}" for m in MODES) + " | time ÷ static")
    for clients in CLIENTS:
        for behaviour in BEHAVIOURS:
            cells = []
            for mode in MODES:
                r = rows[f"{mode} C={clients} {behaviour}"]
                cells.append(
                    f"{r['answered_per_s']:6.1f} {r['p95_ms']:6.0f} ({r['request_p95_ms']:6.0f}) "
                    f"{r['refused_per_s']:7.0f}"
                )
            ratio = rows[f"time C={clients} {behaviour}"]["answered_per_s"] / max(
                1e-9, rows[f"static C={clients} {behaviour}"]["answered_per_s"]
            )
            print(f"{clients:>4} {behaviour:>7} | " + " | ".join(cells) + f" | {ratio:5.2f}")


async def paced_upload(endpoint: Endpoint, request: Any, rate_bytes_s: float, end: float) -> int:
    """One request whose head and body go out at ``rate_bytes_s`` (a slow uplink): its status, 0 on failure."""
    reader, writer = await asyncio.open_connection(endpoint.host, endpoint.port)
    try:
        data = request.head + request.body
        piece = max(1, int(rate_bytes_s / 20))  # 20 writes a second
        for at in range(0, len(data), piece):
            if time.perf_counter() > end + 60:
                return 0
            writer.write(data[at : at + piece])
            await writer.drain()
            await asyncio.sleep(piece / rate_bytes_s)
        status = 100
        while status == 100:  # a large body's head asked for 100 Continue, which came before its answer
            status = int((await reader.readuntil(b"\r\n\r\n")).split(b" ", 2)[1])
        return status
    except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
        return 0
    finally:
        writer.close()


async def slow_population(
    endpoint: Endpoint, requests: list[Any], clients: int, window_s: float, rate: float
) -> list[int]:
    end = time.perf_counter() + window_s

    async def client(index: int) -> list[int]:
        statuses, n = [], index
        while time.perf_counter() < end:
            statuses.append(await paced_upload(endpoint, requests[n % len(requests)], rate, end))
            n += clients
        return statuses

    return [s for part in await asyncio.gather(*(client(i) for i in range(clients))) for s in part]


def slow(
    images: list[bytes], window_s: float, slo_ms: float, fast_clients: int = 7, slow_clients: int = 3
) -> dict[str, Any]:
    """Fast closed loops alone, then beside slow uploaders (16 KiB/s), on the default server."""
    argv = servoscope_argv(("--slo-p95-ms", str(slo_ms)))
    with server("slow uplinks", argv, RESULTS / "admission-slow.log") as (endpoint, _pid):
        requests = classify_requests(endpoint, images)
        run(retrying_closed_loop(endpoint, requests, 4, 2.0, RetryPolicy()))  # warm-up
        alone = run(retrying_closed_loop(endpoint, requests, fast_clients, window_s, RetryPolicy("fixed")))

        async def both() -> tuple[Population, list[int]]:
            slow_task = asyncio.ensure_future(slow_population(endpoint, requests, slow_clients, window_s, 16 * 1024))
            fast = await retrying_closed_loop(endpoint, requests, fast_clients, window_s, RetryPolicy("fixed"))
            return fast, await slow_task

        beside, slow_statuses = run(both())
    result = {
        "fast_alone": row(alone),
        "fast_beside_slow": row(beside),
        "slow_answered": slow_statuses.count(200),
        "slow_other": len(slow_statuses) - slow_statuses.count(200),
        "ratio": beside.answered_per_s / max(1e-9, alone.answered_per_s),
    }
    progress(
        f"  slow uplinks: fast clients {alone.answered_per_s:.1f}/s alone, {beside.answered_per_s:.1f}/s beside "
        f"{slow_clients} slow ({result['ratio']:.2f} ×), fast refused {beside.refusals}; slow answered "
        f"{result['slow_answered']}, other {result['slow_other']}"
    )
    return result


async def crowd(endpoint: Endpoint, request: Any, size: int, seconds: float) -> int:
    """``size`` connections trickling heads (half) or bodies (half), a byte every second, for ``seconds``."""
    writers: list[asyncio.StreamWriter] = []
    for i in range(size):
        try:
            _, writer = await asyncio.open_connection(endpoint.host, endpoint.port)
        except OSError:
            break
        writer.write(request.head[:20] if i % 2 == 0 else request.head + request.body[:10])
        writers.append(writer)
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        await asyncio.sleep(1.0)
        for i, writer in enumerate(writers):
            if not writer.is_closing():
                writer.write(b"x" if i % 2 == 0 else request.body[10:11])
    for writer in writers:
        writer.close()
    return len(writers)


def slowloris(images: list[bytes], window_s: float, slo_ms: float, size: int = 1000) -> dict[str, Any]:
    argv = servoscope_argv(("--slo-p95-ms", str(slo_ms)))
    with server("slowloris", argv, RESULTS / "admission-slowloris.log") as (endpoint, pid):
        process = psutil.Process(pid)
        requests = classify_requests(endpoint, images)
        run(retrying_closed_loop(endpoint, requests, 4, 2.0, RetryPolicy()))  # warm-up
        alone = run(retrying_closed_loop(endpoint, requests, 16, window_s, RetryPolicy("fixed")))
        rss_before, fds_before = process.memory_info().rss, process.num_fds()

        async def both() -> tuple[Population, int, int, int]:
            crowd_task = asyncio.ensure_future(crowd(endpoint, requests[0], size, window_s + 2))
            await asyncio.sleep(1.0)  # the crowd connects first
            fast = await retrying_closed_loop(endpoint, requests, 16, window_s, RetryPolicy("fixed"))
            peak_rss, peak_fds = process.memory_info().rss, process.num_fds()
            return fast, await crowd_task, peak_rss, peak_fds

        beside, connected, peak_rss, peak_fds = run(both())
    result = {
        "alone": row(alone),
        "beside_crowd": row(beside),
        "crowd_connected": connected,
        "ratio": beside.answered_per_s / max(1e-9, alone.answered_per_s),
        "rss_mib": (rss_before / 2**20, peak_rss / 2**20),
        "fds": (fds_before, peak_fds),
    }
    progress(
        f"  slowloris: {alone.answered_per_s:.1f}/s alone, {beside.answered_per_s:.1f}/s beside {connected} trickling "
        f"connections ({result['ratio']:.2f} ×); RSS {rss_before / 2**20:.0f} → {peak_rss / 2**20:.0f} MiB, "
        f"fds {fds_before} → {peak_fds}"
    )
    return result


def parts(text: str) -> Iterator[str]:
    for part in text.split(","):
        if part not in ("closed", "slow", "slowloris"):
            raise argparse.ArgumentTypeError(f"parts are closed, slow and slowloris, got {part!r}")
        yield part


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="4 s windows (default 8 s)")
    parser.add_argument("--slo-ms", type=float, default=200.0, help="the objective given to every server (default 200)")
    parser.add_argument("--set", default="small", help="image set: small, medium, phone")
    parser.add_argument("--parts", type=lambda t: list(parts(t)), default=["closed", "slow", "slowloris"])
    parser.add_argument(
        "--clients",
        type=lambda t: tuple(int(c) for c in t.split(",")),
        default=CLIENTS,
        help="closed-loop sizes (default 4,16,64,256)",
    )
    parser.add_argument(
        "--modes", type=lambda t: tuple(t.split(",")), default=tuple(MODES), help="time,adaptive,static"
    )
    parser.add_argument(
        "--no-expect",
        action="store_true",
        help="closed loops send every body at once (default: a body of 1 MiB or more waits for 100 Continue)",
    )
    args = parser.parse_args()
    window_s = 4.0 if args.quick else 8.0
    images = image_set(args.set, RESULTS / "images")
    results: dict[str, Any] = {"set": args.set, "slo_ms": args.slo_ms, "window_s": window_s}
    results["expect_continue"] = not args.no_expect
    if "closed" in args.parts:
        if not set(args.modes) <= set(MODES) or min(args.clients) < 1:
            parser.error(f"--modes are {', '.join(MODES)}; --clients are positive")
        expect = None if args.no_expect else EXPECT_CONTINUE_BYTES
        results["closed"] = closed(images, window_s, args.slo_ms, args.clients, args.modes, expect)
        print_closed(results["closed"], args.slo_ms)
    if "slow" in args.parts:
        results["slow"] = slow(images, window_s, args.slo_ms)
    if "slowloris" in args.parts:
        results["slowloris"] = slowloris(images, window_s, args.slo_ms)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"admission-{args.set}.json").write_text(json.dumps(results, indent=2, default=list))
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.exit(main())
