"""Fuzzing the decode path: whatever the bytes, decoding ends in an image or a RequestError (a 4xx),
never another exception. Bounded in examples; seeds are real encoded photos, mutated."""

from __future__ import annotations

import io

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from servoscope.errors import RequestError
from servoscope.pipeline.decode import DecodeLimits
from servoscope.pipeline.preprocess import PreprocessSpec, prepare

SPEC = PreprocessSpec(224, 256, (127.0, 127.0, 127.0), (128.0, 128.0, 128.0))
LIMITS = DecodeLimits(max_bytes=2_000_000, max_pixels=4_000_000)


def _seed(fmt: str, mode: str = "RGB") -> bytes:
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)).convert(mode)
    out = io.BytesIO()
    image.save(out, fmt)
    return out.getvalue()


SEEDS = [_seed("JPEG"), _seed("PNG"), _seed("WEBP"), _seed("PNG", "P"), _seed("JPEG", "CMYK"), _seed("PNG", "LA")]


def decode_or_refuse(data: bytes, fmt: str | None) -> None:
    try:
        tensor = prepare(data, fmt, LIMITS, SPEC).tensor
    except RequestError:
        return
    assert tensor.shape == SPEC.shape and np.isfinite(tensor).all()


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(0, 8))):
        position = draw(st.integers(0, len(data) - 1))
        data[position] = draw(st.integers(0, 255))
    cut = draw(st.integers(1, len(data)))
    return bytes(data[:cut]) + draw(st.binary(max_size=64))


FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True)


@settings(FUZZ, max_examples=1500)
@given(mutated(), st.sampled_from([None, "JPEG", "PNG", "WEBP"]))
def test_mutated_images_decode_or_are_refused(data: bytes, fmt: str | None) -> None:
    decode_or_refuse(data, fmt)


@FUZZ
@given(st.binary(max_size=2048), st.sampled_from([None, "JPEG", "PNG", "WEBP"]))
def test_random_bytes_are_refused(data: bytes, fmt: str | None) -> None:
    decode_or_refuse(data, fmt)


@pytest.mark.parametrize("seed", SEEDS)
def test_every_seed_decodes(seed: bytes) -> None:
    assert prepare(seed, None, LIMITS, SPEC).tensor.shape == SPEC.shape
