"""Peers side by side: servoscope against Triton, Ray Serve, LitServe and a naive server.

NVIDIA Triton (through PyTriton), Ray Serve, LitServe and the naive batch-1 server serve the
same ONNX model with the same decode and preprocessing code as servoscope.

For each image set, each server is started on a free 127.0.0.1 port (the peers each from its
own virtual environment under bench/peers/.venvs/, built on first use), checked once for a
correct answer (chelsea.jpg's top-1 label must be a cat class), then driven by servoscope's
load generator: closed-loop capacity (C = 16 and 64, best wins), then open-loop Poisson
arrivals at 50% and 80% of *servoscope's* capacity, the same schedule for every server.
Its whole process tree is stopped at the end, and its peak RSS reported.

Every peer runs the same thread layout, ``--layout INSTANCESxTHREADS`` (model instances ×
ONNX Runtime intra-op threads each), in its own idiom: Triton model instances, Ray Serve
replicas, LitServe workers. ``auto`` (the default) is servoscope's own plan for this machine
(servoscope.resources.plan_threads: one single-threaded session per core); see layout.py.
servoscope runs as shipped, the naive server as it is (one session, batch 1).

    python bench/peers/run.py                    # the ~640×480 and phone sets, every server (~15 minutes)
    python bench/peers/run.py --quick --sets small
    python bench/peers/run.py --only triton,ray  # servoscope always runs: it sets the rates
    python bench/peers/run.py --layout 1x2       # each peer one instance of 2 threads
    python bench/peers/run.py --variant int8     # servoscope serves its INT8 variant; the peers keep FP32

One table to stdout; every figure to bench/results/peers.json; server logs to bench/results/peers/.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import os
import platform
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import venvs
from classifier import ModelSpec, census
from layout import AUTO, Layout, describe, naive_layout, parse_layout, servoscope_layout
from measure import (
    LOAD_FRACTIONS,
    Windows,
    first_answer,
    open_load,
    progress,
    saturation,
)
from process import Launched, launched
from report import legend, load_key, table

from peers import PEERS, Peer
from servoscope.loadgen import run
from servoscope.loadgen.images import PHOTOS, SETS, image_set
from servoscope.models.repository import ModelEntry, find
from servoscope.resources import available_cores


def load_serve_bench() -> ModuleType:
    """bench/serve.py, by path: its server helpers (argv, CAPACITY_FLAGS, free_port) are reused."""
    spec = importlib.util.spec_from_file_location("serve_bench", Path(__file__).resolve().parents[1] / "serve.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # before it runs: its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


serve_bench = load_serve_bench()
ROOT = serve_bench.ROOT
RESULTS = serve_bench.RESULTS
LOGS = RESULTS / "peers"
CAT_CLASSES = range(281, 286)  # ImageNet: tabby, tiger cat, Persian, Siamese, Egyptian cat
CHECK_PHOTO = PHOTOS.index("chelsea")
START_DEADLINE_S = 300.0  # Ray and Triton take tens of seconds to start on 2 busy cores


def model_spec(entry: ModelEntry, layout: Layout) -> ModelSpec:
    cfg = entry.config
    return ModelSpec(
        name=entry.name,
        model_file=str(entry.model_file),
        labels_file=str(entry.path / cfg.output.labels),
        input_name=cfg.input.name,
        output_name=cfg.output.name,
        kind=cfg.output.kind,
        size=cfg.input.size,
        resize=cfg.input.resize,
        mean=cfg.input.mean,
        std=cfg.input.std,
        instances=layout.instances,
        threads=layout.threads,
        census_dir="",
    )


def argv(peer: Peer, entry: ModelEntry, spec: ModelSpec, servoscope_model: str) -> list[str]:
    if peer.name == "servoscope":
        return serve_bench.servoscope_argv(model=servoscope_model)  # with --admission static: the pipeline's capacity
    if peer.name == "naive":
        return serve_bench.naive_argv(entry)
    assert peer.env is not None and peer.script is not None
    return [str(venvs.ensure(venvs.ENVS[peer.env])), str(peer.script), "--model", spec.to_json()]


@dataclasses.dataclass(frozen=True)
class SetRun:
    name: str
    images: list[bytes]
    entry: ModelEntry
    spec: ModelSpec
    layout: Layout  # the peers'
    windows: Windows
    cats: frozenset[str]
    servoscope_model: str  # the FP32 model the peers serve, or servoscope's INT8 variant of it

    def model_of(self, peer: Peer) -> str:
        return self.servoscope_model if peer.name == "servoscope" else self.entry.name


class WrongAnswer(Exception):
    """A server answered, but not with a cat for chelsea.jpg: it is misconfigured."""


def check(peer: Peer, server: Launched, job: SetRun) -> tuple[float, str]:
    """Seconds until the first answer, and its top-1 label, which must be a cat's."""
    started = time.perf_counter()
    request = peer.encode(server.endpoint, job.model_of(peer), job.images[CHECK_PHOTO])
    answer = run(first_answer(server.endpoint, request, server.process, START_DEADLINE_S))
    label = peer.top1(answer.body)
    if label not in job.cats:
        raise WrongAnswer(f"top-1 of chelsea.jpg is {label!r}, not a cat class")
    return time.perf_counter() - started, label


def server_layout(name: str, job: SetRun) -> Layout:
    if name == "servoscope":
        return servoscope_layout(job.entry)
    return naive_layout() if name == "naive" else job.layout


def census_folder(peer: Peer, job: SetRun) -> Path:
    """An empty folder for the instances of ``peer`` to count themselves in."""
    folder = LOGS / f"{peer.name}-{job.name}-instances"
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob("*.json"):
        stale.unlink()
    return folder


def layout_json(name: str, job: SetRun, served: int | None) -> dict[str, Any]:
    """The server's layout, how it is realised, and (peers) how many instances served a batch."""
    layout = server_layout(name, job)
    return {
        **dataclasses.asdict(layout),
        "text": str(layout),
        "how": describe(name, layout),
        "instances_served": served,
    }


def measure(peer: Peer, job: SetRun, rates: dict[str, float] | None) -> dict[str, Any]:
    """One server's figures; ``rates`` None: measure servoscope, whose capacity sets them."""
    log = LOGS / f"{peer.name}-{job.name}.log"
    folder = census_folder(peer, job) if peer.env is not None else None
    spec = dataclasses.replace(job.spec, census_dir=str(folder or ""))
    command = argv(peer, job.entry, spec, job.servoscope_model)
    with launched(command, serve_bench.free_port(), peer.environment(os.environ), log, LOGS / "cwd") as server:
        ready_s, label = check(peer, server, job)
        progress(
            f"  {peer.name} answered after {ready_s:.1f}s on {server.endpoint.port}: top-1 {label!r} (log {log.name})"
        )
        requests = [peer.encode(server.endpoint, job.model_of(peer), image) for image in job.images]
        pids = server.watch.pids()
        capacity = saturation(server.endpoint, pids, requests, job.windows, peer.name)
        if rates is None:
            rates = {load_key(f): f * capacity["requests_per_s"] for f in LOAD_FRACTIONS}
        loads = {
            key: open_load(server.endpoint, pids, requests, rate, job.windows, peer.name) for key, rate in rates.items()
        }
    peak = server.watch.peak_rss_bytes
    layout = layout_json(peer.name, job, None if folder is None else len(census(folder)))
    progress(
        f"  {peer.name} stopped; peak RSS of its process tree {peak / 2**20:.0f} MiB; layout {layout['text']}"
        + ("" if folder is None else f", instances that served a batch: {layout['instances_served']}")
    )
    return {
        "layout": layout,
        "ready_s": ready_s,
        "top1": label,
        "saturation": capacity,
        "open": loads,
        "peak_rss_bytes": peak,
    }


def bench_set(job: SetRun, names: list[str]) -> dict[str, Any]:
    spec = SETS[job.name]
    progress(f"{job.name}: {len(job.images)} JPEGs {spec.size[0]}x{spec.size[1]}")
    servers = {"servoscope": measure(PEERS["servoscope"], job, None)}
    open_rates = {key: load["rate_per_s"] for key, load in servers["servoscope"]["open"].items()}
    for name in names:
        try:
            servers[name] = measure(PEERS[name], job, open_rates)
        except Exception as exc:
            progress(f"  {name} FAILED: {type(exc).__name__}: {exc}")
            servers[name] = {"layout": layout_json(name, job, None), "error": f"{type(exc).__name__}: {exc}"}
    mean_bytes = sum(map(len, job.images)) // len(job.images)
    images = {"count": len(job.images), "size": list(spec.size), "mean_bytes": mean_bytes}
    return {"images": images, "open_rates_per_s": open_rates, "servers": servers}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short windows, for trying it")
    parser.add_argument(
        "--duration", type=float, help="closed-loop window, seconds (default 8, quick 3); open loops run twice as long"
    )
    parser.add_argument(
        "--sets",
        default="medium,phone",
        help=f"image sets, comma-separated, from {', '.join(SETS)} (default: the ~640×480 and the phone-photo set)",
    )
    peers = [name for name in PEERS if name != "servoscope"]
    parser.add_argument(
        "--only", default=",".join(peers), help=f"peers, comma-separated, from {peers} (servoscope always runs)"
    )
    parser.add_argument(
        "--layout",
        default=AUTO,
        help="the peers' model instances x ONNX Runtime threads each: 1x2, 2x1, ... or auto, servoscope's own plan "
        f"for this machine (here {parse_layout(AUTO)}); servoscope runs as shipped, the naive server as it is",
    )
    parser.add_argument(
        "--variant",
        choices=("fp32", "int8"),
        default="fp32",
        help="the model servoscope serves: fp32, as the peers, or its INT8 variant (`servoscope model quantize`); "
        "the peers serve FP32 either way",
    )
    args = parser.parse_args()
    try:
        args.layout = parse_layout(args.layout)
    except ValueError as exc:
        parser.error(str(exc))
    args.duration = args.duration or (3.0 if args.quick else 8.0)
    if not 0.5 <= args.duration <= 600:
        parser.error(f"--duration must be in [0.5, 600] seconds, got {args.duration}")
    args.sets = [name for name in args.sets.split(",") if name]
    if not args.sets or any(name not in SETS for name in args.sets):
        parser.error(f"--sets takes names from {', '.join(SETS)}, got {','.join(args.sets)!r}")
    args.only = [name for name in args.only.split(",") if name and name != "servoscope"]
    unknown = [name for name in args.only if name not in PEERS]
    if unknown:
        parser.error(f"unknown peers {unknown}; choose from {peers}")
    return args


def main() -> int:
    args = parse_args()
    entry = find(ROOT / "models", serve_bench.MODEL)
    servoscope_model = entry.name if args.variant == "fp32" else f"{entry.name}_int8"
    if not (ROOT / "models" / servoscope_model).is_dir():
        print(
            f"no {servoscope_model} in models/: make it with `servoscope model quantize {entry.name}`", file=sys.stderr
        )
        return 2
    windows = Windows.from_duration(args.duration)
    started = time.perf_counter()
    load_before = os.getloadavg()
    progress(
        f"peers bench: servoscope ({servoscope_model}), {', '.join(args.only)} ({entry.name}); "
        f"{available_cores()} cores; "
        f"peers' layout {args.layout} "
        f"(instances x threads); windows {windows}"
    )
    for name in args.only:  # build (or reuse) every environment before any measurement
        env = PEERS[name].env
        if env is not None:
            venvs.ensure(venvs.ENVS[env])
    labels = entry.labels()
    cats = frozenset(labels[i] for i in CAT_CLASSES)
    sets = {}
    for name in args.sets:
        job = SetRun(
            name,
            image_set(name, RESULTS / "images"),
            entry,
            model_spec(entry, args.layout),
            args.layout,
            windows,
            cats,
            servoscope_model,
        )
        sets[name] = bench_set(job, args.only)
    report = {
        "machine": {
            "cores": available_cores(),
            "python": platform.python_version(),
            "loadavg_before": load_before,
            "loadavg_after": os.getloadavg(),
        },
        "windows_s": dataclasses.asdict(windows),
        "models": {"servoscope": servoscope_model, "peers": entry.name},
        "layout": {**dataclasses.asdict(args.layout), "text": str(args.layout), "auto": str(parse_layout(AUTO))},
        "environments": {name: venvs.ENVS[name].requirements() for name in args.only if name in venvs.ENVS},
        "elapsed_s": time.perf_counter() - started,
        "sets": sets,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "peers.json").write_text(json.dumps(report, indent=2))
    print()
    print(table(sets))
    print(legend(sets))
    print(
        f"\n{report['elapsed_s']:.0f}s; load average before {load_before[0]:.2f}, after {os.getloadavg()[0]:.2f}; "
        f"figures in {RESULTS / 'peers.json'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
