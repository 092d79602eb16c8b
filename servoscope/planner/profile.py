"""The profile file: what one machine measured, per stage, for the planner to simulate.

A profile is JSON, versioned (``schema``, ``version``), with the machine it was measured on
and one or more configuration *families*: the instances, intra-op threads and preprocess workers
it was measured at, and the service-time samples (seconds) of each stage there —

    preprocess_s   by image-size class ("320x240"): decode + preprocess of one image
    inference_s    by batch size: one instance running one batch
    postprocess_s  by batch size: the same batch's postprocessing (on the instance, after inference)
    dispatch_s     an instance's hand-off between batches (the event loop and the instance's thread
                   passing the batch): from one batch finishing to the next starting, while requests waited

plus fixed overheads (``ingest``, ``respond``) and the image mix it was measured with. Loading
checks every field and names the one that is missing or wrong.
"""

from __future__ import annotations

import json
import math
import os
import platform
import re
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from servoscope.models.config import BatchingConfig
from servoscope.stages import Stage
from servoscope.validation import fault_lines, read_json

SCHEMA = "servoscope-profile"
VERSION = 1
MAX_SAMPLES = 4000  # kept per key; more are thinned evenly


class ProfileError(ValueError):
    """A profile file that cannot be read, or a profile without what a plan needs."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


Samples = list[float]


def _check_samples(name: str, table: dict[Any, Samples]) -> None:
    for key, values in table.items():
        if not values:
            raise ValueError(f"{name}[{key}] has no samples")
        bad = [v for v in values if not (math.isfinite(v) and v >= 0)]
        if bad:
            raise ValueError(f"{name}[{key}] holds {len(bad)} samples that are not finite seconds >= 0, e.g. {bad[0]}")


class Machine(_Strict):
    cpu_model: str
    cores: int = Field(ge=1)
    python: str
    onnxruntime: str
    platform: str = ""


class Family(_Strict):
    """The samples of one configuration: N instances × T threads, W preprocess workers."""

    instances: int = Field(ge=1, le=64)
    intra_op_threads: int = Field(ge=1)
    preprocess_workers: int = Field(ge=1)
    batching: BatchingConfig = BatchingConfig()
    preprocess_s: dict[str, Samples]
    inference_s: dict[int, Samples]
    postprocess_s: dict[int, Samples]
    dispatch_s: Samples = Field(
        [0.0], description="an instance's hand-off: from a batch finishing to its next starting, while requests waited"
    )

    @property
    def name(self) -> str:
        return f"{self.instances}x{self.intra_op_threads}"

    @model_validator(mode="after")
    def _samples(self) -> Family:
        if not self.preprocess_s:
            raise ValueError("preprocess_s needs samples for at least one image-size class")
        if not self.inference_s:
            raise ValueError("inference_s needs samples for at least one batch size")
        if any(size < 1 for size in [*self.inference_s, *self.postprocess_s]):
            raise ValueError("batch sizes must be >= 1")
        _check_samples("preprocess_s", self.preprocess_s)
        _check_samples("inference_s", self.inference_s)
        _check_samples("postprocess_s", self.postprocess_s)
        _check_samples("family", {"dispatch_s": self.dispatch_s})
        return self


class Overheads(_Strict):
    """Fixed overheads per request, outside the pipeline (HTTP): their samples, seconds."""

    ingest: Samples = [0.0]
    respond: Samples = [0.0]
    source: str = ""

    @model_validator(mode="after")
    def _samples(self) -> Overheads:
        _check_samples("overheads", {Stage.INGEST: self.ingest, Stage.RESPOND: self.respond})
        return self

    @property
    def ingest_s(self) -> float:
        return sorted(self.ingest)[len(self.ingest) // 2]

    @property
    def respond_s(self) -> float:
        return sorted(self.respond)[len(self.respond) // 2]


class Profile(_Strict):
    schema_: str = Field(SCHEMA, alias="schema")
    version: int
    model: str
    created_at: str = ""
    machine: Machine
    families: list[Family]
    overheads: Overheads = Overheads()
    mix: dict[str, float] = Field(description="image-size class → share of the requests it was measured with")

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @field_validator("schema_")
    @classmethod
    def _schema(cls, value: str) -> str:
        if value != SCHEMA:
            raise ValueError(f"not a servoscope profile (schema {value!r}, expected {SCHEMA!r})")
        return value

    @field_validator("version")
    @classmethod
    def _version(cls, value: int) -> int:
        if value != VERSION:
            raise ValueError(f"profile version {value} is not supported (this servoscope reads version {VERSION})")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Profile:
        if not self.families:
            raise ValueError("families: a profile needs at least one configuration family")
        if not self.mix or abs(sum(self.mix.values()) - 1.0) > 1e-6 or min(self.mix.values()) < 0:
            raise ValueError(f"mix: shares must be >= 0 and add up to 1, got {self.mix}")
        for family in self.families:
            missing = sorted(set(self.mix) - set(family.preprocess_s))
            if missing:
                raise ValueError(f"family {family.name}: no preprocess_s samples for the mix's classes {missing}")
        return self

    def family(self, instances: int | None = None, intra_op_threads: int | None = None) -> Family:
        """The family measured at ``instances`` × ``intra_op_threads`` (None: any; the first that fits)."""
        for family in self.families:
            if instances in (None, family.instances) and intra_op_threads in (None, family.intra_op_threads):
                return family
        have = ", ".join(f.name for f in self.families)
        raise ProfileError(
            f"the profile has no family with instances={instances} and intra_op_threads={intra_op_threads}; "
            f"it has (instances x threads): {have}"
        )


def this_machine() -> Machine:
    """This machine's description."""
    import onnxruntime

    return Machine(
        cpu_model=_cpu_model(),
        cores=len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1,
        python=platform.python_version(),
        onnxruntime=onnxruntime.__version__,
        platform=platform.platform(),
    )


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def thin(values: Samples, limit: int = MAX_SAMPLES) -> Samples:
    """At most ``limit`` of ``values``, evenly spread over their sorted order (the distribution kept),
    to the tenth of a microsecond."""
    if len(values) > limit:
        ordered = sorted(values)
        step = (len(ordered) - 1) / (limit - 1)
        values = [ordered[round(i * step)] for i in range(limit)]
    return [round(v, 7) for v in values]


def load(path: Path) -> Profile:
    return parse(read_json(path, "profile", ProfileError), str(path))


def parse(raw: Any, where: str = "profile") -> Profile:
    if not isinstance(raw, dict):
        raise ProfileError(f"{where}: a profile is a JSON object, got {type(raw).__name__}")
    try:
        return Profile.model_validate(raw)
    except ValidationError as exc:
        faults = "\n".join(f"  {line}" for line in fault_lines(exc, "(top level)"))
        raise ProfileError(f"{where}: invalid profile:\n{faults}") from None


def dump(profile: Profile) -> dict[str, Any]:
    return profile.model_dump(mode="json", by_alias=True)


_NUMBERS = re.compile(r"\[([-+\d.eE,\s]+)\]")


def save(profile: Profile, path: Path) -> None:
    """Indented JSON, each list of samples on one line."""
    text = json.dumps(dump(profile), indent=1)
    text = _NUMBERS.sub(lambda m: "[" + ", ".join(x.strip() for x in m.group(1).split(",")) + "]", text)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text + "\n")
