"""The simulator against answers known in closed form or by hand, and against the batcher's own rule.

Reference answers: M/D/1 mean wait (Pollaczek–Khinchine), M/D/c mean wait (the exact embedded
chain at multiples of the service time, N' = max(N − c, 0) + Poisson(λD), then Little's law),
M/M/1 sojourn percentiles (exponential with rate μ − λ), and deterministic batch queues worked
out by hand. Seeds are fixed, so every figure here is the same on every run.
"""

from __future__ import annotations

import math
from collections import defaultdict

import numpy as np
import pytest

from servoscope.models.config import BatchingConfig
from servoscope.pipeline.batcher import dispatch_size
from servoscope.planner import arrivals, service, sim
from servoscope.planner.service import ServiceTimes
from servoscope.planner.summary import summarize

NO_BATCHING = BatchingConfig(max_batch_size=1, max_queue_delay_s=0.0, max_queue_size=10**9)


def md1_wait(rate: float, d: float) -> float:
    rho = rate * d
    return rho * d / (2 * (1 - rho))


def mdc_wait(rate: float, d: float, c: int, states: int = 400) -> float:
    """Exact M/D/c mean wait: the number in system at multiples of D is a Markov chain."""
    a = rate * d
    pois = np.array([math.exp(-a + k * math.log(a) - math.lgamma(k + 1)) for k in range(states)])
    p = np.zeros((states, states))
    for n in range(states):
        base = max(n - c, 0)
        width = states - base
        p[n, base:] = pois[:width]
        p[n, -1] += 1 - pois[:width].sum()
    pi = np.ones(states) / states
    for _ in range(5000):
        pi = pi @ p
    queued = sum(max(n - c, 0) * pi[n] for n in range(states))
    return queued / rate


def instance_stage(times: ServiceTimes, instances: int, policy: BatchingConfig = NO_BATCHING) -> sim.SimConfig:
    return sim.SimConfig(preprocess_workers=1, instances=instances, batching=policy)


def run(times: np.ndarray, st: ServiceTimes, config: sim.SimConfig, seed: int = 1) -> sim.SimResult:
    return sim.simulate(times, np.zeros(len(times), dtype=int), st, config, seed=seed)


def test_the_md_c_reference_is_pollaczek_khinchine_for_one_server() -> None:
    assert mdc_wait(70.0, 0.01, 1) == pytest.approx(md1_wait(70.0, 0.01), rel=1e-6)


@pytest.mark.parametrize("rho", [0.5, 0.8])
def test_md1_mean_wait_in_the_batcher(rho: float) -> None:
    d = 0.010
    st = service.fixed({"any": 0.0}, {1: d}, 1)
    result = run(arrivals.poisson(rho / d, 4000, seed=3), st, instance_stage(st, 1))
    waits = result.batch_wait[result.arrival > 50]
    assert waits.mean() == pytest.approx(md1_wait(rho / d, d), rel=0.05)


@pytest.mark.parametrize("c, rho", [(2, 0.7), (4, 0.85)])
def test_mdc_mean_wait_in_the_batcher(c: int, rho: float) -> None:
    d = 0.010
    rate = rho * c / d
    st = service.fixed({"any": 0.0}, {1: d}, 1)
    result = run(arrivals.poisson(rate, 2000, seed=4), st, instance_stage(st, c))
    waits = result.batch_wait[result.arrival > 50]
    assert waits.mean() == pytest.approx(mdc_wait(rate, d, c), rel=0.06)


def test_mdc_mean_wait_in_the_preprocess_pool() -> None:
    d, c, rho = 0.004, 3, 0.8
    rate = rho * c / d
    st = service.fixed({"any": d}, {1: 0.0}, 1)
    config = sim.SimConfig(preprocess_workers=c, instances=1, batching=NO_BATCHING)
    result = run(arrivals.poisson(rate, 1000, seed=5), st, config)
    waits = result.preprocess_wait[result.arrival > 20]
    assert waits.mean() == pytest.approx(mdc_wait(rate, d, c), rel=0.06)
    assert np.all(result.batch_wait == 0.0)


def test_mm1_sojourn_percentiles() -> None:
    mu, lam = 100.0, 75.0
    quantiles = -np.log(1 - (np.arange(20000) + 0.5) / 20000) / mu  # exponential, mean 1/μ
    st = ServiceTimes(("any",), (np.zeros(1),), (np.zeros(0), quantiles), (np.zeros(0), np.zeros(1)))
    result = run(arrivals.poisson(lam, 4000, seed=6), st, instance_stage(st, 1))
    s = summarize(result, warmup_s=50)
    for q, got in ((50, s.p50_ms), (95, s.p95_ms), (99, s.p99_ms)):
        assert got / 1000 == pytest.approx(-math.log(1 - q / 100) / (mu - lam), rel=0.05), q


def test_full_batches_of_four_by_hand() -> None:
    """One request a millisecond, batches of 4, 2 ms inference: the 4th completes each batch."""
    policy = BatchingConfig(max_batch_size=4, max_queue_delay_s=0.010)
    st = service.fixed({"any": 0.0}, {1: 0.002}, 4)
    st = ServiceTimes(st.classes, st.preprocess, (np.zeros(0),) + (np.array([0.002]),) * 4, st.postprocess)
    result = run(np.arange(400) * 0.001, st, instance_stage(st, 1, policy))
    expected = np.array([3, 2, 1, 0] * 100) * 0.001
    np.testing.assert_allclose(result.batch_wait, expected, atol=1e-12)
    assert set(result.batch_size.tolist()) == {4}
    np.testing.assert_allclose(result.total, expected + 0.002, atol=1e-12)


def test_a_lone_request_waits_exactly_the_window() -> None:
    policy = BatchingConfig(max_batch_size=4, max_queue_delay_s=0.003)
    st = service.fixed({"any": 0.0}, {1: 0.001}, 4)
    result = run(np.arange(50) * 0.010, st, instance_stage(st, 1, policy))
    np.testing.assert_allclose(result.batch_wait, 0.003, atol=1e-12)
    assert set(result.batch_size.tolist()) == {1}


def test_requests_gather_while_the_only_instance_is_busy() -> None:
    """No delay: the first goes alone; the next 10 arrive during its 10.5 ms; the next batch takes 8."""
    policy = BatchingConfig(max_batch_size=8, max_queue_delay_s=0.0)
    st = ServiceTimes(
        ("any",), (np.zeros(1),), (np.zeros(0),) + (np.array([0.0105]),) * 8, (np.zeros(0),) + (np.zeros(1),) * 8
    )
    result = run(np.arange(40) * 0.001, st, instance_stage(st, 1, policy))
    assert result.batch_size[:17].tolist() == [1] + [8] * 8 + [8] * 8
    assert result.batch_wait[1] == pytest.approx(0.0105 - 0.001)
    assert result.batch_wait[9] == pytest.approx(0.021 - 0.009)


def test_a_full_batch_queue_refuses() -> None:
    policy = BatchingConfig(max_batch_size=1, max_queue_delay_s=0.0, max_queue_size=5)
    st = service.fixed({"any": 0.0}, {1: 1.0}, 1)
    result = run(np.arange(20) * 0.001, st, instance_stage(st, 1, policy))
    assert result.refused_batch_queue.sum() == 20 - 1 - 5
    assert np.isnan(result.total[result.refused_batch_queue]).all()


def test_an_admission_hook_sees_the_state_and_refuses() -> None:
    st = service.fixed({"any": 0.0}, {1: 1.0}, 1)
    seen: list[int] = []

    def admits(state: sim.SimState) -> bool:
        seen.append(state.pending)
        return state.pending < 3

    result = sim.simulate(np.arange(10) * 0.001, np.zeros(10, dtype=int), st, instance_stage(st, 1), admits=admits)
    assert result.refused_admission.tolist() == [False] * 3 + [True] * 7
    assert seen == [0, 1, 2] + [3] * 7


def batches(result: sim.SimResult) -> list[tuple[float, list[int]]]:
    groups: dict[tuple[float, float], list[int]] = defaultdict(list)
    for r in np.flatnonzero(~result.refused):
        start = result.arrival[r] + result.preprocess_wait[r] + result.preprocess[r] + result.batch_wait[r]
        groups[(start, start + result.inference[r] + result.postprocess[r])].append(int(r))
    return sorted(((start, members) for (start, _), members in groups.items()), key=lambda b: (b[0], min(b[1])))


@pytest.mark.parametrize(
    "policy",
    [
        BatchingConfig(max_batch_size=8, max_queue_delay_s=0.005, preferred_batch_sizes=(2, 4)),
        BatchingConfig(max_batch_size=6, max_queue_delay_s=0.002),
        BatchingConfig(max_batch_size=16, max_queue_delay_s=0.0),
    ],
)
def test_every_batch_is_what_dispatch_size_says(policy: BatchingConfig) -> None:
    """Rebuild the batch queue from the per-request stamps: at each batch's start, the rule gives its size."""
    rng = np.random.default_rng(9)
    pre = rng.exponential(0.004, 500)
    infer = {b: rng.gamma(8, (0.002 + 0.0015 * b) / 8, 200) for b in range(1, policy.max_batch_size + 1)}
    st = ServiceTimes(("any",), (pre,), (np.zeros(0), *(infer.values())), service.by_size({}, policy.max_batch_size))
    config = sim.SimConfig(preprocess_workers=3, instances=2, batching=policy)
    result = run(arrivals.poisson(300.0, 20, seed=2), st, config)
    queued_at = result.arrival + result.preprocess_wait + result.preprocess  # when each entered the batcher
    started = queued_at + result.batch_wait
    taken: set[int] = set()
    checked = 0
    for start, members in batches(result):
        waiting = [r for r in np.flatnonzero((queued_at <= start) & (started >= start)) if r not in taken]
        oldest = min(queued_at[r] for r in waiting)
        assert dispatch_size(len(waiting), start - oldest, policy) == len(members)
        assert sorted(members) == sorted(sorted(waiting, key=lambda r: queued_at[r])[: len(members)])  # FIFO
        taken.update(members)
        checked += 1
    assert checked > 500
    busy = [(start, start + result.inference[m[0]] + result.postprocess[m[0]]) for start, m in batches(result)]
    for t in np.linspace(0, 20, 4000):
        running = sum(1 for a, b in busy if a <= t < b)
        assert running <= config.instances
        waiting = (queued_at <= t) & (started > t)
        if running < config.instances and waiting.any():  # an idle instance: the rule must say wait
            assert dispatch_size(int(waiting.sum()), t - queued_at[waiting].min(), policy) == 0


def test_the_servers_static_admission_rule() -> None:
    """max_pending 10: normal priority enters while fewer than int(0.9 × 10) = 9 are in progress."""
    st = service.fixed({"any": 0.0}, {1: 1.0}, 1)
    admit = sim.static_admission(10)
    result = sim.simulate(np.arange(20) * 0.001, np.zeros(20, dtype=int), st, instance_stage(st, 1), admits=admit)
    assert result.refused_admission.tolist() == [False] * 9 + [True] * 11


def test_the_hand_off_holds_the_instance_and_counts_as_batch_wait() -> None:
    """1 ms hand-off, 2 ms inference: alone, a request waits 1 ms; back to back, one batch per 3 ms."""
    st = service.fixed({"any": 0.0}, {1: 0.002}, 1)
    st = ServiceTimes(st.classes, st.preprocess, st.inference, st.postprocess, dispatch=np.array([0.001]))
    alone = run(np.arange(10) * 0.010, st, instance_stage(st, 1))
    np.testing.assert_allclose(alone.batch_wait, 0.001, atol=1e-12)
    np.testing.assert_allclose(alone.total, 0.003, atol=1e-12)
    busy = run(np.zeros(100), st, instance_stage(st, 1))
    assert busy.total.max() == pytest.approx(100 * 0.003)
