"""Ray Serve serving the model with servoscope's code, batched by ``@serve.batch``.

The layout's ``instances`` replicas (``num_replicas``), each reserving ``threads`` CPUs
(``ray_actor_options``) and running a session with as many intra-op threads; the node offers
instances × threads CPUs, so every replica is placed. Each replica batches its own requests with
``@serve.batch`` (at most :data:`MAX_BATCH_SIZE`, waiting at most :data:`MAX_QUEUE_DELAY_S`).
``max_ongoing_requests`` (per replica) is raised above the batch size: at its default (5) the
proxy never lets more than 5 requests reach a replica, so no batch could grow past 5. Ray is
started bound to 127.0.0.1, without its dashboard, and Serve's HTTP proxy listens on 127.0.0.1
only. Requests: ``POST /classify`` with the raw JPEG bytes.

Loopback only takes two more steps. Ray turns a node address of 127.0.0.1 into the machine's
routable address unless ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` (a local-only node; the runner
sets it), and every Serve replica opens an inter-deployment gRPC server on ``[::]:0``, hardcoded:
:func:`loopback_grpc`, run in each Ray worker as it starts, rebinds it to 127.0.0.1.

    python bench/peers/ray_server.py --host 127.0.0.1 --port 8011 --model SPEC_JSON
"""

from __future__ import annotations

import asyncio
import signal
import threading

import ray
from classifier import MAX_BATCH_SIZE, MAX_QUEUE_DELAY_S, BatchClassifier, ModelSpec, server_args
from ray import serve
from starlette.requests import Request
from starlette.responses import JSONResponse

ROUTE = "/classify"
MAX_ONGOING_REQUESTS = 4 * MAX_BATCH_SIZE
OBJECT_STORE_BYTES = 128 * 1024 * 1024  # requests are small; Ray's default takes 30% of RAM


@serve.deployment(max_ongoing_requests=MAX_ONGOING_REQUESTS)  # replicas and CPUs: see main()
class Classifier:
    def __init__(self, spec_json: str) -> None:
        self.classifier = BatchClassifier(ModelSpec.from_json(spec_json))

    @serve.batch(max_batch_size=MAX_BATCH_SIZE, batch_wait_timeout_s=MAX_QUEUE_DELAY_S)
    async def classify(self, images: list[bytes]) -> list[dict[str, object]]:
        tops = await asyncio.to_thread(self.classifier.classify, images)  # off the replica's event loop
        return [top.to_json() for top in tops]

    async def __call__(self, request: Request) -> JSONResponse:
        # A Response, not a dict: Serve streams a returned dict chunked, without Content-Length.
        return JSONResponse(await self.classify(await request.body()))


def loopback_grpc() -> None:
    """Ray worker setup hook: the replica's internal gRPC server listens on 127.0.0.1, not ``[::]``."""
    from ray.serve._private import replica

    bind = replica.add_port_to_grpc_server

    def loopback(server: object, address: str) -> int:
        return bind(server, address.replace("[::]:", "127.0.0.1:"))

    replica.add_port_to_grpc_server = loopback


def main() -> None:
    args, spec = server_args(__doc__)
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda signum, frame: stopping.set())
    signal.signal(signal.SIGINT, lambda signum, frame: stopping.set())
    ray.init(
        _node_ip_address=args.host,
        num_cpus=spec.instances * spec.threads,
        include_dashboard=False,
        object_store_memory=OBJECT_STORE_BYTES,
        log_to_driver=False,
        runtime_env={"worker_process_setup_hook": loopback_grpc},
    )
    try:
        serve.start(http_options={"host": args.host, "port": args.port})
        deployment = Classifier.options(num_replicas=spec.instances, ray_actor_options={"num_cpus": spec.threads})
        serve.run(deployment.bind(args.model), route_prefix=ROUTE)
        stopping.wait()
    finally:
        serve.shutdown()
        ray.shutdown()


if __name__ == "__main__":
    main()
