"""Test image sets made from scikit-image's bundled photos, cached on disk.

``small``: ~320×240 JPEGs (thumbnail-sized uploads). ``medium``: 640×480 JPEGs (web and camera
uploads, decoded in full: a DCT-scaled decode would fall below the model's 256-pixel resize).
``phone``: 4032×3024 JPEGs at quality 90 with mild sensor-like noise, so that their size (~2–4 MB)
and decode cost are those of real phone photos rather than of a smooth upscaled image that
compresses to almost nothing.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

PHOTOS: tuple[str, ...] = (
    "chelsea",
    "coffee",
    "astronaut",
    "rocket",
    "hubble_deep_field",
    "immunohistochemistry",
    "retina",
    "motorcycle",
)
VERSION = 2  # bump when the recipe changes, so caches are rebuilt


@dataclass(frozen=True, slots=True)
class ImageSet:
    name: str
    size: tuple[int, int]  # width, height
    noise_sigma: float
    quality: int = 90


SETS: dict[str, ImageSet] = {
    "small": ImageSet("small", (320, 240), 0.0),
    "medium": ImageSet("medium", (640, 480), 0.0),
    "phone": ImageSet("phone", (4032, 3024), 6.0),
}


def photo(name: str) -> np.ndarray:
    """A bundled RGB photo (no download) as HxWx3 uint8."""
    from skimage import data

    loaders: dict[str, Callable[[], np.ndarray]] = {"motorcycle": lambda: data.stereo_motorcycle()[0]}
    pixels = loaders[name]() if name in loaders else getattr(data, name)()
    return np.ascontiguousarray(pixels[..., :3])


def cover(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    """Scale to cover ``size`` then center-crop to it exactly."""
    width, height = size
    scale = max(width / image.width, height / image.height)
    scaled = image.resize((round(image.width * scale), round(image.height * scale)), Image.Resampling.BICUBIC)
    left, top = (scaled.width - width) // 2, (scaled.height - height) // 2
    return scaled.crop((left, top, left + width, top + height))


def render(pixels: np.ndarray, spec: ImageSet, seed: int) -> bytes:
    """One photo as a JPEG of the set's size, with the set's noise."""
    image = cover(Image.fromarray(pixels), spec.size)
    if spec.noise_sigma > 0:
        rng = np.random.default_rng(seed)
        noisy = np.asarray(image, dtype=np.float32)
        noisy += rng.normal(0.0, spec.noise_sigma, noisy.shape).astype(np.float32)
        image = Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8))
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=spec.quality)
    return buffer.getvalue()


def image_set(name: str, cache_dir: Path, photos: tuple[str, ...] = PHOTOS) -> list[bytes]:
    """The JPEG bytes of set ``name``, generated once into ``cache_dir/<name>-v<VERSION>/``."""
    spec = SETS[name]
    folder = cache_dir / f"{name}-v{VERSION}"
    folder.mkdir(parents=True, exist_ok=True)
    out: list[bytes] = []
    for i, photo_name in enumerate(photos):
        path = folder / f"{photo_name}.jpg"
        if not path.is_file():
            tmp = path.with_suffix(".tmp")
            tmp.write_bytes(render(photo(photo_name), spec, seed=i))
            tmp.replace(path)
        out.append(path.read_bytes())
    return out
