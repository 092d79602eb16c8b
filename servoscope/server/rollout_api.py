"""The rollout's admin endpoints (loopback only) and the judge served to Kubernetes rollouts.

``POST /v1/rollouts/{model}``            start: load the canary variant, climb the ladder
``GET  /v1/rollouts/{model}``            status: step, share, the gate's verdict, per-variant counts
``POST /v1/rollouts/{model}/promote``    promote to 100% now
``POST /v1/rollouts/{model}/abort``      back to 0% now
``GET  /v1/rollouts/{model}/verdict``    the judge as an Argo Rollouts Web metric (always 200, JSON)
``POST /v1/rollouts/{model}/flagger``    the judge as a Flagger webhook (200 unless FAIL, rolled back or aborted: 412)

Starting, promoting and aborting answer loopback clients only; the status and the judges answer anyone
the server answers (a cluster's rollout controller polls them).
"""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import itertools
import random
from pathlib import Path
from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from servoscope.errors import InvalidParameter, ServoscopeError
from servoscope.models import repository
from servoscope.models.config import ModelOverrides
from servoscope.pipeline.service import ModelService, load_instances, warm_up
from servoscope.resources import plan_threads
from servoscope.rollout.audit import AuditLog
from servoscope.rollout.config import GateConfig, GateConfigError
from servoscope.rollout.ladder import STEPS_PERCENT, Ladder, State, check_steps
from servoscope.rollout.variants import CANARY, Rollout
from servoscope.server.http import error_response, json_response
from servoscope.server.state import ServerState, state_of

MAX_START_BYTES = 64 * 1024


class Forbidden(ServoscopeError):
    status = 403
    reason = "forbidden"


class CanarySpec(BaseModel):
    """The variant: ``model`` (another served or repository model; default the same one), its
    ``version`` folder, batching and instance ``overrides``; ``inference_delay_ms`` slows it on purpose
    (an injected fault, for drills). One loaded for the rollout is served as ``<model>@<label>``."""

    model_config = ConfigDict(extra="forbid")
    model: str | None = None
    version: str | None = None
    label: str | None = Field(None, pattern=r"^[a-z0-9_-]{1,32}$")  # None: canary, canary-2, … (the first free)
    overrides: ModelOverrides = ModelOverrides()
    inference_delay_ms: float = Field(0.0, ge=0.0, le=10_000.0)


class StartRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    canary: CanarySpec = Field(default_factory=CanarySpec)
    steps_percent: tuple[float, ...] = STEPS_PERCENT
    mirror_share: float = Field(0.0, ge=0.0, le=1.0)
    audit_log: str = Field(min_length=1)
    signoff: str | None = Field(None, max_length=200)
    gate: dict[str, Any] = Field(default_factory=dict)  # GateConfig fields (all but canary_share)
    seed: int | None = None


def _loopback(request: Request) -> None:
    host = request.client.host if request.client else ""
    try:
        if ipaddress.ip_address(host).is_loopback:
            return
    except ValueError:
        pass
    raise Forbidden(f"the rollout's admin endpoints answer loopback clients only, not {host!r}")


def _gate_config(start: StartRequest) -> GateConfig:
    fields = {f.name for f in dataclasses.fields(GateConfig)} - {"canary_share"}
    unknown = sorted(set(start.gate) - fields)
    if unknown:
        raise InvalidParameter(f"unknown gate settings {unknown}; known: {sorted(fields)}")
    values: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in start.gate.items()}
    try:
        return GateConfig(canary_share=start.steps_percent[0] / 100.0, **values)
    except (GateConfigError, TypeError) as exc:
        raise InvalidParameter(str(exc)) from None


def _load_canary(state: ServerState, model: str, baseline: ModelService, spec: CanarySpec) -> ModelService:
    """The canary's service: a served model as it is, or a repository entry loaded as ``<model>@<label>``."""
    pipeline = state.accepting()
    name = spec.model or model
    served = pipeline.services.get(name)
    as_served = spec.version is None and spec.overrides == ModelOverrides() and not spec.inference_delay_ms
    if served is not None and as_served:
        if served is baseline:
            raise InvalidParameter("the canary must differ from the baseline: name a model, version or override")
        return served
    settings = state.settings
    found = repository.find(settings.model_repository, name, spec.version)
    served_as = f"{model}@{spec.label}" if spec.label else _free_name(model, baseline)
    if served_as == baseline.name:
        raise InvalidParameter(f"{served_as!r} serves the model since its promotion: give the new variant a new label")
    entry = dataclasses.replace(found, name=served_as, config=spec.overrides.apply(found.config))
    cfg = entry.config.instances
    plan = plan_threads(settings.preprocess_workers, cfg.count, cfg.intra_op_threads, cfg.provider)
    instances = load_instances(entry, plan)
    if spec.inference_delay_ms:
        if state.delay_runtime is None:
            raise InvalidParameter("this server offers no injected delays (servoscope serve wires them, for drills)")
        slowed = state.delay_runtime(spec.inference_delay_ms / 1000.0)
        for instance in instances:
            instance.runtime = slowed(instance.runtime)
    service = ModelService(entry, pipeline.pool, instances, baseline.limits, baseline.policy, state.clock)
    warm_up(service)
    return service


def _free_name(model: str, baseline: ModelService) -> str:
    """``<model>@canary``, or — when a promoted variant of that name is the baseline — the next free one."""
    names = (f"{model}@{CANARY}" + (f"-{n}" if n > 1 else "") for n in itertools.count(1))
    return next(name for name in names if name != baseline.name)


async def start(request: Request) -> Response:
    state = state_of(request)
    try:
        _loopback(request)
        name = request.path_params["model"]
        body = await request.body()
        if len(body) > MAX_START_BYTES:
            raise InvalidParameter(f"a rollout's start is at most {MAX_START_BYTES} bytes of JSON")
        try:
            spec = StartRequest.model_validate(orjson.loads(body or b"{}"))
        except (orjson.JSONDecodeError, ValidationError) as exc:
            raise InvalidParameter(f"invalid rollout start: {exc}") from None
        gate = _gate_config(spec)
        if gate.max_disagreement is not None and not spec.signoff:
            raise InvalidParameter("a variant judged on its disagreement needs the model owners' sign-off (signoff)")
        current = state.rollouts.by_model.get(name)
        if (current is not None and current.ladder.running) or name in state.rollouts.starting:
            raise InvalidParameter(f"model {name!r} has a rollout running: promote or abort it first")
        # after a promotion, the promoted variant is the baseline of the next rollout
        promoted = current is not None and current.ladder.state is State.PROMOTED
        baseline = current.canary if current is not None and promoted else state.accepting().get(name)
        state.rollouts.starting.add(name)  # one start at a time: the variant loads off the event loop
        try:
            ladder_steps = check_steps(spec.steps_percent)
            canary = await asyncio.to_thread(_load_canary, state, name, baseline, spec.canary)
        except (ValueError, repository.ModelConfigError) as exc:
            raise InvalidParameter(str(exc)) from None
        finally:
            state.rollouts.starting.discard(name)
        _serve(state, baseline, canary)
        audit = AuditLog(Path(spec.audit_log), state.clock)
        described = {
            "model": name,
            "baseline": baseline.name,
            "canary": canary.name,
            "signoff": spec.signoff,
            "canary_spec": spec.canary.model_dump(mode="json"),
            "mirror_share": spec.mirror_share,
        }
        try:
            ladder = Ladder(ladder_steps, gate, audit, **described)
        except OSError as exc:
            raise InvalidParameter(f"cannot write the audit log {spec.audit_log!r}: {exc.strerror}") from None
        rollout = Rollout(
            name,
            baseline,
            canary,
            ladder,
            state.clock,
            spec.mirror_share,
            salt=random.randbytes(16),
            rng=random.Random(spec.seed),
        )
        state.rollouts.by_model[name] = rollout
        return json_response(rollout.status(), 201)
    except ServoscopeError as exc:
        return error_response(exc)


def _serve(state: ServerState, baseline: ModelService, canary: ModelService) -> None:
    """Put a newly loaded canary beside the baseline: started, its batches and restarts observed alike."""
    services = state.accepting().services
    if services.get(canary.name) is canary:
        return
    old = services.get(canary.name)
    canary.batcher.on_batch = baseline.batcher.on_batch
    canary.batcher.on_restart = baseline.batcher.on_restart
    canary.batcher.start()
    services[canary.name] = canary
    state.model_configs[canary.name] = {"version": canary.version, **canary.entry.config.model_dump(mode="json")}
    if old is not None:
        asyncio.get_running_loop().create_task(old.batcher.stop())


async def status(request: Request) -> Response:
    try:
        return json_response(state_of(request).rollouts.get(request.path_params["model"]).status())
    except ServoscopeError as exc:
        return error_response(exc)


async def promote(request: Request) -> Response:
    return await _act(request, lambda r, by: r.ladder.promote(by))


async def abort(request: Request) -> Response:
    return await _act(request, lambda r, by: r.ladder.abort(by, "aborted by request"))


async def _act(request: Request, action: Any) -> Response:
    try:
        _loopback(request)
        rollout = state_of(request).rollouts.get(request.path_params["model"])
        by = request.headers.get("x-operator", "operator")[:200]
        try:
            action(rollout, by)
        except ValueError as exc:
            raise InvalidParameter(str(exc)) from None
        return json_response(rollout.status())
    except ServoscopeError as exc:
        return error_response(exc)


def judge(rollout: Rollout) -> dict[str, Any]:
    """What Argo's Web metric and Flagger's webhook get: the verdict and the rollout's state."""
    status = rollout.status()
    verdict = status["verdict"]
    return {
        "outcome": verdict["outcome"],
        "state": status["state"],
        "share": status["share"],
        "reason": verdict["reason"],
        "check": verdict["check"],
        "stage": verdict["stage"],
        "verdict": verdict,
    }


async def argo_verdict(request: Request) -> Response:
    """An Argo Rollouts Web metric: ``successCondition: result.outcome == 'PASS'``,
    ``failureCondition: result.outcome == 'FAIL'``; INCONCLUSIVE is neither."""
    try:
        return json_response(judge(state_of(request).rollouts.get(request.path_params["model"])))
    except ServoscopeError as exc:
        return error_response(exc)


async def flagger(request: Request) -> Response:
    """A Flagger webhook (pre-rollout or rollout): 200 lets the analysis go on, anything else counts as
    a failed check — so a FAIL, or a rollout rolled back or aborted, is 412; PASS and INCONCLUSIVE are 200."""
    try:
        result = judge(state_of(request).rollouts.get(request.path_params["model"]))
    except ServoscopeError as exc:
        return error_response(exc)
    stopped = result["outcome"] == "FAIL" or result["state"] in ("rolled_back", "aborted")
    return json_response(result, 412 if stopped else 200)


routes = [
    Route("/v1/rollouts/{model}", start, methods=["POST"]),
    Route("/v1/rollouts/{model}", status, methods=["GET"]),
    Route("/v1/rollouts/{model}/promote", promote, methods=["POST"]),
    Route("/v1/rollouts/{model}/abort", abort, methods=["POST"]),
    Route("/v1/rollouts/{model}/verdict", argo_verdict, methods=["GET"]),
    Route("/v1/rollouts/{model}/flagger", flagger, methods=["POST"]),
]
