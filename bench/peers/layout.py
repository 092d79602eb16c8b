"""Thread layouts: how many model instances each server runs, and how many threads each has.

A layout is ``INSTANCESxTHREADS``: ``2x1`` is two instances (ONNX Runtime sessions) of one
intra-op thread each, ``1x2`` one session of two. ``auto`` is what servoscope itself plans for
this machine (:func:`servoscope.resources.plan_threads`: on the CPU one single-threaded session
per core), so by default every peer runs servoscope's thread plan, each in its own idiom:

  triton    one bound callable per instance (``triton.bind(infer_func=[...])``): Triton's
            instance group of ``KIND_CPU`` × instances, one dynamic batcher feeding them all
  ray       ``num_replicas`` = instances, each replica ``num_cpus`` = threads
  litserve  ``workers_per_device`` = instances on ``accelerator="cpu"`` (and, by LitServe's
            default, as many API server processes)

In each instance the decodes of a batch run on ``threads`` threads too, so instances × threads
decode threads in all: servoscope's one decode worker per core. servoscope runs as shipped
whatever the layout (its model's ``[instances]``, sized by the same function), and the naive
server as it is: one session, ONNX Runtime's default threads (one per physical core), batch 1.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import psutil

from servoscope.models.repository import ModelEntry
from servoscope.resources import available_cores, plan_threads

AUTO = "auto"
PATTERN = re.compile(r"(\d+)x(\d+)")


@dataclass(frozen=True, slots=True)
class Layout:
    instances: int  # model instances (ONNX Runtime sessions)
    threads: int  # intra-op threads per instance

    def __str__(self) -> str:
        return f"{self.instances}x{self.threads}"


def parse_layout(text: str, cores: int | None = None) -> Layout:
    """``auto`` (servoscope's plan for ``cores``, default this machine's) or ``INSTANCESxTHREADS``."""
    if text == AUTO:
        plan = plan_threads(cores=cores or available_cores())
        return Layout(plan.instances, plan.intra_op_threads)
    match = PATTERN.fullmatch(text)
    if match is None or min(map(int, match.groups())) < 1:
        raise ValueError(f"layout must be {AUTO!r} or INSTANCESxTHREADS with both >= 1 (1x2, 2x1), got {text!r}")
    return Layout(int(match[1]), int(match[2]))


def servoscope_layout(entry: ModelEntry) -> Layout:
    """What ``servoscope serve`` runs this model with: its ``[instances]``, sized as the server sizes it."""
    cfg = entry.config.instances
    plan = plan_threads(0, cfg.count, cfg.intra_op_threads, cfg.provider)
    return Layout(plan.instances, plan.intra_op_threads)


def naive_layout() -> Layout:
    """One session at ONNX Runtime's default intra-op threads: one per physical core."""
    return Layout(1, psutil.cpu_count(logical=False) or available_cores())


def describe(server: str, layout: Layout) -> str:
    """How ``server`` realises ``layout``, in its own terms, for the table's footnote."""
    n, t = layout.instances, layout.threads
    return {
        "servoscope": f"{n} instance(s) × {t} thread(s), {available_cores()} shared decode workers (as shipped)",
        "naive": f"one session at ONNX Runtime's default {t} thread(s) (one per physical core), batch 1, "
        "from a thread pool",
        "triton": f"{n} bound callable(s): instance_group KIND_CPU count {n}, {t} thread(s) each",
        "ray": f"num_replicas={n}, each num_cpus={t} and a {t}-thread session",
        "litserve": f"workers_per_device={n} (accelerator cpu), each a {t}-thread session",
    }[server]
