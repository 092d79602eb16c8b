"""The capacity planner: a profile of measured service times → a discrete-event simulation of the
service that batches with the batcher's own ``dispatch_size`` → saturation, the knee, a fleet plan.

    profile.py    the versioned profile file (machine, configuration families, per-stage samples)
    service.py    the profile's samples as fast samplers (batch sizes not measured: interpolated)
    arrivals.py   arrival processes: Poisson, bursty on/off with a given CV², replay of a load result
    sim.py        the simulation: preprocess pool → batcher → instances → respond
    plan.py       saturation, the knee, the fleet plan and its explanation
    measure.py    ``servoscope profile``: measure a profile with the in-process pipeline
    command.py    ``servoscope plan`` and ``servoscope profile``
"""
