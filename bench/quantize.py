"""INT8 settings measured side by side: top-1 agreement with FP32 and speed, one row per setting.

Every setting is calibrated on the sample set's calibration inputs and judged on its evaluation
inputs (servoscope/variants/samples.py: disjoint, labelled by FP32's top-1). Speed is batch-1
inference latency of one single-threaded session (the serving layout on the CPU), FP32 and INT8
measured in alternation so that neighbours on the machine slow both alike; the ratio is
FP32 P50 / INT8 P50 (above 1: INT8 is faster).

    python bench/quantize.py                 # every setting, ~15 min on 2 cores
    python bench/quantize.py --only default,per-tensor
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np

from servoscope.loadgen.cpu import CpuMeter
from servoscope.models import repository
from servoscope.pipeline.runtime import OnnxModel
from servoscope.variants import samples
from servoscope.variants.agreement import NOISE_DRAWS, agreement, logits, stable_inputs
from servoscope.variants.offline import latency_ms
from servoscope.variants.quantize import DEFAULT_SETTINGS, QuantSettings, quantize_file

ROOT = Path(__file__).resolve().parents[1]
BASE = QuantSettings(bias_correction=False)  # per-channel MinMax QDQ, uint8 activations, int8 weights
CORRECTED = replace(BASE, bias_correction=True)
SETTINGS: dict[str, QuantSettings] = {
    "per-tensor": replace(BASE, per_channel=False),
    "per-channel": BASE,
    "entropy": replace(BASE, calibration="entropy"),
    "percentile-99.999": replace(BASE, calibration="percentile", percentile=99.999),
    "percentile-99.99": replace(BASE, calibration="percentile", percentile=99.99),
    "calibration-4": replace(BASE, calibration_per_photo=4),
    "calibration-32": replace(BASE, calibration_per_photo=32),
    "qoperator": replace(BASE, format="qoperator"),
    "exclude-stem": replace(BASE, exclude=("stem",)),
    "exclude-head": replace(BASE, exclude=("head",)),
    "exclude-stem-head": replace(BASE, exclude=("stem", "head")),
    "int8-activations": replace(BASE, activations="int8"),
    "int8-symmetric": replace(BASE, activations="int8", symmetric_activations=True),
    "reduce-range": replace(BASE, reduce_range=True),
    "no-preprocess": replace(BASE, preprocess=False),
    "a16w8": replace(BASE, activations="uint16"),
    "a8w16": replace(BASE, weights="int16"),
    "a16w16": replace(BASE, activations="uint16", weights="int16"),
    "bias-corrected": CORRECTED,
    "bias-corrected-percentile-99.99": replace(CORRECTED, calibration="percentile", percentile=99.99),
    "bias-corrected-entropy": replace(CORRECTED, calibration="entropy"),
    "bias-corrected-calibration-32": replace(CORRECTED, calibration_per_photo=32),
    "bias-corrected-exclude-stem-head": replace(CORRECTED, exclude=("stem", "head")),
    "default": DEFAULT_SETTINGS,
}


def speed_ratio(fp32: Path, int8: Path, tensor: np.ndarray, rounds: int = 3, runs: int = 30) -> dict[str, float]:
    cfg = ("input", "logits")
    models = {k: OnnxModel(p, "cpu", 1, *cfg) for k, p in (("fp32", fp32), ("int8", int8))}
    p50: dict[str, list[float]] = {"fp32": [], "int8": []}
    for _ in range(rounds):
        for key, model in models.items():
            p50[key].append(latency_ms(model.run, tensor, runs)["p50_ms"])
    fp32_ms, int8_ms = float(np.median(p50["fp32"])), float(np.median(p50["int8"]))
    return {"fp32_p50_ms": fp32_ms, "int8_p50_ms": int8_ms, "speed_ratio": fp32_ms / int8_ms}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", help="comma-separated setting names")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "quantize.json")
    args = ap.parse_args()
    chosen = args.only.split(",") if args.only else list(SETTINGS)
    source = repository.find(ROOT / "models", "efficientnet_lite0")
    spec = samples.spec_of(source.config)
    evaluation = samples.evaluation()
    names = [s.name for s in evaluation]
    tensors = samples.tensors_of([s.data for s in evaluation], spec)
    reference = logits(source.model_file, source.config, tensors)
    stable = stable_inputs(source, tensors, reference.argmax(axis=1), NOISE_DRAWS)
    calibration = {
        n: samples.tensors_of([s.data for s in samples.calibration(n)], spec)
        for n in {SETTINGS[c].calibration_per_photo for c in chosen}
    }
    results = json.loads(args.out.read_text()) if args.out.is_file() else {}
    with tempfile.TemporaryDirectory(prefix="bench-quantize-") as tmp:
        for name in chosen:
            settings = SETTINGS[name]
            output = Path(tmp) / f"{name}.onnx"
            meter = CpuMeter([os.getpid()])
            meter.start()
            start = time.perf_counter()
            quantize_file(source.model_file, output, "input", calibration[settings.calibration_per_photo], settings)
            quantize_s = time.perf_counter() - start
            agreed = agreement(reference, logits(output, source.config, tensors), names, stable=stable)
            row = {
                "settings": {**asdict(settings), "label": settings.label()},
                "quantize_s": quantize_s,
                **{k: v for k, v in agreed.items() if k != "disagreements"},
                "disagreements": len(agreed["disagreements"]),
                **speed_ratio(source.model_file, output, tensors[0]),
                "others_cores": meter.stop().others_cores,
            }
            results[name] = row
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(results, indent=2))
            print(
                f"{name:20s} top-1 {100 * row['top1_agreement']:5.1f}%  top-5 {100 * row['top5_containment']:5.1f}%  "
                f"stable {100 * row['top1_agreement_stable']:5.1f}%  confident "
                f"{100 * row['top1_agreement_confident']:5.1f}%  speed ×{row['speed_ratio']:.2f} "
                f"({row['fp32_p50_ms']:.1f} → {row['int8_p50_ms']:.1f} ms)  quantize {quantize_s:.0f} s  "
                f"others {row['others_cores']:.2f} cores",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
