"""Preprocessing, old against new, per image, side by side in one run.

Each figure is this thread's CPU time per image (``time.thread_time``), the median of interleaved
rounds, so other work on the machine moves old and new alike; ratios are old / new. Top-1 is the
model's class on each sample photo, compared with the service's path.

  assemble   before #7: a float32 tensor per image in the worker, ``np.stack`` in the batch;
             now: the uint8 crop, normalized straight into the instance's reused batch buffer
  decode+resize  the service (Pillow: DCT-scaled ``draft`` decode, one box resample) against
             simplejpeg / OpenCV decoders and ``cv2.resize``, where those are installed
             (``pip install -e '.[bench]'``), on ~320×240, 640×480 and phone JPEGs
  phone      the DCT-scaled path against a full decode + resize (issue #7: ≥ 4× asked), the
             decode at each DCT scale (what is left at 1/8 is entropy decoding, which grows with
             the bytes), and the same ratio on noise-free phone-size JPEGs of fewer bytes
  GIL        phone JPEGs decoded by a thread per core beside a thread busy in Python: Pillow's
             64 KiB decoder blocks (a GIL re-take each) against one block per image (wall time)

    python bench/preprocess.py                # ~1 minute
    python bench/preprocess.py --rounds 9

Table to stdout, figures to bench/results/preprocess.json.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from serve import MODEL, RESULTS, ROOT
from servoscope.loadgen.images import PHOTOS, SETS, ImageSet, image_set, photo, render
from servoscope.models.repository import find
from servoscope.pipeline.decode import DecodeLimits, decode
from servoscope.pipeline.preprocess import (
    BatchBuffer,
    Prepared,
    PreprocessSpec,
    crop_box,
    normalize,
    prepare,
    resize_crop,
)
from servoscope.pipeline.runtime import OnnxModel

LIMITS = DecodeLimits()
NO_DRAFT = 10**9  # a min_side no JPEG can be scaled down to: decode() decodes in full


def medians(variants: dict[str, Callable[[Any], Any]], items: Sequence[Any], rounds: int) -> dict[str, float]:
    """CPU ms per item of each variant: warmed once, then ``rounds`` interleaved passes, median."""
    for fn in variants.values():
        fn(items[0])
    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(rounds):
        for name, fn in variants.items():
            start = time.thread_time()
            for item in items:
                fn(item)
            times[name].append(1000 * (time.thread_time() - start) / len(items))
    return {name: statistics.median(t) for name, t in times.items()}


# ---------------------------------------------------------------- crops by each path (uint8 HWC RGB)


def optional(module: str) -> Any:
    try:
        return __import__(module)
    except ImportError:
        return None


def cv2_crop(pixels: np.ndarray, spec: PreprocessSpec, interpolation: int) -> np.ndarray:
    import cv2

    left, top, right, bottom = (round(v) for v in crop_box(pixels.shape[1], pixels.shape[0], spec))
    return cv2.resize(pixels[top:bottom, left:right], (spec.size, spec.size), interpolation=interpolation)


def paths(spec: PreprocessSpec) -> dict[str, Callable[[bytes], np.ndarray]]:
    """JPEG bytes → the crop, by the service and by each alternative that is installed."""
    out: dict[str, Callable[[bytes], np.ndarray]] = {"pillow (service)": lambda d: prepare(d, LIMITS, spec).image}
    cv2, simplejpeg = optional("cv2"), optional("simplejpeg")
    if cv2 is not None:
        cv2.setNumThreads(1)
        pil_array = lambda d: np.asarray(decode(d, LIMITS, spec.resize).image)  # noqa: E731
        out["pillow + cv2 linear"] = lambda d: cv2_crop(pil_array(d), spec, cv2.INTER_LINEAR)
        out["cv2 imdecode + linear"] = lambda d: cv2_crop(cv2_decode(d, spec), spec, cv2.INTER_LINEAR)
        out["cv2 imdecode + area"] = lambda d: cv2_crop(cv2_decode(d, spec), spec, cv2.INTER_AREA)
    if simplejpeg is not None:
        sj = lambda d: simplejpeg.decode_jpeg(d, "RGB", min_height=spec.resize, min_width=spec.resize)  # noqa: E731
        out["simplejpeg + pillow"] = lambda d: np.asarray(resize_crop(Image.fromarray(sj(d)), spec))
        if cv2 is not None:
            out["simplejpeg + cv2 linear"] = lambda d: cv2_crop(sj(d), spec, cv2.INTER_LINEAR)
    return out


def cv2_decode(data: bytes, spec: PreprocessSpec) -> np.ndarray:
    """OpenCV's decode at the largest DCT reduction keeping the shorter side ≥ spec.resize, as RGB."""
    import cv2

    width, height = Image.open(io.BytesIO(data)).size
    factor = next(f for f in (8, 4, 2, 1) if min(width, height) // f >= spec.resize or f == 1)
    flag = {
        1: cv2.IMREAD_COLOR,
        2: cv2.IMREAD_REDUCED_COLOR_2,
        4: cv2.IMREAD_REDUCED_COLOR_4,
        8: cv2.IMREAD_REDUCED_COLOR_8,
    }[factor]
    return cv2.imdecode(np.frombuffer(data, np.uint8), flag)[:, :, ::-1]


def full_decode_crop(data: bytes, spec: PreprocessSpec) -> np.ndarray:
    """The service's path without DCT scaling: the whole image decoded, then the same resample."""
    return np.asarray(resize_crop(decode(data, LIMITS, NO_DRAFT).image, spec))


def draft_load(data: bytes, scale: int, one_block: bool = False) -> Image.Image:
    """A JPEG decoded at 1/``scale``; in Pillow's 64 KiB decoder blocks, or in one as decode() does."""
    image = Image.open(io.BytesIO(data))
    image.draft("RGB", (image.width // scale, image.height // scale))
    if one_block:
        image.decodermaxblock = len(data)
    image.load()
    return image


# ---------------------------------------------------------------- top-1


class Top1:
    def __init__(self, spec: PreprocessSpec) -> None:
        entry = find(ROOT / "models", MODEL)
        cfg = entry.config
        self.model = OnnxModel(entry.model_file, "cpu", 1, cfg.input.name, cfg.output.name)
        self.spec = spec

    def classes(self, crops: list[np.ndarray]) -> list[int]:
        batch = np.stack([normalize(np.ascontiguousarray(c), self.spec) for c in crops])
        return self.model.run(batch).reshape(len(crops), -1).argmax(axis=1).tolist()


def same_top1(top1: Top1, reference: list[int], fn: Callable[[bytes], np.ndarray], images: list[bytes]) -> str:
    got = top1.classes([fn(d) for d in images])
    return f"{sum(a == b for a, b in zip(got, reference))}/{len(reference)}"


# ---------------------------------------------------------------- sections


def assemble(spec: PreprocessSpec, images: list[bytes], rounds: int, batch_size: int) -> list[dict[str, Any]]:
    """Batches of ``batch_size`` crops: the old per-image tensors + np.stack against the buffer."""
    crops = [resize_crop(decode(d, LIMITS, spec.resize).image, spec) for d in images]
    batches = [crops[i : i + batch_size] for i in range(0, len(crops) - batch_size + 1, batch_size)]
    buffer = BatchBuffer(batch_size)

    def old(batch: list[Image.Image]) -> np.ndarray:
        return np.stack([normalize(c, spec) for c in batch])

    def new(batch: list[Image.Image]) -> np.ndarray:
        return buffer.fill([Prepared(np.asarray(c), 0, spec) for c in batch])

    equal = all(np.array_equal(old(b), new(b)) for b in batches)
    ms = {k: v / batch_size for k, v in medians({"old": old, "new": new}, batches, rounds * 20).items()}
    return [
        row(
            "assemble (normalize + batch)",
            "any",
            "per-image tensor + np.stack",
            ms["old"],
            "into batch buffer",
            ms["new"],
            "bitwise" if equal else "DIFFERENT",
        )
    ]


def decode_resize(
    name: str, spec: PreprocessSpec, images: list[bytes], rounds: int, top1: Top1
) -> list[dict[str, Any]]:
    variants = paths(spec)
    ms = medians(variants, images, rounds)
    service = "pillow (service)"
    reference = top1.classes([variants[service](d) for d in images])
    return [
        row("decode + resize", name, service, ms[service], variant, ms[variant], same_top1(top1, reference, fn, images))
        for variant, fn in variants.items()
        if variant != service
    ]


def scaled_vs_full(what: str, spec: PreprocessSpec, images: list[bytes], rounds: int, top1: Top1) -> dict[str, Any]:
    """The service's DCT-scaled decode against a full decode and resize, with their top-1 agreement."""
    scaled = lambda d: prepare(d, LIMITS, spec).image  # noqa: E731
    full = lambda d: full_decode_crop(d, spec)  # noqa: E731
    ms = medians({"full": full, "scaled": scaled}, images, rounds)
    reference = top1.classes([scaled(d) for d in images])
    agreement = same_top1(top1, reference, full, images)
    return row(what, "phone", "full decode + resize", ms["full"], "draft (service)", ms["scaled"], agreement)


def phone(spec: PreprocessSpec, images: list[bytes], rounds: int, top1: Top1) -> list[dict[str, Any]]:
    rows = [scaled_vs_full("preprocess: DCT-scaled vs full decode", spec, images, rounds, top1)]
    ladder = medians({f"1/{s}": (lambda d, s=s: draft_load(d, s)) for s in (1, 2, 4, 8)}, images, max(3, rounds // 2))
    rows += [
        row("JPEG decode alone, by DCT scale", "phone", "scale 1/1", ladder["1/1"], f"scale {s}", ladder[s], "")
        for s in ("1/2", "1/4", "1/8")
    ]
    return rows


def clean_phone(spec: PreprocessSpec, rounds: int, top1: Top1, count: int = 4) -> list[dict[str, Any]]:
    """The same ratio on noise-free phone-size JPEGs (fewer bytes to entropy-decode), made here."""
    clean = ImageSet("phone-clean", SETS["phone"].size, 0.0)
    images = [render(photo(name), clean, seed=i) for i, name in enumerate(PHOTOS[:count])]
    mean_mb = sum(map(len, images)) / len(images) / 1e6
    return [scaled_vs_full(f"preprocess, noise-free ({mean_mb:.1f} MB)", spec, images, rounds, top1)]


def gil_handoffs(images: list[bytes], rounds: int, seconds: float = 2.0) -> list[dict[str, Any]]:
    """Phone JPEGs decoded at 1/8 scale by one thread per core beside a thread busy in Python (the
    event loop under load): wall ms per image with Pillow's 64 KiB decoder blocks against the whole
    image in one block, as decode() now asks. Each block is one release and re-take of the GIL, and
    a re-take waits for the busy thread to be asked to drop it (the switch interval, 5 ms)."""

    def wall_ms(whole: bool) -> float:
        stop = time.perf_counter() + seconds
        counts: list[int] = []

        def decoder() -> None:
            n = 0
            while time.perf_counter() < stop:
                draft_load(images[n % len(images)], 8, whole)
                n += 1
            counts.append(n)

        def busy() -> None:
            while time.perf_counter() < stop:
                sum(range(100))

        threads = [threading.Thread(target=decoder) for _ in range(os.cpu_count() or 1)] + [
            threading.Thread(target=busy)
        ]
        start = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return 1000 * (time.perf_counter() - start) / max(1, sum(counts))

    times: dict[bool, list[float]] = {False: [], True: []}
    for _ in range(rounds):
        for whole in times:
            times[whole].append(wall_ms(whole))
    old, new = (statistics.median(times[w]) for w in (False, True))
    return [
        row(
            "GIL hand-offs: decode threads + a busy one (wall)",
            "phone",
            "64 KiB blocks",
            old,
            "one block (service)",
            new,
            "",
        )
    ]


def row(what: str, images: str, old: str, old_ms: float, new: str, new_ms: float, top1: str) -> dict[str, Any]:
    return {
        "what": what,
        "images": images,
        "old": old,
        "old_ms": old_ms,
        "new": new,
        "new_ms": new_ms,
        "ratio": old_ms / new_ms,
        "top1_same": top1,
    }


def table(rows: list[dict[str, Any]]) -> str:
    cells = [("what", "set", "old", "ms", "new", "ms", "old/new", "top-1")]
    cells += [
        (
            r["what"],
            r["images"],
            r["old"],
            f"{r['old_ms']:.3f}",
            r["new"],
            f"{r['new_ms']:.3f}",
            f"{r['ratio']:.2f}",
            r["top1_same"],
        )
        for r in rows
    ]
    widths = [max(len(c[i]) for c in cells) for i in range(len(cells[0]))]
    return "\n".join("  ".join(v.rjust(w) if v[:1].isdigit() else v.ljust(w) for v, w in zip(c, widths)) for c in cells)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds per comparison (default 5)")
    parser.add_argument("--batch-size", type=int, default=4, help="batch size of the assemble comparison (default 4)")
    parser.add_argument("--output", type=Path, default=RESULTS / "preprocess.json")
    args = parser.parse_args()
    if args.rounds < 1:
        parser.error(f"--rounds must be >= 1, got {args.rounds}")
    cfg = find(ROOT / "models", MODEL).config.input
    spec = PreprocessSpec(cfg.size, cfg.resize, cfg.mean, cfg.std)
    top1 = Top1(spec)
    sets = {name: image_set(name, RESULTS / "images") for name in ("small", "medium", "phone")}
    rows = assemble(spec, sets["small"], args.rounds, args.batch_size)
    for name, images in sets.items():
        rows += decode_resize(name, spec, images, args.rounds, top1)
    rows += phone(spec, sets["phone"], args.rounds, top1)
    rows += clean_phone(spec, args.rounds, top1)
    rows += gil_handoffs(sets["phone"], args.rounds)
    print(table(rows))
    report = {
        "photos": list(PHOTOS),
        "rounds": args.rounds,
        "unit": "CPU ms per image (thread time, median)",
        "rows": rows,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2))
    print(f"\nfigures in {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
