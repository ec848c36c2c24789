"""Several workers behind one port: real ``fork_processes`` workers (tests/support/forked_app.py),
plus
the worker view over hand-made snapshot directories."""

from __future__ import annotations

import functools
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import psutil
import pytest
from appserver import AppServer
from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from realbin import free_port, promtool, require_binary, wait_for

from tornado_memory_exporter import Config
from tornado_memory_exporter.faults import Faults, FaultsCollector
from tornado_memory_exporter.workers import SnapshotWriter, WorkerView, worker_port

HARNESS = Path(__file__).parent / "support" / "forked_app.py"
START = "tornado_process_start_time_seconds"


class Workers:
    """tests/support/forked_app.py in a session of its own; killed as a group on exit."""

    def __init__(self, tmp_path: Path, *args: str) -> None:
        self.dir = tmp_path / "workers"
        self.stderr = tmp_path / "stderr.txt"
        with self.stderr.open("wb") as stderr:
            self.process = subprocess.Popen(
                [sys.executable, str(HARNESS), "--dir", str(self.dir), *args],
                stdout=subprocess.PIPE,
                stderr=stderr,
                start_new_session=True,
            )
        assert self.process.stdout is not None
        self.port = int(self.process.stdout.readline())

    def header_pid(self, worker: str) -> int:
        header = (self.dir / f"{worker}.prom").read_text().partition("\n")[0]
        return int(header.split(" pid=")[1].split()[0])

    def scrape(self, port: int | None = None) -> dict[str, list]:
        url = f"http://127.0.0.1:{port or self.port}/metrics"
        with urllib.request.urlopen(url, timeout=10) as response:
            assert response.status == 200
            self.last_body = response.read()
        return {f.name: f.samples for f in text_string_to_metric_families(self.last_body.decode())}

    def __enter__(self) -> Workers:  # noqa: PYI034 - a test helper, never subclassed
        return self

    def __exit__(self, *exc: object) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
        self.process.wait(timeout=10)


def start_times(families: dict[str, list]) -> dict[str, float]:
    samples = families[START]
    workers = [s.labels["worker"] for s in samples]
    assert len(workers) == len(set(workers)), f"one series per worker: {workers}"
    return {s.labels["worker"]: s.value for s in samples}


@pytest.mark.integration
def test_one_scrape_of_the_shared_port_returns_every_live_worker(tmp_path):
    with Workers(tmp_path, "--workers", "3", "--interval", "1") as workers:
        wait_for(
            "3 snapshots",
            lambda: len(list(workers.dir.glob("*.prom"))) == 3,
            timeout=20,
            interval=0.05,
        )
        expected = {w: psutil.Process(workers.header_pid(w)).create_time() for w in ("0", "1", "2")}
        for _ in range(8):  # each connection reaches whichever worker accepts it
            families = workers.scrape()
            assert start_times(families) == expected
            for sample in families["tornado_exporter_errors"]:
                assert sample.value == 0, sample
        if require_binary_quietly("promtool"):
            result = promtool("check", "metrics", stdin=workers.last_body)
            assert result.returncode == 0, result.stdout + result.stderr


def require_binary_quietly(name: str) -> bool:
    try:
        require_binary(name)
    except pytest.skip.Exception:
        return False
    return True


def test_a_restarted_worker_replaces_its_series_within_one_interval(tmp_path):
    interval = 2.0
    with Workers(tmp_path, "--workers", "2", "--interval", str(interval)) as workers:
        wait_for(
            "2 snapshots",
            lambda: len(list(workers.dir.glob("*.prom"))) == 2,
            timeout=20,
            interval=0.05,
        )
        old_pid = workers.header_pid("1")
        os.kill(old_pid, signal.SIGKILL)
        killed = time.monotonic()

        def replaced():
            try:
                pid = workers.header_pid("1")
            except (OSError, IndexError):
                return None
            if pid == old_pid:
                return None
            times = start_times(workers.scrape())
            return pid if times.get("1") == psutil.Process(pid).create_time() else None

        new_pid = wait_for(
            "worker 1 restarted and served", replaced, timeout=interval, interval=0.05
        )
        assert time.monotonic() - killed < interval
        assert new_pid != old_pid
        assert sorted(start_times(workers.scrape())) == ["0", "1"]
        assert sorted(p.name for p in workers.dir.iterdir()) == ["0.prom", "1.prom"]


def test_the_state_directory_does_not_grow_across_1000_worker_restarts(tmp_path):
    with Workers(
        tmp_path, "--workers", "2", "--crash-after-write", "--max-restarts", "1000"
    ) as workers:
        # ~20 ms per restart on a quiet 2-core machine, ~100 ms when it is shared and loaded
        assert workers.process.wait(timeout=300) != 0
    log = workers.stderr.read_text()
    assert "Too many child restarts" in log
    # fork_processes logs every crash, then gives up on the one past max_restarts
    assert log.count("exited with status 1, restarting") == 1001
    assert sorted(p.name for p in workers.dir.iterdir()) == ["0.prom", "1.prom"]
    # Every writer is dead now: the next scrape serves none of them and deletes their files.
    faults = Faults()
    view = WorkerView(CollectorRegistry(), worker="9", faults=faults, directory=workers.dir)
    assert list(view.collect()) == []
    assert list(workers.dir.iterdir()) == []
    assert faults.counts == {"workers": 0}


def test_per_worker_port_mode_serves_each_worker_on_its_own_port(tmp_path):
    base = wait_for("two free adjacent ports", _adjacent_free_ports, timeout=10, interval=0)
    with Workers(tmp_path, "--workers", "2", "--worker-port", str(base)) as workers:
        for offset, worker in ((0, "0"), (1, "1")):
            port = base + offset
            families = wait_for(
                f"port {port}", functools.partial(workers.scrape, port), timeout=20, interval=0.05
            )
            assert list(start_times(families)) == [worker]
        assert not workers.dir.exists()  # no shared directory in this mode


def _adjacent_free_ports() -> int | None:
    base = free_port()
    if base >= 65535:
        return None
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", base + 1))
        except OSError:
            return None
    return base


def test_worker_port_is_base_plus_task_id_and_validated():
    assert worker_port(9464) == 9464  # not forked: task id 0
    for bad in (0, 65536, "9464", True):
        with pytest.raises(ValueError, match="base="):
            worker_port(bad)


# --- the view over hand-made directories ------------------------------------------------------


def _registry(value: float) -> CollectorRegistry:
    registry = CollectorRegistry()
    Gauge("queue_depth", "Items queued.", registry=registry).set(value)
    Counter("jobs", "Jobs done.", registry=registry).inc(value)
    return registry


def _write_sibling(
    directory: Path,
    worker: str,
    value: float,
    *,
    pid: int | None = None,
    started: float | None = None,
) -> Path:
    view = WorkerView(_registry(value), worker=worker, faults=Faults(), directory=directory)
    writer = SnapshotWriter(view, interval=60, faults=Faults(), pid=pid, started=started)
    writer.write()
    return writer.path


def _dead_pid() -> tuple[int, float]:
    child = subprocess.Popen(["true"])
    started = psutil.Process(child.pid).create_time()
    child.wait()
    return child.pid, started


def _values(view, name: str) -> dict[str, float]:
    families = {f.name: f for f in view.collect()}
    return {
        s.labels["worker"]: s.value
        for s in families[name].samples
        if s.name in (name, f"{name}_total")
    }


def test_view_merges_live_siblings_and_labels_its_own_series(tmp_path):
    _write_sibling(tmp_path, "1", 5)
    _write_sibling(tmp_path, "10", 7)
    view = WorkerView(_registry(3), worker="0", faults=Faults(), directory=tmp_path)
    assert _values(view, "queue_depth") == {"0": 3, "1": 5, "10": 7}
    families = {f.name: f for f in view.collect()}
    # the text format splits jobs_created off; it is folded back into one `jobs` family
    assert [s.name for s in families["jobs"].samples] == ["jobs_total", "jobs_created"] * 3
    assert "jobs_created" not in families
    assert [s.labels["worker"] for s in families["queue_depth"].samples] == ["0", "1", "10"]


def test_view_deletes_the_files_of_dead_workers_and_their_temporary_files(tmp_path):
    pid, started = _dead_pid()
    dead = _write_sibling(tmp_path, "1", 5, pid=pid, started=started)
    leftover = tmp_path / f".2.{pid}.tmp"
    leftover.write_text("half a snapshot")
    view = WorkerView(_registry(3), worker="0", faults=Faults(), directory=tmp_path)
    assert _values(view, "queue_depth") == {"0": 3}
    assert not dead.exists() and not leftover.exists()


def test_a_reused_pid_does_not_resurrect_a_dead_worker(tmp_path):
    me = psutil.Process()
    _write_sibling(tmp_path, "1", 5, pid=me.pid, started=me.create_time() - 100)
    view = WorkerView(_registry(3), worker="0", faults=Faults(), directory=tmp_path)
    assert _values(view, "queue_depth") == {"0": 3}
    assert list(tmp_path.iterdir()) == []


def test_a_live_worker_that_stopped_writing_is_left_out_but_kept(tmp_path):
    path = _write_sibling(tmp_path, "1", 5)
    now = [path.stat().st_mtime + 14]
    view = WorkerView(
        _registry(3),
        worker="0",
        faults=Faults(),
        directory=tmp_path,
        stale_after=15,
        clock=lambda: now[0],
    )
    assert _values(view, "queue_depth") == {"0": 3, "1": 5}
    now[0] += 2
    assert _values(view, "queue_depth") == {"0": 3}
    assert path.exists()


def test_a_corrupt_snapshot_is_counted_and_logged_once_and_the_rest_is_served(tmp_path, caplog):
    _write_sibling(tmp_path, "1", 5)
    (tmp_path / "2.prom").write_text("not a snapshot\n")
    faults = Faults(log_interval=60)
    registry = _registry(3)
    registry.register(FaultsCollector("tornado", faults))
    view = WorkerView(registry, worker="0", faults=faults, directory=tmp_path)
    with caplog.at_level(logging.WARNING, logger="tornado_memory_exporter"):
        for _ in range(3):
            assert _values(view, "queue_depth") == {"0": 3, "1": 5}
    assert faults.counts["workers"] == 3
    assert len(caplog.records) == 1 and "'workers' failed" in caplog.records[0].getMessage()
    assert _values(view, "tornado_exporter_errors") == {"0": 4}  # siblings are read first


def test_a_family_whose_type_disagrees_is_left_out(tmp_path):
    other = CollectorRegistry()
    Counter("queue_depth", "Not a gauge here.", registry=other).inc()
    view = WorkerView(other, worker="1", faults=Faults(), directory=tmp_path)
    SnapshotWriter(view, interval=60, faults=Faults()).write()
    mine = WorkerView(_registry(3), worker="0", faults=Faults(), directory=tmp_path)
    assert _values(mine, "queue_depth") == {"0": 3}


def test_the_writer_replaces_its_file_atomically_and_removes_it_on_stop(tmp_path):
    view = WorkerView(_registry(3), worker="4", faults=Faults(), directory=tmp_path / "new")
    writer = SnapshotWriter(view, interval=60, faults=Faults())
    assert (tmp_path / "new").stat().st_mode & 0o777 == 0o700
    writer.write()
    writer.write()
    assert sorted(p.name for p in (tmp_path / "new").iterdir()) == ["4.prom"]
    assert writer.path.stat().st_mode & 0o777 == 0o600
    body = writer.path.read_text().partition("\n")[2]
    assert body == generate_latest(_Labelled(view)).decode()
    writer.stop()
    assert list((tmp_path / "new").iterdir()) == []


class _Labelled:
    def __init__(self, view):
        self.view = view

    def collect(self):
        return self.view.local()


def test_install_with_worker_label_labels_every_series_and_filters_by_name(tmp_path):
    config = Config(census_interval=0, worker_label=True, worker_dir=str(tmp_path / "w"))
    _write_sibling(tmp_path / "w", "1", 5)
    with AppServer(config=config) as server:
        assert sorted(p.name for p in (tmp_path / "w").iterdir()) == ["0.prom", "1.prom"]
        families = {f.name: f for f in text_string_to_metric_families(server.scrape())}
        for family in families.values():
            for sample in family.samples:
                assert "worker" in sample.labels, sample
        assert {s.labels["worker"] for s in families["queue_depth"].samples} == {"1"}
        status, _, body = server.get("/metrics?name[]=queue_depth&name[]=tornado_process_threads")
        assert status == 200
        names = {
            f.name: [s.labels["worker"] for s in f.samples]
            for f in text_string_to_metric_families(body.decode())
        }
        assert names == {"queue_depth": ["1"], "tornado_process_threads": ["0"]}
    assert sorted(p.name for p in (tmp_path / "w").iterdir()) == ["1.prom"]  # stop() removed ours


def test_config_validates_the_worker_options():
    assert Config(worker_label=True, worker_dir="/run/x").worker_dir == "/run/x"
    with pytest.raises(ValueError, match="worker_dir='relative' must be an absolute path"):
        Config(worker_label=True, worker_dir="relative")
    with pytest.raises(ValueError, match="worker_dir='/x' needs worker_label=True"):
        Config(worker_dir="/x")
    with pytest.raises(ValueError, match="worker_interval=0 must be"):
        Config(worker_interval=0)


def test_workers_remove_their_files_when_terminated_cleanly(tmp_path):
    # SIGTERM to the group, as a process manager stops the service: no handler of the app's,
    # so the default action would end each worker at once, leaving its file for scrapes to skip.
    with Workers(tmp_path, "--workers", "2", "--interval", "1") as workers:
        wait_for(
            "2 snapshots",
            lambda: len(list(workers.dir.glob("*.prom"))) == 2,
            timeout=20,
            interval=0.05,
        )
        pids = [workers.header_pid(w) for w in ("0", "1")]
        os.killpg(workers.process.pid, signal.SIGTERM)
        workers.process.wait(timeout=10)
        wait_for(
            "the workers' exit",
            lambda: not any(psutil.pid_exists(p) for p in pids),
            timeout=10,
            interval=0.05,
        )
    assert sorted(p.name for p in workers.dir.iterdir()) == []


def test_a_worker_that_returns_without_stop_removes_its_file_at_exit(tmp_path):
    code = f"""
import asyncio, signal, sys, tornado.web
from prometheus_client import CollectorRegistry
from tornado_memory_exporter import Config, install

async def main():
    config = Config(worker_label=True, worker_dir={str(tmp_path)!r}, census_interval=0)
    install(tornado.web.Application(), config=config, registry=CollectorRegistry())
    print(sorted(p for p in __import__("os").listdir({str(tmp_path)!r})), flush=True)
    # no exporter.stop(): the script just ends

asyncio.run(main())
"""
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "['0.prom']"
    assert list(tmp_path.iterdir()) == []
