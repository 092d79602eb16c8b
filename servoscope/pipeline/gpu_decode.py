"""GPU JPEG decode, an option per model (``input.decode = "cuda"``): ``torchvision.io.decode_jpeg``
on the device, batched, then the resize and center crop there too, so only the small crop comes back.

nvJPEG decodes baseline colour JPEGs. Everything else takes the CPU path (:func:`..preprocess.prepare`)
image by image, and each such fallback is counted by reason:

- ``not_jpeg``: another format, or bytes that are no image;
- ``progressive``: a progressive (or lossless/arithmetic) JPEG;
- ``not_rgb``: grayscale or CMYK;
- ``exif_orientation``: an EXIF rotation, which the CPU path applies;
- ``over_limits``: more bytes or pixels than the decode limits allow (the CPU path refuses it, with its error);
- ``decode_error``: the device decoder refused it.

The header is read (not decoded) by Pillow before anything reaches the device, so nothing the CPU
path would refuse ever does.
"""

from __future__ import annotations

import collections
import io
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from servoscope.pipeline.decode import DecodeLimits
from servoscope.pipeline.preprocess import Prepared, PreprocessSpec, crop_box, prepare

FALLBACK_REASONS = ("not_jpeg", "progressive", "not_rgb", "exif_orientation", "over_limits", "decode_error")
EXIF_ORIENTATION = 0x0112
_BASELINE_SOF = frozenset({"JPEG"})  # Pillow's format for the JPEGs nvJPEG takes (progressive is flagged in info)

BatchCrops = Callable[[Sequence[bytes], PreprocessSpec], list[np.ndarray]]  # JPEGs → size² HWC uint8 RGB crops
FallbackSink = Callable[[str, str], None]  # (model, reason)


class DecodeUnavailable(RuntimeError):
    """GPU decode was asked for, but this machine cannot do it."""


class DeviceDecodeError(RuntimeError):
    """The device decoder refused a batch."""


def fallback_reason(data: bytes, limits: DecodeLimits) -> str | None:
    """Why ``data`` must take the CPU path, or None when the device can decode it."""
    if len(data) > limits.max_bytes:
        return "over_limits"
    try:
        with Image.open(io.BytesIO(data)) as image:
            if image.format not in _BASELINE_SOF:
                return "not_jpeg"
            if image.info.get("progressive") or image.info.get("progression"):
                return "progressive"
            if image.mode != "RGB":
                return "not_rgb"
            if image.width * image.height > limits.max_pixels:
                return "over_limits"
            if image.getexif().get(EXIF_ORIENTATION, 1) != 1:
                return "exif_orientation"
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        return "not_jpeg"
    return None


class GpuDecoder:
    """Batched device decode with the CPU path as each image's fallback."""

    def __init__(self, model: str, crops: BatchCrops, spec: PreprocessSpec, limits: DecodeLimits) -> None:
        self.model = model
        self.crops = crops
        self.spec = spec
        self.limits = limits
        self.decoded = 0  # images decoded on the device
        self.fallbacks: collections.Counter[str] = collections.Counter()
        self.on_fallback: FallbackSink | None = None

    def prepare(self, data: bytes) -> Prepared:
        """One image (the preprocess stage of one request)."""
        return self.prepare_batch([data])[0]

    def prepare_batch(self, images: Sequence[bytes]) -> list[Prepared]:
        reasons: list[str | None] = [fallback_reason(data, self.limits) for data in images]
        fit = [i for i, reason in enumerate(reasons) if reason is None]
        crops = self._device_crops([images[i] for i in fit])
        out: list[Prepared | None] = [None] * len(images)
        for i, crop in zip(fit, crops):
            if crop is None:
                reasons[i] = "decode_error"
            else:
                out[i] = self._prepared(images[i], crop)
        self.decoded += sum(crop is not None for crop in crops)
        for i, reason in enumerate(reasons):
            if reason is not None:
                self._count(reason)
                out[i] = prepare(images[i], self.limits, self.spec)
        return [prepared for prepared in out if prepared is not None]

    def _device_crops(self, images: list[bytes]) -> list[np.ndarray | None]:
        """The batch on the device; if the device refuses it, each image alone (None: refused)."""
        if not images:
            return []
        try:
            return list(self.crops(images, self.spec))
        except DeviceDecodeError:
            if len(images) == 1:
                return [None]
        return [crop for data in images for crop in self._device_crops([data])]

    def _prepared(self, data: bytes, crop: np.ndarray) -> Prepared:
        with Image.open(io.BytesIO(data)) as image:
            pixels = image.width * image.height
        return Prepared(crop, pixels, self.spec)

    def _count(self, reason: str) -> None:
        self.fallbacks[reason] += 1
        if self.on_fallback is not None:
            self.on_fallback(self.model, reason)


def torchvision_crops(device: str = "cuda") -> BatchCrops:
    """The device path: ``decode_jpeg`` on a list (one nvJPEG batch), then resize-and-crop with
    antialiasing (the CPU path's box, as :func:`..preprocess.crop_box` computes it), uint8 back to the host."""
    try:
        import torch
        import torch.nn.functional as F
        from torchvision.io import ImageReadMode, decode_jpeg
    except ImportError as exc:
        raise DecodeUnavailable(f"input.decode = {device!r} needs torchvision ({exc.name} is missing)") from None
    if device == "cuda" and not torch.cuda.is_available():
        raise DecodeUnavailable("input.decode = 'cuda', but PyTorch sees no CUDA device")

    def crops(images: Sequence[bytes], spec: PreprocessSpec) -> list[np.ndarray]:
        encoded = [torch.frombuffer(bytearray(data), dtype=torch.uint8) for data in images]
        try:
            decoded = decode_jpeg(encoded, mode=ImageReadMode.RGB, device=device)
        except RuntimeError as exc:
            raise DeviceDecodeError(str(exc)) from None
        return [_resize_crop(F, image, spec) for image in decoded]

    return crops


def _resize_crop(F: Any, image: Any, spec: PreprocessSpec) -> np.ndarray:
    """CHW uint8 on the device → the size² crop, HWC uint8 on the host."""
    left, top, right, bottom = crop_box(image.shape[2], image.shape[1], spec)
    box = image[:, int(top) : max(int(top) + 1, round(bottom)), int(left) : max(int(left) + 1, round(right))]
    resized = F.interpolate(
        box[None].float(), size=(spec.size, spec.size), mode="bilinear", antialias=True, align_corners=False
    )
    pixels: np.ndarray = (
        resized[0].round_().clamp_(0, 255).to(dtype=image.dtype).permute(1, 2, 0).contiguous().cpu().numpy()
    )
    return pixels
