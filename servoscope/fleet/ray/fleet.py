"""A servoscope fleet on Ray Serve: the cluster (a local one bound to 127.0.0.1, or an existing
one joined by address), the replicas as one Ray Serve deployment, the balancer in front of them,
and the loop that keeps the balancer's servers equal to the replicas alive.
"""

from __future__ import annotations

import logging
import tempfile
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ray
from ray import serve

from servoscope.fleet.plan import FleetPlan, sized_to_cores
from servoscope.fleet.ray.balancer import Balancer
from servoscope.fleet.ray.policy import POLICY_PATH
from servoscope.fleet.ray.registry import Member, registry_actor
from servoscope.fleet.ray.replica import Replica
from servoscope.settings import Settings

log = logging.getLogger(__name__)

LOOPBACK_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"  # "0": Ray's node address is 127.0.0.1, and it binds there
APP = "servoscope"
NAMESPACE = "servoscope"
LOOPBACK = "127.0.0.1"


LOOK_BACK_MIN_S = 10.5  # Ray 2.60 warns below its (deprecated) metrics_interval_s of 10 s


@dataclass(frozen=True)
class FleetOptions:
    host: str = LOOPBACK  # where the balancer listens
    port: int = 8000
    address: str | None = None  # an existing Ray cluster ("auto", "ray://…", host:port); None: start one on loopback
    replicas: int | None = None  # the initial size (default: the plan's minimum)
    num_cpus: int | None = None  # CPUs of a local cluster (default: the machine's)
    signal_window_s: float = 10.0  # the replicas' scaling signal covers this much of the recent past
    upscale_delay_s: float = 3.0
    downscale_delay_s: float = 60.0
    health_check_period_s: float = 1.0  # Ray Serve's check of each replica; also the registry heartbeat
    drain_s: float = 1.5  # a removed replica's readiness is false this long before it stops taking requests
    sync_period_s: float = 0.25  # how often the balancer's servers follow the registry


def autoscaling_config(plan: FleetPlan, options: FleetOptions) -> dict[str, Any]:
    """Ray Serve's autoscaling: servoscope's policy on the queue-wait signal, the plan's bounds."""
    rule = {
        "wait_target_s": plan.queue_wait_target_s,
        "min_replicas": plan.replicas.min,
        "max_replicas": plan.replicas.max,
    }
    return {
        "min_replicas": plan.replicas.min,
        "max_replicas": plan.replicas.max,
        "initial_replicas": options.replicas or plan.replicas.min,
        "look_back_period_s": max(LOOK_BACK_MIN_S, options.signal_window_s),
        "upscale_delay_s": options.upscale_delay_s,
        "downscale_delay_s": options.downscale_delay_s,
        "policy": {"policy_function": POLICY_PATH, "policy_kwargs": rule},
    }


def replica_options(plan: FleetPlan, options: FleetOptions, settings: Settings) -> dict[str, Any]:
    push_s = str(min(1.0, options.signal_window_s / 5))  # Ray's default (10 s) is slower than the decisions
    return {
        "name": "Replica",
        "autoscaling_config": autoscaling_config(plan, options),
        "ray_actor_options": {
            "num_cpus": plan.cpu_cores,
            "runtime_env": {"env_vars": {"RAY_SERVE_REPLICA_AUTOSCALING_METRIC_PUSH_INTERVAL_S": push_s}},
        },
        "health_check_period_s": options.health_check_period_s,
        "health_check_timeout_s": max(10.0, 5 * options.health_check_period_s),
        "graceful_shutdown_timeout_s": settings.shutdown_timeout_s + options.drain_s + 5,
    }


class FleetError(RuntimeError):
    """The fleet cannot start as asked."""


def loopback_ready() -> bool:
    """Whether a Ray cluster started here binds to 127.0.0.1 only. Ray decides its node address when
    it is imported: ``LOOPBACK_ENV=0`` must be in the environment before then (``servoscope deploy
    ray`` sets it when it starts a local cluster). Otherwise Ray advertises the machine's address and
    its gRPC servers listen on every interface."""
    from ray._private import ray_constants  # the value Ray read at import

    return not ray_constants.ENABLE_RAY_CLUSTER


class RayFleet:
    """Started by :meth:`start`, stopped (everything it started, and only that) by :meth:`stop`."""

    def __init__(self, settings: Settings, plan: FleetPlan, options: FleetOptions) -> None:
        self.settings, self.plan, self.options = settings, plan, options
        self.balancer: Balancer | None = None
        self._started_ray = False
        self._stopping = threading.Event()
        self._syncer: threading.Thread | None = None
        self._workdir = tempfile.TemporaryDirectory(prefix="servoscope-fleet-")
        self.registry_name = f"servoscope-fleet-{uuid.uuid4().hex[:12]}"  # this fleet's own: fleets come and go
        self.registry: ray.actor.ActorHandle | None = None

    def start(self) -> None:
        try:
            self._start_ray()
            self.registry = registry_actor(self.registry_name, NAMESPACE)
            serve.start(proxy_location="Disabled")
            deployment = serve.deployment(**replica_options(self.plan, self.options, self.settings))(Replica)
            replica_settings = sized_to_cores(self.settings, self.plan.cpu_cores).model_dump(mode="json")
            registry = (self.registry_name, NAMESPACE)
            args = (replica_settings, registry, self.options.signal_window_s, self.options.drain_s)
            serve.run(deployment.bind(*args), name=APP, route_prefix=None)
            self.balancer = Balancer(
                Path(self._workdir.name),
                self.options.host,
                self.options.port,
                self.plan.replicas.max * 2,
                self.settings.shutdown_timeout_s,
            )
            self.sync()
            self._syncer = threading.Thread(target=self._sync_loop, name="servoscope-fleet-sync", daemon=True)
            self._syncer.start()
        except BaseException:
            self.stop()
            raise

    def _start_ray(self) -> None:
        if ray.is_initialized():
            return
        if self.options.address is not None:
            ray.init(address=self.options.address, namespace=NAMESPACE, log_to_driver=False)
            return
        if not loopback_ready():
            raise FleetError(
                f"a local Ray cluster binds to loopback only with {LOOPBACK_ENV}=0 set before Ray is imported"
            )
        ray.init(
            include_dashboard=False,
            num_cpus=self.options.num_cpus,
            namespace=NAMESPACE,
            log_to_driver=False,
        )
        self._started_ray = True

    def members(self) -> list[Member]:
        """The replicas heard from within three health-check periods."""
        if self.registry is None:
            return []
        return ray.get(self.registry.live.remote(3 * self.options.health_check_period_s), timeout=10)

    def sync(self) -> list[Member]:
        members = self.members()
        if self.balancer is not None:
            self.balancer.sync(m.address for m in members)
        return members

    def _sync_loop(self) -> None:
        while not self._stopping.wait(self.options.sync_period_s):
            try:
                self.sync()
            except Exception:
                log.exception("could not bring the balancer up to date with the replicas")

    def running_replicas(self) -> int:
        """The replicas Ray Serve runs now (running, not starting or stopping)."""
        deployment = serve.status().applications[APP].deployments["Replica"]
        return sum(count for state, count in deployment.replica_states.items() if state == "RUNNING")

    def stop(self) -> None:
        self._stopping.set()
        if self._syncer is not None:
            self._syncer.join()
        if self.balancer is not None:  # first: no new requests
            self.balancer.stop()
        if ray.is_initialized():
            if self._started_ray:
                serve.shutdown()
            else:  # a cluster we joined: other applications may run on it
                serve.delete(APP)
            if self.registry is not None:
                ray.kill(self.registry)
        if self._started_ray:
            ray.shutdown()
        self._workdir.cleanup()
