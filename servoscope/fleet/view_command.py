"""``servoscope fleet view``: the fleet view (:mod:`servoscope.fleet.view`), printed once, or served.

Served (``--serve``), bound to 127.0.0.1 unless ``--host`` says otherwise, it answers:

- ``GET /v1/stats``: the fleet's stats document, merged from the replicas' sketches — the same
  document a replica answers, so ``servoscope snapshot --url``, the doctor and the load generator
  read the fleet as they read one replica;
- ``GET /v1/fleet``: the fleet snapshot, as ``servoscope snapshot --replica`` writes it: the merged
  stats, each replica's own document, and the gray-replica flags on the last minute;
- ``GET /v1/fleet/outliers``: only the flags (``{"outliers": [...]}``, each naming its replica);
- ``GET /v2/health/ready``: 200 once it serves.

Each answer reads every replica afresh, at most once per ``--refresh-s`` (answers within it share
one read: a busy dashboard does not multiply the replicas' load). A replica that cannot be read, or
documents that cannot be merged, answer 502 naming the replica.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from servoscope.doctor.evidence import EvidenceError
from servoscope.fleet.view import fleet_snapshot

HOST = "127.0.0.1"
PORT = 8090
REFRESH_S = 1.0
MAX_REFRESH_S = 3600.0


class FleetView:
    """The fleet snapshot of ``urls``, read again once it is ``refresh_s`` old."""

    def __init__(
        self,
        urls: Sequence[str],
        model: str | None = None,
        refresh_s: float = REFRESH_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not 0 <= refresh_s <= MAX_REFRESH_S:
            raise EvidenceError(f"refresh every 0 to {MAX_REFRESH_S:g} s, got {refresh_s:g}")
        self.urls, self.model, self.refresh_s, self.clock = list(urls), model, refresh_s, clock
        self._lock = threading.Lock()
        self._read_at = -math.inf
        self._snapshot: dict[str, Any] | None = None

    def snapshot(self) -> dict[str, Any]:
        """Raises LiveError (an OSError) or EvidenceError, naming the replica at fault."""
        with self._lock:
            if self._snapshot is None or self.clock() - self._read_at >= self.refresh_s:
                self._snapshot = None
                self._snapshot = fleet_snapshot(self.urls, self.model)
                self._read_at = self.clock()
            return self._snapshot


def app(view: FleetView) -> Starlette:
    def answer(pick: Callable[[dict[str, Any]], Any]) -> Callable[[Request], Response]:
        def endpoint(request: Request) -> Response:  # plain def: Starlette runs it in its thread pool
            try:
                return JSONResponse(pick(view.snapshot()))
            except (OSError, EvidenceError) as exc:
                return JSONResponse({"error": str(exc)}, status_code=502)

        return endpoint

    return Starlette(
        routes=[
            Route("/v1/stats", answer(lambda snap: snap["stats"])),
            Route("/v1/fleet", answer(lambda snap: snap)),
            Route("/v1/fleet/outliers", answer(lambda snap: {"outliers": snap["outliers"]})),
            Route("/v2/health/ready", lambda request: Response(status_code=200)),
        ]
    )


def add_parser(subparsers: Any) -> None:
    fleet = subparsers.add_parser("fleet", help="a fleet of replicas seen as one")
    views = fleet.add_subparsers(dest="fleet_command", required=True)
    view = views.add_parser(
        "view", help="the replicas' /v1/stats merged from their sketches, gray replicas flagged: printed, or served"
    )
    view.add_argument("--replica", action="append", metavar="URL", required=True, help="one replica (repeat)")
    view.add_argument("--model", help="keep only this model (default: every model)")
    view.add_argument("--serve", action="store_true", help="serve /v1/stats, /v1/fleet, /v1/fleet/outliers")
    view.add_argument("--host", default=HOST, help=f"with --serve: the address to bind (default {HOST})")
    view.add_argument("--port", type=int, default=PORT, help=f"with --serve: the port (default {PORT})")
    view.add_argument(
        "--refresh-s",
        type=float,
        default=REFRESH_S,
        help=f"with --serve: read the replicas at most this often (default {REFRESH_S:g} s)",
    )
    view.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        view = FleetView(args.replica, args.model, args.refresh_s)
        if not args.serve:
            print(json.dumps(view.snapshot(), indent=1))
            return 0
    except (OSError, EvidenceError) as exc:
        print(f"servoscope fleet view: {exc}", file=sys.stderr)
        return 2 if isinstance(exc, EvidenceError) else 1
    if not 0 < args.port < 65536:
        print(f"servoscope fleet view: --port must be 1 to 65535, got {args.port}", file=sys.stderr)
        return 2
    print(f"servoscope fleet view: {len(view.urls)} replicas at http://{args.host}:{args.port}", file=sys.stderr)
    uvicorn.run(app(view), host=args.host, port=args.port, log_level="warning")
    return 0
