"""``exporter.pools``: the registered pools, and the collector of every ``<ns>_pool_*`` metric.

A target is one of:

- an ``ObjectPool``;
- a pool the adapters know (``AsyncHTTPClient``, ``ThreadPoolExecutor``, a SQLAlchemy
  engine or pool: see ``adapters``);
- any *pool-like* object with a ``pool_snapshot()`` method returning a ``PoolSnapshot`` or a
  mapping with at least ``capacity``, ``in_use``, ``idle`` and ``waiting`` (other
  ``PoolSnapshot`` fields are optional: the exporter cannot time a pool it does not wrap, so
  ``<ns>_pool_hold_seconds`` is served for one only if it gives ``hold``).

A pool-like object is somebody else's code, so the scrape does not trust it: its
``pool_snapshot()`` runs on a short-lived daemon thread and the scrape waits at most
``snapshot_timeout`` seconds for all of them together. Python cannot interrupt a synchronous
call, so a snapshot that hangs is left running on its thread; until it returns, that pool is
not called again (one stuck thread per pool at most) and each scrape counts an error under
``collector="pools"`` and omits that pool's series. A snapshot that raises is counted the same
way. ``ObjectPool`` and the adapters only read counters under short locks and are called inline.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from .. import validate
from ..buckets import add_histogram
from ..faults import Faults
from .adapters import adapt
from .pool import ObjectPool
from .snapshot import PoolSnapshot, as_snapshot

_GAUGES = (
    ("capacity", "pool_capacity", "Most objects the pool may hold (+Inf when unbounded)."),
    ("in_use", "pool_in_use", "Objects checked out of the pool."),
    ("idle", "pool_idle", "Objects in the pool ready to be handed out."),
    ("waiting", "pool_waiting", "Acquirers waiting for an object."),
    (
        "oldest_checkout_seconds",
        "pool_oldest_checkout_seconds",
        "Age of the longest-held checked-out object, 0 when none is out.",
    ),
)
_COUNTERS = (
    ("acquires", "pool_acquires", "Objects handed out."),
    ("created", "pool_created", "Objects the pool created."),
    ("discarded", "pool_discarded", "Objects dropped as invalid or broken."),
    ("timeouts", "pool_timeouts", "Acquirers that gave up waiting."),
    ("leaked", "pool_leaked", "Objects garbage-collected while still checked out."),
)
_HISTOGRAMS = (
    ("wait", "pool_acquire_wait_seconds", "Time acquirers waited for an object."),
    ("hold", "pool_hold_seconds", "How long each checkout was held before it was given back."),
)


class SnapshotHung(TimeoutError):
    """A pool-like object's ``pool_snapshot()`` did not return within the deadline."""


class _Bounded:
    """Runs a pool-like object's ``pool_snapshot()`` on a daemon thread with a deadline."""

    def __init__(self, name: str, target: Any) -> None:
        self.name = name
        self.target = target
        self._thread: threading.Thread | None = None
        self._started = 0.0
        self._box: list[tuple[bool, Any]] = []

    def start(self) -> None:
        """Begin a call unless the previous one is still running."""
        if self._thread is not None:
            return
        box: list[tuple[bool, Any]] = []

        def run() -> None:
            try:
                box.append((True, self.target.pool_snapshot()))
            except BaseException as error:  # noqa: BLE001 - reported by result()
                box.append((False, error))

        self._box = box
        self._started = time.monotonic()
        self._thread = threading.Thread(target=run, name=f"pool-snapshot:{self.name}", daemon=True)
        self._thread.start()

    def result(self, deadline: float) -> Any:
        """The snapshot, waiting until ``deadline`` (monotonic) at most."""
        thread = self._thread
        if thread is None:
            raise RuntimeError("no snapshot started")
        thread.join(max(0.0, deadline - time.monotonic()))
        if thread.is_alive():
            raise SnapshotHung(
                f"pool {self.name!r}: pool_snapshot() has not returned after "
                f"{time.monotonic() - self._started:.3g}s; its series are omitted until it does"
            )
        self._thread = None
        ok, value = self._box[0]
        if not ok:
            raise value
        return value


class PoolRegistry(Collector):
    """The pools behind ``exporter.pools``; also the collector of ``<ns>_pool_*``.

    ``limit`` bounds how many pools (``pool`` label values) may be registered.
    """

    def __init__(
        self, namespace: str, faults: Faults, *, limit: int = 50, snapshot_timeout: float = 0.25
    ) -> None:
        self._ns = namespace
        self._faults = faults
        self.limit = limit
        self.snapshot_timeout = snapshot_timeout
        self._lock = threading.Lock()
        self._collect_lock = threading.Lock()
        self._pools: dict[str, tuple[Any, Any]] = {}  # name -> (target, reader)
        faults.declare("pools")

    def register(self, name: str, target: Any) -> Any:
        """Export ``target`` under ``pool=name``; returns ``target``.

        ``ValueError`` for a bad or taken name, a full registry, or a target that is neither an
        ``ObjectPool``, a known adapter target, nor pool-like.
        """
        validate.label_value("name", name)
        with self._lock:
            if name in self._pools:
                raise ValueError(f"name={name!r} is already registered; unregister it first")
            if len(self._pools) >= self.limit:
                raise ValueError(
                    f"cannot register pool {name!r}: the limit of {self.limit} pools is reached "
                    "(the limit bounds the `pool` label's cardinality)"
                )
            if isinstance(target, ObjectPool):
                reader: Any = target
            elif (adapter := adapt(target)) is not None:
                reader = adapter
            elif callable(getattr(target, "pool_snapshot", None)):
                reader = _Bounded(name, target)
            else:
                raise ValueError(
                    f"target={target!r} for pool {name!r} is not an ObjectPool, an "
                    "AsyncHTTPClient, a ThreadPoolExecutor, a SQLAlchemy engine/pool, nor has a "
                    "pool_snapshot() method"
                )
            self._pools[name] = (target, reader)
        return target

    def unregister(self, name: str) -> None:
        """Stop exporting ``name`` (``KeyError`` if unknown); adapters detach their hooks."""
        with self._lock:
            _, reader = self._pools.pop(name)
        close = getattr(reader, "close", None)
        if close is not None and not isinstance(reader, ObjectPool):
            close()

    def clear(self) -> None:
        """Unregister every pool."""
        for name in list(self._pools):
            self.unregister(name)

    def __contains__(self, name: object) -> bool:
        return name in self._pools

    def __len__(self) -> int:
        return len(self._pools)

    @property
    def names(self) -> list[str]:
        """Registered names, in registration order."""
        return list(self._pools)

    def object_pools(self) -> dict[str, ObjectPool]:
        """The registered ``ObjectPool``s by name (the ones with checkout detail)."""
        return {name: t for name, (t, _) in list(self._pools.items()) if isinstance(t, ObjectPool)}

    def _families(self) -> dict[str, Metric]:
        ns = self._ns
        out: dict[str, Metric] = {
            key: GaugeMetricFamily(f"{ns}_{metric}", doc, labels=["pool"])
            for key, metric, doc in _GAUGES
        }
        out.update(
            (key, CounterMetricFamily(f"{ns}_{metric}", doc, labels=["pool"]))
            for key, metric, doc in _COUNTERS
        )
        out.update(
            (key, HistogramMetricFamily(f"{ns}_{metric}", doc, labels=["pool"]))
            for key, metric, doc in _HISTOGRAMS
        )
        return out

    def describe(self) -> Iterator[Metric]:
        yield from self._families().values()

    def collect(self) -> Iterator[Metric]:
        families = self._families()
        for name, snap in self.snapshots().items():
            for key, family in families.items():
                value = getattr(snap, key)
                if value is None:
                    continue
                if isinstance(family, HistogramMetricFamily):
                    add_histogram(family, [name], value)
                else:
                    family.add_metric([name], value)
        yield from families.values()

    def snapshots(self) -> dict[str, PoolSnapshot]:
        """A snapshot of every registered pool that answered, by name; a pool that raised or
        did not answer within ``snapshot_timeout`` is counted as an error and left out."""
        # Two readers at once (app route + separate server + explorer) would race on a
        # pool-like object's snapshot thread: they take turns, each bounded by the timeout.
        with self._collect_lock:
            with self._lock:
                pools = list(self._pools.items())
            bounded = [r for _, (_, r) in pools if isinstance(r, _Bounded)]
            for reader in bounded:  # start them all first: they share one deadline
                reader.start()
            deadline = time.monotonic() + self.snapshot_timeout
            out: dict[str, PoolSnapshot] = {}
            for name, (_, reader) in pools:
                try:
                    if isinstance(reader, _Bounded):
                        out[name] = as_snapshot(name, reader.result(deadline))
                    else:
                        out[name] = reader.pool_snapshot()
                except Exception as error:  # noqa: BLE001 - one pool's failure costs only its own
                    self._faults.record("pools", error)
        return out
