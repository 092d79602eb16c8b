"""The engine boundary: what runs a model's batches, chosen per model by its ``[engine]`` config.

- ``onnxruntime``: an ONNX Runtime session on the cpu, cuda or tensorrt provider (:mod:`..runtime`);
- ``torch``: the same network and weights in PyTorch, on cpu or cuda (:mod:`.torch_engine`).

Every engine is a :class:`~servoscope.pipeline.runtime.Runtime`: a float32 NCHW batch in, one
output row per input row out. The batcher and everything above it see nothing else.
"""

from __future__ import annotations

from servoscope.models.config import batch_buckets
from servoscope.models.repository import ModelEntry
from servoscope.pipeline.runtime import OnnxModel, Runtime


def load_runtime(entry: ModelEntry, intra_op_threads: int) -> Runtime:
    """One instance's runtime for ``entry``, on the engine its config names."""
    cfg = entry.config
    if cfg.engine.name == "torch":
        from servoscope.pipeline.engines.torch_engine import TorchModel, load_module

        module = load_module(cfg.engine, entry.path)
        return TorchModel(module, cfg.engine, batch_buckets(cfg.batching), intra_op_threads)
    return OnnxModel(entry.model_file, cfg.instances.provider, intra_op_threads, cfg.input.name, cfg.output.name)
