"""A discrete-event simulation of a fleet whose replica count an autoscaler changes over time.

Each replica is the planner's replica (servoscope.planner.sim): a preprocess pool of W workers,
then the server's own batcher (``dispatch_size``) feeding N instances, with service times drawn
from a profile. A least-outstanding-requests balancer (HAProxy's ``leastconn``, Ray's
power-of-two-choices in the limit) sends each arrival to the ready replica with the fewest
requests in progress; a replica holding ``max_pending`` refuses (429). Every ``TICK_S`` the
fleet's telemetry of the last tick is handed to the policy (:class:`Tick`); every
``policy.period_s`` the policy names the replica count it wants:

- up: new replicas start at once and take traffic ``startup_s`` later (pod scheduling, image,
  model load); they count as replica-seconds from the start;
- down: replicas still starting are cancelled first, then the newest ready ones stop taking
  traffic and are removed when their last request is answered (a drain).

Same heapq-and-flat-lists design as the single replica's simulation; about 4 µs of CPU a request.
"""

from __future__ import annotations

import collections
import heapq
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from servoscope.pipeline.batcher import dispatch_size
from servoscope.planner.arrivals import draw_classes
from servoscope.planner.service import ServiceTimes
from servoscope.planner.sim import MAX_REQUESTS, SimConfig

TICK_S = 1.0
_PRE, _BATCH, _TIMER, _TICK = range(4)


@dataclass(frozen=True, slots=True)
class Tick:
    """The fleet over the last tick, as its telemetry reports it."""

    now: float
    arrived_per_s: float  # demand: requests that arrived
    ongoing: int  # in progress over the fleet at the tick (Ray's and Knative's concurrency)
    busy_ratio: float  # instance-seconds of batches / instance-seconds available (HPA's utilization)
    queue_wait_s: float | None  # mean queue + batch_wait of the requests dispatched (None: none)
    p95_s: float | None  # P95 of the requests answered in the tick (None: none)
    ready: int  # replicas taking traffic
    target: int  # replicas asked for (ready, starting)
    arrived_by_replica: Mapping[int, int] = field(default_factory=dict)  # ready replica (by id) → its arrivals


class Policy(Protocol):
    name: str
    period_s: float  # how often it decides

    def observe(self, tick: Tick) -> None: ...

    def decide(self, now: float, current: int) -> int:
        """The replica count wanted now, given the count asked for so far."""
        ...


@dataclass(frozen=True)
class Fleet:
    replica: SimConfig
    startup_s: float = 10.0
    min_replicas: int = 1
    max_replicas: int = 64
    initial: int = 1
    max_pending: int = 512  # per replica: admitted and not answered, before 429 (the server's default)

    def __post_init__(self) -> None:
        if not (1 <= self.min_replicas <= self.initial <= self.max_replicas) or self.startup_s < 0:
            raise ValueError(
                f"need 1 <= min <= initial <= max replicas and startup >= 0 s, got {self.min_replicas}, "
                f"{self.initial}, {self.max_replicas}, {self.startup_s}"
            )


@dataclass
class _Replica:
    started_at: float
    ready_at: float
    free: int
    idle: int
    pq: collections.deque[int] = field(default_factory=collections.deque)
    bq: collections.deque[int] = field(default_factory=collections.deque)
    outstanding: int = 0
    timer_at: float = -1.0
    draining: bool = False
    stopped_at: float | None = None
    arrived: int = 0  # in the current tick, refused ones included (servoscope_requests_arrived_total)


@dataclass(frozen=True)
class FleetResult:
    arrival: np.ndarray
    total: np.ndarray  # seconds; inf where refused (the batch queue was full)
    replica_s: float  # replica-seconds, starting ones included
    targets: list[tuple[float, int]]  # (time, replicas asked for) at each change
    duration_s: float


def simulate_fleet(
    arrivals: np.ndarray,
    service: ServiceTimes,
    fleet: Fleet,
    policy: Policy,
    seed: int = 0,
    shares: tuple[float, ...] = (1.0,),
) -> FleetResult:
    """Run requests arriving at ``arrivals`` (sorted seconds), their image-size classes drawn by
    ``shares`` (one per class of ``service``), through the fleet under ``policy``."""
    n = len(arrivals)
    if n > MAX_REQUESTS:
        raise ValueError(f"at most {MAX_REQUESTS} requests per simulation, got {n}")
    classes = draw_classes(n, shares, seed)
    return _Run(np.asarray(arrivals, dtype=float), classes, service, fleet, policy, seed).run()


class _Run:
    def __init__(
        self, arrivals: np.ndarray, classes: np.ndarray, service: ServiceTimes, fleet: Fleet, policy: Policy, seed: int
    ) -> None:
        n = len(arrivals)
        rng = np.random.default_rng(seed)
        self.n, self.fleet, self.policy, self.service = n, fleet, policy, service
        self.pre = service.draw_preprocess(classes, rng).tolist()
        self.draws = rng.random((3, n + 1)).tolist()
        self.hand = service.dispatch.tolist()
        self.inf_t = [t.tolist() for t in service.inference]
        self.post_t = [t.tolist() for t in service.postprocess]
        self.enter = (arrivals + service.ingest_s).tolist()
        self.arrivals = arrivals
        self.done = [math.inf] * n
        self.enq = [0.0] * n
        self.start_pre = [0.0] * n
        self.heap: list[tuple[float, int, int, int, object]] = []
        self.seq = self.batches = 0
        self.replicas: list[_Replica] = []
        self.targets: list[tuple[float, int]] = []
        self.tick_arrived = self.tick_waits_n = 0
        self.tick_wait_sum = self.tick_busy = 0.0
        self.tick_latencies: list[float] = []
        self.end = float(arrivals[-1]) + 1.0 if n else TICK_S

    def push(self, at: float, kind: int, replica: int, data: object) -> None:
        self.seq += 1
        heapq.heappush(self.heap, (at, self.seq, kind, replica, data))

    def run(self) -> FleetResult:
        for _ in range(self.fleet.initial):
            self.start_replica(-self.fleet.startup_s)
        self.targets.append((0.0, self.fleet.initial))
        self.push(TICK_S, _TICK, -1, None)
        self.next_decision = self.policy.period_s
        i, n, heap, inf = 0, self.n, self.heap, math.inf
        while True:
            next_arrival = self.enter[i] if i < n else inf
            if heap and heap[0][0] <= next_arrival:
                now, _, kind, rep, data = heapq.heappop(heap)
                if kind == _TICK and i >= n and not self.busy():
                    break
                self.event(now, kind, rep, data)
            elif i < n:
                self.arrive(next_arrival, i)
                i += 1
            else:
                break
        end = max(self.end, self.targets[-1][0])
        replica_s = sum(
            (r.stopped_at if r.stopped_at is not None else end) - max(0.0, r.started_at) for r in self.replicas
        )
        total = np.asarray(self.done) + self.service.respond_s - self.arrivals
        return FleetResult(self.arrivals, total, replica_s, self.targets, end)

    def busy(self) -> bool:
        return any(r.outstanding for r in self.replicas)

    def start_replica(self, now: float) -> None:
        cfg = self.fleet.replica
        self.replicas.append(_Replica(now, now + self.fleet.startup_s, cfg.preprocess_workers, cfg.instances))

    def arrive(self, now: float, r: int) -> None:
        self.tick_arrived += 1
        best, best_load = -1, math.inf
        for k, rep in enumerate(self.replicas):
            if rep.ready_at <= now and not rep.draining and rep.stopped_at is None and rep.outstanding < best_load:
                best, best_load = k, rep.outstanding
        assert best >= 0, "scaling keeps the oldest ready replicas: one is always ready"
        rep = self.replicas[best]
        rep.arrived += 1
        if rep.outstanding >= self.fleet.max_pending:
            return  # refused at admission: done stays inf
        rep.outstanding += 1
        if rep.free:
            rep.free -= 1
            self.start_pre[r] = now
            self.push(now + self.pre[r], _PRE, best, r)
        else:
            rep.pq.append(r)

    def event(self, now: float, kind: int, k: int, data: object) -> None:
        if kind == _PRE:
            self.preprocessed(now, k, data)  # type: ignore[arg-type]
        elif kind == _BATCH:
            rep = self.replicas[k]
            rep.idle += 1
            for r in data:  # type: ignore[attr-defined]
                self.done[r] = now
                self.tick_latencies.append(now + self.service.respond_s - self.arrivals[r])
            rep.outstanding -= len(data)  # type: ignore[arg-type]
            self.dispatch(now, k)
            if rep.draining and not rep.outstanding and rep.stopped_at is None:
                rep.stopped_at = now
        elif kind == _TIMER:
            if now == self.replicas[k].timer_at:
                self.replicas[k].timer_at = -1.0
                self.dispatch(now, k)
        elif kind == _TICK:
            self.tick(now)

    def preprocessed(self, now: float, k: int, r: int) -> None:
        rep = self.replicas[k]
        if rep.pq:
            nxt = rep.pq.popleft()
            self.start_pre[nxt] = now
            self.push(now + self.pre[nxt], _PRE, k, nxt)
        else:
            rep.free += 1
        if len(rep.bq) >= self.fleet.replica.batching.max_queue_size:
            rep.outstanding -= 1  # refused: done stays inf
            return
        self.enq[r] = now
        rep.bq.append(r)
        self.dispatch(now, k)

    def dispatch(self, now: float, k: int) -> None:
        rep, policy = self.replicas[k], self.fleet.replica.batching
        while rep.idle and rep.bq:
            oldest = self.enq[rep.bq[0]]
            size = dispatch_size(len(rep.bq), now - oldest, policy)
            if not size:
                due = oldest + policy.max_queue_delay_s
                while due - oldest < policy.max_queue_delay_s:
                    due = math.nextafter(due, math.inf)
                if due != rep.timer_at:
                    rep.timer_at = due
                    self.push(due, _TIMER, k, None)
                return
            members = [rep.bq.popleft() for _ in range(size)]
            d = self.draws
            b = self.batches
            start = now + self.hand[int(d[0][b] * len(self.hand))]
            table, post = self.inf_t[size], self.post_t[size]
            finished = start + table[int(d[1][b] * len(table))] + post[int(d[2][b] * len(post))]
            self.batches += 1
            self.tick_busy += finished - now
            for r in members:
                self.tick_wait_sum += (self.start_pre[r] - self.enter[r]) + (start - self.enq[r])
            self.tick_waits_n += len(members)
            rep.idle -= 1
            self.push(finished, _BATCH, k, members)

    def tick(self, now: float) -> None:
        live = {k: r for k, r in enumerate(self.replicas) if r.stopped_at is None}
        ready = {k: r for k, r in live.items() if r.ready_at <= now and not r.draining}
        capacity = len(ready) * self.fleet.replica.instances * TICK_S
        lat = self.tick_latencies
        self.policy.observe(
            Tick(
                now=now,
                arrived_per_s=self.tick_arrived / TICK_S,
                ongoing=sum(r.outstanding for r in live.values()),
                busy_ratio=min(1.0, self.tick_busy / capacity) if capacity else 1.0,
                queue_wait_s=self.tick_wait_sum / self.tick_waits_n if self.tick_waits_n else None,
                p95_s=float(np.quantile(lat, 0.95)) if lat else None,
                ready=len(ready),
                target=self.targets[-1][1],
                arrived_by_replica={k: r.arrived for k, r in ready.items()},
            )
        )
        for rep in live.values():
            rep.arrived = 0
        self.tick_arrived = self.tick_waits_n = 0
        self.tick_wait_sum = self.tick_busy = 0.0
        self.tick_latencies = []
        if now + 1e-9 >= self.next_decision:
            self.next_decision += self.policy.period_s
            self.scale(now, self.policy.decide(now, self.targets[-1][1]))
        self.push(now + TICK_S, _TICK, -1, None)

    def scale(self, now: float, wanted: int) -> None:
        wanted = max(self.fleet.min_replicas, min(self.fleet.max_replicas, wanted))
        current = self.targets[-1][1]
        if wanted == current:
            return
        self.targets.append((now, wanted))
        for _ in range(wanted - current):
            self.start_replica(now)
        live = [k for k, r in enumerate(self.replicas) if r.stopped_at is None and not r.draining]
        for k in sorted(live, key=lambda k: -self.replicas[k].started_at)[: max(0, current - wanted)]:
            rep = self.replicas[k]
            rep.draining = True
            if rep.ready_at > now or not rep.outstanding:
                rep.stopped_at = now
