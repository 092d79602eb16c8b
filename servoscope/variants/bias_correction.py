"""Bias correction of INT8 weights (Nagel et al., "Data-Free Quantization", 2019), with calibration data.

Rounding a layer's weights to INT8 shifts the mean of its output by ``ΔW · E[x]`` (``ΔW`` the
rounding error, ``E[x]`` the mean of the layer's input per channel). Subtracting that shift from
the FP32 bias before quantizing cancels the systematic part of the error. On EfficientNet-Lite0
it halves the RMS logit error of per-channel INT8 (0.24 → 0.12) at no cost in speed
(bench/quantize.py). The weights are rounded here exactly as ONNX Runtime's quantizer rounds
signed INT8 weights: symmetric, scale = max|w| / 127 (64 with ``reduce_range``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

BATCH = 8


def rounding_error(weight: np.ndarray, per_channel: bool, qmax: int) -> np.ndarray:
    """``dequantize(quantize(weight)) - weight`` for symmetric signed INT8 (axis 0 per channel)."""
    w = weight.astype(np.float64)
    absmax = np.abs(w.reshape(w.shape[0], -1)).max(axis=1) if per_channel else np.full(w.shape[0], np.abs(w).max())
    scale = np.where(absmax > 0, absmax / qmax, 1.0).reshape((-1,) + (1,) * (w.ndim - 1))
    return np.clip(np.round(w / scale), -qmax, qmax) * scale - w


def input_means(model, names: list[str], input_name: str, inputs: np.ndarray) -> dict[str, np.ndarray]:
    """The mean of each named tensor per channel (axis 1), over ``inputs`` and all positions."""
    import onnx
    import onnxruntime as ort

    exposed = onnx.ModelProto()
    exposed.CopyFrom(model)
    outputs = {o.name for o in exposed.graph.output}
    exposed.graph.output.extend(
        onnx.helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, None) for n in names if n not in outputs
    )
    session = ort.InferenceSession(exposed.SerializeToString(), providers=["CPUExecutionProvider"])
    sums = {n: 0.0 for n in names}
    for start in range(0, len(inputs), BATCH):
        for name, value in zip(names, session.run(names, {input_name: inputs[start : start + BATCH]})):
            axes = (0, *range(2, value.ndim))
            sums[name] = sums[name] + value.mean(axis=axes, dtype=np.float64) * len(value)
    return {n: s / len(inputs) for n, s in sums.items()}


def output_shift(node, delta: np.ndarray, mean: np.ndarray) -> np.ndarray:
    """The mean output change of a Conv or Gemm whose weights change by ``delta``."""
    attrs = {a.name: a for a in node.attribute}
    if node.op_type == "Gemm":
        trans_b = attrs["transB"].i if "transB" in attrs else 0
        return (delta if trans_b else delta.T) @ mean
    group = attrs["group"].i if "group" in attrs else 1
    out_channels, in_per_group = delta.shape[:2]
    per_group = out_channels // group
    shift = np.empty(out_channels)
    for g in range(group):
        rows = slice(g * per_group, (g + 1) * per_group)
        x = mean[g * in_per_group : (g + 1) * in_per_group]
        shift[rows] = delta[rows].sum(axis=tuple(range(2, delta.ndim))) @ x
    return shift


def correct_biases(
    source: Path,
    output: Path,
    input_name: str,
    inputs: np.ndarray,
    per_channel: bool = True,
    reduce_range: bool = False,
    exclude: frozenset[str] = frozenset(),
) -> int:
    """Write ``source`` with the bias of each Conv and Gemm corrected; returns how many were."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(source))
    initializers = {i.name: i for i in model.graph.initializer}
    layers = [
        n
        for n in model.graph.node
        if n.op_type in ("Conv", "Gemm")
        and n.name not in exclude
        and len(n.input) > 2
        and n.input[1] in initializers
        and n.input[2] in initializers
    ]
    means = input_means(model, list(dict.fromkeys(n.input[0] for n in layers)), input_name, inputs)
    qmax = 64 if reduce_range else 127
    for node in layers:
        weight = numpy_helper.to_array(initializers[node.input[1]])
        bias_init = initializers[node.input[2]]
        bias = numpy_helper.to_array(bias_init).astype(np.float64)
        if node.op_type == "Gemm" and not any(a.name == "transB" and a.i for a in node.attribute):
            delta = rounding_error(weight.T, per_channel, qmax).T  # per channel of the output: axis 1 here
        else:
            delta = rounding_error(weight, per_channel, qmax)
        shift = output_shift(node, delta, means[node.input[0]])
        bias_init.CopyFrom(numpy_helper.from_array((bias - shift).astype(np.float32), bias_init.name))
    onnx.save(model, str(output))
    return len(layers)
