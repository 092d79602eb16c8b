"""Evidence of change between two windows: a deploy (servoscope, its packages, a model's version or
file, models added or removed), a configuration change (settings, batching, threads) or a capacity
change (instances, preprocess workers) — and restarts, which change nothing by themselves, and
other models added or removed (reported, not suspected).

A change is the prime suspect of a regression that follows it: :func:`changed_rule` names it, with
its measured effect (busy ratios, capacity, the stage that carries the rise); the planner's model
adds the predicted effect of reverting it (:mod:`servoscope.doctor.counterfactual`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from servoscope.doctor.evidence import Evidence
from servoscope.doctor.findings import Attribution, Finding, Fix, Scope, conf, ms, ratio
from servoscope.telemetry.document import Deployment, ModelDeployment, SettingValue

Kind = Literal["deploy", "config", "capacity", "restart", "models"]
# Settings that say where the service listens or how much it logs: not a change to its behaviour.
IGNORED_SETTINGS = frozenset({"host", "port", "grpc_port", "log_level"})
CAUSES: dict[Kind, str] = {"deploy": "deploy", "capacity": "capacity-change", "config": "config-change"}


@dataclass(frozen=True, slots=True)
class Change:
    kind: Kind
    what: str  # "instances", "model version", "settings.max_pending"
    before: str
    after: str

    def describe(self) -> str:
        return f"{self.what} {self.before} → {self.after}"


def between(base: Evidence, now: Evidence) -> tuple[Change, ...]:
    """Every difference in what was running, capacity first; unknown values are no evidence either way."""
    found = [
        *_compared("capacity", "instances", base.instances, now.instances),
        *_compared("capacity", "preprocess workers", base.preprocess_workers, now.preprocess_workers),
    ]
    if base.served_models and now.served_models:
        found += _compared("models", "models served", ", ".join(base.served_models), ", ".join(now.served_models))
    if base.deployment is not None and now.deployment is not None:
        found += _deployments(base.model, base.deployment, now.deployment)
    return tuple(found)


def material(changes: tuple[Change, ...]) -> tuple[Change, ...]:
    """The changes to the diagnosed model's own service: not restarts alone, nor other models coming or going."""
    return tuple(c for c in changes if c.kind not in ("restart", "models"))


def _compared(kind: Kind, what: str, before: object, after: object) -> list[Change]:
    if before is None or after is None or before == after:
        return []
    return [Change(kind, what, _said(before), _said(after))]


def _said(value: object) -> str:
    return "unset" if value == "" else str(value)


def _deployments(model: str, base: Deployment, now: Deployment) -> list[Change]:
    found = _compared("deploy", "servoscope", base.servoscope_version, now.servoscope_version)
    for name in sorted(set(base.packages) & set(now.packages)):
        found += _compared("deploy", name, base.packages[name], now.packages[name])
    restarted = (base.process_id, base.process_started) != (now.process_id, now.process_started)
    if base.process_id is not None and restarted:
        found.append(Change("restart", "serving process", f"pid {base.process_id}", f"pid {now.process_id}"))
    found += _settings(base.settings, now.settings)
    if model in base.models and model in now.models:
        found += _model(base.models[model], now.models[model], restarted)
    return found


def _settings(base: dict[str, SettingValue], now: dict[str, SettingValue]) -> list[Change]:
    found = []
    for key in sorted((set(base) & set(now)) - IGNORED_SETTINGS):
        kind: Kind = "capacity" if key in ("model_overrides.instances", "preprocess_workers") else "config"
        if base[key] != now[key]:  # a setting's None is a value (unset: the default), not an unknown
            found.append(Change(kind, f"setting {key}", _said_setting(base[key]), _said_setting(now[key])))
    return found


def _said_setting(value: SettingValue) -> str:
    return "unset" if value is None else _said(value)


def _model(base: ModelDeployment, now: ModelDeployment, restarted: bool) -> list[Change]:
    found = [
        *_compared("deploy", "model version", base.version, now.version),
        *_compared("deploy", "model file bytes", base.file_bytes, now.file_bytes),
        *_compared("config", "intra-op threads per instance", base.intra_op_threads, now.intra_op_threads),
        *_compared("config", "provider", base.provider, now.provider),
        *_compared("config", "isolation", base.isolation, now.isolation),
    ]
    for key in sorted(set(base.batching) & set(now.batching)):
        found += _compared("config", f"batching {key}", base.batching[key], now.batching[key])
    # instance processes replaced while the service ran (a restarted service replaces them all: said above)
    if not restarted and len(base.instance_pids) == len(now.instance_pids) and base.instance_pids != now.instance_pids:
        found.append(Change("restart", "instance processes", str(base.instance_pids), str(now.instance_pids)))
    return found


def batching_only(changes: tuple[Change, ...]) -> bool:
    """The batching policy changed, and nothing else: the model's effective batching, and the settings
    (``model_overrides.<key>``) that set the same keys."""
    keys = {c.what.removeprefix("batching ") for c in changes if c.what.startswith("batching ")}
    setting = "setting model_overrides."
    return bool(keys) and all(
        c.what.startswith("batching ") or (c.what.startswith(setting) and c.what.removeprefix(setting) in keys)
        for c in changes
    )


def changed_rule(base: Evidence, now: Evidence, a: Attribution) -> Finding | None:
    """A deploy, configuration or capacity change between the windows, with its measured effect."""
    changes = material(between(base, now))
    if not changes:
        return None
    kinds = {c.kind for c in changes}
    kind: Kind = next(k for k in ("deploy", "capacity", "config") if k in kinds)  # type: ignore[assignment]
    cap = (base.capacity_per_s, now.capacity_per_s)
    told = "; ".join(c.describe() for c in changes[:6]) + (f"; and {len(changes) - 6} more" if len(changes) > 6 else "")
    return Finding(
        "batching-misconfig" if batching_only(changes) else CAUSES[kind],
        f"a {'deploy' if kind == 'deploy' else kind + ' change'} between the windows: {told}",
        conf(0.6 + 0.2 * min(a.shares.get(a.carrier or "", 0.0), 1.0)),
        (
            f"changed: {told}",
            f"measured effect: busy ratio {base.busy_ratio:.2f} → {now.busy_ratio:.2f} over {base.instances} → "
            f"{now.instances} instances at {base.answered_per_s:.0f} → {now.answered_per_s:.0f} req/s: capacity "
            f"{cap[0]:.0f} → {cap[1]:.0f} req/s (×{ratio(cap[1], cap[0]):.2f})",
            f"inference P95 {ms(base.stages['inference'].p95)} → {ms(now.stages['inference'].p95)} at batch size "
            f"{base.batch_mean_size:.1f} → {now.batch_mean_size:.1f}; "
            f"rise carried by {a.carrier or 'no single stage'}",
        ),
        (_revert(changes, kind),),
    )


def _revert(changes: tuple[Change, ...], kind: Kind) -> Fix:
    """One fix: put every change back (a deploy: roll it back, inference times and all)."""
    undo = "; ".join(f"{c.what} {c.after} → {c.before}" for c in changes[:6])
    model = any(c.what in ("model version", "model file bytes") for c in changes)
    scope: Scope = "model" if model else "infrastructure" if kind == "capacity" else "configuration"
    action = f"roll back the deploy ({undo})" if kind == "deploy" else f"revert: {undo}"
    # the baseline's configuration and its per-batch times: threads and instances set those too
    return Fix(action, "P95 back toward the baseline's", scope, "revert")
