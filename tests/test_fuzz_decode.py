"""Fuzzing the decode path: whatever the bytes, decoding ends in an image or a RequestError (a 4xx),
never another exception. Bounded in examples; seeds are real encoded photos, mutated."""

from __future__ import annotations

import io
from typing import Any

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


def _seed(fmt: str, mode: str = "RGB", **options: Any) -> bytes:
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)).convert(mode)
    out = io.BytesIO()
    if options.get("save_all"):
        options["append_images"] = [image.transpose(Image.Transpose.ROTATE_180)]
    image.save(out, fmt, **options)
    return out.getvalue()


def _exif(orientation: int) -> bytes:
    info = Image.Exif()
    info[0x0112] = orientation
    return info.tobytes()


# Every structure the decoder walks before decoding: scans, segments, chunks, frames and EXIF.
SEEDS = [
    _seed("JPEG"),
    _seed("PNG"),
    _seed("WEBP"),
    _seed("PNG", "P"),
    _seed("JPEG", "CMYK"),
    _seed("PNG", "LA"),
    _seed("JPEG", progressive=True),
    _seed("JPEG", exif=_exif(6)),
    _seed("PNG", exif=_exif(3)),
    _seed("PNG", save_all=True),
    _seed("WEBP", save_all=True),
    _seed("WEBP", exif=_exif(8)),
]


def decode_or_refuse(data: bytes) -> None:
    try:
        tensor = prepare(data, LIMITS, SPEC).tensor
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
@given(mutated())
def test_mutated_images_decode_or_are_refused(data: bytes) -> None:
    decode_or_refuse(data)


@FUZZ
@given(st.binary(max_size=2048))
def test_random_bytes_are_refused(data: bytes) -> None:
    decode_or_refuse(data)


@pytest.mark.parametrize("seed", SEEDS)
def test_every_seed_decodes(seed: bytes) -> None:
    assert prepare(seed, LIMITS, SPEC).tensor.shape == SPEC.shape
