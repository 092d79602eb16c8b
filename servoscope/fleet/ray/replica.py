"""One Ray Serve replica: servoscope's own server (pipeline, batching, admission, telemetry and its
HTTP front, uvicorn on its own event loop thread) on a free port of the replica's node.

Ray Serve calls ``check_health`` (the server still runs; the replica reports to the registry),
``record_autoscaling_stats`` (the signal of ``scaling.py``, read on the server's own loop) and
``__del__`` when it removes the replica: readiness turns false, the balancer's health check takes
the replica out, in-flight requests finish, then the server stops.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import socket
import threading
import time
from collections.abc import Coroutine
from typing import Any, TypeVar

import ray
import uvloop
from ray import serve

from servoscope.clock import SYSTEM_CLOCK
from servoscope.fleet.k8s.queue_wait import WAIT_STAGES
from servoscope.fleet.ray.registry import Member, registry_actor
from servoscope.fleet.ray.scaling import BUSY_RATIO, SERVED, WAIT_S_SUM
from servoscope.server.app import create_app, load_pipeline, make_telemetry
from servoscope.server.run import DrainingServer, uvicorn_config
from servoscope.settings import Settings
from servoscope.stages import TOTAL
from servoscope.telemetry.recorder import Telemetry

log = logging.getLogger(__name__)
T = TypeVar("T")
START_DEADLINE_S = 120.0


def bind_inter_deployment_grpc_to(host: str) -> bool:
    """Ray Serve 2.60 opens each replica's inter-deployment gRPC server on ``[::]:0``, hard-coded in
    ``ray/serve/_private/replica.py`` (``_on_initialized``, after the deployment's constructor): on a
    loopback node, one listener on every interface. Bind it to the node's address instead. False
    (and nothing changed) when Ray's module no longer calls the helper this replaces."""
    from ray.serve._private import replica as ray_replica

    original = getattr(ray_replica, "add_port_to_grpc_server", None)
    if original is None:
        return False

    def on_node(server: Any, address: str) -> int:
        return int(original(server, f"{host}:0" if address == "[::]:0" else address))

    ray_replica.add_port_to_grpc_server = on_node
    return True


class Replica:
    def __init__(
        self, settings: dict[str, Any], registry: tuple[str, str], signal_window_s: float, drain_s: float
    ) -> None:
        host = ray.util.get_node_ip_address()
        if not bind_inter_deployment_grpc_to(host):
            log.warning("Ray Serve's inter-deployment gRPC server listens on every interface (no hook to bind it)")
        self.settings = Settings(**{**settings, "host": host, "port": 0, "grpc_port": 0})
        self.signal_window_s = signal_window_s
        self.drain_s = drain_s
        self.telemetry = make_telemetry(self.settings, SYSTEM_CLOCK, os.environ)
        pipeline = load_pipeline(self.settings)
        self.app = create_app(self.settings, pipeline, telemetry=self.telemetry)
        self.state = self.app.state.servoscope
        self.server = DrainingServer(uvicorn_config(self.app, self.settings), self.state)
        sock = socket.create_server((host, 0))
        replica = serve.get_replica_context().replica_id.unique_id
        self.member = Member(replica, f"{host}:{sock.getsockname()[1]}", os.getpid())
        self.loop: asyncio.AbstractEventLoop | None = None
        self.thread = threading.Thread(target=self._serve, args=(sock,), name="servoscope-http", daemon=True)
        self.thread.start()
        self.registry = registry_actor(*registry)
        self._wait_started()

    def _serve(self, sock: socket.socket) -> None:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            self.loop = runner.get_loop()
            runner.run(self.server.serve(sockets=[sock]))

    def _wait_started(self) -> None:
        pause, deadline = threading.Event(), time.monotonic() + START_DEADLINE_S
        while not self.server.started and self.thread.is_alive() and time.monotonic() < deadline:
            pause.wait(0.05)  # uvicorn sets a flag, not an event: this start-up wait polls it
        if not self.server.started or self.state.pipeline is None:
            raise RuntimeError(f"servoscope's server did not start on {self.member.address}")

    def address(self) -> str:
        return self.member.address

    async def check_health(self) -> None:
        if not self.thread.is_alive() or self.server.should_exit:
            raise RuntimeError(f"servoscope's server on {self.member.address} has stopped")
        self.registry.heartbeat.remote(self.member)

    async def record_autoscaling_stats(self) -> dict[str, float]:
        return await self._on_server_loop(self._signal())

    async def _signal(self) -> dict[str, float]:
        telemetry, pipeline = self.telemetry, self.state.pipeline
        if telemetry is None or pipeline is None:
            return {}
        return replica_signal(
            telemetry, {name: len(s.batcher.instances) for name, s in pipeline.services.items()}, self.signal_window_s
        )

    async def __del__(self) -> None:
        self.registry.leave.remote(self.member.replica)
        self.state.draining = True  # readiness 503: the balancer's health check takes the replica out
        await asyncio.sleep(self.drain_s)
        self.server.should_exit = True  # uvicorn lets in-flight requests finish (timeout_graceful_shutdown)
        await asyncio.to_thread(self.thread.join, self.settings.shutdown_timeout_s + self.drain_s)

    def _on_server_loop(self, coro: Coroutine[Any, Any, T]) -> asyncio.Future[T]:
        if self.loop is None:
            raise RuntimeError("servoscope's server loop is not running")
        future: concurrent.futures.Future[T] = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return asyncio.wrap_future(future)


def replica_signal(telemetry: Telemetry, instances: dict[str, int], window_s: float) -> dict[str, float]:
    """The scaling signal over the last ``window_s``: seconds waited and requests served (summed over
    models), and the mean busy share of the model instances."""
    waited = served = 0.0
    busy: list[float] = []
    for model, count in instances.items():
        for stage in WAIT_STAGES:
            sketch = telemetry.sketches.merged((model, stage), window_s)
            waited += sketch.sum if sketch is not None else 0.0
        total = telemetry.sketches.merged((model, TOTAL), window_s)
        served += total.count if total is not None else 0.0
        busy.extend(telemetry.busy_ratio(model, i, window_s) for i in range(count))
    return {WAIT_S_SUM: waited, SERVED: served, BUSY_RATIO: sum(busy) / len(busy) if busy else 0.0}
