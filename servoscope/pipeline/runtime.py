"""Inference backends: ONNX Runtime sessions on the CPU, CUDA or TensorRT execution providers.

A model *instance* is one session plus the one thread that feeds it, so at most one batch
runs per instance at a time and the number of batches in flight is the number of instances.
With ``instances.isolation = "process"`` the session lives in a child process of its own
(:mod:`servoscope.pipeline.process_runtime`), still fed by the instance's thread.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import onnxruntime as ort

PROVIDERS: dict[str, list[str]] = {
    "cpu": ["CPUExecutionProvider"],
    "cuda": ["CUDAExecutionProvider", "CPUExecutionProvider"],
    "tensorrt": ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"],
}


class RuntimeError_(RuntimeError):
    """A model cannot be loaded on the requested execution provider."""


class Runtime(Protocol):
    @property
    def providers(self) -> list[str]:
        """The execution providers the model runs on, preferred first."""
        ...

    def run(self, batch: np.ndarray) -> np.ndarray:
        """A float32 NCHW batch → one output row per input row."""
        ...


RuntimeWrapper = Callable[[Runtime], Runtime]
"""The pipeline's seam for start-up wrappers: given each instance's warmed-up runtime, returns the
runtime that serves (the drills inject their faults through it: ``servoscope.drills.faults``)."""


class ChildProcess(Protocol):
    """A runtime that runs in a process of its own (and must be stopped with its instance)."""

    restarts: int

    @property
    def pid(self) -> int | None: ...

    def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class InstanceInfo:
    """What an operator sees of one instance."""

    index: int
    isolation: str  # "thread" (a session in the serving process) or "process" (in a child)
    pid: int | None  # the process running the session
    restarts: int  # replacements of its process


def providers_for(provider: str) -> list[str]:
    """The execution providers to ask for, or an error naming what this ONNX Runtime offers."""
    wanted = PROVIDERS.get(provider)
    if wanted is None:
        raise RuntimeError_(f"unknown provider {provider!r}; choose one of {sorted(PROVIDERS)}")
    available = ort.get_available_providers()
    if wanted[0] not in available:
        raise RuntimeError_(f"provider {provider!r} needs {wanted[0]}, but this ONNX Runtime offers only {available}")
    return [p for p in wanted if p in available]


def session_options(intra_op_threads: int) -> ort.SessionOptions:
    options = ort.SessionOptions()
    options.intra_op_num_threads = intra_op_threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # Spinning threads would steal the cores the decode workers need between batches.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


class OnnxModel:
    """One ONNX Runtime session. On a GPU provider a batch runs through I/O binding: the input is
    copied to the device once and the output is left there until it is read back (``io_binding``:
    None picks it by provider)."""

    def __init__(
        self,
        path: Path,
        provider: str,
        intra_op_threads: int,
        input_name: str,
        output_name: str,
        io_binding: bool | None = None,
    ) -> None:
        try:
            self.session = ort.InferenceSession(
                str(path), sess_options=session_options(intra_op_threads), providers=providers_for(provider)
            )
        except (ort.capi.onnxruntime_pybind11_state.Fail, ort.capi.onnxruntime_pybind11_state.InvalidGraph) as exc:
            raise RuntimeError_(f"cannot load {path}: {exc}") from None
        inputs = [i.name for i in self.session.get_inputs()]
        outputs = [o.name for o in self.session.get_outputs()]
        if input_name not in inputs or output_name not in outputs:
            raise RuntimeError_(
                f"{path} has inputs {inputs} and outputs {outputs}; its config names {input_name!r} → {output_name!r}"
            )
        self.input_name = input_name
        self.output_names = [output_name]
        self.device = "cpu" if provider == "cpu" else "cuda"
        self.io_binding = provider != "cpu" if io_binding is None else io_binding

    @property
    def providers(self) -> list[str]:
        return list(self.session.get_providers())

    def run(self, batch: np.ndarray) -> np.ndarray:
        if self.io_binding:
            return self._run_bound(batch)
        output: np.ndarray = self.session.run(self.output_names, {self.input_name: batch})[0]
        return output

    def _run_bound(self, batch: np.ndarray) -> np.ndarray:
        binding = self.session.io_binding()
        binding.bind_cpu_input(self.input_name, np.ascontiguousarray(batch))
        binding.bind_output(self.output_names[0], self.device)
        self.session.run_with_iobinding(binding)
        output: np.ndarray = binding.copy_outputs_to_cpu()[0]
        return output


class Instance:
    """A runtime and the single thread that feeds it; ``process`` when the runtime runs in a child
    process (the same object as ``runtime``, kept apart because ``runtime`` may be wrapped)."""

    def __init__(self, model: str, index: int, runtime: Runtime, process: ChildProcess | None = None) -> None:
        self.model = model
        self.index = index
        self.runtime = runtime
        self.process = process
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"infer-{model}-{index}")

    def info(self) -> InstanceInfo:
        if self.process is None:
            return InstanceInfo(self.index, "thread", os.getpid(), 0)
        return InstanceInfo(self.index, "process", self.process.pid, self.process.restarts)

    def close(self) -> None:
        """After the batches running on it: its thread, then its process."""
        self.executor.shutdown(wait=True, cancel_futures=False)
        if self.process is not None:
            self.process.close()
