"""The capacity planner: a profile of measured service times → a discrete-event simulation of the
service that batches with the batcher's own ``dispatch_size`` → saturation, the knee, a fleet plan.

    profile.py    the versioned profile file (machine, configuration families, per-stage samples)
    service.py    the profile's samples as fast samplers (batch sizes not measured: interpolated)
    arrivals.py   arrival processes: Poisson, bursty on/off with a given CV², replay of a load result
    sim.py        the simulation: preprocess pool → batcher → instances → respond
    plan.py       saturation, the knee, the fleet plan and its explanation
    predict.py    ``predict(profile, knobs, arrival_rate, image_mix)`` → P50/P95/P99, saturation, utilization,
                  per-stage waits; ``max_rate(profile, knobs, slo_p95_ms)``: pure, ~50 ms (the doctor's
                  predicted effect of a fix: predict before and after with the knobs changed)
    knobs.py      the five tuned settings as one value, their serve flags and config.toml keys
    measure.py    ``servoscope profile``: a profile from the in-process pipeline's own cost model
    search.py     the tuner's coordinate search, a pure function of predictions and a measure callback
    trial.py      one configuration measured live (a restarted server, a ladder of open-loop windows)
    tune.py       ``servoscope tune``
    command.py    ``servoscope plan``, ``servoscope profile`` and ``servoscope tune``
"""
