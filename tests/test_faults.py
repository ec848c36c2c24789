"""Fault containment, one test per failure kind: the scrape still answers 200 with everything
else, ``<ns>_exporter_errors_total{collector}`` counts every failure, and the log says it once
per ``error_log_interval``, not once per scrape. Every scrape is real HTTP on 127.0.0.1."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import resource
import subprocess
import threading
import time
import urllib.request

import psutil
import pytest
from appserver import AppServer
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from tornado_memory_exporter import Config, start_metrics_server
from tornado_memory_exporter.buckets import GC_PAUSE_BUCKETS
from tornado_memory_exporter.census.heap import HeapCensus
from tornado_memory_exporter.census.selection import TypeSelector
from tornado_memory_exporter.collectors.census import CensusCollector
from tornado_memory_exporter.collectors.gc_pauses import GCPauseRecorder
from tornado_memory_exporter.collectors.gc_stats import GCStatsCollector
from tornado_memory_exporter.collectors.memory_limit import MemoryLimit
from tornado_memory_exporter.collectors.process import ProcessCollector
from tornado_memory_exporter.faults import Faults, FaultsCollector, GuardedCollector
from tornado_memory_exporter.pools.pool import PoolSnapshot

LOGGER = "tornado_memory_exporter"
GiB = 2**30


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@contextlib.contextmanager
def serving(faults: Faults, **sources):
    """A registry wired like ``install()`` wires it (each source guarded, plus the errors
    counter), served by the real separate metrics server."""
    registry = CollectorRegistry()
    for name, source in sources.items():
        registry.register(GuardedCollector(name, source, faults))
    registry.register(GuardedCollector("gc", GCStatsCollector("tornado"), faults))
    registry.register(FaultsCollector("tornado", faults))
    server = start_metrics_server(port=0, registry=registry)
    try:
        yield lambda: scrape(server.url + "/metrics")
    finally:
        server.stop()


def scrape(url: str) -> dict[str, dict[tuple, float]]:
    """{family: {sorted label items + sample name: value}} of one 200 scrape."""
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.status == 200
        body = response.read().decode()
    assert "Traceback" not in body
    out: dict[str, dict[tuple, float]] = {}
    for family in text_string_to_metric_families(body):
        for sample in family.samples:
            out.setdefault(family.name, {})[(sample.name, *sorted(sample.labels.items()))] = (
                sample.value
            )
    return out


def errors(families, source: str) -> float:
    return families["tornado_exporter_errors"][
        ("tornado_exporter_errors_total", ("collector", source))
    ]


def gauge(families, name: str) -> float:
    (value,) = families[name].values()
    return value


def failure_logs(caplog, source: str) -> int:
    return sum(
        f"source {source!r} failed" in r.getMessage() for r in caplog.records if r.name == LOGGER
    )


EVERYTHING_ELSE = {"tornado_gc_threshold", "tornado_gc_collections", "tornado_exporter_errors"}


class DeniedProcess:
    """A psutil.Process whose reads are refused, as for a hardened /proc (hidepid=2)."""

    def __init__(self, *, only_full: bool = False) -> None:
        self._real = psutil.Process()
        self._only_full = only_full

    def oneshot(self):
        return contextlib.nullcontext()

    def __getattr__(self, name):
        if name == "memory_full_info" or not self._only_full:

            def denied(*args, **kwargs):
                raise psutil.AccessDenied(pid=self._real.pid, name="python")

            return denied
        return getattr(self._real, name)


def _process(faults, **kwargs) -> ProcessCollector:
    kwargs.setdefault("memory_limit", MemoryLimit(host_total=lambda: 8 * GiB))
    return ProcessCollector("tornado", faults, **kwargs)


def test_psutil_access_denied(caplog):
    clock = Clock()
    faults = Faults(log_interval=60, clock=clock)
    with (
        caplog.at_level(logging.WARNING, logger=LOGGER),
        serving(faults, process=_process(faults, proc=DeniedProcess())) as get,
    ):
        for n in (1, 2, 3):
            families = get()
            assert errors(families, "process") == n
            assert "tornado_process_resident_memory_bytes" not in families
            assert gauge(families, "tornado_process_memory_limit_bytes") == 8 * GiB
            assert gauge(families, "tornado_python_allocated_blocks") > 0
            assert EVERYTHING_ELSE <= set(families)
        assert failure_logs(caplog, "process") == 1
        clock.now += 60
        assert errors(get(), "process") == 4
        assert failure_logs(caplog, "process") == 2
    assert "AccessDenied" in caplog.records[0].getMessage()


def test_psutil_access_denied_on_smaps_costs_only_uss_pss_swap(caplog):
    faults = Faults(log_interval=60)
    with (
        caplog.at_level(logging.WARNING, logger=LOGGER),
        serving(
            faults, process=_process(faults, proc=DeniedProcess(only_full=True), full_memory=True)
        ) as get,
    ):
        for n in (1, 2):
            families = get()
            assert errors(families, "process") == n
            assert gauge(families, "tornado_process_resident_memory_bytes") > 0
            assert "tornado_process_unique_memory_bytes" not in families
            assert "tornado_process_swap_bytes" not in families
    assert failure_logs(caplog, "process") == 1


def test_psutil_no_such_process(caplog):
    child = subprocess.Popen(["sleep", "60"])
    proc = psutil.Process(child.pid)
    child.kill()
    child.wait()
    faults = Faults(log_interval=60)
    with (
        caplog.at_level(logging.WARNING, logger=LOGGER),
        serving(faults, process=_process(faults, proc=proc)) as get,
    ):
        for n in (1, 2, 3):
            families = get()
            assert errors(families, "process") == n
            assert "tornado_process_open_fds" not in families
            assert gauge(families, "tornado_process_memory_limit_bytes") == 8 * GiB
    assert failure_logs(caplog, "process") == 1
    assert "NoSuchProcess" in caplog.records[0].getMessage()


def test_proc_status_and_cgroup_files_missing_fall_back_without_an_error(tmp_path, caplog):
    faults = Faults(log_interval=60)
    collector = _process(
        faults,
        status_path=tmp_path / "proc/self/status",
        memory_limit=MemoryLimit(root=tmp_path, host_total=lambda: 8 * GiB),
    )
    with caplog.at_level(logging.WARNING, logger=LOGGER), serving(faults, process=collector) as get:
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        families = get()
        after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    assert before <= gauge(families, "tornado_process_resident_memory_peak_bytes") <= after
    assert gauge(families, "tornado_process_memory_limit_bytes") == 8 * GiB
    assert gauge(families, "tornado_process_resident_memory_bytes") > 0
    assert errors(families, "process") == 0
    assert failure_logs(caplog, "process") == 0


def test_a_garbled_cgroup_file_costs_only_the_limit(tmp_path, caplog):
    (tmp_path / "proc/self").mkdir(parents=True)
    (tmp_path / "proc/self/cgroup").write_text("this is not a cgroup line\n")
    faults = Faults(log_interval=60)
    collector = _process(
        faults, memory_limit=MemoryLimit(root=tmp_path, host_total=lambda: 8 * GiB)
    )
    with caplog.at_level(logging.WARNING, logger=LOGGER), serving(faults, process=collector) as get:
        for n in (1, 2, 3):
            families = get()
            assert errors(families, "process") == n
            assert "tornado_process_memory_limit_bytes" not in families
            assert gauge(families, "tornado_process_resident_memory_bytes") > 0
            assert gauge(families, "tornado_process_resident_memory_peak_bytes") > 0
    assert failure_logs(caplog, "process") == 1


@contextlib.contextmanager
def gc_disabled():
    """Only the collections the test asks for, so failure counts are exact."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def test_a_failing_gc_callback(caplog):
    faults = Faults(log_interval=60)
    # Told there is one generation, the callback fails (IndexError) on every gen-1/2 collection.
    recorder = GCPauseRecorder("tornado", faults, buckets=GC_PAUSE_BUCKETS, generations=1)
    with (
        caplog.at_level(logging.WARNING, logger=LOGGER),
        serving(faults, gc_pauses=recorder) as get,
    ):
        with gc_disabled():
            recorder.start()
            try:
                gc.collect(0)
                gc.collect(1)
                gc.collect(2)
            finally:
                recorder.stop()
        families = get()
        assert errors(families, "gc_pauses") == 2
        pauses = families["tornado_gc_pause_seconds"]
        assert pauses[("tornado_gc_pause_seconds_count", ("generation", "0"))] == 1
        assert EVERYTHING_ELSE <= set(families)
        with gc_disabled():
            recorder.start()
            try:
                gc.collect(1)
            finally:
                recorder.stop()
        assert errors(get(), "gc_pauses") == 3
    assert failure_logs(caplog, "gc_pauses") == 1


def test_the_census_raising(caplog):
    calls = []

    def get_objects():
        calls.append(1)
        if len(calls) > 1:
            raise MemoryError("no room to list the heap")
        return [{}, {}, []]

    async def run():
        faults = Faults(log_interval=60)
        census = HeapCensus(
            loop=asyncio.get_running_loop(),
            faults=faults,
            interval=0,
            slice_budget=0.005,
            selector=TypeSelector(top_n=5, growth_n=0, allowlist=(), hold=0),
            get_objects=get_objects,
        )
        first = await census.run_now()
        for _ in range(3):
            with pytest.raises(MemoryError):
                await census.run_now()
        return faults, census, first

    with caplog.at_level(logging.WARNING, logger=LOGGER):
        faults, census, first = asyncio.run(run())
        with serving(faults, census=CensusCollector("tornado", lambda: census.snapshot)) as get:
            families = get()
    assert errors(families, "census") == 3
    assert failure_logs(caplog, "census") == 1
    # the last good census is still served, with its timestamp telling how old it is
    assert families["tornado_objects"][("tornado_objects", ("type", "dict"))] == 2
    assert gauge(families, "tornado_census_last_success_timestamp_seconds") == first.finished_at
    assert EVERYTHING_ELSE <= set(families)


class BrokenLen:
    def __len__(self):
        raise RuntimeError("len() of a half-torn-down cache")


class HangingPool:
    def __init__(self) -> None:
        self.release = threading.Event()

    def pool_snapshot(self):
        self.release.wait()
        return PoolSnapshot(capacity=4, in_use=0, idle=4, waiting=0)


class RaisingPool:
    def pool_snapshot(self):
        raise ConnectionError("pool is being torn down")


class GoodPool:
    def pool_snapshot(self):
        return {"capacity": 10, "in_use": 3, "idle": 7, "waiting": 0}


def _families(body: str):
    return {
        f.name: {(s.name, *sorted(s.labels.items())): s.value for s in f.samples}
        for f in text_string_to_metric_families(body)
    }


def test_a_watched_object_whose_measurement_raises(caplog):
    broken, good = BrokenLen(), [1, 2, 3]
    with (
        caplog.at_level(logging.WARNING, logger=LOGGER),
        AppServer(config=Config(census_interval=0)) as server,
    ):
        server.exporter.watch("broken", broken)
        server.exporter.watch("good", good)
        for n in (1, 2):
            server.call(lambda: server.exporter.census_now())
            families = _families(server.scrape())
            assert errors(families, "watch") == n
            items = families["tornado_watched_object_items"]
            assert items == {("tornado_watched_object_items", ("name", "good")): 3}
            assert gauge(families, "tornado_census_objects_scanned") > 0
    assert failure_logs(caplog, "watch") == 1


@pytest.mark.parametrize("kind", ["raises", "hangs"])
def test_a_registered_pool_whose_snapshot_raises_or_hangs(kind, caplog):
    bad = RaisingPool() if kind == "raises" else HangingPool()
    with (
        caplog.at_level(logging.WARNING, logger=LOGGER),
        AppServer(config=Config(census_interval=0)) as server,
    ):
        server.exporter.pools.register("bad", bad)
        server.exporter.pools.register("good", GoodPool())
        try:
            for n in (1, 2, 3):
                started = time.monotonic()
                families = _families(server.scrape())
                took = time.monotonic() - started
                assert errors(families, "pools") == n
                assert families["tornado_pool_in_use"] == {
                    ("tornado_pool_in_use", ("pool", "good")): 3
                }
                assert gauge(families, "tornado_process_resident_memory_bytes") > 0
                if kind == "hangs":  # the scrape waits for the snapshot deadline, not forever
                    assert took < 5, took
        finally:
            if kind == "hangs":
                bad.release.set()
    assert failure_logs(caplog, "pools") == 1
