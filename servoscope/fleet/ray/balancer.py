"""HAProxy in front of the replicas (Debian's ``haproxy``): least connections, a health check on
readiness, and one retry on another replica for a request whose replica failed to answer it
(connection refused or reset, no response, or a 503 from a draining replica). Inference is
idempotent, so a retried request is answered exactly once. L7 retries need the whole request in
HAProxy's buffer: requests up to ``RETRY_MAX_BODY_BYTES`` are retried, larger ones are not.

The replicas come and go: the backend has ``slots`` server slots, filled and emptied through
HAProxy's runtime API on a unix socket (no admin port is opened) as :meth:`Balancer.sync` is told.
"""

from __future__ import annotations

import csv
import io
import shutil
import socket
import subprocess
import time
from collections.abc import Iterable
from pathlib import Path

BACKEND = "replicas"
RETRY_MAX_BODY_BYTES = 256 * 1024  # HAProxy's tune.bufsize: the largest request it can retry
CHECK_INTERVAL_MS = 500
START_DEADLINE_S = 10.0
STOP_DEADLINE_S = 10.0


class BalancerError(RuntimeError):
    """HAProxy is missing, did not start, or refused a runtime command."""


def config_text(host: str, port: int, socket_path: Path, slots: int, server_timeout_s: float) -> str:
    return f"""global
    maxconn 4096
    stats socket {socket_path} mode 600 level admin
    tune.bufsize {RETRY_MAX_BODY_BYTES}

defaults
    mode http
    timeout connect 1s
    timeout client 60s
    timeout http-request 10s
    timeout server {server_timeout_s:g}s
    option http-buffer-request
    retries 1
    option redispatch 1
    retry-on conn-failure empty-response junk-response response-timeout 503

frontend fleet
    bind {host}:{port}
    default_backend {BACKEND}

backend {BACKEND}
    balance leastconn
    option httpchk GET /v2/health/ready
    http-check expect status 200
    default-server inter {CHECK_INTERVAL_MS}ms fall 1 rise 1
    server-template r 1-{slots} 127.0.0.1:1 disabled check
"""


class Balancer:
    def __init__(self, workdir: Path, host: str, port: int, slots: int, server_timeout_s: float) -> None:
        binary = shutil.which("haproxy") or "/usr/sbin/haproxy"
        if not Path(binary).is_file():
            raise BalancerError("haproxy is not installed (Debian: apt-get install haproxy)")
        self.socket_path = workdir / "haproxy.sock"
        config = workdir / "haproxy.cfg"
        config.write_text(config_text(host, port, self.socket_path, slots, server_timeout_s))
        self.address = f"{host}:{port}"
        self.slots: dict[str, str | None] = {f"r{i}": None for i in range(1, slots + 1)}  # slot → host:port
        self.process = subprocess.Popen([binary, "-db", "-f", str(config)], stdin=subprocess.DEVNULL)
        self._wait_started()

    def _wait_started(self) -> None:
        deadline = time.monotonic() + START_DEADLINE_S
        while time.monotonic() < deadline and self.process.poll() is None:
            try:
                self.command("show info")
                return
            except OSError:
                time.sleep(0.05)  # the socket appears once HAProxy has parsed its config
        self.stop()
        raise BalancerError(f"haproxy did not start (exit status {self.process.returncode})")

    def command(self, line: str) -> str:
        """One runtime API command; its answer (an error answer raises)."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            conn.settimeout(5.0)
            conn.connect(str(self.socket_path))
            conn.sendall(line.encode() + b"\n")
            answer = b"".join(iter(lambda: conn.recv(65536), b"")).decode()
        refused = ("No such", "Unknown command", "Require", "failed", "invalid")
        if not line.startswith("show ") and any(word in answer for word in refused):
            raise BalancerError(f"haproxy refused {line!r}: {answer.strip()}")
        return answer

    def sync(self, addresses: Iterable[str]) -> None:
        """Serve exactly ``addresses`` (host:port each): new ones take free slots, gone ones leave theirs."""
        wanted = set(addresses)
        for slot, address in self.slots.items():
            if address is not None and address not in wanted:
                self.command(f"set server {BACKEND}/{slot} state maint")
                self.slots[slot] = None
        for address in sorted(wanted - set(self.served())):
            free = next((s for s, a in self.slots.items() if a is None), None)
            if free is None:
                raise BalancerError(f"more replicas than the balancer's {len(self.slots)} slots")
            slot = free
            host, port = address.rsplit(":", 1)
            self.command(f"set server {BACKEND}/{slot} addr {host} port {port}")
            self.command(f"set server {BACKEND}/{slot} state ready")
            self.slots[slot] = address

    def counters(self, address: str | None = None) -> dict[str, int]:
        """HAProxy's counters (``show stat``) for the replica at ``address`` (none when it is not served),
        or the whole backend: ``scur`` (requests in progress), ``wretr`` (retries), ``wredis`` (redispatches) …"""
        slot = "BACKEND" if address is None else next((s for s, a in self.slots.items() if a == address), None)
        if slot is None:
            return {}  # not (or no longer) served
        rows = csv.DictReader(io.StringIO(self.command("show stat").removeprefix("# ")))
        row = next(r for r in rows if r["pxname"] == BACKEND and r["svname"] == slot)
        return {name: int(value) for name, value in row.items() if value and value.isdigit()}

    def served(self) -> list[str]:
        return sorted(a for a in self.slots.values() if a is not None)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(STOP_DEADLINE_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
