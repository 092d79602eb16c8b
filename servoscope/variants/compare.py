"""``servoscope model compare``: each variant of a model against its FP32 reference, with its price.

For every variant: offline throughput (the service's decode and preprocess feeding the serving
layout of sessions, as bench/serve.py measures the offline limit), batch-1 inference latency,
top-1 agreement and top-5 containment with the reference on the sample set's evaluation inputs
(labelled by the reference's own top-1), and size on disk. A variant whose agreement is below
the threshold needs the model owners' sign-off before it ships, and the report says so.

Each row names its engine: a variant may be the reference's own network on another engine (a copy
of the model whose config says ``engine = "torch"``, with a precision). Such a row is held to the
engine's bar instead of the threshold: 99.5% top-1 agreement in FP32, 99% in FP16/BF16.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from servoscope.models import repository
from servoscope.models.config import EngineConfig, ModelConfigError
from servoscope.models.repository import ModelEntry
from servoscope.pipeline.engines import load_runtime
from servoscope.pipeline.runtime import OnnxModel, Runtime
from servoscope.resources import available_cores, plan_threads
from servoscope.variants import samples
from servoscope.variants.agreement import NOISE_DRAWS, agreement, labelled, logits, run_batches
from servoscope.variants.offline import latency_ms, offline_rate

DEFAULT_THRESHOLD = 0.99
ENGINE_THRESHOLDS = {"fp32": 0.995, "fp16": 0.99, "bf16": 0.99}  # top-1 agreement of another engine, by precision


def model_size_bytes(entry: ModelEntry) -> int:
    """The model file and any external-data files beside it."""
    return sum(p.stat().st_size for p in entry.path.iterdir() if p.suffix in (".onnx", ".data", ".onnx_data"))


@dataclass(frozen=True, slots=True)
class Budget:
    """How much to measure per model: offline throughput seconds, batch-1 latency runs, evaluation
    variants per photo, noise draws for the stability of the reference's labels."""

    duration_s: float = 5.0
    latency_runs: int = 100
    batch_size: int = 1
    provider: str = "cpu"
    per_photo: int = samples.EVALUATION_PER_PHOTO
    noise_draws: int = NOISE_DRAWS

    def __post_init__(self) -> None:
        for name in ("duration_s", "latency_runs", "batch_size", "per_photo"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")


def speed(entry: ModelEntry, images: Sequence[bytes], tensor: np.ndarray, budget: Budget) -> dict:
    """Offline images/s in the serving layout (sessions × threads), and batch-1 inference latency."""
    cfg = entry.config
    plan = plan_threads(provider=cfg.accelerator if cfg.engine.name == "torch" else budget.provider)
    sessions = [runtime_of(entry, budget.provider, plan.intra_op_threads) for _ in range(plan.instances)]
    rate = offline_rate(sessions, images, samples.spec_of(cfg), budget.batch_size, budget.duration_s)
    return {
        "images_per_s": rate,
        "layout": f"{plan.instances}x{plan.intra_op_threads}",
        "batch_size": budget.batch_size,
        **latency_ms(sessions[0].run, tensor, budget.latency_runs),
    }


def runtime_of(entry: ModelEntry, provider: str, threads: int) -> Runtime:
    """The model on its own engine; ONNX Runtime on ``provider``."""
    cfg = entry.config
    if cfg.engine.name == "torch":
        return load_runtime(entry, threads)
    return OnnxModel(entry.model_file, provider, threads, cfg.input.name, cfg.output.name)


def engine_of(engine: EngineConfig, provider: str) -> str:
    return f"onnxruntime/{provider}" if engine.name == "onnxruntime" else engine.describe()


def threshold_of(engine: EngineConfig, threshold: float) -> float:
    """A variant's bar: the threshold, or for the reference's network on another engine, that engine's."""
    return threshold if engine.name == "onnxruntime" else ENGINE_THRESHOLDS[engine.precision]


def variants_of(root: Path, reference: ModelEntry, names: Sequence[str] | None) -> list[ModelEntry]:
    """The named models, or every other model of the repository with the reference's labels and input."""
    if names:
        unknown = [n for n in names if not repository.versions(root, n)]
        if unknown:
            known = [e.name for e in repository.discover(root)]
            raise ModelConfigError(f"no model {', '.join(map(repr, unknown))} in repository {root}; it holds {known}")
        chosen = [repository.find(root, n) for n in dict.fromkeys(names) if n != reference.name]
        for entry in chosen:
            if entry.config.input != reference.config.input or entry.labels() != reference.labels():
                raise ModelConfigError(f"{entry.name} is no variant of {reference.name}: its input or labels differ")
        return chosen
    labels = reference.labels()
    return [
        e
        for e in repository.discover(root)
        if e.name != reference.name and e.config.input == reference.config.input and e.labels() == labels
    ]


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def compare(
    root: Path,
    reference_name: str,
    names: Sequence[str] | None = None,
    threshold: float = DEFAULT_THRESHOLD,
    budget: Budget = Budget(),
    progress: Callable[[str], None] = _stderr,
) -> dict:
    """The report: the reference and each variant, measured the same way on the same inputs."""
    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"threshold must be in (0, 1], got {threshold}")
    reference = repository.find(root, reference_name)
    if reference.config.engine.name != "onnxruntime":
        raise ModelConfigError(
            f"the reference runs on ONNX Runtime; {reference.name} runs on {reference.config.engine.describe()}"
        )
    variants = variants_of(root, reference, names)
    progress(
        f"comparing {reference.name} with {len(variants)} variant(s): {', '.join(v.name for v in variants) or 'none'}"
    )
    progress("building the sample set (photos shipped in installed packages, deterministic variants) …")
    evaluation = samples.evaluation(budget.per_photo)
    images = [s.data for s in evaluation]
    tensors = samples.evaluation_tensors(samples.spec_of(reference.config), budget.per_photo)
    input_names = [s.name for s in evaluation]
    progress(f"labelling {len(evaluation)} inputs with {reference.name}'s top-1 and checking each label's stability …")
    ref_logits, stable = labelled(reference, budget.per_photo, budget.noise_draws, budget.provider)
    rows = []
    for i, entry in enumerate([reference, *variants], 1):
        progress(
            f"[{i}/{len(variants) + 1}] {entry.name}: agreement, then {budget.duration_s:g} s of throughput and "
            f"{budget.latency_runs} latency runs …"
        )
        out = ref_logits if entry is reference else _logits(entry, tensors, budget.provider)
        agreed = agreement(ref_logits, out, input_names, reference.config.output.kind, stable)
        bar = threshold_of(entry.config.engine, threshold)
        row = {
            "name": entry.name,
            "version": entry.version,
            "engine": engine_of(entry.config.engine, budget.provider),
            "threshold": bar,
            "description": entry.config.description,
            "size_bytes": model_size_bytes(entry),
            **speed(entry, images, tensors[0], budget),
            **agreed,
            "sign_off_needed": agreed["top1_agreement"] < bar,
        }
        progress(
            f"      {row['images_per_s']:.1f} img/s, P50 {row['p50_ms']:.1f} ms, "
            f"top-1 agreement {100 * row['top1_agreement']:.1f}%, top-5 containment "
            f"{100 * row['top5_containment']:.1f}%"
        )
        rows.append(row)
    base = rows[0]
    for row in rows:
        row["throughput_ratio"] = row["images_per_s"] / base["images_per_s"]
        row["p50_ratio"] = row["p50_ms"] / base["p50_ms"]
        row["size_ratio"] = row["size_bytes"] / base["size_bytes"]
    return {
        "reference": f"{reference.name}/{reference.version}",
        "threshold": threshold,
        "provider": budget.provider,
        "cores": available_cores(),
        "cpu": _cpu_name(),
        "sample_set": samples.describe(evaluation),
        "models": rows,
    }


def _logits(entry: ModelEntry, tensors: np.ndarray, provider: str) -> np.ndarray:
    if entry.config.engine.name == "onnxruntime":
        return logits(entry.model_file, entry.config, tensors, provider)
    return run_batches(runtime_of(entry, provider, available_cores()), tensors)


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "")
    except OSError:
        return os.uname().machine


def sign_off_lines(report: dict) -> list[str]:
    return [
        f"SIGN-OFF NEEDED: {row['name']} ({row['engine']}) agrees with {report['reference']} on top-1 for "
        f"{100 * row['top1_agreement']:.1f}% of {row['inputs']} inputs, below {100 * row['threshold']:g}%: "
        "the model owners must sign off before it ships."
        for row in report["models"]
        if row["sign_off_needed"]
    ]


def table(report: dict) -> str:
    """The report as a fixed-width table, then a sign-off line for each variant below the threshold."""
    header = (
        "model",
        "engine",
        "size MB",
        "img/s",
        "× ref",
        "P50 ms",
        "P95 ms",
        "top-1 agree",
        "(stable)",
        "top-5 contain",
        "sign-off",
    )
    lines = [header]
    for row in report["models"]:
        lines.append(
            (
                row["name"],
                row["engine"],
                f"{row['size_bytes'] / 1e6:.1f}",
                f"{row['images_per_s']:.1f}",
                f"{row['throughput_ratio']:.2f}",
                f"{row['p50_ms']:.1f}",
                f"{row['p95_ms']:.1f}",
                f"{100 * row['top1_agreement']:.1f}%",
                f"{100 * row['top1_agreement_stable']:.1f}%" if row["top1_agreement_stable"] is not None else "-",
                f"{100 * row['top5_containment']:.1f}%",
                "NEEDED" if row["sign_off_needed"] else "-",
            )
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    text = [
        "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(line, widths))) for line in lines
    ]
    first = report["models"][0]
    text.insert(
        0,
        (
            f"{report['reference']} and its variants on {report['cores']} cores ({report['cpu']}), provider "
            f"{report['provider']}; "
            f"throughput offline, {first['layout']} sessions×threads, batch {first['batch_size']}; "
            f"agreement on {first['inputs']} sample inputs (v{report['sample_set']['version']}), labelled by the "
            "reference's top-1; "
            f"(stable): on the {first['stable_inputs']} whose label survives ±1 grey level of noise"
        ),
    )
    return "\n".join(text + sign_off_lines(report))
