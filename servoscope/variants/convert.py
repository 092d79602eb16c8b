"""An FP16 variant of a model, for GPU machines (CUDA, TensorRT).

Weights and activations in half precision, inputs and outputs kept in float32 so the service
feeds it as it feeds FP32 (onnxconverter-common's ``convert_float_to_float16`` with
``keep_io_types``). On a CPU it runs *slower* than FP32 — ONNX Runtime's CPU kernels are FP32 and
casts are inserted around them — so serve it with ``provider = "cuda"``; the agreement it reports
is measured on the CPU, which computes the same FP16 arithmetic.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import warnings
from pathlib import Path

from servoscope.models import repository
from servoscope.models.config import MODEL_FILE
from servoscope.variants.agreement import measure
from servoscope.variants.quantize import publish, write_variant

log = logging.getLogger(__name__)

REPORT_FILE = "conversion.json"


class ConvertError(RuntimeError):
    pass


def fp16_file(source: Path, output: Path) -> None:
    import onnx

    try:
        from onnxconverter_common import float16
    except ImportError:
        raise ConvertError("FP16 conversion needs onnxconverter-common: pip install 'servoscope[quantize]'") from None
    with warnings.catch_warnings():  # one warning per weight too small for FP16 (it becomes ±1e-7)
        warnings.simplefilter("ignore", UserWarning)
        converted = float16.convert_float_to_float16(onnx.load(str(source)), keep_io_types=True)
    onnx.save(converted, str(output))


def convert_fp16(root: Path, source_name: str, target_name: str) -> dict:
    """Write ``<root>/<target_name>/1/`` (model, config, labels, report); returns the report."""
    source = repository.find(root, source_name)
    log.info("converting %s to FP16 …", source_name)
    target = root / target_name / "1"
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".convert-", dir=target.parent))
    try:
        fp16_file(source.model_file, staging / MODEL_FILE)
        log.info("measuring top-1 agreement with %s on the evaluation set (on the CPU: slow for FP16) …", source_name)
        report = {
            "source": f"{source_name}/{source.version}",
            "conversion": "fp16 (onnxconverter-common, float32 inputs and outputs)",
            **measure(source, staging / MODEL_FILE),
        }
        write_variant(source, target_name, staging, "FP16 (for CUDA; slower than FP32 on a CPU)", report, REPORT_FILE)
        publish(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    log.info("wrote %s: top-1 agreement %.1f%% on %d inputs", target, 100 * report["top1_agreement"], report["inputs"])
    return report
