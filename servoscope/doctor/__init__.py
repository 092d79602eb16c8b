"""The doctor: diagnose a latency regression from two ``/v1/stats`` snapshots."""
