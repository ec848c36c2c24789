"""start_in_thread(): the exporter for code without a loop of its own, driven from plain sync code."""

from __future__ import annotations

import socket
import threading
import time
import urllib.error
import urllib.request

import pytest
from prometheus_client import CollectorRegistry

from tornado_memory_exporter import Config, start_in_thread


def scrape(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.read().decode()


def ours() -> set[str]:
    return {
        t.name for t in threading.enumerate() if t.name.startswith(("tornado-memory", "metrics-"))
    }


def test_a_sync_caller_gets_metrics_and_a_first_census_within_seconds_then_stops_it_all():
    before = ours()
    started = time.monotonic()
    running = start_in_thread(
        port=0, config=Config(census_interval=60), registry=CollectorRegistry()
    )
    try:
        assert running.running
        text = scrape(running.url + "/metrics")
        assert "tornado_process_resident_memory_bytes" in text
        while "tornado_objects{" not in text:  # the first census comes seconds after start
            assert time.monotonic() - started < 10, "no census within 10 s of start_in_thread()"
            time.sleep(0.2)
            text = scrape(running.url + "/metrics")
    finally:
        running.stop()
        running.stop()  # idempotent
    assert not running.running
    with pytest.raises(urllib.error.URLError):
        scrape(running.url + "/metrics")
    assert ours() == before


def test_errors_are_raised_in_the_caller_and_leave_nothing_running():
    registry = CollectorRegistry()
    before = ours()
    with pytest.raises(ValueError, match="port=-1"):
        start_in_thread(port=-1, registry=registry)
    with pytest.raises(TypeError, match="must be a Config"):
        start_in_thread(port=0, config={"census_interval": 0}, registry=registry)  # type: ignore[arg-type]
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    try:
        with pytest.raises(OSError):
            start_in_thread(port=taken.getsockname()[1], registry=registry)
    finally:
        taken.close()
    time.sleep(0.1)
    assert ours() == before
    running = start_in_thread(port=0, registry=registry)  # the registry was left free
    try:
        assert "tornado_gc_collections_total" in scrape(running.url + "/metrics")
    finally:
        running.stop()
