"""A small, deterministic profile for the planner's tests (written by hand, not measured)."""

from __future__ import annotations

from typing import Any

from servoscope.planner import profile as pf

MACHINE = {"cpu_model": "test CPU", "cores": 2, "python": "3.11", "onnxruntime": "1.0", "platform": "test"}


def profile_dict(inference_ms: dict[int, float] | None = None, preprocess_ms: float = 2.0) -> dict[str, Any]:
    """1 instance, 2 preprocess workers, batches up to 4; each stage's samples spread ±20% around its mean."""
    inference_ms = inference_ms or {1: 10.0, 2: 14.0, 4: 22.0}

    def spread(mean_ms: float) -> list[float]:
        return [mean_ms / 1000 * (0.8 + 0.4 * i / 9) for i in range(10)]

    return {
        "schema": pf.SCHEMA,
        "version": pf.VERSION,
        "model": "efficientnet_lite0",
        "machine": MACHINE,
        "families": [
            {
                "instances": 1,
                "intra_op_threads": 2,
                "preprocess_workers": 2,
                "batching": {"max_batch_size": 4, "max_queue_delay_s": 0.002},
                "preprocess_s": {"320x240": spread(preprocess_ms), "4032x3024": spread(10 * preprocess_ms)},
                "inference_s": {str(b): spread(ms) for b, ms in inference_ms.items()},
                "postprocess_s": {"1": spread(0.2)},
            }
        ],
        "overheads": {"ingest": [0.0005], "respond": [0.0003], "source": "test"},
        "mix": {"320x240": 1.0},
    }
