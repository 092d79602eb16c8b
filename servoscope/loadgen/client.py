"""A lean HTTP/1.1 keep-alive client over raw asyncio streams, for loopback load generation.

It does only what a load generator needs, cheaply: write a request whose bytes were built
once, read the status line, the headers (``Server-Timing`` kept) and a ``Content-Length``
body. Client and server share the machine's cores, so every microsecond here is one the
server does not get. Only loopback hosts are accepted: this tool loads the local service.
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T")

MAX_HEAD_BYTES = 64 * 1024
MAX_BODY_BYTES = 64 * 1024 * 1024
# A body this large is sent only once the server has asked for it (``Expect: 100-continue``), as curl
# does for large uploads: a refusal then costs no upload. Without an answer within the wait, the body
# is sent anyway (curl's ``--expect100-timeout`` default, 1 s).
EXPECT_CONTINUE_BYTES = 1024 * 1024
EXPECT_CONTINUE_WAIT_S = 1.0


class ClientError(Exception):
    """Base of the client's errors.

    ClientError
    ├── NotLoopback      the host is not 127.0.0.0/8, ::1 or localhost
    └── ProtocolError    the server's reply is not HTTP/1.1 this client can read
    """


class NotLoopback(ClientError, ValueError):
    pass


class ProtocolError(ClientError):
    pass


def check_loopback(host: str, allowed: tuple[str, ...] = ()) -> str:
    """``host`` if it is a loopback address, ``localhost`` or one of ``allowed`` (hosts the user
    named explicitly); otherwise :class:`NotLoopback`."""
    if host.lower() == "localhost" or (host and host in allowed):
        return host
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        raise NotLoopback(f"only loopback hosts are allowed (127.0.0.0/8, ::1, localhost), got {host!r}") from None
    if not address.is_loopback:
        raise NotLoopback(
            f"only loopback hosts are allowed (127.0.0.0/8, ::1, localhost), got {host!r}; "
            "servoscope load --allow-host HOST allows a host of your own"
        )
    return host


@dataclass(frozen=True, slots=True)
class Endpoint:
    host: str
    port: int
    allowed_hosts: tuple[str, ...] = ()  # non-loopback hosts the user allowed explicitly (--allow-host)

    def __post_init__(self) -> None:
        check_loopback(self.host, self.allowed_hosts)
        if not 0 < self.port < 65536:
            raise ValueError(f"port must be in 1..65535, got {self.port}")


@dataclass(frozen=True, slots=True)
class EncodedRequest:
    """A request's bytes, built once and sent many times: the head, then the body as is — after the
    server's ``100 Continue`` when the head carries ``Expect: 100-continue``."""

    head: bytes
    body: bytes
    expect_continue: bool = False


def encode_request(
    endpoint: Endpoint,
    method: str,
    path: str,
    body: bytes = b"",
    headers: dict[str, str] | None = None,
    expect_continue_bytes: int | None = EXPECT_CONTINUE_BYTES,
) -> EncodedRequest:
    """The request's bytes; a body of ``expect_continue_bytes`` or more waits for the server's
    ``100 Continue`` (None: never)."""
    if not path.startswith("/"):
        raise ValueError(f"path must start with '/', got {path!r}")
    lines = [f"{method} {path} HTTP/1.1", f"Host: {endpoint.host}:{endpoint.port}", f"Content-Length: {len(body)}"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    expect = expect_continue_bytes is not None and len(body) >= expect_continue_bytes
    if expect:
        lines.append("Expect: 100-continue")
    return EncodedRequest(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"), body, expect)


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    headers: dict[str, str]  # names lower-cased
    body: bytes

    @property
    def server_timing(self) -> str:
        return self.headers.get("server-timing", "")


def parse_head(head: bytes) -> tuple[int, dict[str, str]]:
    """Status code and lower-cased headers of an HTTP/1.1 response head (ending in CRLF CRLF)."""
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
        raise ProtocolError(f"not an HTTP/1.x status line: {lines[0][:80]!r}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep:
            raise ProtocolError(f"malformed header line: {line[:80]!r}")
        headers[name.strip().lower()] = value.strip()
    return int(parts[1]), headers


class Connection:
    """One keep-alive connection; one request at a time."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self.closed = False

    @classmethod
    async def open(cls, endpoint: Endpoint, timeout_s: float = 10.0) -> Connection:
        check_loopback(endpoint.host, endpoint.allowed_hosts)
        async with asyncio.timeout(timeout_s):
            reader, writer = await asyncio.open_connection(endpoint.host, endpoint.port, limit=MAX_HEAD_BYTES)
        return cls(reader, writer)

    async def send(self, request: EncodedRequest, timeout_s: float = 60.0) -> Response:
        """Send ``request`` and read the whole response; on any failure the connection is closed."""
        if self.closed:
            raise ProtocolError("the connection is closed")
        try:
            async with asyncio.timeout(timeout_s):
                return await self._exchange(request)
        except BaseException:
            self.close()
            raise

    async def _exchange(self, request: EncodedRequest) -> Response:
        self._writer.write(request.head)
        body_sent = not request.expect_continue
        if body_sent and request.body:
            self._writer.write(request.body)
        await self._writer.drain()
        head = None if body_sent else await self._final_before_continue()
        if head is None:
            if not body_sent:
                self._writer.write(request.body)
                await self._writer.drain()
                body_sent = True
            head = await self._read_head()
        status, headers = parse_head(head)
        body = await self._read_body(headers)
        if not body_sent or headers.get("connection", "").lower() == "close":
            self.close()  # a body announced and never sent leaves the connection unusable
        return Response(status, headers, body)

    async def _final_before_continue(self) -> bytes | None:
        """The head of a final answer the server sent instead of ``100 Continue``; None once it asked
        for the body, or when it said nothing within :data:`EXPECT_CONTINUE_WAIT_S`."""
        try:
            async with asyncio.timeout(EXPECT_CONTINUE_WAIT_S):
                head = await self._read_head()
        except TimeoutError:
            return None  # readuntil keeps a partial head buffered: it is read again after the body
        return None if parse_head(head)[0] == 100 else head

    async def _read_head(self) -> bytes:
        try:
            return await self._reader.readuntil(b"\r\n\r\n")
        except asyncio.LimitOverrunError:
            raise ProtocolError(f"response head exceeds {MAX_HEAD_BYTES} bytes") from None
        except asyncio.IncompleteReadError:
            raise ProtocolError("the server closed the connection before responding") from None

    async def _read_body(self, headers: dict[str, str]) -> bytes:
        if "transfer-encoding" in headers:
            raise ProtocolError(
                f"Transfer-Encoding {headers['transfer-encoding']!r} is not supported; need Content-Length"
            )
        raw = headers.get("content-length", "0")
        if not raw.isdigit() or int(raw) > MAX_BODY_BYTES:
            raise ProtocolError(f"bad or too large Content-Length: {raw!r}")
        size = int(raw)
        return await self._reader.readexactly(size) if size else b""

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._writer.close()


def run(main: Coroutine[Any, Any, T]) -> T:
    """Run ``main`` on uvloop when it is installed (less client CPU per request), else asyncio's loop."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    return uvloop.run(main)
