"""start_in_thread(): the same Exporter for code without a loop of its own, used from sync code."""

from __future__ import annotations

import socket
import threading
import urllib.error
import urllib.request

import pytest
from prometheus_client import CollectorRegistry
from realbin import wait_for

from tornado_memory_exporter import Config, Exporter, ObjectPool, start_in_thread


def scrape(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.read().decode()


def ours() -> set[str]:
    return {
        t.name for t in threading.enumerate() if t.name.startswith(("tornado-memory", "metrics-"))
    }


def test_a_sync_caller_gets_metrics_and_a_first_census_within_seconds_then_stops_it_all():
    before = ours()
    exporter = start_in_thread(
        port=0, config=Config(census_interval=60), registry=CollectorRegistry()
    )
    url = exporter.url
    try:
        assert isinstance(exporter, Exporter) and exporter.running
        assert "tornado_process_resident_memory_bytes" in scrape(url + "/metrics")
        # the first census comes seconds after start, on the schedule
        wait_for("a census", lambda: "tornado_objects{" in scrape(url + "/metrics"), timeout=10)
    finally:
        exporter.stop()
        exporter.stop()  # idempotent
    assert not exporter.running
    with pytest.raises(urllib.error.URLError):
        scrape(url + "/metrics")
    assert ours() == before  # stop() returns once the thread has ended


def test_watch_pools_and_census_now_work_from_synchronous_code():
    exporter = start_in_thread(
        port=0, config=Config(census_interval=0), registry=CollectorRegistry()
    )
    try:
        sessions = {f"s{i}": i for i in range(7)}
        exporter.watch("sessions", sessions)
        pool = ObjectPool(object, max_size=3, name="db")
        exporter.pools.register("db", pool)
        snapshot = exporter.census_now().result(timeout=60)
        assert snapshot.objects["dict"] > 0
        text = scrape(exporter.url + "/metrics")
        assert 'tornado_watched_object_items{name="sessions"} 7.0' in text
        assert 'tornado_pool_capacity{pool="db"} 3.0' in text
        with pytest.raises(ValueError, match="name"):
            exporter.watch("", sessions)  # raised in the caller's thread
        exporter.unwatch("sessions")
        exporter.census_now().result(timeout=60)
        assert 'name="sessions"' not in scrape(exporter.url + "/metrics")
    finally:
        exporter.stop()


def test_port_none_serves_nothing_and_publishes_through_the_registry():
    registry = CollectorRegistry()
    exporter = start_in_thread(port=None, config=Config(census_interval=0), registry=registry)
    try:
        assert exporter.url is None
        assert registry.get_sample_value("tornado_exporter_info", _info_labels(registry)) == 1.0
    finally:
        exporter.stop()


def _info_labels(registry: CollectorRegistry) -> dict[str, str]:
    (family,) = [m for m in registry.collect() if m.name == "tornado_exporter_info"]
    return family.samples[0].labels


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
    wait_for(
        "the failed starts' threads to end", lambda: ours() == before, timeout=5, interval=0.05
    )
    exporter = start_in_thread(port=0, registry=registry)  # the registry was left free
    try:
        assert "tornado_gc_collections_total" in scrape(exporter.url + "/metrics")
    finally:
        exporter.stop()
