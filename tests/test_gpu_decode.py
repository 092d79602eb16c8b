"""GPU decode's switch, its per-image fallback to the CPU path and the counting of each fallback.

There is no GPU here and torchvision's decoder is not installed: the device decoder is a FAKE
(:class:`FakeDeviceCrops`, Pillow's decode standing in for nvJPEG). The device-side resize and crop
are the real ones, run by PyTorch on the CPU.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from prometheus_client import CollectorRegistry, generate_latest

from servoscope.models import repository
from servoscope.models.config import InputConfig
from servoscope.pipeline.decode import DecodeLimits
from servoscope.pipeline.gpu_decode import (
    DecodeUnavailable,
    DeviceDecodeError,
    GpuDecoder,
    _resize_crop,
    torchvision_crops,
)
from servoscope.pipeline.preprocess import PreprocessSpec, prepare
from servoscope.pipeline.runtime import OnnxModel
from servoscope.telemetry.recorder import Telemetry
from support import MODEL, Photo, metric_value

SPEC = PreprocessSpec(224, 256, (127.0,) * 3, (128.0,) * 3)
LIMITS = DecodeLimits()


def encode(pixels: np.ndarray, fmt: str = "JPEG", **options: object) -> bytes:
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, fmt, **options)
    return out.getvalue()


def rotated(data: bytes) -> bytes:
    image = Image.open(io.BytesIO(data))
    exif = image.getexif()
    exif[0x0112] = 6  # rotate 90° clockwise when shown
    out = io.BytesIO()
    image.save(out, "JPEG", exif=exif.tobytes())
    return out.getvalue()


class FakeDeviceCrops:
    """A FAKE device decoder: Pillow decodes (in place of nvJPEG), then the real device-side resize
    and crop run in PyTorch on the CPU. It refuses any batch holding one of ``refuse``, as nvJPEG
    refuses a whole batch for one bad image, and records the batches it was given."""

    def __init__(self, refuse: Sequence[bytes] = ()) -> None:
        self.refuse = set(refuse)
        self.batches: list[int] = []

    def __call__(self, images: Sequence[bytes], spec: PreprocessSpec) -> list[np.ndarray]:
        self.batches.append(len(images))
        if self.refuse & set(images):
            raise DeviceDecodeError("fake: bitstream refused")
        chw = [torch.from_numpy(np.array(Image.open(io.BytesIO(d)).convert("RGB"))).permute(2, 0, 1) for d in images]
        return [_resize_crop(F, image, spec) for image in chw]


@pytest.fixture(scope="module")
def chelsea(photos: dict[str, Photo]) -> np.ndarray:
    return photos["chelsea"].pixels


def test_each_odd_image_falls_back_alone_and_is_counted_by_reason(chelsea: np.ndarray) -> None:
    baseline = encode(chelsea, quality=90)
    refused = encode(chelsea[::-1], quality=85)
    odd = {
        "progressive": encode(chelsea, progressive=True),
        "not_rgb": encode(chelsea[..., 0]),
        "exif_orientation": rotated(baseline),
        "not_jpeg": encode(chelsea, "PNG"),
        "decode_error": refused,
    }
    fake = FakeDeviceCrops(refuse=[refused])
    decoder = GpuDecoder("m", fake, SPEC, LIMITS)
    seen: list[tuple[str, str]] = []
    decoder.on_fallback = lambda model, reason: seen.append((model, reason))
    images = [baseline, *odd.values(), baseline]
    prepared = decoder.prepare_batch(images)
    assert len(prepared) == len(images) and decoder.decoded == 2
    assert dict(decoder.fallbacks) == {reason: 1 for reason in odd}
    assert sorted(seen) == sorted(("m", reason) for reason in odd)
    assert fake.batches == [3, 1, 1, 1]  # the batch, refused; then each of its images alone
    for data, got in zip(images, prepared):  # every fallback is exactly the CPU path's crop
        if data in odd.values():
            np.testing.assert_array_equal(got.image, prepare(data, LIMITS, SPEC).image)


@pytest.mark.parametrize("name", ["coffee", "rocket"])  # clear top-1s (chelsea is a toss between three cats)
def test_the_device_resize_and_crop_keep_the_cpu_path_s_top1(
    model_repository: Path, photos: dict[str, Photo], name: str
) -> None:
    data = encode(photos[name].pixels, quality=95)
    device = GpuDecoder("m", FakeDeviceCrops(), SPEC, LIMITS).prepare(data)
    cpu = prepare(data, LIMITS, SPEC)
    assert device.image.shape == cpu.image.shape == (224, 224, 3) and device.pixels == cpu.pixels
    difference = np.abs(device.image.astype(np.int16) - cpu.image.astype(np.int16))
    assert difference.mean() < 4.0  # grey levels: the filters differ a little at the edges of the box
    model = OnnxModel(repository.find(model_repository, MODEL).model_file, "cpu", 1, "input", "logits")
    logits = model.run(np.stack([device.tensor, cpu.tensor]))
    assert logits[0].argmax() == logits[1].argmax()


def test_over_limits_takes_the_cpu_path_which_refuses_it(chelsea: np.ndarray) -> None:
    decoder = GpuDecoder("m", FakeDeviceCrops(), SPEC, DecodeLimits(max_pixels=1000))
    with pytest.raises(Exception, match="pixels"):
        decoder.prepare(encode(chelsea))
    assert decoder.fallbacks["over_limits"] == 1 and decoder.decoded == 0


def test_the_switch_without_torchvision_or_a_gpu_is_a_clear_error() -> None:
    assert InputConfig().decode == "cpu"
    with pytest.raises(DecodeUnavailable, match=r"input\.decode"):
        torchvision_crops("cuda")


def test_fallbacks_are_a_prometheus_counter_by_model_and_reason() -> None:
    telemetry = Telemetry(registry=CollectorRegistry())
    for reason in ("progressive", "progressive", "not_rgb"):
        telemetry.record_decode_fallback("m", reason)
    text = generate_latest(telemetry.registry).decode()
    assert metric_value(text, "servoscope_decode_fallbacks_total", model="m", reason="progressive") == 2.0
    assert metric_value(text, "servoscope_decode_fallbacks_total", model="m", reason="not_rgb") == 1.0


def test_a_model_config_may_switch_gpu_decode_on() -> None:
    assert InputConfig(decode="cuda").decode == "cuda"
    with pytest.raises(ValueError, match="decode"):
        InputConfig(decode="nvjpeg")
