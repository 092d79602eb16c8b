"""Deadlines: from X-Request-Timeout or grpc-timeout; work past its deadline is dropped with a 504
before any costly stage."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from support import CLASSIFY, MODEL, Photo, ServerProcess, assert_error, metric_value


@pytest.mark.parametrize("header", [{"grpc-timeout": t} for t in ("abc", "10x", "0S", "123456789m")])
def test_bad_grpc_timeout_is_a_400(client: httpx.Client, photos: dict[str, Photo], header: dict[str, str]) -> None:
    response = client.post(CLASSIFY, content=photos["coffee"].jpeg, headers={"Content-Type": "image/jpeg", **header})
    assert_error(response, 400, "grpc-timeout")


@pytest.mark.parametrize("header", [{"X-Request-Timeout": "30000"}, {"grpc-timeout": "30S"}, {"grpc-timeout": "1M"}])
def test_generous_deadlines_are_served(client: httpx.Client, photos: dict[str, Photo], header: dict[str, str]) -> None:
    response = client.post(CLASSIFY, content=photos["coffee"].jpeg, headers={"Content-Type": "image/jpeg", **header})
    assert response.status_code == 200


def test_expired_work_is_dropped_before_decoding(
    spawn_server: Callable[..., ServerProcess], photos: dict[str, Photo]
) -> None:
    # One decode worker: requests queue behind a large upload; a 1 µs deadline has always passed
    # by the time a worker picks the request up, so it is answered 504 without being decoded.
    srv = spawn_server("--models", MODEL, "--preprocess-workers", "1")
    with httpx.Client(base_url=srv.url, timeout=30) as client:
        response = client.post(
            CLASSIFY, content=photos["coffee"].jpeg, headers={"Content-Type": "image/jpeg", "grpc-timeout": "1u"}
        )
        assert_error(response, 504, "deadline")
        timings = response.headers["server-timing"]
        assert "preprocess;dur=" in timings and "inference" not in timings
        metrics = client.get("/metrics").text
    assert metric_value(metrics, "servoscope_refused_total", model=MODEL, reason="deadline_exceeded") == 1
