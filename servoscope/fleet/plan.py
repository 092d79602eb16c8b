"""The fleet plan: how many replicas, what each one gets, and the autoscaling target.

A plan is an optional JSON file (``servoscope deploy k8s --plan plan.json``); every field has a
default, unknown keys are errors. Example::

    {
      "replicas": {"min": 2, "max": 12},
      "cpu_cores": 4,
      "memory_mib": 3072,
      "queue_wait_target_s": 0.05,
      "replica_capacity_per_s": 33.7,
      "target_utilization": 0.8,
      "drain_delay_s": 10,
      "settings": {"max_pending": 256, "model_overrides": {"max_batch_size": 8}}
    }

``replica_capacity_per_s`` is what one replica answers with P95 within the objective: the planner's
answer for its profile (``servoscope plan``'s simulation of one replica; ``bench/autoscale.py``
prints it as "one replica holds it to … req/s"). The autoscalers target that rate per pod times
``target_utilization``. Without a plan, 33.7 req/s: the planner's figure for a 2-core CPU replica of
EfficientNet-Lite0 (the default ``cpu_cores``) at a P95 of 250 ms; measure yours.

``settings`` are servoscope settings for every replica (the same names as the TOML file), laid
over the ones loaded from ``--config`` and the environment, and checked as strictly.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from servoscope.resources import plan_threads
from servoscope.settings import Settings, load_settings
from servoscope.validation import fault_lines, read_json


class PlanError(ValueError):
    """A plan file that cannot be read or is not a valid plan."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


DEFAULT_CAPACITY_PER_S = 33.7  # a 2-core CPU replica of EfficientNet-Lite0 at 250 ms P95 (the planner's simulation)
DEFAULT_UTILIZATION = 0.8


class Replicas(_Strict):
    min: int = Field(2, ge=1, le=1000, description="fewest replicas (2: one may be lost without an outage)")
    max: int = Field(10, ge=1, le=1000, description="most replicas the autoscaler may run")

    @model_validator(mode="after")
    def _ordered(self) -> Replicas:
        if self.max < self.min:
            raise ValueError(f"max ({self.max}) must be >= min ({self.min})")
        return self


class FleetPlan(_Strict):
    replicas: Replicas = Replicas()
    cpu_cores: float = Field(2.0, gt=0, le=512, description="CPU cores each replica requests (and is limited to)")
    memory_mib: int = Field(
        2048, ge=256, le=4 * 1024 * 1024, description="memory each replica requests (and is limited to)"
    )
    queue_wait_target_s: float = Field(
        0.05,
        ge=0.001,
        le=60,
        description="autoscaling target: mean time a request waits (preprocess_wait + batch_wait) per replica",
    )
    replica_capacity_per_s: float = Field(
        DEFAULT_CAPACITY_PER_S,
        gt=0,
        le=1_000_000,
        description="requests a second one replica answers with P95 within the objective (the planner's figure)",
    )
    target_utilization: float = Field(
        DEFAULT_UTILIZATION,
        gt=0,
        le=1,
        description="autoscaling target: arrivals per pod as a share of replica_capacity_per_s (the headroom)",
    )
    drain_delay_s: int = Field(
        10,
        ge=0,
        le=600,
        description="preStop sleep: time for endpoints to drop the pod before SIGTERM starts the drain",
    )
    settings: dict[str, Any] = Field(default_factory=dict, description="servoscope settings for every replica")

    @property
    def arrivals_target_per_s(self) -> float:
        """Requests a second per pod the autoscalers size the fleet for."""
        return self.replica_capacity_per_s * self.target_utilization


def read_plan(path: Path) -> FleetPlan:
    """The plan in ``path``; a :class:`PlanError` naming the file and the field for anything wrong."""
    raw = read_json(path, "plan", PlanError)
    if not isinstance(raw, dict):
        raise PlanError(f"plan {path} must be a JSON object, got {type(raw).__name__}")
    try:
        return FleetPlan.model_validate(raw)
    except ValidationError as exc:
        faults = "\n".join(f"  {line}" for line in fault_lines(exc, "(plan)"))
        raise PlanError(f"plan {path} is not valid:\n{faults}") from None


def plan_and_settings(plan_file: Path | None, config_file: Path | None) -> tuple[FleetPlan, Settings]:
    """The plan (every default without a file) and the settings each replica runs with: those of
    ``config_file`` and the environment, under the plan's ``settings``. Raises :class:`PlanError`
    or :class:`servoscope.settings.SettingsError`."""
    plan = read_plan(plan_file) if plan_file else FleetPlan()
    return plan, load_settings(config_file, **plan.settings)


def sized_to_cores(settings: Settings, cpu_cores: float) -> Settings:
    """``settings`` with their thread sizing pinned to a replica's ``cpu_cores`` (at least one): a
    replica that shares a node (a pod, a Ray replica) would otherwise size its sessions and decoders
    to every core of the node."""
    overrides = settings.model_overrides
    threads = plan_threads(
        settings.preprocess_workers,
        overrides.instances or 0,
        overrides.intra_op_threads or 0,
        overrides.provider or "cpu",
        cores=max(1, math.floor(cpu_cores)),
    )
    pinned = overrides.model_copy(update={"instances": threads.instances, "intra_op_threads": threads.intra_op_threads})
    return settings.model_copy(update={"preprocess_workers": threads.preprocess_workers, "model_overrides": pinned})
