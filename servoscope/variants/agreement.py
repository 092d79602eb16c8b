"""How far a variant's answers are from its reference's, on the sample set.

Each evaluation input is labelled with the reference's top-1 (there are no human labels): a
variant's *top-1 agreement* is how often its top-1 is that label, its *top-5 containment* how
often the label is among its top 5. Both are also given on two subsets that say how much of the
disagreement is a coin toss: inputs the reference is *confident* about (top-1 probability
≥ 0.5), and *stable* inputs, whose reference top-1 survives invisible noise (±1 grey level).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from servoscope.models.config import ModelConfig
from servoscope.models.repository import ModelEntry
from servoscope.pipeline.runtime import OnnxModel, Runtime
from servoscope.resources import available_cores
from servoscope.variants import samples

CONFIDENT = 0.5  # reference top-1 probability from which an input counts as "confident"
NOISE_DRAWS = 2  # noisy copies of each input that decide whether the reference's top-1 is stable
NOISE_SEED = 20261129


def logits(
    model_file: Path, config: ModelConfig, tensors: np.ndarray, provider: str = "cpu", batch_size: int = 16
) -> np.ndarray:
    """The model's output for every input, in batches, on a session using every core."""
    model = OnnxModel(model_file, provider, available_cores(), config.input.name, config.output.name)
    return run_batches(model, tensors, batch_size)


def run_batches(runtime: Runtime, tensors: np.ndarray, batch_size: int = 16) -> np.ndarray:
    """``runtime``'s output for every input, in batches of ``batch_size``."""
    return np.concatenate([runtime.run(tensors[i : i + batch_size]) for i in range(0, len(tensors), batch_size)])


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def agreement(
    reference: np.ndarray,
    variant: np.ndarray,
    names: Sequence[str],
    kind: str = "logits",
    stable: np.ndarray | None = None,
) -> dict:
    """Top-1 agreement and top-5 containment of ``variant`` with ``reference`` (the label of each
    input is the reference's top-1): overall, on inputs the reference is confident about, and on
    ``stable`` inputs (whose reference top-1 survives imperceptible noise, see :func:`stable_inputs`)."""
    ref_top1 = reference.argmax(axis=1)
    var_top5 = np.argsort(-variant, axis=1, kind="stable")[:, :5]  # ties (INT8 logits have them) broken as argmax does
    agree = var_top5[:, 0] == ref_top1
    contained = (var_top5 == ref_top1[:, None]).any(axis=1)
    confidence = (reference if kind == "probabilities" else _softmax(reference)).max(axis=1)
    confident = confidence >= CONFIDENT
    stable = np.ones(len(agree), bool) if stable is None else stable
    return {
        "inputs": len(names),
        "top1_agreement": float(agree.mean()),
        "top5_containment": float(contained.mean()),
        "confident_inputs": int(confident.sum()),
        "top1_agreement_confident": _mean(agree[confident]),
        "stable_inputs": int(stable.sum()),
        "top1_agreement_stable": _mean(agree[stable]),
        "disagreements": [
            {
                "input": names[i],
                "reference": int(ref_top1[i]),
                "variant": int(var_top5[i, 0]),
                "reference_p": round(float(confidence[i]), 3),
            }
            for i in np.flatnonzero(~agree)
        ],
    }


def _mean(values: np.ndarray) -> float | None:
    return float(values.mean()) if values.size else None


def stable_inputs(
    reference: ModelEntry, tensors: np.ndarray, top1: np.ndarray, draws: int, provider: str = "cpu"
) -> np.ndarray:
    """Which inputs keep the reference's top-1 under ``draws`` seeded draws of uniform noise of ±1
    grey level per pixel (invisible): on the others, the reference's own label is a coin toss."""
    cfg = reference.config
    grey_level = (1.0 / np.asarray(cfg.input.std, dtype=np.float32)).reshape(1, 3, 1, 1)
    rng = np.random.default_rng(NOISE_SEED)
    stable = np.ones(len(tensors), bool)
    for _ in range(draws):
        noisy = tensors + rng.uniform(-1.0, 1.0, tensors.shape).astype(np.float32) * grey_level
        stable &= logits(reference.model_file, cfg, noisy, provider).argmax(axis=1) == top1
    return stable


_LABELLED: dict[tuple, tuple[np.ndarray, np.ndarray]] = {}


def labelled(reference: ModelEntry, per_photo: int, draws: int, provider: str = "cpu") -> tuple[np.ndarray, np.ndarray]:
    """The reference's output on the evaluation inputs and which of its labels are stable;
    computed once per process for a given model (quantize, convert and compare share it)."""
    content = hashlib.sha256(reference.model_file.read_bytes()).hexdigest()  # a copy elsewhere is the same model
    key = (content, samples.spec_of(reference.config), per_photo, draws, provider)
    if key not in _LABELLED:
        tensors = samples.evaluation_tensors(samples.spec_of(reference.config), per_photo)
        out = logits(reference.model_file, reference.config, tensors, provider)
        if len(_LABELLED) >= 8:  # each holds a few MB
            _LABELLED.clear()
        _LABELLED[key] = (out, stable_inputs(reference, tensors, out.argmax(axis=1), draws, provider))
    return _LABELLED[key]


def measure(
    reference: ModelEntry, variant_file: Path, per_photo: int = samples.EVALUATION_PER_PHOTO, draws: int = NOISE_DRAWS
) -> dict:
    """The agreement of a variant's model file with its reference on the sample set's evaluation inputs."""
    evaluation = samples.evaluation(per_photo)
    tensors = samples.evaluation_tensors(samples.spec_of(reference.config), per_photo)
    ref, stable = labelled(reference, per_photo, draws)
    out = logits(variant_file, reference.config, tensors)
    return {
        "evaluation": samples.describe(evaluation),
        "noise_draws": draws,
        **agreement(ref, out, [s.name for s in evaluation], reference.config.output.kind, stable),
    }
