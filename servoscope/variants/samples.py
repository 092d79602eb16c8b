"""A labelled sample set built from photos that ship inside installed packages (no downloads).

Photos: scikit-image's bundled data, scikit-learn's ``load_sample_images()`` and matplotlib's
``sample_data`` (those present). Each photo gives several deterministic variants — a crop at a
position and scale, a mirror, a small rotation, a brightness and contrast change, and an encoding
(JPEG at a quality, or PNG) — encoded as a client would upload them.

Two disjoint sets are drawn:

- **calibration**: variants of the photos in :data:`CALIBRATION_PHOTOS` only;
- **evaluation**: variants of every photo — the others, never seen by calibration, and fresh
  variants of the calibration photos (never the same variant: :func:`evaluation` checks it).

"Labelled" here means labelled by the FP32 model: each input's label is the reference model's
top-1, and a variant's *agreement* is how often it gives the same top-1 (see compare.py).
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance

from servoscope.models.config import ModelConfig
from servoscope.pipeline.decode import DecodeLimits
from servoscope.pipeline.preprocess import PreprocessSpec, prepare
from servoscope.resources import available_cores

VERSION = 1  # bump when the recipe changes: reports name the version they were measured on
ROLE_SEEDS = {"calibration": 1, "evaluation": 2}
EVALUATION_PER_PHOTO = 16
CALIBRATION_PER_PHOTO = 12
CALIBRATION_MAX_PER_PHOTO = 48  # evaluation never uses any of these, whatever the calibration count

# The calibration photos: everyday subjects and the textures a camera sees. The others
# (immunohistochemistry, hubble, retina, coins, … china, flower, grace_hopper) are evaluation only.
CALIBRATION_PHOTOS = (
    "astronaut",
    "chelsea",
    "coffee",
    "rocket",
    "motorcycle_left",
    "camera",
    "moon",
    "brick",
    "grass",
    "cell",
)


def _skimage(name: str) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        from skimage import data

        if name.startswith("motorcycle_"):
            left, right, _ = data.stereo_motorcycle()
            return left if name.endswith("left") else right
        return getattr(data, name)()

    return load


def _sklearn(index: int) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        from sklearn.datasets import load_sample_images

        return load_sample_images().images[index]

    return load


def _matplotlib(file: str) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        import matplotlib

        path = Path(matplotlib.get_data_path()) / "sample_data" / file
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"))

    return load


# name → loader of HxW(x3) uint8 pixels; a loader whose package is missing is skipped.
SOURCES: dict[str, Callable[[], np.ndarray]] = {
    **{
        name: _skimage(name)
        for name in (
            "astronaut",
            "chelsea",
            "coffee",
            "rocket",
            "hubble_deep_field",
            "immunohistochemistry",
            "motorcycle_left",
            "motorcycle_right",
            "retina",
            "camera",
            "coins",
            "moon",
            "clock",
            "brick",
            "grass",
            "gravel",
            "cell",
            "colorwheel",
        )
    },
    "china": _sklearn(0),
    "flower": _sklearn(1),
    "grace_hopper": _matplotlib("grace_hopper.jpg"),
    "blue_pack": _matplotlib("Minduka_Present_Blue_Pack.png"),
}


@dataclass(frozen=True, slots=True)
class Variant:
    """One deterministic change of a photo. ``quality`` 0 means PNG (lossless)."""

    scale: float  # side of the square-ish crop, as a fraction of the photo's
    x: float  # crop position, 0 (left) … 1 (right)
    y: float  # 0 (top) … 1 (bottom)
    flip: bool
    rotate_deg: float
    brightness: float
    contrast: float
    quality: int

    def apply(self, image: Image.Image) -> bytes:
        if self.rotate_deg:
            image = image.rotate(self.rotate_deg, Image.Resampling.BILINEAR, expand=False)
        width, height = round(image.width * self.scale), round(image.height * self.scale)
        left, top = round((image.width - width) * self.x), round((image.height - height) * self.y)
        image = image.crop((left, top, left + width, top + height))
        if self.flip:
            image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        image = ImageEnhance.Brightness(image).enhance(self.brightness)
        image = ImageEnhance.Contrast(image).enhance(self.contrast)
        out = io.BytesIO()
        if self.quality:
            image.save(out, "JPEG", quality=self.quality)
        else:
            image.save(out, "PNG", compress_level=1)
        return out.getvalue()


IDENTITY = Variant(1.0, 0.5, 0.5, False, 0.0, 1.0, 1.0, 0)


@dataclass(frozen=True, slots=True)
class Sample:
    photo: str
    index: int
    variant: Variant
    data: bytes  # the encoded image

    @property
    def name(self) -> str:
        return f"{self.photo}#{self.index}"


def draw(rng: np.random.Generator) -> Variant:
    """A variant from the grid of changes, chosen by ``rng``."""
    return Variant(
        scale=float(rng.choice([1.0, 0.9, 0.8, 0.7, 0.6])),
        x=float(rng.choice([0.0, 0.25, 0.5, 0.75, 1.0])),
        y=float(rng.choice([0.0, 0.25, 0.5, 0.75, 1.0])),
        flip=bool(rng.integers(2)),
        rotate_deg=float(rng.choice([0.0, -8.0, -4.0, 4.0, 8.0])),
        brightness=float(rng.choice([0.75, 0.9, 1.0, 1.1, 1.25])),
        contrast=float(rng.choice([0.75, 0.9, 1.0, 1.1, 1.25])),
        quality=int(rng.choice([0, 95, 85, 70, 50, 30])),
    )


def variants(photo: str, role: str, count: int) -> list[Variant]:
    """``count`` distinct variants of ``photo`` for ``role``, the same on every run."""
    rng = np.random.default_rng([ROLE_SEEDS[role], list(SOURCES).index(photo)])
    chosen: list[Variant] = [IDENTITY] if role == "evaluation" else []
    avoid = (
        set(variants(photo, "calibration", CALIBRATION_MAX_PER_PHOTO))
        if role == "evaluation" and photo in CALIBRATION_PHOTOS
        else set()
    )
    while len(chosen) < count:
        variant = draw(rng)
        if variant not in chosen and variant not in avoid:
            chosen.append(variant)
    return chosen


@cache
def photo_image(name: str) -> Image.Image:
    pixels = SOURCES[name]()
    if pixels.dtype != np.uint8:
        pixels = (pixels * 255).astype(np.uint8) if pixels.dtype == bool else pixels.astype(np.uint8)
    return Image.fromarray(pixels).convert("RGB")


def available_photos() -> list[str]:
    """The photos whose package is installed (scikit-image is required; the others are optional)."""
    found = []
    for name in SOURCES:
        try:
            photo_image(name)
        except (ImportError, OSError):
            continue
        found.append(name)
    if not found:
        raise ImportError("no sample photos: pip install 'servoscope[quantize]' (scikit-image, scikit-learn)")
    return found


def build(role: str, per_photo: int, photos: list[str] | None = None) -> list[Sample]:
    names = available_photos() if photos is None else photos
    if role == "calibration":
        names = [n for n in names if n in CALIBRATION_PHOTOS]
    todo = [(name, i, variant) for name in names for i, variant in enumerate(variants(name, role, per_photo))]
    with ThreadPoolExecutor(available_cores()) as pool:  # Pillow releases the GIL while it works
        encoded = list(pool.map(lambda item: item[2].apply(photo_image(item[0])), todo))
    return [Sample(name, i, variant, data) for (name, i, variant), data in zip(todo, encoded)]


@cache
def calibration(per_photo: int = CALIBRATION_PER_PHOTO) -> tuple[Sample, ...]:
    """Variants of the calibration photos, for the quantizer's activation ranges (built once per process)."""
    if not 1 <= per_photo <= CALIBRATION_MAX_PER_PHOTO:
        raise ValueError(f"calibration variants per photo must be 1 … {CALIBRATION_MAX_PER_PHOTO}, got {per_photo}")
    return tuple(build("calibration", per_photo))


@cache
def evaluation(per_photo: int = EVALUATION_PER_PHOTO) -> tuple[Sample, ...]:
    """Variants of every photo, none of them a calibration input (built once per process)."""
    if per_photo < 1:
        raise ValueError(f"evaluation variants per photo must be >= 1, got {per_photo}")
    return tuple(build("evaluation", per_photo))


@cache
def evaluation_tensors(spec: PreprocessSpec, per_photo: int = EVALUATION_PER_PHOTO) -> np.ndarray:
    """The evaluation inputs as the model sees them (read-only; prepared once per process)."""
    tensors = tensors_of([s.data for s in evaluation(per_photo)], spec)
    tensors.flags.writeable = False
    return tensors


def describe(samples: Sequence[Sample]) -> dict:
    photos = sorted({s.photo for s in samples})
    return {"version": VERSION, "inputs": len(samples), "photos": photos}


def spec_of(config: ModelConfig) -> PreprocessSpec:
    return PreprocessSpec(config.input.size, config.input.resize, config.input.mean, config.input.std)


def tensors_of(images: Sequence[bytes], spec: PreprocessSpec) -> np.ndarray:
    """Encoded images → the model's [N,3,H,W] input, through the service's own decode and preprocess."""
    with ThreadPoolExecutor(available_cores()) as pool:
        return np.stack([p.tensor for p in pool.map(lambda data: prepare(data, DecodeLimits(), spec), images)])
