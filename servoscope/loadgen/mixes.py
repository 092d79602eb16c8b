"""Image mixes: what the load uploads, and how often each kind.

Either the images of a folder (each file equally likely), or a generated set with a stated
size distribution, made from scikit-image's bundled photos (see :mod:`images`) and cached:

    parse_mix("70%:4032x3024,30%:320x240")   70% phone photos, 30% thumbnails
    generated(mix, png_share=0.2, cache_dir)  each size as JPEG, and as PNG for 20% of draws

Large sizes get the mild sensor-like noise of :data:`images.SETS` ``phone`` so their bytes
and decode cost are those of real photos. Requests are drawn from the mix with a seeded RNG.
"""

from __future__ import annotations

import io
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from servoscope.loadgen.images import PHOTOS, cover, photo

VERSION = 1  # bump when the recipe changes, so caches are rebuilt
NOISY_PIXELS = 2_000_000  # sizes from this many pixels get sensor-like noise
NOISE_SIGMA = 6.0
JPEG_QUALITY = 90
MAX_FOLDER_FILES = 10_000
MAX_IMAGE_BYTES = 64 * 1024 * 1024
MAX_SIDE = 16_384
CONTENT_TYPES = {".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".png": "image/png", ".webp": "image/webp"}


@dataclass(frozen=True, slots=True)
class MixImage:
    data: bytes
    content_type: str
    label: str  # e.g. "320x240.jpeg" or the file name: what the result file counts draws by


@dataclass(frozen=True, slots=True)
class Mix:
    """Images and the probability of drawing each (weights sum to 1)."""

    images: tuple[MixImage, ...]
    weights: tuple[float, ...]
    description: str

    def __post_init__(self) -> None:
        if not self.images or len(self.images) != len(self.weights):
            raise ValueError(f"a mix needs images and one weight each, got {len(self.images)} and {len(self.weights)}")
        if abs(sum(self.weights) - 1.0) > 1e-6 or min(self.weights) < 0:
            raise ValueError(f"mix weights must be >= 0 and sum to 1, got {sum(self.weights)}")


def parse_mix(text: str) -> list[tuple[float, tuple[int, int]]]:
    """``"70%:4032x3024,30%:320x240"`` → [(0.7, (4032, 3024)), (0.3, (320, 240))]; shares must sum to 100%."""
    out: list[tuple[float, tuple[int, int]]] = []
    for part in text.split(","):
        share, sep, size = part.strip().partition(":")
        width, x, height = size.strip().lower().partition("x")
        try:
            if not sep or not x or not share.strip().endswith("%"):
                raise ValueError
            entry = (float(share.strip()[:-1]) / 100.0, (int(width), int(height)))
        except ValueError:
            raise ValueError(f"a mix is SHARE%:WIDTHxHEIGHT,…, like 70%:4032x3024,30%:320x240, got {part!r}") from None
        if not 0 < entry[0] <= 1 or not (1 <= entry[1][0] <= MAX_SIDE and 1 <= entry[1][1] <= MAX_SIDE):
            raise ValueError(f"each share must be in (0, 100]% and each side in 1..{MAX_SIDE}, got {part!r}")
        out.append(entry)
    total = sum(share for share, _ in out)
    if abs(total - 1.0) > 1e-6:
        raise ValueError(f"mix shares must add up to 100%, got {100 * total:g}% in {text!r}")
    return out


def render(pixels: np.ndarray, size: tuple[int, int], fmt: str, seed: int) -> bytes:
    """One photo at ``size`` in ``fmt`` (JPEG or PNG); large sizes get sensor-like noise."""
    image = cover(Image.fromarray(pixels), size)
    if size[0] * size[1] >= NOISY_PIXELS:
        noisy = np.asarray(image, dtype=np.float32)
        noisy += np.random.default_rng(seed).normal(0.0, NOISE_SIGMA, noisy.shape).astype(np.float32)
        image = Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8))
    buffer = io.BytesIO()
    if fmt == "PNG":
        image.save(buffer, "PNG", compress_level=1)
    else:
        image.save(buffer, "JPEG", quality=JPEG_QUALITY)
    return buffer.getvalue()


def cached_image(cache_dir: Path, size: tuple[int, int], fmt: str, photo_index: int, photo_name: str) -> bytes:
    """The bytes of one generated image, made once into ``cache_dir/mix-v<VERSION>/<W>x<H>/``."""
    folder = cache_dir / f"mix-v{VERSION}" / f"{size[0]}x{size[1]}"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{photo_name}.{fmt.lower()}"
    if not path.is_file():
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(render(photo(photo_name), size, fmt, seed=photo_index))
        tmp.replace(path)
    return path.read_bytes()


def generated(
    sizes: Sequence[tuple[float, tuple[int, int]]], png_share: float, cache_dir: Path, photos: Sequence[str] = PHOTOS
) -> Mix:
    """Each size's share spread evenly over the photos, split JPEG / PNG by ``png_share``."""
    if not 0 <= png_share <= 1:
        raise ValueError(f"png_share must be in [0, 1], got {png_share}")
    if not photos:
        raise ValueError("need at least one photo")
    formats = [(fmt, share) for fmt, share in (("JPEG", 1 - png_share), ("PNG", png_share)) if share > 0]
    images: list[MixImage] = []
    weights: list[float] = []
    for size_share, size in sizes:
        for fmt, fmt_share in formats:
            for i, name in enumerate(photos):
                data = cached_image(cache_dir, size, fmt, i, name)
                images.append(MixImage(data, f"image/{fmt.lower()}", f"{size[0]}x{size[1]}.{fmt.lower()}"))
                weights.append(size_share * fmt_share / len(photos))
    parts = ", ".join(f"{100 * s:g}% {w}x{h}" for s, (w, h) in sizes)
    return Mix(tuple(images), tuple(weights), f"generated: {parts}; PNG {100 * png_share:g}%")


def folder(path: Path) -> Mix:
    """Every JPEG, PNG and WebP file directly in ``path`` (by suffix), each equally likely."""
    if not path.is_dir():
        raise ValueError(f"--images must be a folder, got {str(path)!r}")
    files = sorted(p for p in path.iterdir() if p.suffix.lower() in CONTENT_TYPES and p.is_file())
    if not files:
        raise ValueError(f"no .jpg, .jpeg, .png or .webp files in {str(path)!r}")
    if len(files) > MAX_FOLDER_FILES:
        raise ValueError(f"{len(files)} images in {str(path)!r}; at most {MAX_FOLDER_FILES} are loaded")
    too_big = [p.name for p in files if p.stat().st_size > MAX_IMAGE_BYTES]
    if too_big:
        raise ValueError(f"images over {MAX_IMAGE_BYTES} bytes: {too_big[:5]}")
    images = tuple(MixImage(p.read_bytes(), CONTENT_TYPES[p.suffix.lower()], p.name) for p in files)
    return Mix(images, tuple(1 / len(images) for _ in images), f"folder {path} ({len(images)} images)")


def draw(mix: Mix, count: int, seed: int | None) -> list[int]:
    """``count`` indices into ``mix.images``, drawn by weight with a seeded RNG."""
    if count < 0:
        raise ValueError(f"count must be >= 0, got {count}")
    return random.Random(seed).choices(range(len(mix.images)), weights=mix.weights, k=count)
