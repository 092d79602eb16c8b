"""Fault drills: start a service, run baseline traffic, apply one degradation, run the same traffic
again, restore everything, and report what changed. Fault injection lives here and only here."""
