"""Telemetry: metrics, tracing, rolling percentile windows, system and GPU collectors."""
