"""Delivery: how long the client took to take its answer, from the last byte handed to the
connection until the client's TCP stack had acknowledged every byte.

The server's stages end when the answer is handed to the kernel (``respond``); a client that
reads slowly, or a slow network, shows only after that, in bytes that stay in the socket's send
queue. No kernel event says "all acknowledged", so the queue is read (``SIOCOUTQ``) once at
hand-off — empty for nearly every answer — and only a queue that is not empty is read again, at
growing intervals, for ``LIMIT_S`` at most (a longer delivery is recorded as ``LIMIT_S``).
"""

from __future__ import annotations

import asyncio
import fcntl
import struct
import termios
from typing import Any

from servoscope.clock import Clock

SIOCOUTQ = termios.TIOCOUTQ  # on a TCP socket: bytes not yet acknowledged by the peer
FIRST_INTERVAL_S = 0.001
MAX_INTERVAL_S = 0.05
LIMIT_S = 5.0
SCOPE_KEY = "servoscope.delivery"


class Probe:
    """The queue of one connection: its transport's buffer and its socket's send queue. One probe
    serves every request on the connection; its socket is looked up once, when first needed."""

    def __init__(self, transport: asyncio.Transport) -> None:
        self.transport = transport
        self._fd: int | None = None

    def unsent_bytes(self) -> int:
        """Bytes of answers the client has not acknowledged; 0 once the connection is gone."""
        if self.transport.is_closing():
            return 0
        if self._fd is None:
            sock = self.transport.get_extra_info("socket")
            if sock is None:
                return 0
            self._fd = sock.fileno()
        try:
            queued = struct.unpack("i", fcntl.ioctl(self._fd, SIOCOUTQ, b"\0\0\0\0"))[0]
        except OSError:  # closed meanwhile, or not a TCP socket
            return 0
        return self.transport.get_write_buffer_size() + queued

    async def delivered(self, clock: Clock, since: float) -> float:
        """Seconds from ``since`` until every byte was acknowledged (0.0 when it already was)."""
        if self.unsent_bytes() == 0:
            return 0.0
        interval = FIRST_INTERVAL_S
        while self.unsent_bytes() > 0:
            waited = clock.now() - since
            if waited >= LIMIT_S:
                return LIMIT_S
            await asyncio.sleep(min(interval, LIMIT_S - waited))
            interval = min(2 * interval, MAX_INTERVAL_S)
        return max(0.0, clock.now() - since)


def attach(scope: dict[str, Any], probe: Probe) -> None:
    """Give the request's ASGI scope the probe of its connection (the HTTP protocol calls this)."""
    scope.setdefault("extensions", {})[SCOPE_KEY] = probe


def probe_of(scope: dict[str, Any]) -> Probe | None:
    return (scope.get("extensions") or {}).get(SCOPE_KEY)
