"""An RGB image → the model's input: resize and center crop in the preprocess worker, then
normalize straight into the instance's batch buffer when the batch is assembled.

A request carries its crop as uint8 HWC pixels (a quarter of the bytes of a float32 tensor) to the
batcher, where :class:`BatchBuffer` writes ``(x - mean) / std`` of each one, transposed to CHW, into
its row of a float32 NCHW array allocated once per model instance: no per-image tensor, no stacking
copy (bench/preprocess.py measures both against the old path). So the ``preprocess`` stage ends
with the uint8 crop, and normalization is timed in ``inference`` (the batch's assembly and model run).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

from servoscope.pipeline.decode import DecodeLimits, decode, to_rgb


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


@functools.lru_cache(maxsize=16)
def _affine(mean: tuple[float, float, float], std: tuple[float, float, float]) -> tuple[np.ndarray, np.ndarray]:
    """``mean`` and ``1 / std`` as float32 (3, 1, 1), made once per model."""
    shape = (3, 1, 1)
    return np.asarray(mean, dtype=np.float32).reshape(shape), (1.0 / np.asarray(std, dtype=np.float32)).reshape(shape)


def normalize(image: Image.Image | np.ndarray, spec: PreprocessSpec, out: np.ndarray | None = None) -> np.ndarray:
    """HWC uint8 RGB → CHW float32 ``(x - mean) / std``, written into ``out`` when given: the
    transpose is read in place and the uint8 → float32 conversion fused into the subtraction."""
    pixels = np.asarray(image, dtype=np.uint8)
    if out is None:
        out = np.empty(spec.shape, dtype=np.float32)
    mean, inv_std = _affine(spec.mean, spec.std)
    np.subtract(pixels.transpose(2, 0, 1), mean, out=out, dtype=np.float32)
    out *= inv_std
    return out


@dataclass(frozen=True, slots=True)
class Prepared:
    """One image ready for its batch: the resized crop, normalized when the batch is assembled."""

    image: np.ndarray  # size × size × 3, uint8 RGB
    pixels: int  # the source image's pixel count, before any downscaling
    spec: PreprocessSpec
    ignored_metadata: str | None = None  # why the image's EXIF was ignored, if it was

    @property
    def tensor(self) -> np.ndarray:
        """This image alone as the model's CHW float32 input (a batch normalizes into its buffer instead)."""
        return normalize(self.image, self.spec)

    def write(self, out: np.ndarray) -> None:
        """Normalize into ``out``, one CHW float32 row of a batch."""
        normalize(self.image, self.spec, out)


def prepare(data: bytes, limits: DecodeLimits, spec: PreprocessSpec) -> Prepared:
    """Bytes → the resized crop: the preprocessing stage, run in a worker thread."""
    decoded = decode(data, limits, spec.resize)
    crop = to_rgb(resize_crop(decoded.image, spec))
    return Prepared(np.asarray(crop), decoded.source_pixels, spec, decoded.ignored_metadata)


BatchRow = Prepared | np.ndarray  # an image to normalize, or a ready float32 row (tests, tools)


def row_shape(row: BatchRow) -> tuple[int, ...]:
    return row.spec.shape if isinstance(row, Prepared) else tuple(row.shape)


class BatchBuffer:
    """One model instance's float32 batch, allocated for ``capacity`` rows on first use and reused.

    Only its instance's thread fills it, one batch at a time; a filled batch is a view of the
    buffer, valid until the next :meth:`fill`. Pages of rows never used are never touched.
    """

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self.capacity = capacity
        self._array: np.ndarray | None = None

    def fill(self, rows: Sequence[BatchRow]) -> np.ndarray:
        """The batch of ``rows``, each written into its row in place (images normalized)."""
        if not 0 < len(rows) <= self.capacity:
            raise ValueError(f"a batch of {len(rows)} rows does not fit a buffer of {self.capacity}")
        shape = row_shape(rows[0])
        if self._array is None or self._array.shape[1:] != shape:
            self._array = np.empty((self.capacity, *shape), dtype=np.float32)
        batch = self._array[: len(rows)]
        for out, row in zip(batch, rows):
            if row_shape(row) != shape:
                raise ValueError(f"rows of one batch differ in shape: {row_shape(row)} and {shape}")
            if isinstance(row, Prepared):
                row.write(out)
            else:
                np.copyto(out, row, casting="same_kind")
        return batch
