"""The torch engine: the model's own PyTorch network, in eval mode under ``torch.inference_mode``.

As configured per model: channels-last memory layout, FP16/BF16 autocast (FP16 on cuda only), and
per batch bucket either eager, a captured CUDA graph, or ``torch.compile``. A compiled bucket has a
fixed shape, so a batch runs in the smallest compiled bucket that holds it, padded with zero rows
(whose outputs are dropped); eager runs take any batch size. Graphs and compiled code are made by
the first run of each bucket, which the service's warm-up does before the model is ready.
"""

from __future__ import annotations

import bisect
import contextlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from servoscope.models import torch_weights
from servoscope.models.config import EngineConfig
from servoscope.pipeline.runtime import RuntimeError_

CUDA_GRAPH_WARM_RUNS = 3  # eager runs on a side stream before capture (cuDNN picks its kernels)


def _torch() -> Any:
    try:
        import torch
    except ImportError:
        raise RuntimeError_(f"engine torch needs PyTorch: {torch_weights.INSTALL_HINT}") from None
    return torch


def load_module(engine: EngineConfig, version_folder: Path) -> Any:
    """The network with its weights: ``engine.weights`` in the version folder, or the packaged ones."""
    weights = version_folder / engine.weights if engine.weights else torch_weights.packaged_weights(engine.architecture)
    try:
        return torch_weights.build(engine.architecture, weights)
    except torch_weights.WeightsError as exc:
        raise RuntimeError_(str(exc)) from None


class TorchModel:
    """One PyTorch module on one device, fed by its instance's single thread."""

    def __init__(self, module: Any, engine: EngineConfig, buckets: Sequence[int], threads: int) -> None:
        torch = self.torch = _torch()
        if engine.device == "cuda" and not torch.cuda.is_available():
            raise RuntimeError_(f"engine device cuda, but this PyTorch ({torch.__version__}) sees no CUDA device")
        if engine.device == "cpu":
            torch.set_num_threads(threads)
        self.engine = engine
        self.device = torch.device(engine.device)
        self.layout = torch.channels_last if engine.channels_last else torch.contiguous_format
        self.module = module.eval().to(self.device, memory_format=self.layout)
        self.dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(engine.precision)
        self.buckets = tuple(sorted(buckets))
        self.compiled = tuple(b for b in self.buckets if engine.compile_for(b) != "none")
        self.runners: dict[int, Callable[[Any], Any]] = {}  # compiled bucket → its runner, made by its first run
        self.warmed: list[int] = []  # the buckets run so far, in order

    @property
    def providers(self) -> list[str]:
        return [self.engine.describe()]

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.dtype is None:
            return contextlib.nullcontext()
        # no cast cache: a CUDA graph must not capture casts of weights cached outside it
        cast: contextlib.AbstractContextManager[Any] = self.torch.autocast(
            self.device.type, dtype=self.dtype, cache_enabled=False
        )
        return cast

    def forward(self, x: Any) -> Any:
        with self._autocast():
            return self.module(x).float()

    def bucket_for(self, rows: int) -> int:
        """The compiled bucket a batch of ``rows`` runs in, or ``rows`` itself (eager)."""
        i = bisect.bisect_left(self.compiled, rows)
        return self.compiled[i] if i < len(self.compiled) else rows

    def run(self, batch: np.ndarray) -> np.ndarray:
        rows = len(batch)
        bucket = self.bucket_for(rows)
        with self.torch.inference_mode():
            x = self.torch.from_numpy(batch if batch.flags.writeable else batch.copy())
            if bucket > rows:
                x = self.torch.cat([x, x.new_zeros((bucket - rows, *x.shape[1:]))])
            x = x.to(self.device, non_blocking=False).contiguous(memory_format=self.layout)
            runner = self.runners.get(bucket) or self._runner(bucket, x)
            out: np.ndarray = runner(x)[:rows].cpu().numpy()
        if bucket not in self.warmed:
            self.warmed.append(bucket)
        return out

    def _runner(self, bucket: int, example: Any) -> Callable[[Any], Any]:
        mode = self.engine.compile_for(bucket) if bucket in self.compiled else "none"
        if mode == "cuda_graphs":
            runner = self._capture(example)
        elif mode == "torch_compile":
            runner = self.torch.compile(self.forward, dynamic=False, fullgraph=False)
        else:
            return self.forward
        self.runners[bucket] = runner
        return runner

    def _capture(self, example: Any) -> Callable[[Any], Any]:
        """A CUDA graph of one forward pass at ``example``'s shape: replays read a static input."""
        torch = self.torch
        static_in = example.clone()
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(CUDA_GRAPH_WARM_RUNS):
                self.forward(static_in)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            static_out = self.forward(static_in)

        def replay(x: Any) -> Any:
            static_in.copy_(x)
            graph.replay()
            return static_out

        return replay
