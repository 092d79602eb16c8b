"""``servoscope model``: prepare, quantize, convert, compare and list the models of a repository."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from servoscope.models.prepare import DEFAULT_MODEL

if TYPE_CHECKING:
    from servoscope.variants.quantize import QuantSettings

REPOSITORY = Path("models")
INT8 = f"{DEFAULT_MODEL}_int8"
FP16 = f"{DEFAULT_MODEL}_fp16"


def _logging() -> None:
    logging.basicConfig(level="INFO", format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)


def _refusing(run: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Bad settings, a missing package or provider: one line on stderr and exit status 2."""

    def guarded(args: argparse.Namespace) -> int:
        from servoscope.pipeline.runtime import RuntimeError_
        from servoscope.variants.convert import ConvertError

        try:
            return run(args)
        except (ValueError, ConvertError, RuntimeError_, ImportError) as exc:
            print(f"servoscope: {exc}", file=sys.stderr)
            return 2

    return guarded


def cmd_prepare(args: argparse.Namespace) -> int:
    from servoscope.models.prepare import prepare_default

    _logging()
    print(prepare_default(args.repository, force=args.force))
    return 0


def settings_from(args: argparse.Namespace) -> QuantSettings:
    from servoscope.variants.quantize import QuantSettings

    return QuantSettings(
        format=args.format,
        per_channel=not args.per_tensor,
        calibration=args.calibration,
        percentile=args.percentile,
        activations=args.activations,
        weights=args.weights,
        reduce_range=args.reduce_range,
        exclude=tuple(args.exclude),
        calibration_per_photo=args.calibration_per_photo,
        preprocess=args.preprocess,
        symmetric_activations=args.symmetric_activations,
        bias_correction=args.bias_correction,
    )


@_refusing
def cmd_quantize(args: argparse.Namespace) -> int:
    from servoscope.variants.quantize import quantize

    settings = settings_from(args)
    _logging()
    report = quantize(args.repository, args.source, args.name, args.images, settings, force=args.force)
    print(json.dumps({k: v for k, v in report.items() if k != "disagreements"}, indent=2))
    return 0


@_refusing
def cmd_convert(args: argparse.Namespace) -> int:
    from servoscope.variants.convert import convert_fp16

    _logging()
    report = convert_fp16(args.repository, args.source, args.name)
    print(json.dumps({k: v for k, v in report.items() if k != "disagreements"}, indent=2))
    return 0


@_refusing
def cmd_compare(args: argparse.Namespace) -> int:
    from servoscope.variants.compare import Budget, compare, table

    budget = Budget(args.duration_s, args.latency_runs, args.batch_size, args.provider, args.per_photo)
    names = [n for n in args.variants.split(",") if n] if args.variants else None
    progress = (lambda line: None) if args.quiet else (lambda line: print(line, file=sys.stderr, flush=True))
    report = compare(args.repository, args.reference, names, args.threshold, budget, progress)
    print(json.dumps(report, indent=2) if args.json else table(report))
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    from servoscope.models import repository

    for entry in repository.discover(args.repository):
        print(f"{entry.name}\tv{entry.version}\t{entry.path}\t{entry.config.description}")
    return 0


def _quantize_flags(quant: argparse.ArgumentParser) -> None:
    from servoscope.variants.quantize import DEFAULT_SETTINGS as d

    knobs = quant.add_argument_group("settings (the defaults are the best measured by bench/quantize.py)")
    knobs.add_argument("--format", choices=["qdq", "qoperator"], default=d.format)
    knobs.add_argument("--per-tensor", action="store_true", help="one weight scale per tensor (default: per channel)")
    knobs.add_argument("--calibration", choices=["minmax", "entropy", "percentile"], default=d.calibration)
    knobs.add_argument(
        "--percentile",
        type=float,
        default=d.percentile,
        help=f"with --calibration percentile (default {d.percentile:g})",
    )
    knobs.add_argument("--activations", choices=["uint8", "int8", "uint16"], default=d.activations)
    knobs.add_argument("--weights", choices=["int8", "uint8", "int16"], default=d.weights)
    knobs.add_argument("--reduce-range", action="store_true", help="7-bit weights, for CPUs without VNNI")
    knobs.add_argument(
        "--exclude",
        action="append",
        default=list(d.exclude),
        metavar="NODE",
        help="keep a node in FP32: a node name, or stem (first Conv), head (last Gemm/MatMul), softmax; repeatable",
    )
    knobs.add_argument(
        "--calibration-per-photo", type=int, default=d.calibration_per_photo, help="calibration variants of each photo"
    )
    knobs.add_argument(
        "--preprocess", action=argparse.BooleanOptionalAction, default=d.preprocess, help="quant_pre_process first"
    )
    knobs.add_argument("--symmetric-activations", action="store_true")
    knobs.add_argument(
        "--bias-correction",
        action=argparse.BooleanOptionalAction,
        default=d.bias_correction,
        help="fold the mean error of INT8 weights into the biases (int8 weights only)",
    )


def add_parser(subparsers: Any) -> None:
    model = subparsers.add_parser("model", help="prepare, quantize, convert, compare and list models")
    sub = model.add_subparsers(dest="action", required=True)
    prep = sub.add_parser("prepare", help="convert the pretrained EfficientNet-Lite0 to ONNX in the repository")
    prep.add_argument("--repository", type=Path, default=REPOSITORY)
    prep.add_argument("--force", action="store_true", help="prepare again even if present")
    prep.set_defaults(func=cmd_prepare)

    quant = sub.add_parser("quantize", help="make an INT8 variant of a model and report its agreement with the source")
    quant.add_argument("--repository", type=Path, default=REPOSITORY)
    quant.add_argument("--source", default=DEFAULT_MODEL)
    quant.add_argument("--name", default=INT8)
    quant.add_argument(
        "--images", type=Path, help="folder of calibration photos (default: the sample set's calibration inputs)"
    )
    quant.add_argument("--force", action="store_true", help="quantize again even if the variant is up to date")
    _quantize_flags(quant)
    quant.set_defaults(func=cmd_quantize)

    conv = sub.add_parser("convert", help="make an FP16 variant of a model (for GPU machines)")
    conv.add_argument("--fp16", action="store_true", required=True, help="half precision, float32 inputs and outputs")
    conv.add_argument("--repository", type=Path, default=REPOSITORY)
    conv.add_argument("--source", default=DEFAULT_MODEL)
    conv.add_argument("--name", default=FP16)
    conv.set_defaults(func=cmd_convert)

    comp = sub.add_parser("compare", help="each variant against its reference: throughput, latency, agreement, size")
    comp.add_argument("--repository", type=Path, default=REPOSITORY)
    comp.add_argument("--reference", default=DEFAULT_MODEL)
    comp.add_argument(
        "--variants", help="comma-separated model names (default: every model with the reference's labels)"
    )
    comp.add_argument(
        "--threshold",
        type=float,
        default=0.99,
        help="top-1 agreement below which the model owners must sign off (default 0.99; the reference on another "
        "engine: 0.995 in FP32, 0.99 in FP16/BF16)",
    )
    comp.add_argument("--duration-s", type=float, default=5.0, help="offline throughput window per model (default 5)")
    comp.add_argument("--latency-runs", type=int, default=100, help="batch-1 inferences timed per model (default 100)")
    comp.add_argument(
        "--batch-size", type=int, default=1, help="offline throughput batch size (default 1, the CPU's best)"
    )
    comp.add_argument("--provider", default="cpu", help="cpu | cuda | tensorrt")
    comp.add_argument("--per-photo", type=int, default=16, help="evaluation variants per photo (default 16)")
    comp.add_argument("--json", action="store_true", help="the report as JSON instead of a table")
    comp.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    comp.set_defaults(func=cmd_compare)

    lst = sub.add_parser("list", help="the models of a repository")
    lst.add_argument("--repository", type=Path, default=REPOSITORY)
    lst.set_defaults(func=cmd_list)
