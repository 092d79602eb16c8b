"""Run the service on uvicorn, with a drain on SIGTERM: readiness false first, open requests answered, then exit.

The HTTP protocol is uvicorn's httptools one with the bounds it lacks (see :class:`BoundedHttpToolsProtocol`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import threading
import types
from collections.abc import Iterator

import uvicorn
from starlette.applications import Starlette
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from servoscope.server import delivery
from servoscope.server.door import Door, LastRefusal, early_retry_hold_s
from servoscope.server.http import raw_error
from servoscope.server.state import ServerState
from servoscope.settings import Settings

log = logging.getLogger(__name__)


class DrainingServer(uvicorn.Server):
    """uvicorn's server, but the app hears of the shutdown first, so /v2/health/ready turns 503
    and requests arriving on open connections are refused with 503 while the open ones finish."""

    def __init__(self, config: uvicorn.Config, state: ServerState) -> None:
        super().__init__(config)
        self.state = state

    def handle_exit(self, sig: int, frame: types.FrameType | None) -> None:
        if not self.state.draining:
            log.info("signal %d: draining (readiness false, finishing open requests)", sig)
        self.state.draining = True
        super().handle_exit(sig, frame)

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        """uvicorn's, without re-raising the signal once the server has stopped: uvicorn does that so
        the process dies of it (exit status -15), but a completed drain is a clean exit, status 0."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        original = {sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, handler in original.items():
                signal.signal(sig, handler)


MAX_HEAD_BYTES = 64 * 1024  # the request line and headers together
MAX_HEADERS = 100
LINGER_S = 2.0  # how long the rest of an unread body is discarded after an early response …
LINGER_MAX_BYTES = 64 * 1024 * 1024  # … and how much of it at most
HEAD_TOO_LARGE = f"request line and headers above {MAX_HEAD_BYTES} bytes"


# The coupling to uvicorn's private httptools protocol (pyproject.toml pins uvicorn to the versions
# tested): the hooks overridden below, the protocol's own methods and attributes they call, and the
# attributes of its request cycle they read. tests/test_uvicorn_hooks.py checks each against the
# installed uvicorn and names the one that is gone.
UVICORN_HOOKS = (
    "connection_made",
    "connection_lost",
    "data_received",
    "on_message_begin",
    "on_url",
    "on_header",
    "on_headers_complete",
    "on_body",
    "on_message_complete",
    "on_response_complete",
    "send_400_response",
    "shutdown",
)
UVICORN_CALLS = ("_unset_keepalive_if_required", "timeout_keep_alive_handler")
UVICORN_STATE = (
    "loop",
    "parser",
    "timeout_keep_alive",
    "timeout_keep_alive_task",
    "cycle",
    "url",
    "headers",
    "scope",
    "expect_100_continue",
)
UVICORN_CYCLE_STATE = ("transport", "more_body", "response_complete")


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, bounded where it is not (read from uvicorn 0.55's source):

    - llhttp puts no limit on the request line and headers, and ``h11_max_incomplete_event_size``
      applies only to the h11 protocol: here a head over ``MAX_HEAD_BYTES``, or with more than
      ``MAX_HEADERS`` headers, is answered 431 and the connection closed.
    - No timer runs until a first response (the keep-alive timer runs only between requests), so a
      connection that sends nothing, or its headers a byte at a time, was held forever: the head
      must now arrive within ``head_timeout_s`` (else 408, or a silent close if nothing came).
    - After a response that did not wait for the whole body (413, 408, 415 …), uvicorn discards
      the rest of the body for as long as it keeps coming: now for ``LINGER_S`` and
      ``LINGER_MAX_BYTES`` at most, then the connection is closed (a body that ends within them
      leaves the connection usable).
    - And where that response also closes the connection (the client sent ``Connection: close``, as
      Python's ``urllib`` always does), uvicorn closed the socket at once, with the body still
      arriving: the kernel answers unread bytes with a reset, and a client that writes its whole body
      before it reads saw ``ConnectionResetError`` instead of its 413. Now the close waits, as nginx's
      ``lingering_close`` does, until the body has ended or the linger's bounds are reached
      (:class:`CycleTransport`).

    And it has a door (``server/door.py``): once a request's head is parsed, an inference request the
    model is certain to refuse is answered 429 there, its body discarded as it arrives, and no ASGI
    task is started for it. A request that waits for ``100 Continue`` is refused before its body is
    sent, and the connection closed (the body it announced never comes). The refusal of a request
    sent again before its ``Retry-After`` had passed is held until then (one second at most); another
    request on the connection, or the server's shutdown, sends it at once, so answers still leave in
    order and none is lost.
    """

    head_timeout_s: float = 10.0
    door: Door | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._probe = delivery.Probe(transport)
        self._head_bytes = 0  # of the request line and headers parsed so far
        self._unparsed_bytes = 0  # read while the head was incomplete
        self._header_count = 0
        self._in_head = True
        self._head_started = False
        self._refusal: tuple[int, str] | None = None
        self._refused_at_door = False  # the current request was answered at the door: drop its body
        self._close_after_body = False  # close the connection once the request's body has come
        self._discarded_bytes = 0  # of bodies answered before they arrived
        self._head_timer: asyncio.TimerHandle | None = self.loop.call_later(self.head_timeout_s, self._head_timed_out)
        self._linger: asyncio.TimerHandle | None = None
        self._last_refusal: LastRefusal | None = None  # the door's last refusal on this connection
        self._held_answer: bytes | None = None  # a refusal of an early retry, not yet written
        self._held: asyncio.TimerHandle | None = None  # … and when it will be

    def connection_lost(self, exc: Exception | None) -> None:
        for timer in (self._head_timer, self._linger, self._held):
            if timer is not None:
                timer.cancel()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        was_in_head = self._in_head
        super().data_received(data)
        if was_in_head and self._in_head and not self.transport.is_closing():
            # A head still incomplete after a whole read: all of it is buffered, by the parser or here.
            self._unparsed_bytes += len(data)
            if self._unparsed_bytes > MAX_HEAD_BYTES:
                self._send_and_close(431, HEAD_TOO_LARGE)

    def on_message_begin(self) -> None:
        self._release_held()  # a request follows the held refusal: answers leave in order
        super().on_message_begin()
        delivery.attach(self.scope, self._probe)
        self._head_bytes = self._unparsed_bytes = self._header_count = 0
        self._in_head = self._head_started = True
        self._refused_at_door = False
        if self._head_timer is None:
            self._head_timer = self.loop.call_later(self.head_timeout_s, self._head_timed_out)

    def on_url(self, url: bytes) -> None:
        self._count_in_callback(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_count += 1
        if self._header_count > MAX_HEADERS:
            self._refuse(431, f"more than {MAX_HEADERS} request headers")
        self._count_in_callback(len(name) + len(value))
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._in_head = False
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        if self.door is not None and self._answered_at_door():
            return
        before = self.cycle
        super().on_headers_complete()
        if self.cycle is not before:  # a new request's cycle (not yet running): its closes linger
            self.cycle.transport = CycleTransport(self, self.cycle)  # type: ignore[union-attr,assignment]

    def _answered_at_door(self) -> bool:
        idle = self.cycle is None or self.cycle.response_complete  # else answers must wait their turn
        # A client that waits for 100 Continue will not send the body it announced: the refusal closes
        # the connection (a body sent anyway is discarded first), the upload is never made.
        keep_alive = (
            self.parser.get_http_version() != "1.0" and self.parser.should_keep_alive() and not self.expect_100_continue
        )
        refused = self.door.arrived(self.parser.get_method(), self.url, self.headers, idle, keep_alive)  # type: ignore[union-attr]
        if refused is None:
            return False
        self._refused_at_door = True
        self._close_after_body = not keep_alive
        now_s = self.loop.time()
        hold_s = early_retry_hold_s(self._last_refusal, refused.signature, now_s)
        self._last_refusal = LastRefusal(refused.signature, now_s + hold_s + refused.retry_after_s)
        if hold_s > 0:
            self.door.early_retry(refused.model)  # type: ignore[union-attr]
            self._held_answer = refused.answer
            self._held = self.loop.call_later(hold_s, self._release_held)
        else:
            self.transport.write(refused.answer)
        self._start_linger()  # the body is discarded as it comes
        return True

    def _release_held(self) -> None:
        """Write the held refusal, if any: its wait is over, a request follows it, or the server stops."""
        if self._held is not None:
            self._held.cancel()
            self._held = None
        answer, self._held_answer = self._held_answer, None
        if answer is None or self.transport.is_closing():
            return
        self.transport.write(answer)
        if self._close_after_body and not self._refused_at_door:  # its body has ended already
            self._close_after_body = False
            self.transport.close()

    def shutdown(self) -> None:
        self._release_held()
        super().shutdown()

    def close_after_body(self, cycle: object) -> None:
        """Close the connection for ``cycle``: now if its request's body has all arrived, else once it
        has, or once the linger's bounds are reached — closing with unread bytes sends a reset."""
        if getattr(cycle, "more_body", False) and not self.transport.is_closing():
            self._close_after_body = True
            self._start_linger()
        else:
            self.transport.close()

    def on_body(self, body: bytes) -> None:
        if self._refused_at_door or (self.cycle is not None and self.cycle.response_complete):
            self._discarded_bytes += len(body)  # answered already: the body is dropped as it comes
            if self._discarded_bytes > LINGER_MAX_BYTES:
                self.transport.close()
        if not self._refused_at_door:
            super().on_body(body)

    def on_message_complete(self) -> None:
        if self._refused_at_door:  # a refused request's body has ended: ready for the next request
            self._refused_at_door = False
            if not self._close_after_body and not self.transport.is_closing():  # idle, as after any answer
                self._unset_keepalive_if_required()
                self.timeout_keep_alive_task = self.loop.call_later(
                    self.timeout_keep_alive, self.timeout_keep_alive_handler
                )
        else:
            super().on_message_complete()
        if self._linger is not None:  # the body ended while being discarded: the connection is clean
            self._linger.cancel()
            self._linger = None
        self._discarded_bytes = 0
        if self._close_after_body and self._held_answer is None:  # closed only now: unread bytes would
            self._close_after_body = False  # have made the close a reset (a held refusal closes once written)
            self.transport.close()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        cycle = self.cycle
        if cycle is not None and cycle.response_complete and cycle.more_body and not self.transport.is_closing():
            self._start_linger()

    def _start_linger(self) -> None:
        if self._linger is None:
            self._linger = self.loop.call_later(LINGER_S, self.transport.close)

    def send_400_response(self, msg: str) -> None:
        """uvicorn's answer to a parser error, which is how a refusal raised in a callback surfaces."""
        status, message = self._refusal or (400, "invalid HTTP request")
        self._send_and_close(status, message)

    def _count_in_callback(self, size: int) -> None:
        self._head_bytes += size
        if self._head_bytes > MAX_HEAD_BYTES:
            self._refuse(431, HEAD_TOO_LARGE)

    def _refuse(self, status: int, message: str) -> None:
        self._refusal = (status, message)
        raise ValueError(message)  # raised in a parser callback: the parser stops, uvicorn calls send_400_response

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self.transport.is_closing():
            return
        if self._head_started:
            self._send_and_close(408, f"the request headers did not arrive within {self.head_timeout_s:g} s")
        else:
            self.transport.close()  # a connection that never sent a byte

    def _send_and_close(self, status: int, message: str) -> None:
        if self.transport.is_closing():
            return
        self.transport.write(raw_error(status, message))
        self.transport.close()


class CycleTransport:
    """The connection as one request's cycle (uvicorn's ``RequestResponseCycle``) sees it: what it
    writes goes straight through; a close it asks for lingers (see :meth:`BoundedHttpToolsProtocol.close_after_body`).
    These are the only transport methods the cycle calls (uvicorn 0.55's ``httptools_impl``)."""

    __slots__ = ("_cycle", "_protocol")

    def __init__(self, protocol: BoundedHttpToolsProtocol, cycle: object) -> None:
        self._protocol = protocol
        self._cycle = cycle

    def write(self, data: bytes) -> None:
        self._protocol.transport.write(data)

    def is_closing(self) -> bool:
        return self._protocol.transport.is_closing()

    def close(self) -> None:
        self._protocol.close_after_body(self._cycle)


def bounded_protocol(head_timeout_s: float, door: Door | None = None) -> type[BoundedHttpToolsProtocol]:
    return type(
        "BoundedHttpToolsProtocol", (BoundedHttpToolsProtocol,), {"head_timeout_s": head_timeout_s, "door": door}
    )


def uvicorn_config(app: Starlette, settings: Settings) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        loop="uvloop",
        http=bounded_protocol(settings.body_timeout_s, Door(app.state.servoscope)),
        lifespan="on",
        log_level=settings.log_level,
        access_log=False,
        timeout_graceful_shutdown=int(settings.shutdown_timeout_s),
        limit_concurrency=None,
        server_header=False,
    )


def serve(app: Starlette, settings: Settings) -> None:
    server = DrainingServer(uvicorn_config(app, settings), app.state.servoscope)
    server.run()
