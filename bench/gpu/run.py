"""The prepared device run of issue #21: the torch engine and GPU decode on one GPU, in one go.

    python bench/gpu/run.py --out "$OUT"                   # on the GPU machine (bench/gpu/run.sh)
    python bench/gpu/run.py --device cpu --dry-run          # here: every section, tiny counts

Sections, each bounded in count and time, each writing one file under ``--out`` (a section that
cannot run here says why in its file instead of failing the run):

- ``agreement.json``: the torch engine on the device in each precision against ONNX Runtime CPU FP32,
  top-1 agreement on the sample set (bars: 99.5% FP32, 99% FP16/BF16);
- ``throughput.json``: model-only images/s per batch bucket, eager vs CUDA graphs vs torch.compile,
  through ``TorchModel.run`` (host batch in, host logits out, as the service runs it), and the
  offline limit (the best of them) with each row's share of it;
- ``first_requests.json``: the real pipeline (decode pool, batcher, torch engine), warmed as the
  server warms it, then its first N requests: max latency against P50 (target max ≤ 3 × P50);
- ``decode.json``: GPU decode (nvJPEG, batched) against the CPU path on small JPEGs and phone
  photos: crop difference and top-1 agreement, images/s per CPU core, and RSS / GPU memory
  sampled over many decodes (flat, or not);
- ``e2e.json``: ``servoscope serve`` with the torch engine and ``servoscope load`` on the same
  machine, small JPEGs, CPU decode then GPU decode;
- ``nvml.json``: NVML readings every half second through the whole run (utilization, clocks,
  memory, power, throttle reasons);
- ``summary.md`` and ``run.log``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import logging
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from PIL import Image  # noqa: E402

from servoscope.drills.service import serve_command  # noqa: E402
from servoscope.models import repository  # noqa: E402
from servoscope.models.config import CONFIG_FILE, EngineConfig, ModelConfig, save_config  # noqa: E402
from servoscope.models.repository import ModelEntry  # noqa: E402
from servoscope.pipeline.decode import DecodeLimits  # noqa: E402
from servoscope.pipeline.engines.torch_engine import TorchModel, load_module  # noqa: E402
from servoscope.pipeline.preprocess import PreprocessSpec, prepare  # noqa: E402
from servoscope.pipeline.runtime import OnnxModel  # noqa: E402
from servoscope.variants.agreement import agreement, run_batches  # noqa: E402

log = logging.getLogger("gpu-run")
CARRY = ROOT / "bench" / "gpu" / "carry"
MODEL = "efficientnet_lite0"
BARS = {"fp32": 0.995, "fp16": 0.99, "bf16": 0.99}


@dataclass(frozen=True)
class Plan:
    """How much each section does: the device run's counts, or the dry run's."""

    device: str
    precisions: tuple[str, ...]
    buckets: tuple[int, ...]
    compile_modes: tuple[str, ...]
    compile_buckets: tuple[int, ...]  # torch.compile is slow to build: only these buckets
    throughput_s: float  # per (bucket, mode)
    first_requests: int
    concurrency: int
    decodes: int  # images through GPU decode for the memory flatness check
    decode_s: float  # at most this long for it
    e2e_s: int
    e2e_concurrency: int


def plan_for(device: str, dry_run: bool) -> Plan:
    if device == "cuda" and not dry_run:
        return Plan(
            "cuda",
            ("fp32", "fp16", "bf16"),
            (1, 8, 32, 64, 128),
            ("none", "cuda_graphs", "torch_compile"),
            (64,),
            2.0,
            1000,
            64,
            100_000,
            45.0,
            12,
            256,
        )
    modes = ("none", "cuda_graphs") if device == "cuda" else ("none",)
    precisions = ("fp32", "fp16") if device == "cuda" else ("fp32", "bf16")
    return Plan(device, precisions, (1, 4), modes, (), 0.5, 40, 4, 64, 5.0, 3, 4)


# --- helpers -------------------------------------------------------------------------------------


def write(out: Path, name: str, data: Any) -> None:
    (out / name).write_text(json.dumps(data, indent=1, default=str) + "\n")
    log.info("wrote %s", out / name)


def section(out: Path, name: str, body: Callable[[], Any]) -> Any:
    """Run one section; its failure is written into its file and the run goes on."""
    started = time.perf_counter()
    log.info("== %s", name)
    try:
        result = body()
    except Exception as exc:
        log.error("%s failed: %s", name, exc)
        result = {"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()}
    result["seconds"] = round(time.perf_counter() - started, 1)
    write(out, name, result)
    return result


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if values else float("nan")


def sync(device: str) -> None:
    if device == "cuda":
        import torch

        torch.cuda.synchronize()


def reference_entry(repo: Path) -> ModelEntry:
    return repository.find(repo, MODEL)


def torch_model(entry: ModelEntry, engine: EngineConfig, buckets: tuple[int, ...]) -> TorchModel:
    return TorchModel(load_module(engine, entry.path), engine, buckets, os.cpu_count() or 1)


def sample_set(per_photo: int) -> tuple[list[str], list[bytes]]:
    """The sample set's evaluation inputs (the device image has scikit-image, scikit-learn, matplotlib)."""
    from servoscope.variants import samples

    evaluation = samples.evaluation(per_photo)
    return [s.name for s in evaluation], [s.data for s in evaluation]


def tensors_of(images: list[bytes], spec: PreprocessSpec) -> np.ndarray:
    return np.stack([prepare(data, DecodeLimits(), spec).tensor for data in images])


# --- sections ------------------------------------------------------------------------------------


def agreement_section(entry: ModelEntry, plan: Plan, per_photo: int) -> dict:
    cfg = entry.config
    spec = PreprocessSpec(cfg.input.size, cfg.input.resize, cfg.input.mean, cfg.input.std)
    names, images = sample_set(per_photo)
    tensors = tensors_of(images, spec)
    reference = run_batches(OnnxModel(entry.model_file, "cpu", os.cpu_count() or 1, "input", "logits"), tensors)
    rows = []
    for precision in plan.precisions:
        engine = EngineConfig(name="torch", device=plan.device, precision=precision, channels_last=True)
        out = run_batches(torch_model(entry, engine, (16,)), tensors)
        agreed = agreement(reference, out, names)
        agreed.pop("disagreements")
        rows.append(
            {
                "engine": engine.describe(),
                "bar": BARS[precision],
                "passes": agreed["top1_agreement"] >= BARS[precision],
                "max_abs_logit_difference": float(np.abs(out - reference).max()),
                **agreed,
            }
        )
        log.info("%s: top-1 agreement %.4f on %d inputs", engine.describe(), agreed["top1_agreement"], len(names))
    return {"reference": "onnxruntime/cpu/fp32", "inputs": len(names), "rows": rows}


def throughput_section(entry: ModelEntry, plan: Plan) -> dict:
    precision = "fp16" if plan.device == "cuda" else "fp32"
    rows = []
    for mode in plan.compile_modes:
        buckets = plan.compile_buckets if mode == "torch_compile" else plan.buckets
        for bucket in buckets:
            engine = EngineConfig(
                name="torch",
                device=plan.device,
                precision=precision,
                channels_last=True,
                compile_by_batch={bucket: mode},
            )
            model = torch_model(entry, engine, (bucket,))
            batch = np.random.default_rng(bucket).standard_normal((bucket, 3, 224, 224)).astype(np.float32)
            built = time.perf_counter()
            model.run(batch)  # captures or compiles
            build_s = time.perf_counter() - built
            runs, started = 0, time.perf_counter()
            while time.perf_counter() - started < plan.throughput_s:
                model.run(batch)
                runs += 1
            elapsed = time.perf_counter() - started
            rows.append(
                {
                    "compile": mode,
                    "batch": bucket,
                    "precision": precision,
                    "build_s": round(build_s, 2),
                    "images_per_s": runs * bucket / elapsed,
                    "ms_per_batch": 1000 * elapsed / runs,
                }
            )
            log.info("%s batch %d: %.0f img/s", mode, bucket, rows[-1]["images_per_s"])
    limit = max(row["images_per_s"] for row in rows)
    for row in rows:
        row["share_of_offline_limit"] = row["images_per_s"] / limit
    return {"offline_limit_images_per_s": limit, "rows": rows}


def torch_repository(
    entry: ModelEntry,
    root: Path,
    plan: Plan,
    decode: str = "cpu",
    max_batch: int | None = None,
    delay_s: float | None = None,
) -> Path:
    """A repository holding the model on the torch engine as the service would run it on ``plan.device``."""
    target = root / MODEL / "1"
    shutil.copytree(entry.path, target, dirs_exist_ok=True)
    raw = entry.config.model_dump()
    cuda = plan.device == "cuda"
    biggest = max_batch or (64 if cuda else 4)
    delay_s = (0.002 if cuda else 0.0) if delay_s is None else delay_s
    raw["batching"].update(
        max_batch_size=biggest,
        max_queue_delay_s=delay_s,
        preferred_batch_sizes=tuple(b for b in plan.buckets if b < biggest),
    )
    raw["instances"].update(count=1 if cuda else 0)
    raw["input"]["decode"] = decode
    raw["engine"] = {
        "name": "torch",
        "device": plan.device,
        "precision": "fp16" if cuda else "fp32",
        "channels_last": True,
        "compile": "cuda_graphs" if cuda else "none",
    }
    save_config(ModelConfig.model_validate(raw), target / CONFIG_FILE)
    return root


def small_jpegs(count: int) -> list[bytes]:
    """320×240 JPEGs of the sample photos (the load generator's "small" images)."""
    _, images = sample_set(2)
    out = []
    for data in images[: max(1, count)]:
        buffer = io.BytesIO()
        Image.open(io.BytesIO(data)).convert("RGB").resize((320, 240)).save(buffer, "JPEG", quality=85)
        out.append(buffer.getvalue())
    return out


def first_requests_section(entry: ModelEntry, plan: Plan, workdir: Path) -> dict:
    from servoscope.pipeline.admission import AdmissionPolicy
    from servoscope.pipeline.service import build_pipeline
    from servoscope.stages import Timing

    repo = torch_repository(entry, workdir / "first", plan)
    pipeline = build_pipeline(
        [repository.find(repo, MODEL)], 0, DecodeLimits(), AdmissionPolicy("static", 100_000, 60.0)
    )
    service = pipeline.get(MODEL)
    images = small_jpegs(16)
    latencies: list[float] = []

    async def one(i: int, gate: asyncio.Semaphore) -> None:
        async with gate:
            started = time.perf_counter()
            timing = Timing(start=time.monotonic())
            with service.admitted():
                await service.classify(images[i % len(images)], 5, timing, time.monotonic() + 60.0)
            latencies.append(time.perf_counter() - started)

    async def drive() -> None:
        pipeline.start()
        gate = asyncio.Semaphore(plan.concurrency)
        try:
            await asyncio.gather(*(one(i, gate) for i in range(plan.first_requests)))
        finally:
            await pipeline.stop()

    warmed = list(getattr(service.batcher.instances[0].runtime, "warmed", []))  # before the first request
    asyncio.run(drive())
    p50, top = percentile(latencies, 50), max(latencies)
    return {
        "requests": len(latencies),
        "concurrency": plan.concurrency,
        "warmed_buckets": sorted(warmed),
        "first_ms": 1000 * latencies[0],
        "p50_ms": 1000 * p50,
        "p99_ms": 1000 * percentile(latencies, 99),
        "max_ms": 1000 * top,
        "max_over_p50": top / p50,
        "target_max_over_p50": 3.0,
        "passes": top <= 3 * p50,
    }


def _decoder(plan: Plan) -> tuple[Any, str]:
    from servoscope.pipeline.gpu_decode import DecodeUnavailable, torchvision_crops

    try:
        return torchvision_crops(plan.device), f"torchvision decode_jpeg on {plan.device}"
    except DecodeUnavailable as exc:
        if plan.device == "cuda":
            raise
        return _pillow_stand_in, f"Pillow stand-in for decode_jpeg ({exc})"


def _pillow_stand_in(images: Any, spec: PreprocessSpec) -> list[np.ndarray]:
    """A STAND-IN for the device decoder where torchvision is missing (the dry run): Pillow decodes,
    the device path's own resize and crop run in PyTorch on the CPU."""
    import torch
    import torch.nn.functional as F

    from servoscope.pipeline.gpu_decode import _resize_crop

    chw = [torch.from_numpy(np.array(Image.open(io.BytesIO(d)).convert("RGB"))).permute(2, 0, 1) for d in images]
    return [_resize_crop(F, image, spec) for image in chw]


def phone_photos(count: int) -> list[bytes]:
    """4032×3024 JPEGs at quality 90 with mild noise, from the sample photos (phone-sized uploads)."""
    _, images = sample_set(2)
    rng = np.random.default_rng(21)
    out = []
    for data in images[:count]:
        big = np.asarray(
            Image.open(io.BytesIO(data)).convert("RGB").resize((4032, 3024), Image.Resampling.BICUBIC), np.int16
        )
        noisy = np.clip(big + rng.integers(-3, 4, big.shape), 0, 255).astype(np.uint8)
        buffer = io.BytesIO()
        Image.fromarray(noisy).save(buffer, "JPEG", quality=90)
        out.append(buffer.getvalue())
    return out


def decode_section(entry: ModelEntry, plan: Plan) -> dict:
    import psutil

    from servoscope.pipeline.gpu_decode import GpuDecoder

    cfg = entry.config
    spec = PreprocessSpec(cfg.input.size, cfg.input.resize, cfg.input.mean, cfg.input.std)
    crops, decoder_name = _decoder(plan)
    decoder = GpuDecoder(MODEL, crops, spec, DecodeLimits())
    model = OnnxModel(entry.model_file, "cpu", os.cpu_count() or 1, "input", "logits")
    sets = {"small": small_jpegs(32), "phone": phone_photos(4 if plan.device == "cuda" else 1)}
    result: dict[str, Any] = {"decoder": decoder_name, "sets": {}}
    for name, images in sets.items():
        device = decoder.prepare_batch(images)
        cpu = [prepare(data, DecodeLimits(), spec) for data in images]
        difference = np.abs(
            np.stack([d.image for d in device]).astype(np.int16) - np.stack([c.image for c in cpu]).astype(np.int16)
        )
        top1 = [model.run(np.stack([d.tensor, c.tensor])).argmax(axis=1) for d, c in zip(device, cpu)]
        batch = images * max(1, 32 // len(images))
        gpu_rate = _rate(lambda batch=batch: decoder.prepare_batch(batch), len(batch), plan)
        cpu_rate = _rate(lambda batch=batch: [prepare(d, DecodeLimits(), spec) for d in batch], len(batch), plan)
        result["sets"][name] = {
            "images": len(images),
            "mean_abs_difference": float(difference.mean()),
            "max_abs_difference": int(difference.max()),
            "top1_same": float(np.mean([a == b for a, b in top1])),
            "device_images_per_s_one_thread": gpu_rate,
            "cpu_images_per_s_one_core": cpu_rate,
            "device_over_cpu_per_core": gpu_rate / cpu_rate,
        }
    result["memory"] = _flatness(decoder, sets["small"], plan, psutil.Process())
    result["fallbacks"] = dict(decoder.fallbacks)
    return result


def _rate(work: Callable[[], Any], images: int, plan: Plan) -> float:
    """Images/s of ``work`` over at least two runs and about a second (a tenth in the dry run)."""
    runs, started = 0, time.perf_counter()
    while runs < 2 or time.perf_counter() - started < (1.0 if plan.device == "cuda" else 0.1):
        work()
        sync(plan.device)
        runs += 1
    return runs * images / (time.perf_counter() - started)


def _flatness(decoder: Any, images: list[bytes], plan: Plan, process: Any) -> dict:
    """RSS and GPU memory every tenth of the decodes: flat after the first tenth, or growing."""
    import torch

    batch = images * max(1, 64 // len(images))
    samples, done, started = [], 0, time.perf_counter()
    step = max(len(batch), plan.decodes // 10)
    while done < plan.decodes and time.perf_counter() - started < plan.decode_s:
        decoder.prepare_batch(batch)
        done += len(batch)
        if done % step < len(batch):
            gpu = torch.cuda.memory_reserved() if plan.device == "cuda" else 0
            samples.append({"decodes": done, "rss_bytes": process.memory_info().rss, "gpu_reserved_bytes": gpu})
    first, last = samples[min(1, len(samples) - 1)], samples[-1]
    return {
        "decodes": done,
        "samples": samples,
        "rss_growth_bytes": last["rss_bytes"] - first["rss_bytes"],
        "gpu_growth_bytes": last["gpu_reserved_bytes"] - first["gpu_reserved_bytes"],
    }


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def serving(repo: Path, workdir: Path, name: str) -> Iterator[tuple[int, dict[str, str]]]:
    """``servoscope serve`` of ``repo`` on a free loopback port, ready; stopped on the way out."""
    import httpx

    port = free_port()
    logfile = workdir / f"serve-{name}.log"
    serve = serve_command(repo, port, ())  # the drills' own command line for a loopback server
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)  # keep the carried wheels
    env = {**os.environ, "PYTHONPATH": path, "SERVOSCOPE_SLO_P95_MS": "60000"}
    with logfile.open("wb") as sink:
        server = subprocess.Popen(serve, cwd=ROOT, env=env, stdout=sink, stderr=subprocess.STDOUT)
    try:
        _wait_ready(httpx, port, server, deadline_s=180.0)
        yield port, env
    except Exception:
        log.error("server %s log:\n%s", name, "\n".join(logfile.read_text(errors="replace").splitlines()[-20:]))
        raise
    finally:
        server.terminate()
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()


def e2e_section(entry: ModelEntry, plan: Plan, workdir: Path) -> dict:
    """Saturated req/s and P95 at 70% of it, CPU then GPU decode; then the batching curve."""
    runs = {}
    for decode in ("cpu", "cuda") if plan.device == "cuda" else ("cpu",):
        repo = torch_repository(entry, workdir / f"e2e-{decode}", plan, decode=decode)
        with serving(repo, workdir, decode) as (port, env):
            saturated = _load(
                workdir, env, port, f"{decode}-saturated", plan, "--concurrency", str(plan.e2e_concurrency)
            )
            rate = 0.7 * saturated["throughput_per_s"]["answered"]
            at_70 = _load(workdir, env, port, f"{decode}-70pct", plan, "--rate", f"{rate:.1f}")
        runs[decode] = {
            "saturated": saturated,
            "at_70_percent": at_70,
            "rate_70_percent": rate,
            "p95_ms_at_70_percent": at_70["latency_ms"]["p95"],
            "target_p95_ms": 15.0,
        }
    return {"runs": runs, "batching_curve": batching_curve(entry, plan, workdir)}


def batching_curve(entry: ModelEntry, plan: Plan, workdir: Path) -> list[dict]:
    """Saturated req/s and P95 by max_batch_size and max_queue_delay_s (CPU decode)."""
    points = ((16, 0.001), (64, 0.002), (128, 0.005)) if plan.device == "cuda" else ((1, 0.0), (4, 0.002))
    curve = []
    for max_batch, delay_s in points:
        repo = torch_repository(entry, workdir / f"curve-{max_batch}", plan, max_batch=max_batch, delay_s=delay_s)
        with serving(repo, workdir, f"curve-{max_batch}") as (port, env):
            result = _load(workdir, env, port, f"curve-{max_batch}", plan, "--concurrency", str(plan.e2e_concurrency))
        curve.append(
            {
                "max_batch_size": max_batch,
                "max_queue_delay_s": delay_s,
                "answered_per_s": result["throughput_per_s"]["answered"],
                "p95_ms": result["latency_ms"]["p95"],
            }
        )
        log.info(
            "batching %d / %g s: %.0f req/s, P95 %.1f ms",
            max_batch,
            delay_s,
            curve[-1]["answered_per_s"],
            curve[-1]["p95_ms"],
        )
    return curve


def _load(workdir: Path, env: dict[str, str], port: int, name: str, plan: Plan, *how: str) -> dict:
    """One ``servoscope load`` run of small JPEGs; its result without the per-request lists."""
    result = workdir / f"load-{name}.json"
    load = [
        sys.executable,
        "-m",
        "servoscope",
        "load",
        "--port",
        str(port),
        *how,
        "--duration",
        f"{plan.e2e_s}s",
        "--mix",
        "100%:320x240",
        "--cache-dir",
        str(workdir / "images"),
        "-o",
        str(result),
        "--quiet",
    ]
    subprocess.run(load, cwd=ROOT, env=env, check=True, timeout=plan.e2e_s + 120)
    return {k: v for k, v in json.loads(result.read_text()).items() if k not in ("latency_histogram", "timeline")}


def _wait_ready(httpx: Any, port: int, server: subprocess.Popen, deadline_s: float) -> None:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"servoscope serve exited with {server.returncode}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/v2/health/ready", timeout=2.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.5)  # a poll of a child process's readiness, bounded by the deadline
    raise RuntimeError(f"servoscope serve not ready within {deadline_s:.0f} s")


class NvmlSampler:
    """NVML readings every ``interval_s`` on a thread of its own, through servoscope's GPU collector."""

    def __init__(self, interval_s: float = 0.5) -> None:
        from servoscope.telemetry.gpu import GpuCollector

        self.collector = GpuCollector()
        self.interval_s = interval_s
        self.readings: list[dict] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, name="nvml", daemon=True)

    def _loop(self) -> None:
        started = time.monotonic()
        while not self.stop.wait(self.interval_s):
            self.readings.append({"t_s": round(time.monotonic() - started, 2), **self.collector.sample().to_dict()})

    def result(self) -> dict:
        self.stop.set()
        self.thread.join(5)
        available = any(r.get("available") for r in self.readings)
        return {
            "available": available,
            "reason": None if available else (self.readings or [{}])[-1].get("reason"),
            "readings": self.readings,
        }


def summary(out: Path, results: dict[str, dict], plan: Plan) -> None:
    lines = [f"# GPU device run ({plan.device}{', dry run' if plan.first_requests < 1000 else ''})", ""]
    for name, result in results.items():
        status = "failed: " + result["error"] if "error" in result else "ok"
        lines.append(f"- **{name}** ({result.get('seconds', 0)} s): {status}")
    agreement_rows = results.get("agreement.json", {}).get("rows", [])
    lines += [
        f"  - {r['engine']}: top-1 agreement {100 * r['top1_agreement']:.2f}% (bar {100 * r['bar']:g}%)"
        for r in agreement_rows
    ]
    first = results.get("first_requests.json", {})
    if "max_over_p50" in first:
        lines.append(
            f"  - first {first['requests']} requests: max {first['max_ms']:.1f} ms = {first['max_over_p50']:.2f} × P50"
        )
    for decode, run in results.get("e2e.json", {}).get("runs", {}).items():
        if "saturated" in run:
            lines.append(
                f"  - e2e, {decode} decode: {run['saturated']['throughput_per_s']['answered']:.0f} req/s saturated, "
                f"P95 {run['p95_ms_at_70_percent']:.1f} ms at 70% (target ≤ 15 ms; ≥ 5,000 req/s)"
            )
    for name, result in results.get("decode.json", {}).get("sets", {}).items():
        lines.append(
            f"  - decode, {name}: {result['device_over_cpu_per_core']:.2f}× the CPU path per core, "
            f"mean |Δ| {result['mean_abs_difference']:.2f} grey levels, top-1 same {100 * result['top1_same']:.0f}%"
        )
    (out / "summary.md").write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    parser.add_argument("--dry-run", action="store_true", help="tiny counts: proves the script, measures nothing")
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("OUT") or ROOT / "bench" / "results" / "gpu"))
    parser.add_argument("--repository", type=Path, help="model repository (default: the carried one, else models/)")
    parser.add_argument("--per-photo", type=int, default=8, help="sample set variants per photo (when not carried)")
    parser.add_argument("--sections", default="agreement,throughput,first_requests,decode,e2e")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(message)s",
        handlers=[logging.StreamHandler(), logging.FileHandler(args.out / "run.log")],
    )
    plan = plan_for(args.device, args.dry_run)
    repo = args.repository or (CARRY / "models" if (CARRY / "models").is_dir() else ROOT / "models")
    entry = reference_entry(repo)
    wanted = set(args.sections.split(","))
    sampler = NvmlSampler()
    sampler.thread.start()
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="gpu-run-") as tmp:
        work = Path(tmp)
        bodies: dict[str, Callable[[], dict]] = {
            "agreement": lambda: agreement_section(entry, plan, 2 if args.dry_run else args.per_photo),
            "throughput": lambda: throughput_section(entry, plan),
            "first_requests": lambda: first_requests_section(entry, plan, work),
            "decode": lambda: decode_section(entry, plan),
            "e2e": lambda: e2e_section(entry, plan, work),
        }
        for name, body in bodies.items():
            if name in wanted:
                results[f"{name}.json"] = section(args.out, f"{name}.json", body)
    results["nvml.json"] = section(args.out, "nvml.json", sampler.result)
    summary(args.out, results, plan)
    failed = [name for name, result in results.items() if "error" in result]
    log.info("done: %d sections, %d failed %s", len(results), len(failed), failed)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
