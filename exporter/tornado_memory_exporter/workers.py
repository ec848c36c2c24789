"""Several worker processes behind one port (``tornado.process.fork_processes``).

prometheus_client's multiprocess mode keeps only its own metric types: custom collectors, and so
every process, GC and census metric here, are dropped (prometheus/client_python#433, #186), and
files of dead workers pile up (#367). Instead each worker writes its whole labelled exposition,
atomically, to ``<dir>/<worker>.prom`` every interval; whichever worker a scrape reaches serves
its own live series plus the files of its live siblings. A restarted worker reuses its task id,
so it overwrites its predecessor's file: the directory holds at most one file per task id.

Every series carries ``worker="<task id>"``. A file counts as live while the process that wrote
it runs (pid plus start time, so a reused pid does not resurrect it) and the file is younger than
``stale_after``; files of dead writers are deleted by the next scrape that sees them.
"""

from __future__ import annotations

import atexit
import copy
import functools
import os
import re
import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import psutil
import tornado.ioloop
import tornado.process
from prometheus_client.core import Metric
from prometheus_client.exposition import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

from . import validate
from .faults import Faults

LABEL = "worker"
SOURCE = "workers"  # the `collector` label of failures reading or writing snapshots
__all__ = ["worker_port"]
"""Public: the port helper. The writer and the view are the exporter's (``Config.worker_*``)."""

_SUFFIX = ".prom"
_HEADER = "# tornado-memory-exporter"
_HEADER_RE = re.compile(rf"^{_HEADER} worker=(\S+) pid=(\d+) started=(\S+)$")
_TMP_RE = re.compile(r"^\.(.+)\.(\d+)\.tmp$")
_HAS_CREATED = frozenset({"counter", "histogram", "summary", "gaugehistogram"})


def worker_id() -> str:
    """This process's ``fork_processes`` task id as a string; ``"0"`` when not forked."""
    task = tornado.process.task_id()
    return str(task) if task is not None else "0"


def worker_port(base: int) -> int:
    """Per-worker-port mode: ``base`` plus this process's task id.

    Each worker then serves only its own series, and Prometheus scrapes one target per worker::

        exporter = install(app, path=None, config=Config(worker_label=True))
        exporter.serve(worker_port(9464))
    """
    validate.port("base", base, minimum=1)
    port = base + int(worker_id())
    if port > 65535:
        raise ValueError(f"base={base!r} plus task id {worker_id()} exceeds port 65535")
    return port


def process_alive(pid: int, started: float) -> bool:
    """Whether process ``pid`` runs and is the one that started at ``started`` (not a reuse)."""
    try:
        process = psutil.Process(pid)
        return (
            abs(process.create_time() - started) < 0.05 and process.status() != psutil.STATUS_ZOMBIE
        )
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:
        return True  # it exists; another user's process cannot have written our 0600 files anyway


def _own_start_time() -> float:
    return psutil.Process().create_time()


def relabel(metric: Metric, worker: str) -> Metric:
    """A copy of ``metric`` whose samples all carry ``worker`` (an existing label is kept)."""
    labelled = copy.copy(metric)
    labelled.samples = [
        s if LABEL in s.labels else s._replace(labels={**s.labels, LABEL: worker})
        for s in metric.samples
    ]
    return labelled


def merge(groups: Iterable[Iterable[Metric]]) -> list[Metric]:
    """Families with the same name and type become one family holding all their samples.

    A family whose type disagrees with the first one of that name is left out (returned in
    order of first appearance) rather than served as an invalid duplicate.
    """
    merged: dict[str, Metric] = {}
    for group in groups:
        for metric in group:
            first = merged.get(metric.name)
            if first is None:
                merged[metric.name] = copy.copy(metric)
                merged[metric.name].samples = list(metric.samples)
            elif first.type == metric.type:
                first.samples.extend(metric.samples)
    return list(merged.values())


def _fold_created(families: list[Metric]) -> list[Metric]:
    """Put the ``<name>_created`` gauges that the text format splits off back into their family,
    as the registry yields them, so that merged families stay one family per name."""
    by_name = {metric.name: metric for metric in families}
    kept = []
    for metric in families:
        parent = (
            by_name.get(metric.name[: -len("_created")])
            if metric.name.endswith("_created")
            else None
        )
        if metric.type == "gauge" and parent is not None and parent.type in _HAS_CREATED:
            parent.samples.extend(metric.samples)
        else:
            kept.append(metric)
    return kept


class WorkerView(Collector):
    """What a worker serves: its registry with ``worker=<id>`` on every sample, plus, with a
    ``directory``, the latest snapshots of its live sibling workers.

    Give it to ``MetricsHandler`` or ``start_metrics_server`` as the registry (``install()``
    does when ``Config.worker_label`` is on). ``alive`` and ``clock`` are for tests.
    """

    def __init__(
        self,
        registry: Collector,
        *,
        worker: str,
        faults: Faults,
        directory: str | Path | None = None,
        stale_after: float = 15.0,
        alive: Callable[[int, float], bool] = process_alive,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.registry = registry
        self.worker = worker
        self.directory = Path(directory) if directory is not None else None
        self.stale_after = stale_after
        self._faults = faults
        self._alive = alive
        self._clock = clock
        # path -> ((mtime_ns, size, inode), pid, started, families): parsed once per write.
        self._parsed: dict[Path, tuple[tuple[int, int, int], int, float, list[Metric]]] = {}
        faults.declare(SOURCE)

    def local(self) -> list[Metric]:
        """This worker's own families, live, labelled."""
        return [relabel(metric, self.worker) for metric in self.registry.collect()]

    def collect(self) -> Iterator[Metric]:
        siblings = self._faults.call(SOURCE, self.siblings, []) if self.directory else []
        yield from merge([self.local(), *siblings])

    def restricted_registry(self, names: Iterable[str]) -> Collector:
        """The view limited to samples named in ``names`` (``?name[]=`` filtering)."""
        return _Restricted(self, frozenset(names))

    def siblings(self) -> list[list[Metric]]:
        """Families of every other live worker, in task id order; deletes dead workers' files."""
        assert self.directory is not None
        groups: list[tuple[str, list[Metric]]] = []
        seen: set[Path] = set()
        now = self._clock()
        with os.scandir(self.directory) as entries:
            for entry in entries:
                if entry.name.startswith("."):
                    self._sweep_temporary(entry)
                    continue
                if not entry.name.endswith(_SUFFIX):
                    continue
                worker = entry.name[: -len(_SUFFIX)]
                path = Path(entry.path)
                seen.add(path)
                if worker == self.worker:
                    continue
                families = self._faults.call(SOURCE, functools.partial(self._read, path, now), None)
                if families is not None:
                    groups.append((worker, families))
        for path in set(self._parsed) - seen:
            self._parsed.pop(path, None)  # another thread's scrape may have dropped it first
        groups.sort(key=lambda item: (len(item[0]), item[0]))  # "2" before "10"
        return [families for _, families in groups]

    def _read(self, path: Path, now: float) -> list[Metric] | None:
        try:
            stat = path.stat()
            key = (stat.st_mtime_ns, stat.st_size, stat.st_ino)
            cached = self._parsed.get(path)
            text = path.read_text(encoding="utf-8") if cached is None or cached[0] != key else None
        except FileNotFoundError:
            return None  # deleted by a sibling's scrape a moment ago
        if text is not None:
            header, _, body = text.partition("\n")
            match = _HEADER_RE.match(header)
            if match is None:
                raise ValueError(f"{path} is not a worker snapshot (header {header[:80]!r})")
            families = _fold_created(list(text_string_to_metric_families(body)))
            cached = (key, int(match.group(2)), float(match.group(3)), families)
            self._parsed[path] = cached
        _, pid, started, families = cached
        if not self._alive(pid, started):
            path.unlink(missing_ok=True)
            self._parsed.pop(path, None)
            return None
        if now - stat.st_mtime > self.stale_after:
            return None  # alive but not writing (blocked loop): old numbers would mislead
        return families

    def _sweep_temporary(self, entry: os.DirEntry) -> None:
        # A worker killed between writing and renaming leaves its temporary file behind.
        match = _TMP_RE.match(entry.name)
        if match is not None and not psutil.pid_exists(int(match.group(2))):
            Path(entry.path).unlink(missing_ok=True)


class _Restricted(Collector):
    def __init__(self, view: WorkerView, names: frozenset[str]) -> None:
        self._view = view
        self._names = names

    def collect(self) -> Iterator[Metric]:
        for metric in self._view.collect():
            samples = [s for s in metric.samples if s.name in self._names]
            if samples:
                restricted = copy.copy(metric)
                restricted.samples = samples
                yield restricted


class _Local(Collector):
    def __init__(self, view: WorkerView) -> None:
        self._view = view

    def collect(self) -> list[Metric]:
        return self._view.local()


class SnapshotWriter:
    """Writes ``view``'s own labelled families to ``<directory>/<worker>.prom`` every
    ``interval`` seconds on the IOLoop, atomically (temporary file, then rename).

    The first write happens in ``start()``, so a restarted worker replaces its predecessor's
    series at once; ``stop()`` deletes the file so the series disappear with the worker, and so
    does a clean end without ``stop()``: interpreter exit (``atexit``) or ``SIGTERM``, the signal
    process managers and ``kill`` send, when the app has no handler of its own for it (the
    process still ends by the signal, as it would have).
    """

    def __init__(
        self,
        view: WorkerView,
        *,
        interval: float,
        faults: Faults,
        pid: int | None = None,
        started: float | None = None,
    ) -> None:
        if view.directory is None:
            raise ValueError("SnapshotWriter needs a WorkerView with a directory")
        self.view = view
        self.interval = interval
        self.path = view.directory / f"{view.worker}{_SUFFIX}"
        self._faults = faults
        # Which process wrote the snapshot: a reader drops it once that process is gone.
        self._pid = pid if pid is not None else os.getpid()
        self._started = started if started is not None else _own_start_time()
        self._timer: tornado.ioloop.PeriodicCallback | None = None
        self._sigterm_hooked = False
        # Here rather than in start(): a directory that cannot be made fails install() cleanly.
        view.directory.mkdir(mode=0o700, parents=True, exist_ok=True)

    def start(self) -> None:
        """Write once, then every interval. Call on the loop."""
        self.write()
        if self._timer is None:
            self._timer = tornado.ioloop.PeriodicCallback(self.write, self.interval * 1000)
            self._timer.start()
            atexit.register(self.remove)
            self._hook_sigterm()

    def stop(self) -> None:
        """Stop writing and remove this worker's file (if it is still ours)."""
        if self._timer is not None:
            self._timer.stop()
            self._timer = None
            atexit.unregister(self.remove)
            if self._sigterm_hooked and signal.getsignal(signal.SIGTERM) == self._on_sigterm:
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
            self._sigterm_hooked = False
        self.remove()

    def _hook_sigterm(self) -> None:
        # Only over the default action (which would end the process without atexit), and only
        # from the main thread (the only one that may set handlers): an app's handler is its own.
        if threading.current_thread() is not threading.main_thread():
            return
        if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
            signal.signal(signal.SIGTERM, self._on_sigterm)
            self._sigterm_hooked = True

    def _on_sigterm(self, signum: int, frame: object) -> None:
        self.remove()
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)  # end as the default action would have

    def remove(self) -> None:
        """Delete this worker's file if this process wrote it (a forked child inherits the
        hooks of its parent's writer but must not delete the parent's file)."""
        if os.getpid() != self._pid:
            return
        try:
            header = self.path.read_text(encoding="utf-8").partition("\n")[0]
        except OSError:
            return
        match = _HEADER_RE.match(header)
        if match is not None and int(match.group(2)) == self._pid:
            self.path.unlink(missing_ok=True)

    def write(self) -> None:
        """Write one snapshot now; a failure is counted under ``collector="workers"``."""
        self._faults.call(SOURCE, self._write, None)

    def _write(self) -> None:
        header = f"{_HEADER} worker={self.view.worker} pid={self._pid} started={self._started!r}\n"
        # The text format: the OpenMetrics encoder escapes per character and costs 5x more.
        body = header.encode() + generate_latest(_Local(self.view))
        assert self.view.directory is not None
        temporary = self.view.directory / f".{self.view.worker}.{self._pid}.tmp"
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            with os.fdopen(fd, "wb") as file:
                file.write(body)
            os.replace(temporary, self.path)
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise
