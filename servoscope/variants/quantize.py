"""An INT8 variant of a model, with ONNX Runtime's static quantization calibrated on real photos.

The defaults (:data:`DEFAULT_SETTINGS`) are the best of the settings measured by
``bench/quantize.py`` on the sample set (see README, "Model variants"). The report gives the INT8
model's top-1 agreement with its FP32 source on the evaluation set (inputs the calibration never
saw): a quantized model changes answers, and that is the model owners' call to accept.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from servoscope.models import repository
from servoscope.models.config import CONFIG_FILE, MODEL_FILE, save_config
from servoscope.models.repository import ModelEntry
from servoscope.variants import samples
from servoscope.variants.agreement import measure
from servoscope.variants.bias_correction import correct_biases

log = logging.getLogger(__name__)

REPORT_FILE = "quantization.json"
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp"}
# Symbolic node names for ``exclude``: the layers usually most sensitive to quantization.
SENSITIVE = ("stem", "head", "softmax")


@dataclass(frozen=True, slots=True)
class QuantSettings:
    """The knobs of ``onnxruntime.quantization.quantize_static`` that were measured, and bias correction."""

    format: Literal["qdq", "qoperator"] = "qdq"
    per_channel: bool = True
    calibration: Literal["minmax", "entropy", "percentile"] = "minmax"
    percentile: float = 99.999  # for calibration = "percentile"
    activations: Literal["uint8", "int8", "uint16"] = "uint8"  # uint16: ONNX Runtime's contrib ops (slow on CPU)
    weights: Literal["int8", "uint8", "int16"] = "int8"
    reduce_range: bool = False  # 7-bit weights, for CPUs without VNNI
    exclude: tuple[str, ...] = ()  # node names, or "stem" (first Conv), "head" (last Gemm/MatMul), "softmax"
    calibration_per_photo: int = samples.CALIBRATION_PER_PHOTO
    preprocess: bool = True  # onnxruntime.quantization.shape_inference.quant_pre_process first
    symmetric_activations: bool = False
    bias_correction: bool = True  # see bias_correction.py; needs signed 8-bit weights

    def __post_init__(self) -> None:
        if self.bias_correction and self.weights != "int8":
            raise ValueError(
                f"bias correction models signed INT8 weights; weights are {self.weights} (add --no-bias-correction)"
            )
        if not 1 <= self.calibration_per_photo <= samples.CALIBRATION_MAX_PER_PHOTO:
            raise ValueError(
                f"calibration_per_photo must be 1 … {samples.CALIBRATION_MAX_PER_PHOTO}, got "
                f"{self.calibration_per_photo}"
            )
        if not 0.0 < self.percentile <= 100.0:
            raise ValueError(f"percentile must be in (0, 100], got {self.percentile}")

    def label(self) -> str:
        """A short description, for tables and the model's description."""
        parts = [
            self.format.upper() if self.format == "qdq" else "QOperator",
            "per-channel" if self.per_channel else "per-tensor",
            self.calibration if self.calibration != "percentile" else f"percentile {self.percentile:g}",
            f"{self.activations} activations, {self.weights} weights",
        ]
        parts += ["bias-corrected"] * self.bias_correction + ["reduce_range"] * self.reduce_range
        parts += ["symmetric activations"] * self.symmetric_activations
        parts += [f"exclude {'+'.join(self.exclude)}"] * bool(self.exclude) + ["no pre-process"] * (not self.preprocess)
        return ", ".join(parts)


DEFAULT_SETTINGS = QuantSettings()


class _Reader:
    """The calibration inputs for ``quantize_static``, one [1,3,H,W] tensor at a time."""

    def __init__(self, input_name: str, tensors: np.ndarray) -> None:
        self._items: Iterator[dict[str, np.ndarray]] = iter({input_name: t[None]} for t in tensors)

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._items, None)


def folder_images(folder: Path) -> list[bytes]:
    images = [p.read_bytes() for p in sorted(folder.iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES]
    if not images:
        raise ValueError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in {folder}")
    return images


def resolve_exclude(model_path: Path, exclude: tuple[str, ...]) -> list[str]:
    """Node names for ``exclude``: "stem", "head" and "softmax" name nodes of the graph."""
    import onnx

    nodes = onnx.load(str(model_path), load_external_data=False).graph.node
    convs = [n.name for n in nodes if n.op_type == "Conv"]
    heads = [n.name for n in nodes if n.op_type in ("Gemm", "MatMul")]
    symbolic = {
        "stem": convs[:1],
        "head": heads[-1:],
        "softmax": [n.name for n in nodes if n.op_type == "Softmax"],
    }
    names = {n.name for n in nodes}
    resolved: list[str] = []
    for item in exclude:
        if item in symbolic:
            resolved += symbolic[item]
        elif item in names:
            resolved.append(item)
        else:
            raise ValueError(f"cannot exclude {item!r}: not {', '.join(SENSITIVE)} nor a node of {model_path.name}")
    return resolved


def quantize_file(
    source: Path, output: Path, input_name: str, calibration: np.ndarray, settings: QuantSettings
) -> None:
    """``source`` (FP32 ONNX) → ``output`` (INT8 ONNX), calibrated on ``calibration`` ([N,3,H,W])."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    types = {"uint8": QuantType.QUInt8, "int8": QuantType.QInt8, "uint16": QuantType.QUInt16, "int16": QuantType.QInt16}
    methods = {
        "minmax": CalibrationMethod.MinMax,
        "entropy": CalibrationMethod.Entropy,
        "percentile": CalibrationMethod.Percentile,
    }
    extra: dict[str, object] = {"ActivationSymmetric": settings.symmetric_activations}
    if settings.calibration == "percentile":
        extra["CalibPercentile"] = settings.percentile
    if "16" in settings.activations + settings.weights:
        extra["UseQDQContribOps"] = True  # 16-bit Q/DQ are contrib ops in ONNX Runtime
    with tempfile.TemporaryDirectory(prefix="servoscope-quantize-") as tmp, _quiet_root_logger():
        model = source
        if settings.preprocess:
            model = Path(tmp) / "preprocessed.onnx"
            quant_pre_process(str(source), str(model), skip_symbolic_shape=True)
        excluded = resolve_exclude(model, settings.exclude)
        if settings.bias_correction:
            corrected = Path(tmp) / "bias-corrected.onnx"
            correct_biases(
                model,
                corrected,
                input_name,
                calibration,
                settings.per_channel,
                settings.reduce_range,
                frozenset(excluded),
            )
            model = corrected
        quantize_static(
            str(model),
            str(output),
            _Reader(input_name, calibration),
            quant_format=QuantFormat.QDQ if settings.format == "qdq" else QuantFormat.QOperator,
            per_channel=settings.per_channel,
            reduce_range=settings.reduce_range,
            activation_type=types[settings.activations],
            weight_type=types[settings.weights],
            nodes_to_exclude=excluded,
            calibrate_method=methods[settings.calibration],
            extra_options=extra,
        )


@contextmanager
def _quiet_root_logger() -> Iterator[None]:
    """onnxruntime.quantization logs on the root logger, a line per adjusted weight: errors only, meanwhile."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


def quantize(
    root: Path,
    source_name: str,
    target_name: str,
    images: Path | None = None,
    settings: QuantSettings = DEFAULT_SETTINGS,
    force: bool = True,
) -> dict:
    """Write ``<root>/<target_name>/1/`` (model, config, labels, report); returns the report.
    Without ``force``, a variant already made from the same source with the same settings and
    sample set is kept, and its report returned."""
    source = repository.find(root, source_name)
    target = root / target_name / "1"
    recipe = _recipe(source, settings, images)
    if not force and (existing := _report_if_current(target, recipe)):
        log.info("%s is up to date (same source, settings and sample set)", target)
        return existing
    if images:
        calibration = folder_images(images)
        described: dict = {"folder": str(images), "inputs": len(calibration)}
    else:
        chosen = samples.calibration(settings.calibration_per_photo)
        calibration, described = [s.data for s in chosen], samples.describe(chosen)
    log.info("quantizing %s to INT8 (%s), calibrating on %d inputs …", source_name, settings.label(), len(calibration))
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".quantize-", dir=target.parent))
    try:
        tensors = samples.tensors_of(calibration, samples.spec_of(source.config))
        quantize_file(source.model_file, staging / MODEL_FILE, source.config.input.name, tensors, settings)
        log.info("measuring top-1 agreement with %s on the evaluation set …", source_name)
        report = {**recipe, "calibration": described, **measure(source, staging / MODEL_FILE)}
        write_variant(source, target_name, staging, f"INT8 ({settings.label()})", report, REPORT_FILE)
        publish(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    log.info("wrote %s: top-1 agreement %.1f%% on %d inputs", target, 100 * report["top1_agreement"], report["inputs"])
    return report


def _recipe(source: ModelEntry, settings: QuantSettings, images: Path | None) -> dict:
    """What a variant was made from: if all of it is unchanged, so is the variant."""
    return {
        "source": f"{source.name}/{source.version}",
        "source_sha256": hashlib.sha256(source.model_file.read_bytes()).hexdigest(),
        "settings": {**asdict(settings), "exclude": list(settings.exclude), "label": settings.label()},
        "calibration_images": str(images) if images else f"samples v{samples.VERSION}",
    }


def _report_if_current(target: Path, recipe: dict) -> dict | None:
    try:
        report = json.loads((target / REPORT_FILE).read_text())
    except (OSError, ValueError):
        return None
    current = (target / MODEL_FILE).is_file() and all(report.get(k) == v for k, v in recipe.items())
    return report if current else None


def write_variant(source: ModelEntry, name: str, folder: Path, kind: str, report: dict, report_file: str) -> None:
    """The variant's config (its source's, renamed and described), labels and report beside its model."""
    cfg = source.config
    shutil.copy(source.path / cfg.output.labels, folder / cfg.output.labels)
    description = (
        f"{cfg.description or source.name} → {kind}; top-1 agreement {100 * report['top1_agreement']:.1f}% "
        f"on {report['inputs']} sample inputs"
    )
    save_config(cfg.model_copy(update={"name": name, "description": description}), folder / CONFIG_FILE)
    (folder / report_file).write_text(json.dumps(report, indent=2) + "\n")


def publish(staging: Path, target: Path) -> None:
    """Make ``staging`` the version folder ``target``, atomically (a server never sees half of it)."""
    staging.chmod(0o755)
    if target.exists():
        shutil.rmtree(target)
    os.replace(staging, target)
