"""Where the replicas' HTTP fronts are: a small Ray actor the replicas report to on every health
check (Ray Serve's ``check_health``) and leave when they drain. The balancer reads the members heard
from recently; a replica that died without leaving stops being heard and drops out."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import ray


@dataclass(frozen=True)
class Member:
    replica: str  # Ray Serve's replica id
    address: str  # host:port of the replica's servoscope HTTP front
    pid: int  # the replica's process, on its node


class Registry:
    def __init__(self) -> None:
        self._heard: dict[str, tuple[Member, float]] = {}

    def heartbeat(self, member: Member) -> None:
        self._heard[member.replica] = (member, time.monotonic())

    def leave(self, replica: str) -> None:
        self._heard.pop(replica, None)

    def live(self, max_age_s: float) -> list[Member]:
        now = time.monotonic()
        return sorted((m for m, at in self._heard.values() if now - at <= max_age_s), key=lambda m: m.replica)


def registry_actor(name: str, namespace: str) -> ray.actor.ActorHandle:
    """The fleet's registry ``name`` in ``namespace``: created by the first caller, found by the others.
    Restarted by Ray if it fails (empty: the replicas' next heartbeats fill it again)."""
    remote: Any = ray.remote(num_cpus=0, max_restarts=-1)(Registry)
    return remote.options(name=name, namespace=namespace, get_if_exists=True).remote()
