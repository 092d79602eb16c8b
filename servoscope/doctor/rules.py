"""The doctor's method as pure functions: baseline evidence + current evidence → a diagnosis.

Confirm (is ``total`` P95 really worse, on enough samples?), Attribute (each stage's share of
the P95 increase), Explain (signals → one root-cause class per finding, with a confidence and
the numbers behind it) and Prescribe (ordered fixes, each with its expected effect where the
measured profile allows, and whether infrastructure suffices or the model must change).

When several causes match, the first in ``RULES`` leads: a rule earlier in the list names a
cause that would also produce the signals of the later ones (memory pressure slows every
stage; larger inputs fill the preprocess queue; a CPU neighbour lowers capacity …).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from servoscope.doctor import availability, below_alarm, changes, counterfactual, predict
from servoscope.doctor.availability import Availability
from servoscope.doctor.changes import Change
from servoscope.doctor.counterfactual import Explanation
from servoscope.doctor.evidence import Evidence, Percentiles
from servoscope.doctor.findings import DELIVERY, Attribution, Finding, Fix, gib, kib, mpx, ms
from servoscope.doctor.findings import conf as _conf
from servoscope.doctor.findings import pct as _pct
from servoscope.doctor.findings import ratio as _ratio
from servoscope.doctor.ingest import slow_uploads
from servoscope.stages import STAGES, Stage

MIN_SAMPLES = 100  # per window, in the total stage
MIN_P95_RATIO = 1.10  # a regression is at least 10 % on total P95 …
MIN_P95_DELTA_S = 0.005  # … and at least 5 ms
# Traffic (arrivals; else answered + refused) up by this much counts as growth: the incident's +15 % must register,
# and a rate measured over a window of ~1000 requests is within ±3 % of the offered one.
MIN_TRAFFIC_GROWTH = 1.05


@dataclass(frozen=True, slots=True)
class Confirmation:
    significant: bool
    p50: tuple[float, float]  # (baseline, now), seconds
    p95: tuple[float, float]
    p99: tuple[float, float]
    samples: tuple[int, int]
    verdict: str
    delivery_p95: tuple[float, float] = (0.0, 0.0)

    @property
    def p95_ratio(self) -> float:
        return _ratio(self.p95[1], self.p95[0])


@dataclass(frozen=True, slots=True)
class Diagnosis:
    model: str
    window: str
    confirm: Confirmation
    attribution: Attribution
    findings: tuple[Finding, ...]
    availability: Availability | None = None
    changes: tuple[Change, ...] = ()  # what was running differently in the current window
    warnings: tuple[str, ...] = ()  # strong signals below the alarm
    explanation: Explanation | None = None  # the planner's counterfactual, for a confirmed latency regression

    @property
    def top(self) -> Finding:
        return self.findings[0]


Rule = Callable[[Evidence, Evidence, Attribution], Finding | None]


def diagnose(base: Evidence, now: Evidence) -> Diagnosis:
    """Latency and availability are each confirmed; a confirmed latency regression is explained by the
    rules, a confirmed rise in failures by its reasons (after the latency findings, or alone)."""
    confirm = confirm_regression(base, now)
    served = availability.confirm(base, now)
    attribution = attribute(base, now)
    changed = changes.between(base, now)
    findings: tuple[Finding, ...] = ()
    explained = None
    if confirm.significant:
        explained = counterfactual.explain(base, now)
        matched = [f for rule in RULES if (f := rule(base, now, attribution)) is not None]
        if not matched:
            named = predict.counterfactual_finding(base, now, explained, changed)
            matched = [named or inconclusive(base, now, attribution)]
        findings = (predict.with_predictions(matched[0], base, now, explained), *matched[1:])
    if served.significant:
        findings += (availability.finding(served, base, now),)
    findings = findings or (no_regression(confirm),)
    said = below_alarm.warnings(base, now, served, changed)
    return Diagnosis(now.model, now.window, confirm, attribution, findings, served, changed, said, explained)


def confirm_regression(base: Evidence, now: Evidence) -> Confirmation:
    """Total P95 worse on enough samples — or, with the server's stages steady, delivery worse:
    the answers leave on time but clients take them late, which clients feel all the same."""
    b, n = base.total, now.total
    samples = (int(b.count), int(n.count))
    ratio = _ratio(n.p95, b.p95)
    late = (base.delivery.p95, now.delivery.p95)
    if min(samples) < MIN_SAMPLES:
        significant, verdict = False, f"too few samples ({samples[0]} vs {samples[1]}, need {MIN_SAMPLES})"
    elif ratio >= MIN_P95_RATIO and n.p95 - b.p95 >= MIN_P95_DELTA_S and p95_bounds(n)[0] > p95_bounds(b)[1]:
        significant, verdict = True, f"regression: total P95 ×{ratio:.2f} ({ms(b.p95)} → {ms(n.p95)})"
    elif ratio >= MIN_P95_RATIO and n.p95 - b.p95 >= MIN_P95_DELTA_S and median_moved(b, n):
        # a heavy tail in either window widens the P95's error; the median, known far more precisely,
        # shows the whole distribution moved
        significant, verdict = (
            True,
            (
                f"regression: total P95 ×{ratio:.2f} ({ms(b.p95)} → {ms(n.p95)}), and the median with it: "
                f"P50 ×{_ratio(n.p50, b.p50):.2f} ({ms(b.p50)} → {ms(n.p50)})"
            ),
        )
    elif late[1] - late[0] >= max(MIN_P95_DELTA_S, (MIN_P95_RATIO - 1) * (b.p95 + late[0])):
        significant, verdict = (
            True,
            (
                f"regression after the server's stages: delivery P95 {ms(late[0])} → {ms(late[1])} "
                f"while total P95 ×{ratio:.2f} ({ms(b.p95)} → {ms(n.p95)})"
            ),
        )
    else:
        lo, hi = p95_bounds(n), p95_bounds(b)
        significant, verdict = (
            False,
            (
                f"no significant regression: total P95 ×{ratio:.2f} ({ms(b.p95)} → {ms(n.p95)}; 95 % bounds "
                f"{ms(hi[0])}–{ms(hi[1])} → {ms(lo[0])}–{ms(lo[1])})"
            ),
        )
    return Confirmation(significant, (b.p50, n.p50), (b.p95, n.p95), (b.p99, n.p99), samples, verdict, late)


def p95_bounds(p: Percentiles) -> tuple[float, float]:
    """A 95 % confidence interval of a P95 measured on ``p.count`` samples: the rank of the 95th
    percentile is uncertain by ±1.96·√(0.95·0.05/n), turned into values by interpolating between the
    P50 and the P95 below it and between the P95 and the P99 above (the tail is wider)."""
    d = 1.96 * math.sqrt(0.95 * 0.05 / max(p.count, 1.0))
    return (max(p.p50, p.p95 - (p.p95 - p.p50) * d / 0.45), p.p95 + (p.p99 - p.p95) * min(d, 0.04) / 0.04)


def p50_bounds(p: Percentiles) -> tuple[float, float]:
    """A 95 % confidence interval of a P50 on ``p.count`` samples: its rank is uncertain by
    ±1.96·√(0.25/n), turned into values toward zero below (the most cautious) and toward the P95 above."""
    d = 1.96 * math.sqrt(0.25 / max(p.count, 1.0))
    return (max(0.0, p.p50 * (1 - d / 0.5)), p.p50 + (p.p95 - p.p50) * d / 0.45)


def median_moved(base: Percentiles, now: Percentiles) -> bool:
    """The P50 rose by the regression's minimum and beyond both windows' sampling error."""
    return _ratio(now.p50, base.p50) >= MIN_P95_RATIO and p50_bounds(now)[0] > p50_bounds(base)[1]


def attribute(base: Evidence, now: Evidence) -> Attribution:
    """Each stage's share of the P95 increase (P95s do not add up, so shares are normalised);
    delivery, which follows the stages, is attributed beside them."""
    deltas = {s.value: now.stages[s.value].p95 - base.stages[s.value].p95 for s in STAGES}
    deltas[DELIVERY] = now.delivery.p95 - base.delivery.p95
    rise = sum(d for d in deltas.values() if d > 0)
    shares = {s: (max(d, 0.0) / rise if rise > 0 else 0.0) for s, d in deltas.items()}
    carrier = max(shares, key=lambda s: shares[s]) if rise > 0 else None
    return Attribution(deltas, shares, carrier)


# --- Explain: one rule per root-cause class -------------------------------------------------


def memory_pressure(base: Evidence, now: Evidence, a: Attribution) -> Finding | None:
    # Without the machine's total (PromQL), the drop is measured against the baseline's available memory.
    total = max(now.memory_total_bytes or base.memory_available_bytes, 1.0)
    drop = (base.memory_available_bytes - now.memory_available_bytes) / total
    swaps = (base.swap_used_ratio, now.swap_used_ratio)
    swap_rise = swaps[1] - swaps[0] if swaps[0] is not None and swaps[1] is not None else 0.0
    if drop < 0.15 and swap_rise < 0.10:
        return None
    return Finding(
        "memory-pressure",
        "available memory fell sharply; every stage slowed together",
        _conf(0.6 + drop + swap_rise),
        (
            f"memory available {gib(base.memory_available_bytes)} → {gib(now.memory_available_bytes)}"
            f" ({drop:.0%} of {gib(total)}); swap used {_pct(swaps[0])} → {_pct(swaps[1])}",
            f"throughput {base.answered_per_s:.0f} → {now.answered_per_s:.0f} req/s; {_spread(a)}",
            _cpu_line(base, now),
        ),
        (
            Fix(
                "find the process that took the memory and cap it (cgroup/container memory limit)",
                f"available memory back to ~{gib(base.memory_available_bytes)}",
                "infrastructure",
            ),
            Fix(
                "give the service its own memory reservation or a node with more RAM",
                "no page-cache eviction or reclaim stalls under the service",
                "infrastructure",
            ),
        ),
    )


def input_drift(base: Evidence, now: Evidence, a: Attribution) -> Finding | None:
    px, by = _ratio(now.input_pixels_p95, base.input_pixels_p95), _ratio(now.input_bytes_p95, base.input_bytes_p95)
    # the decode work: ingest (the body arriving) is the link's, not the image's (servoscope.doctor.ingest)
    front = sum(a.shares[s] for s in (Stage.PREPROCESS_WAIT, Stage.PREPROCESS))
    if max(px, by) < 1.5 or front < 0.3:
        return None
    pre = (base.stages[Stage.PREPROCESS].p95, now.stages[Stage.PREPROCESS].p95)
    return Finding(
        "input-drift",
        "clients send much larger images; decoding/resizing them costs more",
        _conf(0.6 + 0.1 * min(px, by, 3.0) + 0.1 * front),
        (
            f"input P95 {kib(base.input_bytes_p95)} → {kib(now.input_bytes_p95)} (×{by:.0f}), "
            f"{mpx(base.input_pixels_p95)} → {mpx(now.input_pixels_p95)} (×{px:.0f})",
            f"preprocess P95 {ms(pre[0])} → {ms(pre[1])}; preprocess_wait+preprocess carry {front:.0%} of the rise",
            f"throughput unchanged-ish: {base.answered_per_s:.0f} → {now.answered_per_s:.0f} req/s",
        ),
        (
            Fix(
                "cap upload size, or have clients resize to the model's input before sending",
                f"preprocess P95 back toward {ms(pre[0])}",
                "clients",
                "baseline-mix",
            ),
            Fix(
                "keep DCT-scaled JPEG decoding on (it already is) and add preprocess workers or cores meanwhile",
                f"{now.preprocess_workers} → {now.preprocess_workers + 1} workers shortens the preprocess queue",
                "infrastructure",
                "workers+1",
            ),
        ),
    )


def cpu_contention(base: Evidence, now: Evidence, a: Attribution) -> Finding | None:
    outside = now.outside_cpu_cores - base.outside_cpu_cores
    load = _ratio(now.answered_per_s, base.answered_per_s)
    if outside < 0.5 or now.machine_cpu_utilization_ratio < 0.85 or load > 1.1:
        return None
    cap = (base.capacity_per_s, now.capacity_per_s)
    return Finding(
        "cpu-contention",
        "something outside the service is using the CPU; the service's own load did not rise",
        _conf(0.6 + 0.2 * min(outside, 1.5)),
        (
            f"machine CPU {base.machine_cpu_utilization_ratio:.0%} → {now.machine_cpu_utilization_ratio:.0%} "
            f"of {now.cpu_count} cores; "
            f"outside the service {base.outside_cpu_cores:.2f} → {now.outside_cpu_cores:.2f} cores",
            f"service process CPU {base.process_cpu_cores:.2f} → {now.process_cpu_cores:.2f} cores; "
            f"throughput {base.answered_per_s:.0f} → {now.answered_per_s:.0f} req/s (×{load:.2f})",
            f"capacity (throughput / busy) {cap[0]:.0f} → {cap[1]:.0f} req/s; {_spread(a)}",
        ),
        (
            Fix(
                "find the neighbour process and move it, or pin the service to dedicated cores (cpuset)",
                f"capacity back to ~{cap[0]:.0f} req/s, P95 toward {ms(base.total.p95)}",
                "infrastructure",
                "baseline-machine",
            ),
            Fix(
                "set CPU limits/requests so neighbours cannot starve the service",
                "no repeat on shared hosts",
                "infrastructure",
            ),
        ),
    )


def batching_misconfig(base: Evidence, now: Evidence, a: Attribution) -> Finding | None:
    growth = _ratio(now.batch_mean_size, base.batch_mean_size)
    cap = _ratio(now.capacity_per_s, base.capacity_per_s)
    if a.shares[Stage.BATCH_WAIT] < 0.3 or growth < 2.0 or now.busy_ratio >= 0.7 or cap < 0.8:
        return None
    wait = now.stages[Stage.BATCH_WAIT].p95
    return Finding(
        "batching-misconfig",
        "requests wait in the batcher for company while the model instances sit idle",
        _conf(0.6 + 0.1 * min(growth / 5, 2) + 0.1 * a.shares[Stage.BATCH_WAIT]),
        (
            f"batch_wait P95 {ms(base.stages[Stage.BATCH_WAIT].p95)} → {ms(wait)} "
            f"({a.shares[Stage.BATCH_WAIT]:.0%} of the rise)",
            f"mean batch size {base.batch_mean_size:.1f} → {now.batch_mean_size:.1f} "
            f"(largest {now.batch_max_size or 'unknown'}); "
            f"inference P95 {ms(base.stages[Stage.INFERENCE].p95)} → {ms(now.stages[Stage.INFERENCE].p95)} "
            "for the larger batches",
            f"model busy ratio only {now.busy_ratio:.2f} at {now.answered_per_s:.0f} req/s: not saturated",
        ),
        (
            Fix(
                f"lower max_queue_delay from ~{wait * 1000:.0f} ms (the batch_wait P95) to 0–5 ms, "
                f"and cap max_batch_size near the baseline's ({max(base.batch_max_size or 1, 1)})",
                f"batch_wait P95 back to ~{ms(base.stages[Stage.BATCH_WAIT].p95)}, "
                f"total P95 toward {ms(base.total.p95)}",
                "configuration",
                "baseline-batching",
            ),
        ),
    )


def slow_inference(base: Evidence, now: Evidence, a: Attribution) -> Finding | None:
    cap = (base.capacity_per_s, now.capacity_per_s)
    inf = _ratio(now.stages[Stage.INFERENCE].p95, base.stages[Stage.INFERENCE].p95)
    load = _ratio(now.answered_per_s, base.answered_per_s)
    neighbour = now.outside_cpu_cores - base.outside_cpu_cores >= predict.OUTSIDE_CORES  # not the model's own doing
    if _ratio(cap[1], cap[0]) > 0.67 or inf < 1.5 or load > 1.1 or neighbour:
        return None
    n = now.instances
    summary, device, first_fix = _accelerator(base, now)
    return Finding(
        "slow-inference",
        summary,
        _conf(0.5 + 0.1 * min(inf, 4.0)),
        (
            f"inference P95 {ms(base.stages[Stage.INFERENCE].p95)} → {ms(now.stages[Stage.INFERENCE].p95)} "
            f"(×{inf:.1f}); "
            f"batch size {base.batch_mean_size:.1f} → {now.batch_mean_size:.1f}",
            f"busy ratio {base.busy_ratio:.2f} → {now.busy_ratio:.2f} at {base.answered_per_s:.0f} → "
            f"{now.answered_per_s:.0f} req/s: capacity {cap[0]:.0f} → {cap[1]:.0f} req/s",
            device,
            f"no outside CPU ({now.outside_cpu_cores:.2f} cores), no input drift; {_spread(a)}",
        ),
        (
            first_fix,
            Fix(
                f"add a replica (or a faster accelerator): busy {now.busy_ratio:.2f} → "
                f"~{now.busy_ratio * n / (n + 1):.2f}",
                "queueing in batch_wait collapses",
                "infrastructure",
                "replica+1",
            ),
            Fix(
                "if the model itself got heavier: quantize to INT8 or distil — needs the ML owners' sign-off",
                "per-batch inference time down; accuracy must be re-checked",
                "model",
            ),
        ),
    )


GPU_BUSY_RATIO = 0.85  # at or above: the GPU is saturated
GPU_SLOW_CLOCK = 0.8  # SM clock below this share of its maximum: held down


def _accelerator(base: Evidence, now: Evidence) -> tuple[str, str, Fix]:
    """What ran the slower inference: a throttled GPU, a saturated one, one left waiting on the host —
    told apart by its utilization and clocks — or, without a GPU, the CPU cores."""
    back = f"inference P95 back toward {ms(base.stages[Stage.INFERENCE].p95)}"
    util, clock, reasons = now.gpu_utilization_ratio, now.gpu_clock_ratio, now.gpu_throttle_reasons
    if util is None:
        return (
            "the model itself runs slower at the same load (no GPU: the cores running it are throttled or shared)",
            "no GPU reported: inference runs on the CPU",
            Fix(
                "check the cores: frequency scaling and thermal throttling, CPU steal on a VM, "
                "cgroup CPU-quota throttling",
                back,
                "infrastructure",
                "baseline-inference",
            ),
        )
    was = f"{base.gpu_utilization_ratio:.0%}" if base.gpu_utilization_ratio is not None else "unknown"
    clocks = f"SM clock {clock:.0%} of its maximum" if clock is not None else "SM clock unknown"
    line = f"GPU busy {was} → {util:.0%}; {clocks}; throttle reasons: {', '.join(reasons) or 'none'}"
    if reasons or (clock is not None and clock < GPU_SLOW_CLOCK):
        return (
            f"the GPU is throttled: its clocks are held down ({clocks}), so every batch takes longer",
            line,
            Fix(
                "restore the clocks: cooling and airflow for thermal slowdown, the power limit (nvidia-smi -pl) for "
                "power capping; move the service off a card that keeps throttling",
                back,
                "infrastructure",
                "baseline-inference",
            ),
        )
    if util >= GPU_BUSY_RATIO:
        return (
            f"the GPU is saturated ({util:.0%} busy) and each batch takes longer: other work shares the GPU, or the "
            "model got heavier",
            line,
            Fix(
                "find what else runs on the GPU (nvidia-smi; the processes in /v1/stats) and move it, "
                "or give the model a GPU of its own (a dedicated card or a MIG slice)",
                back,
                "infrastructure",
                "baseline-inference",
            ),
        )
    return (
        f"the GPU waits ({util:.0%} busy) while inference got slower: the time goes on the host — "
        "CPU work around the kernels, copies between host and device",
        line,
        Fix(
            "profile the host side of inference: CPU contention on the cores feeding the GPU, host↔device copies "
            "(IO binding), batches too small to keep the GPU busy",
            back,
            "infrastructure",
            "baseline-inference",
        ),
    )


def preprocess_starvation(base: Evidence, now: Evidence, a: Attribution) -> Finding | None:
    fewer = now.preprocess_workers < base.preprocess_workers
    # Without fewer workers, the queue must have grown on its own: no more traffic, a model with headroom
    # (more traffic fills the preprocess queue too, on its way to the model: that is traffic growth).
    idle_model = _traffic_ratio(base, now) < MIN_TRAFFIC_GROWTH and now.busy_ratio < 0.5
    if a.carrier != Stage.PREPROCESS_WAIT or not (fewer or idle_model):
        return None
    w = (base.preprocess_workers, now.preprocess_workers)
    q = (base.stages[Stage.PREPROCESS_WAIT].p95, now.stages[Stage.PREPROCESS_WAIT].p95)
    return Finding(
        "preprocess-starvation",
        "requests wait for a preprocessing worker: too few workers for the decode work",
        _conf(0.5 + (0.3 if fewer else 0.0) + 0.1 * a.shares[Stage.PREPROCESS_WAIT]),
        (
            f"preprocess_wait (wait for a preprocess worker) P95 {ms(q[0])} → {ms(q[1])}, "
            f"{a.shares[Stage.PREPROCESS_WAIT]:.0%} of the rise",
            f"preprocess workers {w[0]} → {w[1]}; preprocess P95 {ms(base.stages[Stage.PREPROCESS].p95)} → "
            f"{ms(now.stages[Stage.PREPROCESS].p95)} (each decode is not slower)",
            f"inputs unchanged (P95 {kib(now.input_bytes_p95)}); no outside CPU; model busy {now.busy_ratio:.2f}",
        ),
        (
            Fix(
                f"add preprocess workers ({w[1]} → {max(w[0], w[1] + 1)}) and the cores to run them",
                f"preprocess_wait P95 back toward {ms(q[0])}",
                "infrastructure",
                "workers+1",
            ),
        ),
    )


def traffic_growth(base: Evidence, now: Evidence, a: Attribution) -> Finding | None:
    traffic = _traffic(base, now)
    load = _ratio(traffic[1], traffic[0])
    # past the knee is relative: more load, instances at least half busy and working more than before —
    # busier, or running larger batches (batching absorbs load, so busy rises less than the traffic does)
    more_work = now.busy_ratio > base.busy_ratio or now.batch_mean_size > 1.05 * base.batch_mean_size
    if load < MIN_TRAFFIC_GROWTH or now.busy_ratio < 0.5 or not more_work:
        return None
    n = now.instances
    return Finding(
        "traffic-growth",
        "more traffic pushed the model instances past their knee; queues grow across stages",
        _conf(0.5 + (load - 1) + 0.3 * (now.busy_ratio - 0.7) / 0.3),
        (
            f"traffic {traffic[0]:.0f} → {traffic[1]:.0f} req/s (×{load:.2f}); answered "
            f"{base.answered_per_s:.0f} → {now.answered_per_s:.0f} req/s; refused {now.refused_per_s:.1f}/s "
            f"{now.refused_by_reason or ''}".rstrip(),
            f"busy ratio {base.busy_ratio:.2f} → {now.busy_ratio:.2f}; capacity unchanged "
            f"({base.capacity_per_s:.0f} → {now.capacity_per_s:.0f} req/s)",
            f"batch size {base.batch_mean_size:.1f} → {now.batch_mean_size:.1f}; {_spread(a)}",
        ),
        (
            Fix(
                f"add capacity — a replica, or cores for a third instance ({n} → {n + 1} instances' worth): "
                f"busy {now.busy_ratio:.2f} → ~{now.busy_ratio * n / (n + 1):.2f}",
                f"queues drain; P95 toward {ms(base.total.p95)}",
                "infrastructure",
                "replica+1",
            ),
            Fix(
                "refuse low-priority traffic at admission until capacity is added",
                f"keep busy under ~0.7 (≈ {0.7 * now.capacity_per_s:.0f} req/s)",
                "infrastructure",
            ),
        ),
    )


def slow_clients(base: Evidence, now: Evidence, a: Attribution) -> Finding | None:
    late = a.shares[DELIVERY] + a.shares[Stage.RESPOND]
    if a.carrier not in (DELIVERY, Stage.RESPOND) or late < 0.5:
        return None
    r = (base.stages[Stage.RESPOND].p95, now.stages[Stage.RESPOND].p95)
    d = (base.delivery.p95, now.delivery.p95)
    return Finding(
        "slow-clients",
        "answers leave the server on time, but clients (or the network) take them slowly",
        _conf(0.5 + 0.4 * late),
        (
            f"delivery (until the client acknowledged the answer) P95 {ms(d[0])} → {ms(d[1])}; "
            f"respond P95 {ms(r[0])} → {ms(r[1])}: {late:.0%} of the rise",
            f"server stages steady: total P95 {ms(base.total.p95)} → {ms(now.total.p95)}; "
            f"traffic {base.answered_per_s:.0f} → {now.answered_per_s:.0f} req/s",
        ),
        (
            Fix(
                "find the slow readers (client versions, regions, response sizes such as a large top_k); "
                "put a buffering proxy in front so slow readers do not hold connections",
                f"delivery P95 back toward {ms(d[0])}",
                "clients",
            ),
            Fix(
                "set send timeouts and keep answers small (ask for fewer classes)",
                "bounded time per slow connection",
                "infrastructure",
            ),
        ),
    )


RULES: tuple[Rule, ...] = (
    memory_pressure,
    input_drift,
    cpu_contention,
    batching_misconfig,
    slow_uploads,
    preprocess_starvation,
    changes.changed_rule,
    slow_inference,
    traffic_growth,
    slow_clients,
)


def no_regression(c: Confirmation) -> Finding:
    return Finding(
        "no-regression",
        "no significant server-side regression",
        _conf(0.5 + 0.4 * min(min(c.samples) / 1000, 1.0)),
        (
            f"total P95 {ms(c.p95[0])} → {ms(c.p95[1])} (×{c.p95_ratio:.2f}) "
            f"on {c.samples[0]} vs {c.samples[1]} samples",
            f"delivery (until clients acknowledged the answer) P95 {ms(c.delivery_p95[0])} → {ms(c.delivery_p95[1])}; "
            "if clients still report slowness, it lies beyond what the server can see: the client itself, "
            "connection set-up, or the network on the way in",
        ),
        (
            Fix(
                "measure at the client (delivery time, connection reuse, network path) before changing the service",
                "locates latency the server's telemetry cannot see",
                "clients",
            ),
        ),
    )


def inconclusive(base: Evidence, now: Evidence, a: Attribution) -> Finding:
    return Finding(
        "inconclusive",
        f"regression carried by {a.carrier or 'no single stage'}, but no root-cause class fits the signals",
        0.3,
        (
            _spread(a),
            _cpu_line(base, now),
            f"event-loop lag P95 {ms(base.event_loop_lag_p95_s)} → {ms(now.event_loop_lag_p95_s)}",
        ),
        (
            Fix(
                "check next: GPU utilisation and clocks, errors and refusals by reason, "
                "traces of the slowest requests, recent deploys and config changes",
                "narrows the cause",
                "infrastructure",
            ),
        ),
    )


# --- helpers --------------------------------------------------------------------------------


def _spread(a: Attribution) -> str:
    top = sorted(a.shares.items(), key=lambda kv: -kv[1])[:3]
    return "rise carried by " + ", ".join(f"{s} {share:.0%}" for s, share in top if share > 0)


def _cpu_line(base: Evidence, now: Evidence) -> str:
    return (
        f"machine CPU {base.machine_cpu_utilization_ratio:.0%} → {now.machine_cpu_utilization_ratio:.0%}, "
        f"outside the service {base.outside_cpu_cores:.2f} → {now.outside_cpu_cores:.2f} cores"
    )


def _traffic(base: Evidence, now: Evidence) -> tuple[float, float]:
    """Requests per second sent to the model, then and now: the arrivals when both windows counted
    them, else what was answered or refused (which lags the arrivals while a backlog builds)."""
    if base.arrived_per_s > 0 and now.arrived_per_s > 0:
        return base.arrived_per_s, now.arrived_per_s
    return base.answered_per_s + base.refused_per_s, now.answered_per_s + now.refused_per_s


def _traffic_ratio(base: Evidence, now: Evidence) -> float:
    then, current = _traffic(base, now)
    return _ratio(current, then)
