"""The five settings ``servoscope tune`` searches, as one value: their serve flags and their
``config.toml`` lines (the settings file ``servoscope serve --config`` reads)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import tomli_w

NAMES: tuple[str, ...] = ("max_batch_size", "max_queue_delay_ms", "instances", "intra_op_threads", "preprocess_workers")


@dataclass(frozen=True, order=True)
class Knobs:
    """One replica's configuration: batching, instances × intra-op threads, preprocess workers."""

    max_batch_size: int
    max_queue_delay_ms: float
    instances: int
    intra_op_threads: int
    preprocess_workers: int

    def __post_init__(self) -> None:
        for name in ("max_batch_size", "instances", "intra_op_threads", "preprocess_workers"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 0 <= self.max_queue_delay_ms <= 10_000:
            raise ValueError(f"max_queue_delay_ms must be in [0, 10000], got {self.max_queue_delay_ms}")

    def describe(self) -> str:
        return (
            f"batch ≤ {self.max_batch_size}, delay {self.max_queue_delay_ms:g} ms, "
            f"{self.instances}x{self.intra_op_threads} (instances x threads), "
            f"{self.preprocess_workers} preprocess workers"
        )

    def flags(self) -> tuple[str, ...]:
        """``servoscope serve`` flags."""
        return (
            "--max-batch-size", str(self.max_batch_size),
            "--max-queue-delay-ms", f"{self.max_queue_delay_ms:g}",
            "--instances", str(self.instances),
            "--intra-op-threads", str(self.intra_op_threads),
            "--preprocess-workers", str(self.preprocess_workers),
        )  # fmt: skip

    def settings(self) -> dict[str, Any]:
        """The settings file's keys (servoscope.settings.Settings) for these knobs."""
        return {
            "preprocess_workers": self.preprocess_workers,
            "model_overrides": {
                "max_batch_size": self.max_batch_size,
                "max_queue_delay_s": self.max_queue_delay_ms / 1000,
                "instances": self.instances,
                "intra_op_threads": self.intra_op_threads,
            },
        }

    def toml(self) -> str:
        return tomli_w.dumps(self.settings())

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def write_settings(knobs: Knobs, path: Path) -> None:
    """Write ``knobs`` into the settings file at ``path``, keeping its other keys (a new file if none)."""
    import tomllib

    from servoscope.settings import Settings

    current: dict[str, Any] = tomllib.loads(path.read_text()) if path.exists() else {}
    wanted = knobs.settings()
    current["preprocess_workers"] = wanted["preprocess_workers"]
    current["model_overrides"] = {**current.get("model_overrides", {}), **wanted["model_overrides"]}
    Settings.model_validate(current)  # refuse to write what servoscope serve would refuse to read
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(tomli_w.dumps(current))
