"""An RGB image → the model's normalized float32 input tensor (resize, center crop, normalize)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from servoscope.pipeline.decode import DecodeLimits, decode


@dataclass(frozen=True, slots=True)
class PreprocessSpec:
    """What the model expects: ``resize`` the shorter side, center-crop ``size``², then (x - mean) / std."""

    size: int
    resize: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    def __post_init__(self) -> None:
        if self.resize < self.size:
            raise ValueError(f"resize ({self.resize}) must be >= size ({self.size})")

    @property
    def shape(self) -> tuple[int, int, int]:
        return (3, self.size, self.size)


def crop_box(width: int, height: int, spec: PreprocessSpec) -> tuple[float, float, float, float]:
    """The centered square of the source that ends up as the crop after resizing the shorter side."""
    side = min(width, height) * spec.size / spec.resize
    left = (width - side) / 2
    top = (height - side) / 2
    return (left, top, left + side, top + side)


def resize_crop(image: Image.Image, spec: PreprocessSpec) -> Image.Image:
    """Resize-then-center-crop as one resampling of the cropped box (no intermediate image)."""
    box = crop_box(image.width, image.height, spec)
    ratio = (box[2] - box[0]) / spec.size
    gap = 2.0 if ratio > 2 else None
    return image.resize((spec.size, spec.size), Image.Resampling.BILINEAR, box=box, reducing_gap=gap)


def normalize(image: Image.Image, spec: PreprocessSpec, out: np.ndarray | None = None) -> np.ndarray:
    """HWC uint8 RGB → CHW float32 ``(x - mean) / std``, written into ``out`` when given."""
    pixels = np.asarray(image, dtype=np.uint8)
    if out is None:
        out = np.empty(spec.shape, dtype=np.float32)
    mean = np.asarray(spec.mean, dtype=np.float32).reshape(3, 1, 1)
    inv_std = (1.0 / np.asarray(spec.std, dtype=np.float32)).reshape(3, 1, 1)
    np.subtract(pixels.transpose(2, 0, 1), mean, out=out, dtype=np.float32)
    out *= inv_std
    return out


@dataclass(frozen=True, slots=True)
class Prepared:
    tensor: np.ndarray
    pixels: int  # the source image's pixel count, before any downscaling


def prepare(data: bytes, fmt: str | None, limits: DecodeLimits, spec: PreprocessSpec) -> Prepared:
    """Bytes → model input: the whole preprocessing stage, run in a worker thread."""
    decoded = decode(data, limits, spec.resize, fmt)
    return Prepared(normalize(resize_crop(decoded.image, spec), spec), decoded.source_pixels)
