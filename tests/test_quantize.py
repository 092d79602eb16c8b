"""INT8 quantization: the sample set, bias correction as ONNX Runtime rounds, and the default's agreement."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from servoscope.cli import main
from servoscope.models import repository
from servoscope.variants import samples
from servoscope.variants.agreement import measure
from servoscope.variants.bias_correction import output_shift, rounding_error
from servoscope.variants.quantize import (
    DEFAULT_SETTINGS,
    REPORT_FILE,
    QuantSettings,
    quantize,
    quantize_file,
    resolve_exclude,
)
from support import MODEL

INT8 = f"{MODEL}_int8"
# What the default settings reached on the evaluation set (bench/quantize.py, README "Model
# variants"), less a margin for another CPU's kernels or another ONNX Runtime release.
REACHED_TOP1 = 0.923
REACHED_TOP1_STABLE = 0.96
MARGIN = 0.03


@pytest.fixture(scope="module")
def int8_report(model_repository: Path) -> dict:
    """The default INT8 variant in the session repository, made once and kept while it is current."""
    return quantize(model_repository, MODEL, INT8, force=False)


def test_sample_sets_are_large_disjoint_and_deterministic() -> None:
    photos = samples.available_photos()
    assert {"astronaut", "chelsea", "coffee", "motorcycle_right", "china", "flower", "grace_hopper"} <= set(photos)
    assert len(photos) * samples.EVALUATION_PER_PHOTO >= 300
    evaluation_only = set(photos) - set(samples.CALIBRATION_PHOTOS)
    assert len(evaluation_only) >= len(photos) // 2  # photos the calibration never sees
    for photo in samples.CALIBRATION_PHOTOS:
        calibration = samples.variants(photo, "calibration", samples.CALIBRATION_MAX_PER_PHOTO)
        evaluation = samples.variants(photo, "evaluation", samples.EVALUATION_PER_PHOTO)
        assert not set(calibration) & set(evaluation)
        assert len(set(evaluation)) == len(evaluation) and evaluation[0] == samples.IDENTITY
    assert samples.variants("coffee", "evaluation", 8) == samples.variants("coffee", "evaluation", 8)
    variant = samples.variants("coffee", "evaluation", 5)[-1]
    assert variant.apply(samples.photo_image("coffee")) == variant.apply(samples.photo_image("coffee"))


def test_default_int8_agrees_with_fp32_as_measured(int8_report: dict, model_repository: Path) -> None:
    assert int8_report["settings"]["label"] == DEFAULT_SETTINGS.label()
    assert set(int8_report["calibration"]["photos"]) <= set(samples.CALIBRATION_PHOTOS)
    # measured again here, on the whole evaluation set, from the model file in the repository
    again = measure(repository.find(model_repository, MODEL), model_repository / INT8 / "1" / "model.onnx")
    assert again["inputs"] == int8_report["inputs"] >= 300
    assert again["top1_agreement"] >= REACHED_TOP1 - MARGIN
    assert again["top1_agreement_stable"] >= REACHED_TOP1_STABLE - MARGIN
    assert again["top5_containment"] >= 0.98
    assert again["top1_agreement_confident"] >= 0.97


def test_quantize_keeps_a_current_variant(int8_report: dict, model_repository: Path) -> None:
    model_file = model_repository / INT8 / "1" / "model.onnx"
    before = model_file.stat().st_mtime_ns
    assert quantize(model_repository, MODEL, INT8, force=False) == int8_report
    assert model_file.stat().st_mtime_ns == before
    entry = repository.find(model_repository, INT8)
    assert "INT8" in entry.config.description and "agreement" in entry.config.description
    assert (entry.path / REPORT_FILE).is_file()


def _tiny_model(folder: Path, weight: np.ndarray, group: int) -> Path:
    """One Conv of ``weight`` (zero bias) in an ONNX file in ``folder``."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, weight.shape[1] * group, None, None])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    conv = helper.make_node("Conv", ["x", "w", "b"], ["y"], name="conv", group=group)
    graph = helper.make_graph(
        [conv],
        "tiny",
        [x],
        [y],
        [numpy_helper.from_array(weight, "w"), numpy_helper.from_array(np.zeros(weight.shape[0], np.float32), "b")],
    )
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"tiny-{group}.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


@pytest.mark.parametrize("group", [1, 2, 6])
def test_bias_correction_rounds_as_onnxruntime_and_shifts_as_a_conv(tmp_path: Path, group: int) -> None:
    rng = np.random.default_rng(group)
    weight = rng.normal(0, 1, (6, 6 // group, 3, 3)).astype(np.float32) * rng.uniform(0.01, 2, (6, 1, 1, 1)).astype(
        np.float32
    )
    source = _tiny_model(tmp_path, weight, group)
    calibration = rng.normal(0, 1, (4, 6, 4, 4)).astype(np.float32)
    int8 = tmp_path / f"int8-{group}.onnx"
    quantize_file(source, int8, "x", calibration, QuantSettings(bias_correction=False, preprocess=False))
    inits = {i.name: numpy_helper.to_array(i) for i in onnx.load(str(int8)).graph.initializer}
    dequantized = inits["w_quantized"].astype(np.float64) * inits["w_scale"].reshape(-1, 1, 1, 1)
    np.testing.assert_allclose(dequantized - weight, rounding_error(weight, per_channel=True, qmax=127), atol=1e-6)
    # on a constant input (no edges), the output moves by exactly output_shift
    mean = rng.normal(0, 1, 6)
    constant = np.broadcast_to(mean.reshape(1, 6, 1, 1), (1, 6, 3, 3)).astype(np.float32)
    delta = rounding_error(weight, True, 127).astype(np.float32)
    run = lambda path: ort.InferenceSession(str(path)).run(None, {"x": constant})[0][0, :, 0, 0]  # noqa: E731
    moved = run(_tiny_model(tmp_path / "shifted", weight + delta, group)) - run(source)
    node = onnx.load(str(source)).graph.node[0]
    np.testing.assert_allclose(moved, output_shift(node, delta.astype(np.float64), mean), atol=1e-4)


def test_bad_settings_are_refused(model_repository: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="bias correction"):
        QuantSettings(weights="uint8")
    with pytest.raises(ValueError, match="cannot exclude 'nope'"):
        resolve_exclude(model_repository / MODEL / "1" / "model.onnx", ("stem", "nope"))
    assert main(["model", "quantize", "--repository", str(tmp_path), "--weights", "uint8"]) == 2
    assert "bias correction models signed INT8 weights" in capsys.readouterr().err
