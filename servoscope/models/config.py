"""A model's ``config.toml``: its input preprocessing, output, batching, instances and engine.

Unknown keys are errors, so a typo never silently falls back to a default.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Literal

import tomli_w
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

CONFIG_FILE = "config.toml"
MODEL_FILE = "model.onnx"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class InputConfig(_Strict):
    name: str = "input"
    size: int = Field(224, ge=8, le=4096, description="side of the square model input, pixels")
    resize: int = Field(256, ge=8, le=8192, description="shorter side after resizing, before the center crop")
    mean: tuple[float, float, float] = (127.0, 127.0, 127.0)
    std: tuple[float, float, float] = (128.0, 128.0, 128.0)
    decode: Literal["cpu", "cuda"] = Field(
        "cpu",
        description="cuda: baseline JPEGs decoded, resized and cropped on the GPU (torchvision); the rest on the CPU",
    )

    @model_validator(mode="after")
    def _resize_covers_crop(self) -> InputConfig:
        if self.resize < self.size:
            raise ValueError(f"input.resize must be >= input.size ({self.size}), got {self.resize}")
        if min(self.std) <= 0:
            raise ValueError(f"input.std must be > 0, got {self.std}")
        return self


class OutputConfig(_Strict):
    name: str = "logits"
    labels: str = "labels.txt"
    kind: Literal["logits", "probabilities"] = "logits"


class BatchingConfig(_Strict):
    max_batch_size: int = Field(32, ge=1, le=1024)
    max_queue_delay_s: float = Field(
        0.002, ge=0.0, le=10.0, description="longest wait for more requests once one is queued"
    )
    preferred_batch_sizes: tuple[int, ...] = ()
    max_queue_size: int = Field(
        256, ge=1, description="requests waiting in the batcher before new ones are refused (429)"
    )

    @field_validator("preferred_batch_sizes")
    @classmethod
    def _sorted_positive(cls, sizes: tuple[int, ...]) -> tuple[int, ...]:
        if any(size < 1 for size in sizes):
            raise ValueError(f"preferred_batch_sizes must be >= 1, got {list(sizes)}")
        return tuple(sorted(set(sizes)))

    @model_validator(mode="after")
    def _preferred_within_max(self) -> BatchingConfig:
        too_big = [s for s in self.preferred_batch_sizes if s > self.max_batch_size]
        if too_big:
            raise ValueError(f"preferred_batch_sizes {too_big} exceed max_batch_size {self.max_batch_size}")
        return self


class InstanceConfig(_Strict):
    count: int = Field(
        0,
        ge=0,
        le=64,
        description="ONNX Runtime sessions, each fed by its own thread (0: one per core on the CPU, one on a GPU)",
    )
    provider: Literal["cpu", "cuda", "tensorrt"] = "cpu"
    intra_op_threads: int = Field(0, ge=0, description="0: sized to the machine (see servoscope.resources)")
    isolation: Literal["thread", "process"] = Field(
        "thread",
        description="thread: each session in the serving process; process: each in a child process of its own, "
        "replaced if it dies (its batch retried once, then 503)",
    )


Compile = Literal["none", "cuda_graphs", "torch_compile"]
PLATFORMS = {"onnxruntime": "onnxruntime_onnx", "torch": "pytorch_libtorch"}  # engine → Triton's platform name


class EngineConfig(_Strict):
    """What runs the model: ONNX Runtime (on ``instances.provider``) or PyTorch (on ``device``)."""

    name: Literal["onnxruntime", "torch"] = "onnxruntime"
    device: Literal["cpu", "cuda"] = Field("cpu", description="torch only; ONNX Runtime runs on instances.provider")
    precision: Literal["fp32", "fp16", "bf16"] = Field("fp32", description="torch only: fp16/bf16 run under autocast")
    channels_last: bool = Field(False, description="torch only: NHWC memory layout for the weights and each batch")
    compile: Compile = Field("none", description="torch only: how every batch bucket runs (cuda_graphs: cuda only)")
    compile_by_batch: dict[int, Compile] = Field(
        default_factory=dict, description="torch only: per batch bucket, overriding compile"
    )
    architecture: str = Field("efficientnet-lite0", description="torch only: the network the weights belong to")
    weights: str = Field("", description="torch only: a state_dict in the version folder; empty: the prepare extra's")

    @model_validator(mode="after")
    def _consistent(self) -> EngineConfig:
        if self.name == "onnxruntime":
            torch_only = {"device": "cpu", "precision": "fp32", "channels_last": False, "compile": "none"}
            wrong = [
                f"{key} = {getattr(self, key)!r}"
                for key, default in torch_only.items()
                if getattr(self, key) != default
            ]
            if wrong or self.compile_by_batch or self.weights:
                raise ValueError(
                    f"engine {', '.join(wrong) or 'compile_by_batch/weights'}: torch only, got onnxruntime"
                )
            return self
        if self.precision == "fp16" and self.device != "cuda":
            raise ValueError("engine.precision fp16 needs device cuda (on the CPU use bf16), got cpu")
        modes = {self.compile, *self.compile_by_batch.values()}
        if "cuda_graphs" in modes and self.device != "cuda":
            raise ValueError(f"engine compile cuda_graphs needs device cuda, got {self.device}")
        return self

    def compile_for(self, batch_size: int) -> Compile:
        return self.compile_by_batch.get(batch_size, self.compile)

    @property
    def platform(self) -> str:
        return PLATFORMS[self.name]

    def describe(self) -> str:
        if self.name == "onnxruntime":
            return "onnxruntime"
        layout = "/channels_last" if self.channels_last else ""
        return f"torch/{self.device}/{self.precision}{layout}"


def batch_buckets(batching: BatchingConfig) -> tuple[int, ...]:
    """The batch sizes a model is warmed (and, compiled, captured) at: 1, the preferred sizes, the largest."""
    return tuple(sorted({1, *batching.preferred_batch_sizes, batching.max_batch_size}))


class ModelConfig(_Strict):
    name: str
    description: str = ""
    input: InputConfig = InputConfig()
    output: OutputConfig = OutputConfig()
    batching: BatchingConfig = BatchingConfig()
    instances: InstanceConfig = InstanceConfig()
    engine: EngineConfig = EngineConfig()

    @model_validator(mode="after")
    def _engine_fits(self) -> ModelConfig:
        if self.engine.name != "torch":
            return self
        if self.instances.provider != "cpu":
            raise ValueError(
                "instances.provider is ONNX Runtime's; engine torch runs on engine.device, "
                f"got {self.instances.provider!r}"
            )
        if self.instances.isolation != "thread":
            raise ValueError(
                "engine torch runs in the serving process: instances.isolation must be thread, "
                f"got {self.instances.isolation!r}"
            )
        buckets = batch_buckets(self.batching)
        strays = sorted(set(self.engine.compile_by_batch) - set(buckets))
        if strays:
            raise ValueError(
                f"engine.compile_by_batch names batch sizes {strays} that are no batch bucket {list(buckets)}"
            )
        return self

    @property
    def accelerator(self) -> str:
        """Where inference runs, as the thread plan sizes it: cpu, cuda or tensorrt."""
        return self.engine.device if self.engine.name == "torch" else self.instances.provider


class ModelConfigError(ValueError):
    pass


class ModelOverrides(_Strict):
    """Settings that replace every served model's own ``config.toml`` values (None: keep the model's)."""

    max_batch_size: int | None = None
    max_queue_delay_s: float | None = None
    preferred_batch_sizes: tuple[int, ...] | None = None
    max_queue_size: int | None = None
    instances: int | None = None
    intra_op_threads: int | None = None
    provider: Literal["cpu", "cuda", "tensorrt"] | None = None
    isolation: Literal["thread", "process"] | None = None

    def apply(self, config: ModelConfig) -> ModelConfig:
        batching = {k: v for k, v in self.model_dump(include=set(BatchingConfig.model_fields)).items() if v is not None}
        instances = {
            key: value
            for key, value in (
                ("count", self.instances),
                ("intra_op_threads", self.intra_op_threads),
                ("provider", self.provider),
                ("isolation", self.isolation),
            )
            if value is not None
        }
        if not batching and not instances:
            return config
        raw = config.model_dump()
        raw["batching"].update(batching)
        raw["instances"].update(instances)
        try:
            return ModelConfig.model_validate(raw)
        except ValidationError as exc:
            raise ModelConfigError(
                f"the overrides {self.model_dump(exclude_none=True)} do not fit model {config.name!r}:\n{exc}"
            ) from None


def load_config(path: Path) -> ModelConfig:
    try:
        with path.open("rb") as f:
            raw = tomllib.load(f)
        return ModelConfig.model_validate(raw)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ModelConfigError(f"cannot read {path}: {exc}") from None
    except ValidationError as exc:
        raise ModelConfigError(f"invalid model config {path}:\n{exc}") from None


def save_config(config: ModelConfig, path: Path) -> None:
    path.write_text(tomli_w.dumps(config.model_dump(mode="json")))
