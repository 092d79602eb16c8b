"""An INT8 variant of a model, with ONNX Runtime's static (QDQ) quantization calibrated on real photos.

The report gives the top-1 agreement of the INT8 model with its FP32 source on the sample
photos: a quantized model changes answers, and that is the ML engineers' call to accept.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

import numpy as np

from servoscope.models import repository
from servoscope.models.config import CONFIG_FILE, MODEL_FILE, save_config
from servoscope.pipeline.decode import DecodeLimits
from servoscope.pipeline.preprocess import PreprocessSpec, prepare
from servoscope.pipeline.runtime import OnnxModel

log = logging.getLogger(__name__)

REPORT_FILE = "quantization.json"
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp"}
SAMPLE_PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "cat", "motorcycle_left", "immunohistochemistry", "hubble_deep_field")


def sample_photos() -> dict[str, bytes]:
    """scikit-image's bundled colour photos, PNG-encoded."""
    import io

    from PIL import Image
    from skimage import data

    photos = {}
    for name in SAMPLE_PHOTOS:
        loader = getattr(data, name, None)
        if loader is None:
            continue
        buf = io.BytesIO()
        Image.fromarray(loader()).convert("RGB").save(buf, format="PNG")
        photos[name] = buf.getvalue()
    return photos


def folder_photos(folder: Path) -> dict[str, bytes]:
    photos = {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES}
    if not photos:
        raise ValueError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in {folder}")
    return photos


def calibration_tensors(photos: dict[str, bytes], spec: PreprocessSpec) -> list[np.ndarray]:
    """Each photo as given and mirrored, one [1,3,H,W] tensor each."""
    tensors = []
    for data in photos.values():
        tensor = prepare(data, None, DecodeLimits(), spec).tensor
        tensors += [tensor[None], tensor[None, :, :, ::-1].copy()]
    return tensors


class _Reader:
    def __init__(self, input_name: str, tensors: list[np.ndarray]) -> None:
        self._items: Iterator[dict[str, np.ndarray]] = iter({input_name: t} for t in tensors)

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._items, None)


def top1_agreement(source: Path, quantized: Path, tensors: dict[str, np.ndarray], input_name: str, output_name: str) -> dict:
    fp32 = OnnxModel(source, "cpu", 0, input_name, output_name)
    int8 = OnnxModel(quantized, "cpu", 0, input_name, output_name)
    per_photo = {}
    for name, tensor in tensors.items():
        a, b = fp32.run(tensor[None])[0], int8.run(tensor[None])[0]
        top5 = np.argsort(-b)[:5].tolist()
        per_photo[name] = {
            "fp32_top1": int(a.argmax()),
            "int8_top1": int(b.argmax()),
            "agree": int(a.argmax()) == int(b.argmax()),
            "fp32_top1_in_int8_top5": int(a.argmax()) in top5,
        }
    n = max(1, len(per_photo))
    return {
        "photos": len(per_photo),
        "top1_agreement": sum(p["agree"] for p in per_photo.values()) / n,
        "top1_in_top5": sum(p["fp32_top1_in_int8_top5"] for p in per_photo.values()) / n,
        "per_photo": per_photo,
    }


def quantize(root: Path, source_name: str, target_name: str, images: Path | None = None) -> dict:
    """Write ``<root>/<target_name>/1/`` (model, config, labels, report); returns the report."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    source = repository.find(root, source_name)
    cfg = source.config
    spec = PreprocessSpec(cfg.input.size, cfg.input.resize, cfg.input.mean, cfg.input.std)
    photos = folder_photos(images) if images else sample_photos()
    log.info("quantizing %s to INT8, calibrating on %d photos …", source_name, len(photos))
    target = root / target_name / "1"
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".quantize-", dir=target.parent))
    try:
        pre = staging / "preprocessed.onnx"
        quant_pre_process(str(source.model_file), str(pre), skip_symbolic_shape=True)
        quantize_static(
            str(pre),
            str(staging / MODEL_FILE),
            _Reader(cfg.input.name, calibration_tensors(photos, spec)),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
        )
        pre.unlink()
        tensors = {name: prepare(data, None, DecodeLimits(), spec).tensor for name, data in photos.items()}
        report = {"source": f"{source_name}/{source.version}", **top1_agreement(
            source.model_file, staging / MODEL_FILE, tensors, cfg.input.name, cfg.output.name
        )}
        shutil.copy(source.path / cfg.output.labels, staging / cfg.output.labels)
        description = f"{cfg.description or source_name} → INT8 (static QDQ); top-1 agreement {report['top1_agreement']:.0%} on {report['photos']} photos"
        save_config(cfg.model_copy(update={"name": target_name, "description": description}), staging / CONFIG_FILE)
        (staging / REPORT_FILE).write_text(json.dumps(report, indent=2))
        staging.chmod(0o755)
        if target.exists():
            shutil.rmtree(target)
        os.replace(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    log.info("wrote %s: top-1 agreement %.0f%% on %d photos", target, 100 * report["top1_agreement"], report["photos"])
    return report
