"""Load generation against a local service: a lean HTTP/1.1 client, closed- and open-loop
schedules, their statistics, and generated image sets. Loopback only."""

from servoscope.loadgen.client import (
    ClientError,
    Connection,
    EncodedRequest,
    Endpoint,
    NotLoopback,
    ProtocolError,
    Response,
    check_loopback,
    encode_request,
    run,
)
from servoscope.loadgen.schedule import (
    RunResult,
    Sample,
    closed_loop,
    constant_arrivals,
    open_loop,
    percentile,
    poisson_arrivals,
    sequential,
)
from servoscope.loadgen.stats import Summary, summarize

__all__ = [
    "ClientError",
    "Connection",
    "EncodedRequest",
    "Endpoint",
    "NotLoopback",
    "ProtocolError",
    "Response",
    "RunResult",
    "Sample",
    "Summary",
    "check_loopback",
    "closed_loop",
    "constant_arrivals",
    "encode_request",
    "open_loop",
    "percentile",
    "poisson_arrivals",
    "run",
    "sequential",
    "summarize",
]
