"""The batch buffer: preprocessed images normalized straight into a reused float32 batch, equal to
the per-image tensors stacked (the path before issue #7), bit for bit."""

from __future__ import annotations

import io

import numpy as np
import pytest
import skimage.data
from PIL import Image

from servoscope.pipeline.decode import DecodeLimits
from servoscope.pipeline.preprocess import BatchBuffer, Prepared, PreprocessSpec, normalize, prepare

LIMITS = DecodeLimits()
SPEC = PreprocessSpec(size=224, resize=256, mean=(127.0, 127.0, 127.0), std=(128.0, 128.0, 128.0))
TORCHVISION = PreprocessSpec(size=224, resize=256, mean=(123.675, 116.28, 103.53), std=(58.395, 57.12, 57.375))


def jpeg(pixels: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, "JPEG", quality=90)
    return out.getvalue()


@pytest.fixture(scope="module")
def photos() -> list[bytes]:
    return [jpeg(skimage.data.chelsea()), jpeg(skimage.data.coffee()), jpeg(skimage.data.astronaut())]


def test_prepare_keeps_the_crop_as_uint8_hwc(photos: list[bytes]) -> None:
    prepared = prepare(photos[0], LIMITS, SPEC)
    assert prepared.image.shape == (224, 224, 3) and prepared.image.dtype == np.uint8
    assert prepared.pixels == 451 * 300
    assert prepared.tensor.shape == SPEC.shape and prepared.tensor.dtype == np.float32


@pytest.mark.parametrize("spec", [SPEC, TORCHVISION], ids=["127-128", "torchvision"])
def test_a_filled_batch_equals_the_stacked_tensors(photos: list[bytes], spec: PreprocessSpec) -> None:
    prepared = [prepare(data, LIMITS, spec) for data in photos]
    batch = BatchBuffer(4).fill(prepared)
    assert batch.shape == (3, *spec.shape) and batch.dtype == np.float32 and batch.flags["C_CONTIGUOUS"]
    np.testing.assert_array_equal(batch, np.stack([p.tensor for p in prepared]))


def test_the_buffer_is_reused_and_a_smaller_batch_is_its_first_rows(photos: list[bytes]) -> None:
    buffer = BatchBuffer(3)
    prepared = [prepare(data, LIMITS, SPEC) for data in photos]
    first = buffer.fill(prepared)
    second = buffer.fill(prepared[2:])
    assert np.shares_memory(first, second) and second.shape[0] == 1
    np.testing.assert_array_equal(second[0], prepared[2].tensor)


def test_ready_float_rows_are_copied_as_they_are(photos: list[bytes]) -> None:
    prepared = prepare(photos[1], LIMITS, SPEC)
    row = np.random.default_rng(0).standard_normal(SPEC.shape).astype(np.float32)
    batch = BatchBuffer(2).fill([row, prepared])
    np.testing.assert_array_equal(batch[0], row)
    np.testing.assert_array_equal(batch[1], normalize(prepared.image, SPEC))


def test_rows_of_different_shapes_are_refused() -> None:
    with pytest.raises(ValueError, match="differ in shape"):
        BatchBuffer(2).fill([np.zeros((3, 224, 224), np.float32), np.zeros((1, 224, 224), np.float32)])


def test_a_batch_must_fit() -> None:
    row = Prepared(np.zeros((224, 224, 3), np.uint8), 1, SPEC)
    with pytest.raises(ValueError, match="does not fit"):
        BatchBuffer(2).fill([row, row, row])
    with pytest.raises(ValueError, match="does not fit"):
        BatchBuffer(2).fill([])
    with pytest.raises(ValueError, match="capacity"):
        BatchBuffer(0)
