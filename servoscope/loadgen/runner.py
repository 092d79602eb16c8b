"""One load run from a plan: encode the requests, draw them from the mix, run the open or
closed loop under a hard time cap, and build the result file's content.

Library use (what ``servoscope load`` does, and what a drill can call)::

    plan = LoadPlan(Endpoint("127.0.0.1", 8000), Target("v1"), mix, loop="open",
                    profile=profiles.step(20, 60, [(30, 1.15)]), duration_s=60)
    outcome = await execute(plan)
    result = result_json(plan, outcome)          # the dict written by -o result.json
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Literal

from servoscope import __version__
from servoscope.loadgen import mixes, profiles, results, targets
from servoscope.loadgen.client import Endpoint
from servoscope.loadgen.progress import Progress
from servoscope.loadgen.schedule import MAX_ARRIVALS, MAX_DURATION_S, RunResult, closed_loop, open_loop

Loop = Literal["open", "closed"]
DEFAULT_MAX_REQUESTS = 100_000
CAP_GRACE_S = 5.0  # beyond duration + timeout, after which a run is stopped whatever is unanswered
MAX_CONCURRENCY = 1024


@dataclass(frozen=True)
class LoadPlan:
    endpoint: Endpoint
    target: targets.Target
    mix: mixes.Mix
    loop: Loop = "open"
    profile: profiles.Profile | None = None  # open loop
    arrivals: profiles.Arrivals = "poisson"
    concurrency: int = 8  # closed loop
    duration_s: float = 30.0
    max_requests: int = DEFAULT_MAX_REQUESTS
    timeout_s: float = 30.0
    connections: int = 256  # open loop: most connections at once
    seed: int = 0
    extra: dict[str, Any] = field(default_factory=dict)  # more settings to record (e.g. the fleet)

    def __post_init__(self) -> None:
        if self.loop not in ("open", "closed"):
            raise ValueError(f"loop must be 'open' or 'closed', got {self.loop!r}")
        if self.loop == "open" and self.profile is None:
            raise ValueError("an open-loop plan needs a profile (a rate over time)")
        if not 1 <= self.concurrency <= MAX_CONCURRENCY or not 1 <= self.connections <= 4 * MAX_CONCURRENCY:
            raise ValueError(f"concurrency must be in 1..{MAX_CONCURRENCY}, connections in 1..{4 * MAX_CONCURRENCY}")
        if not 0 < self.duration_s <= MAX_DURATION_S:
            raise ValueError(f"duration must be in (0, {MAX_DURATION_S:g}] s, got {self.duration_s:g}")
        if not 1 <= self.max_requests <= MAX_ARRIVALS:
            raise ValueError(f"max requests must be in 1..{MAX_ARRIVALS}, got {self.max_requests}")
        if not 0 < self.timeout_s <= 600:
            raise ValueError(f"timeout must be in (0, 600] s, got {self.timeout_s:g}")

    @property
    def hard_cap_s(self) -> float:
        """No run lasts longer than this, whatever the server does."""
        return self.duration_s + self.timeout_s + CAP_GRACE_S

    def schedule(self) -> list[float]:
        """Open loop: the send offsets, cut at ``duration_s`` and ``max_requests``."""
        assert self.profile is not None
        offsets = profiles.arrivals(self.profile, self.arrivals, self.seed, self.max_requests)
        return [t for t in offsets if t < self.duration_s]


@dataclass
class Outcome:
    result: RunResult
    offsets: list[float] | None  # open loop: the schedule
    draws: list[int]  # which mix image each request carries, in order
    capped: bool  # stopped by the hard time cap
    started_at: str  # wall-clock, for the record only


async def execute(plan: LoadPlan, progress: Progress | None = None) -> Outcome:
    """Run ``plan``; a run stopped by its hard cap still returns what it measured."""
    encoded = [targets.encode(plan.target, plan.endpoint, image) for image in plan.mix.images]
    offsets = plan.schedule() if plan.loop == "open" else None
    if offsets is not None and not offsets:
        raise ValueError("the profile schedules no request within the duration; raise the rate or the duration")
    draws = mixes.draw(plan.mix, len(offsets) if offsets is not None else plan.max_requests, plan.seed)
    requests = [encoded[i] for i in draws]
    live: list[RunResult] = []

    def on_start(result: RunResult) -> None:
        live.append(result)
        if progress:
            progress.started(result)

    on_sample = progress.ended if progress else _ignore
    reporter = asyncio.create_task(progress.report()) if progress else None
    started_at = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    capped = False
    try:
        async with asyncio.timeout(plan.hard_cap_s):
            if offsets is not None:
                await open_loop(
                    plan.endpoint,
                    requests,
                    offsets,
                    plan.connections,
                    plan.timeout_s,
                    on_start=on_start,
                    on_sample=on_sample,
                )
            else:
                await closed_loop(
                    plan.endpoint,
                    requests,
                    plan.concurrency,
                    plan.duration_s,
                    plan.timeout_s,
                    plan.max_requests,
                    on_start=on_start,
                    on_sample=on_sample,
                )
    except TimeoutError:
        if not live:
            raise
        capped = True
    finally:
        if reporter:
            reporter.cancel()
            await asyncio.gather(reporter, return_exceptions=True)
    return Outcome(live[0], offsets, draws, capped, started_at)


def _ignore(_: object) -> None:
    pass


def settings_json(plan: LoadPlan) -> dict[str, Any]:
    return {
        "host": plan.endpoint.host,
        "port": plan.endpoint.port,
        "target": plan.target.kind,
        "path": plan.target.url_path,
        "method": plan.target.method if plan.target.kind == "raw" else "POST",
        "model": plan.target.model if plan.target.kind != "raw" else None,
        "loop": plan.loop,
        "arrivals": plan.arrivals if plan.loop == "open" else None,
        "concurrency": plan.concurrency if plan.loop == "closed" else None,
        "connections": plan.connections if plan.loop == "open" else plan.concurrency,
        "duration_s": plan.duration_s,
        "max_requests": plan.max_requests,
        "timeout_s": plan.timeout_s,
        "hard_cap_s": plan.hard_cap_s,
        "seed": plan.seed,
        **plan.extra,
    }


def mix_json(plan: LoadPlan, outcome: Outcome) -> dict[str, Any]:
    sent = len(outcome.result.samples)
    drawn = Counter(plan.mix.images[i].label for i in outcome.draws[:sent])
    return {
        "description": plan.mix.description,
        "images": len(plan.mix.images),
        "sent_by_kind": dict(sorted(drawn.items())),
    }


def result_json(plan: LoadPlan, outcome: Outcome) -> dict[str, Any]:
    scheduled = len(outcome.offsets) if outcome.offsets is not None else len(outcome.result.samples)
    measured = results.build(outcome.result, outcome.offsets, scheduled, outcome.capped)
    return {
        "tool": f"servoscope load {__version__}",
        "started_at": outcome.started_at,
        "settings": settings_json(plan),
        "profile": plan.profile.to_json() if plan.profile and plan.loop == "open" else None,
        "mix": mix_json(plan, outcome),
        **measured,
    }


def summary_lines(result: dict[str, Any]) -> list[str]:
    """The few lines printed at the end of a run."""
    c, lat, snd = result["counts"], result["latency_ms"], result["sender"]
    lines = [
        f"requests: scheduled {c['scheduled']}, sent {c['sent']}, answered {c['answered']} "
        f"{c['answered_by_status']}, transport errors {c['transport_errors']}, unfinished {c['unfinished']}",
        f"latency from scheduled send (200s), ms: p50 {lat['p50']:.1f}  p90 {lat['p90']:.1f}  p95 {lat['p95']:.1f}  "
        f"p99 {lat['p99']:.1f}  p99.9 {lat['p99_9']:.1f}  max {lat['max']:.1f}",
        f"throughput: answered {result['throughput_per_s']['answered']:.1f}/s over {result['elapsed_s']:.1f} s",
    ]
    if result["settings"]["loop"] == "open":
        lines.append(
            f"sender: {snd['late_count']} sends > {snd['late_threshold_ms']:g} ms late, "
            f"p99 {snd['late_p99_ms']:.2f} ms, max {snd['late_max_ms']:.2f} ms"
            + ("  ← the load generator could not keep its schedule" if _behind(snd) else "")
        )
    stages = result["stages_ms"]
    if stages:
        lines.append("server stages p95, ms: " + ", ".join(f"{k} {v['p95']:.1f}" for k, v in stages.items()))
    if result["hit_time_cap"]:
        lines.append("stopped at the hard time cap: some requests were still unanswered")
    return lines


def _behind(sender: dict[str, Any]) -> bool:
    return not math.isnan(sender["late_p99_ms"]) and sender["late_p99_ms"] > sender["late_threshold_ms"]
