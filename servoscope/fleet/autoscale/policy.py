"""servoscope's autoscaling policy: replicas sized from the planner's capacity to the demand, not to
a utilization, with the objective's own signal as the alarm and stabilization against thrashing.

- **Capacity**: ``capacity_per_s`` is what one replica answers with P95 within the objective
  (the planner's simulation of the profile: :func:`servoscope.fleet.autoscale.capacity.at_objective`).
- **Demand**: arrivals per second (what is asked, not what is answered: throughput stops
  growing at saturation, arrivals do not). The steady state is sized on a slow EWMA
  (``slow_s``: its noise at 170 req/s is ~1%, far inside the hysteresis band below). A change
  is believed at once when it is beyond noise: the last second's rate above ``jump`` × the slow
  estimate (a spike: 1.5× is > 6 σ of a second's Poisson count at 170 req/s), or a fast EWMA
  (``fast_s``) above ``drift`` × the slow one (a step). A ramp is met ahead: when the slow
  estimate rose over the last ``trend_s`` by more than 3 σ of its own noise (σ = rate /
  √(2 · ``slow_s`` · rate) for Poisson arrivals), demand is that rate of rise carried ``lead_s``
  ahead (the estimate's lag and a replica's start-up), and at most the fast estimate
  (a ramp still rising now, not the slow estimate catching up with a spike that is over); not in
  the first ``trend_s`` + ``slow_s``, while the estimate still settles from its first second.
- **Up** (at once, every ``period_s``): to ceil(demand / (capacity × ``up_utilization``)); at the
  first second of a jump the fleet cannot carry, that many *on top of* the replicas asked for
  (``jump_on_top``): those are left with the backlog that builds while the new ones start, and a
  least-outstanding balancer sends them nothing new until it is answered, so the new ones alone
  must carry the new rate (the oracle's rule, :mod:`.bounds`, one measured second late);
  and when the queue wait (queue + batch_wait) over the last seconds uses more than
  ``queue_budget`` of the objective — the fleet is already late, whatever the rate says — by
  at least ``alarm_step`` more than now, once every replica asked for has been serving for
  ``settle_s`` (not while the last ones start or drain the backlog of the start-up: that
  lateness is already being answered).
- **Down** (stabilized): only to ceil(slow / (capacity × ``down_utilization``)) — a lower
  utilization than the up rule's, so the count it picks does not trip the up rule (hysteresis)
  — and only when every recommendation of the last ``down_window_s`` was below the current
  count, to the highest of them, and not within ``down_window_s`` of the last scale-up.
"""

from __future__ import annotations

import collections
import math
from dataclasses import dataclass, field

from servoscope.fleet.autoscale.fleetsim import Tick


@dataclass
class ObjectivePolicy:
    capacity_per_s: float  # one replica, P95 within the objective
    objective_s: float
    name: str = "servoscope"
    period_s: float = 1.0
    fast_s: float = 3.0
    slow_s: float = 30.0
    jump: float = 1.5
    drift: float = 1.2
    trend_s: float = 60.0
    lead_s: float = 45.0
    up_utilization: float = 0.9
    down_utilization: float = 0.75
    queue_budget: float = 0.5
    alarm_step: float = 0.25  # +25% replicas (at least one) on the queue-wait alarm
    down_window_s: float = 120.0
    settle_s: float = 10.0
    jump_on_top: bool = True  # on a jump, the new replicas on top of the ones asked for (see Up)
    _fast: float = field(init=False, default=0.0)
    _slow: float = field(init=False, default=0.0)
    _last: float = field(init=False, default=0.0)
    _history: collections.deque[tuple[float, float]] = field(init=False, default_factory=collections.deque)
    _wait: float = field(init=False, default=0.0)
    _started_at: float | None = field(init=False, default=None)
    _settled_since: float | None = field(init=False, default=None)
    _last_up: float = field(init=False, default=-math.inf)
    _downs: collections.deque[tuple[float, int]] = field(init=False, default_factory=collections.deque)
    _jumping: bool = field(init=False, default=False)
    _on_top: int = field(init=False, default=0)  # replicas added for a jump's backlog, until it is answered

    def __post_init__(self) -> None:
        if not (self.capacity_per_s > 0 and self.objective_s > 0):
            raise ValueError(f"capacity and objective must be > 0, got {self.capacity_per_s}, {self.objective_s}")
        if not 0 < self.down_utilization < self.up_utilization <= 1:
            raise ValueError(
                f"need 0 < down_utilization < up_utilization <= 1, got {self.down_utilization}, {self.up_utilization}"
            )

    def observe(self, tick: Tick) -> None:
        rate, wait = tick.arrived_per_s, tick.queue_wait_s
        self._last = rate
        if tick.ready < tick.target:
            self._settled_since = None
        elif self._settled_since is None:
            self._settled_since = tick.now
        if self._started_at is None:
            self._fast = self._slow = rate
            self._started_at = tick.now
        self._fast += (rate - self._fast) * (1 - math.exp(-1.0 / self.fast_s))
        self._slow += (rate - self._slow) * (1 - math.exp(-1.0 / self.slow_s))
        if wait is not None:
            self._wait += (wait - self._wait) * (1 - math.exp(-1.0 / self.fast_s))
        self._history.append((tick.now, self._slow))
        while self._history[0][0] < tick.now - self.trend_s:
            self._history.popleft()

    def _rising_per_s(self) -> float:
        """How fast the slow estimate rose over the last ``trend_s``; 0 within 3 σ of its noise."""
        (then, before), (now, after) = self._history[0], self._history[-1]
        noise = math.sqrt(max(after, 1e-9) / (2 * self.slow_s))
        warming = self._started_at is None or now - self._started_at < self.trend_s + self.slow_s
        if warming or after - before <= 3 * noise:
            return 0.0
        return (after - before) / (now - then)

    def replicas_for(self, rate: float, utilization: float) -> int:
        return max(1, math.ceil(rate / (self.capacity_per_s * utilization)))

    def _settled(self, now: float) -> bool:
        return self._settled_since is not None and now - self._settled_since >= self.settle_s

    def demand(self) -> float:
        """Requests a second to size for: the slow estimate, unless a change beyond noise shows."""
        if self._last > self.jump * self._slow:
            return self._last
        if self._fast > self.drift * self._slow:
            return self._fast
        ahead = self._slow + self._rising_per_s() * self.lead_s if self._history else self._slow
        return min(ahead, max(self._slow, self._fast))  # a ramp rising now, not the wake of a spike

    def decide(self, now: float, current: int) -> int:
        up = self.replicas_for(self.demand(), self.up_utilization)
        late = self._wait > self.queue_budget * self.objective_s and self._settled(now)
        if self._on_top:  # the replicas added for a jump's backlog answer the lateness: no alarm
            if self._settled(now) and not late:  # the backlog answered: the jump's own count, above its noise
                above_noise = self._fast + 3 * math.sqrt(self._fast)  # 3 σ of a second's Poisson count
                wanted = max(up, current - self._on_top, self.replicas_for(above_noise, self.up_utilization))
                self._on_top = 0
                return min(current, wanted)
            late = False
        jumping = self._last > self.jump * self._slow
        if jumping and not self._jumping and self.jump_on_top and current < up:
            self._on_top = current  # the first second of a jump: the replicas there hold its backlog
            up += current
        self._jumping = jumping
        if late:
            up = max(up, current + max(1, math.ceil(self.alarm_step * current)))
        if up > current:
            self._last_up = now
            self._downs.clear()
            return up
        down = self.replicas_for(self._slow, self.down_utilization)
        if down >= current:
            self._downs.clear()
            return current
        self._downs.append((now, down))
        if now - self._downs[0][0] < self.down_window_s or now - self._last_up < self.down_window_s:
            return current
        while self._downs[0][0] < now - self.down_window_s:
            self._downs.popleft()
        wanted = max(r for _, r in self._downs)
        self._downs.clear()
        return wanted
