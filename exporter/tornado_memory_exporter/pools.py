"""``ObjectPool``: a bounded object pool, safe across threads and coroutines, that reports its use.

    pool = ObjectPool(lambda: bytearray(1 << 20), max_size=8, name="buffers")
    async with pool.acquire(timeout=1.0) as buf: ...     # coroutines
    with pool.acquire_sync(timeout=1.0) as buf: ...      # threads and executors

One plain ``threading.Lock`` guards the state and is never held while user code (factory, reset,
validate) runs. At capacity, acquirers queue in FIFO order and a release hands its object (or the
slot of a discarded object) straight to the first waiter, so nobody can barge ahead of the queue.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import math
import os
import sys
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from .buckets import BucketCounts

log = logging.getLogger("tornado_memory_exporter")

T = TypeVar("T")
DEFAULT_WAIT_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_PACKAGE_DIR = os.path.dirname(__file__)
_SLOT = object()  # a grant of "create a new object", as opposed to a grant of an existing one
_MISS = object()


@dataclass(frozen=True, slots=True)
class PoolSnapshot:
    """One consistent reading of a pool: the protocol every registered pool answers.

    ``capacity``, ``in_use``, ``idle`` and ``waiting`` are required; a field left ``None`` is
    not exported for that pool. ``capacity`` may be ``math.inf`` (unbounded overflow).
    """

    capacity: float
    in_use: int
    idle: int
    waiting: int
    acquires: int | None = None
    created: int | None = None
    discarded: int | None = None
    timeouts: int | None = None
    leaked: int | None = None
    oldest_checkout_seconds: float | None = None
    wait: BucketCounts | None = None


class PoolTimeout(TimeoutError):
    """No object became free in time; ``pool`` is the pool's name."""

    def __init__(self, pool: str, timeout: float, max_size: int, waiting: int) -> None:
        super().__init__(
            f"pool {pool!r}: no object became free within {timeout:g}s "
            f"(all {max_size} in use, {waiting} other acquirers waiting)"
        )
        self.pool = pool


class _Waiter:
    __slots__ = ("fut", "loop", "lock", "grant")

    def __init__(self, loop: asyncio.AbstractEventLoop | None) -> None:
        self.loop = loop
        self.fut = loop.create_future() if loop is not None else None
        self.lock: threading.Lock | None = None
        if loop is None:
            self.lock = threading.Lock()
            self.lock.acquire()
        self.grant: Any = None  # None until granted: then an object, or _SLOT


class _Awaitable:
    """What an asynchronous factory returned, still to be awaited (never a pooled object)."""

    __slots__ = ("awaitable",)

    def __init__(self, awaitable: Any) -> None:
        self.awaitable = awaitable


class _Tracked(weakref.ref):
    """Checkout record of ``get()``/``lease()``: a weak reference that notices a dropped object."""

    __slots__ = ("key", "since", "site")


class Lease(Generic[T]):
    """One checkout: a context manager from ``acquire()``, or a handle from ``lease()``.

    A lease from ``lease()`` that is garbage-collected before ``release()`` counts as leaked;
    use it for objects that cannot be weakly referenced (``bytearray``, ``dict``...).
    """

    __slots__ = ("_pool", "_timeout", "obj", "since", "_record", "__weakref__")

    def __init__(self, pool: ObjectPool[T], timeout: float | None) -> None:
        if timeout is not None and not (type(timeout) in (int, float) and timeout > 0):
            _check_timeout("timeout", timeout)  # raises, naming the bad value
        self._pool = pool
        self._timeout = timeout
        self.obj: T
        self.since = 0.0
        self._record: Any = None  # None: the lease itself is the record (no cycle)

    async def __aenter__(self) -> T:
        obj = self._pool._checkout_idle(self)
        if obj is _MISS:
            obj = await self._pool._checkout_async(self._timeout, self, None)
        return obj

    async def __aexit__(self, *exc: object) -> None:
        self._pool._checkin(id(self), self._record or self, self.obj)

    def __enter__(self) -> T:
        obj = self._pool._checkout_idle(self)
        if obj is _MISS:
            obj = self._pool._checkout_sync(self._timeout, self, None)
        return obj

    def __exit__(self, *exc: object) -> None:
        self._pool._checkin(id(self), self._record or self, self.obj)

    def release(self) -> None:
        """Give the object back (after ``reset``)."""
        self._pool._checkin(id(self), self._record or self, self.obj)

    def discard(self) -> None:
        """Drop the object (it is broken); its slot becomes free for a new one."""
        self._pool._checkin(id(self), self._record or self, self.obj, discard=True)


class ObjectPool(Generic[T]):
    """A bounded pool of objects made by ``factory``, instrumented for ``exporter.pools``.

    - ``max_size``: most objects alive at once; at capacity acquirers wait (FIFO) up to
      ``timeout`` seconds, then get ``PoolTimeout`` (a ``TimeoutError``) naming the pool.
    - ``min_idle``: objects created up front (``factory`` must then be synchronous).
    - ``reset(obj)`` runs on release, ``validate(obj) -> bool`` when an idle object is reused;
      an object whose ``reset`` raises or that fails ``validate`` is discarded (``dispose(obj)``
      is called on it) and replaced.
    - ``factory`` may be a coroutine function for ``acquire()``/``get()``/``lease()``.
    - Objects taken with ``get()``/``lease()`` and garbage-collected without ``put()`` /
      ``release()`` are counted as leaked, their slot is reclaimed, and a warning naming the
      acquiring line is logged at most once per ``leak_log_interval`` seconds.
    """

    def __init__(
        self,
        factory: Callable[[], Any],
        max_size: int = 10,
        *,
        name: str,
        min_idle: int = 0,
        reset: Callable[[T], object] | None = None,
        validate: Callable[[T], bool] | None = None,
        dispose: Callable[[T], object] | None = None,
        timeout: float = 30.0,
        leak_log_interval: float = 60.0,
        wait_buckets: Sequence[float] = DEFAULT_WAIT_BUCKETS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        _check(callable(factory), "factory", factory, "must be callable")
        _check(_is_int(max_size) and max_size >= 1, "max_size", max_size, "must be an integer >= 1")
        _check(isinstance(name, str) and 0 < len(name) <= 100, "name", name,
               "must be a non-empty string of at most 100 characters")
        _check(_is_int(min_idle) and 0 <= min_idle <= max_size, "min_idle", min_idle,
               f"must be an integer from 0 to max_size={max_size}")
        for opt, value in (("reset", reset), ("validate", validate), ("dispose", dispose)):
            _check(value is None or callable(value), opt, value, "must be callable or None")
        _check_timeout("timeout", timeout)
        _check(_is_number(leak_log_interval) and leak_log_interval >= 0, "leak_log_interval",
               leak_log_interval, "must be a number >= 0")
        self.factory = factory
        self.max_size = max_size
        self.name = name
        self.timeout = timeout
        self._reset, self._validate, self._dispose = reset, validate, dispose
        self._clock = clock
        self._leak_log_interval = leak_log_interval
        self._lock = threading.Lock()
        self._idle: list[T] = []
        self._size = 0  # objects alive or being created, idle or not
        self._out: dict[int, Any] = {}  # id(obj or lease) -> Lease or _Tracked
        self._waiters: deque[_Waiter] = deque()
        self._pending: list[_Tracked] = []  # appended by weakref callbacks, which take no lock
        self._leak_sites: list[str] = []
        self._last_leak_log: float | None = None
        self.wait = BucketCounts(wait_buckets)
        self.acquires = self.created = self.discarded = self.timeouts = self.leaked = 0
        self._on_drop = self._make_drop_callback()
        for _ in range(min_idle):
            self._idle.append(self._create_sync())
        self._size = self.created = min_idle

    def __repr__(self) -> str:
        return f"<ObjectPool {self.name!r} max_size={self.max_size}>"

    # --- public API -----------------------------------------------------------------------
    def acquire(self, timeout: float | None = None) -> Lease[T]:
        """``async with pool.acquire(timeout=1.0) as obj``: released when the block exits."""
        return Lease(self, timeout)

    def acquire_sync(self, timeout: float | None = None) -> Lease[T]:
        """``with pool.acquire_sync(timeout=1.0) as obj``, for threads and executors."""
        return Lease(self, timeout)

    async def get(self, timeout: float | None = None) -> T:
        """Take an object; give it back with ``put(obj)``. It must be weakly referenceable."""
        return await self._checkout_async(timeout, None, _site())

    def get_sync(self, timeout: float | None = None) -> T:
        """Blocking ``get()``."""
        return self._checkout_sync(timeout, None, _site())

    def put(self, obj: T, *, discard: bool = False) -> None:
        """Give back an object from ``get()``; ``discard=True`` drops it and frees its slot."""
        self._checkin(id(obj), None, obj, discard=discard)

    async def lease(self, timeout: float | None = None) -> Lease[T]:
        """Take an object wrapped in a ``Lease`` (for any object): ``lease.obj``, ``release()``."""
        lease = Lease(self, timeout)
        await self._checkout_async(timeout, lease, _site())
        return lease

    def lease_sync(self, timeout: float | None = None) -> Lease[T]:
        """Blocking ``lease()``."""
        lease = Lease(self, timeout)
        self._checkout_sync(timeout, lease, _site())
        return lease

    def pool_snapshot(self) -> PoolSnapshot:
        """Current gauges and counters (cheap: one short lock, no user code)."""
        with self._lock:
            if self._pending:
                self._drain_leaks()
            now = self._clock()
            oldest = min((r.since for r in self._out.values()), default=now)
            snap = PoolSnapshot(
                capacity=self.max_size, in_use=self._size - len(self._idle), idle=len(self._idle),
                waiting=len(self._waiters), acquires=self.acquires, created=self.created,
                discarded=self.discarded, timeouts=self.timeouts, leaked=self.leaked,
                oldest_checkout_seconds=max(0.0, now - oldest), wait=self.wait,
            )
        if self._leak_sites:
            self._log_leaks()
        return snap

    # --- checkout -------------------------------------------------------------------------
    def _checkout_idle(self, lease: Lease[T]) -> Any:
        """The hot path of ``acquire()``: one locked section when an idle object is ready."""
        if self._validate is not None:
            return _MISS
        with self._lock:
            if not self._idle or self._pending:
                return _MISS
            obj = self._idle.pop()
            self._out[id(lease)] = lease
            self.acquires += 1
            self.wait.counts[0] += 1  # waited 0 s: the first bucket, without a bisect
        lease.obj = obj
        lease.since = self._clock()
        return obj

    def _take(self) -> Any:
        """Under the lock: an idle object, ``_SLOT`` (create one), or None (must wait)."""
        if self._pending:
            self._drain_leaks()
        if self._idle:
            return self._idle.pop()
        if self._size < self.max_size:
            self._size += 1
            return _SLOT
        return None

    async def _checkout_async(self, timeout: float | None, lease: Lease | None, site: Any) -> T:
        timeout = self._timeout_of(timeout)  # before queueing: a bad value must not leave a waiter
        with self._lock:
            item = self._take()
            if item is None:
                waiter = _Waiter(asyncio.get_running_loop())
                self._waiters.append(waiter)
        waited = 0.0
        if item is None:
            started = self._clock()
            item = await self._wait_async(waiter, timeout)
            waited = self._clock() - started
        if item is _SLOT or self._validate is not None:
            obj = self._prepare(item)
            if isinstance(obj, _Awaitable):
                obj = await self._created_async(obj.awaitable)
        else:
            obj = item
        return self._register(obj, lease, site, waited)

    def _checkout_sync(self, timeout: float | None, lease: Lease | None, site: Any) -> T:
        timeout = self._timeout_of(timeout)
        with self._lock:
            item = self._take()
            if item is None:
                waiter = _Waiter(None)
                self._waiters.append(waiter)
        waited = 0.0
        if item is None:
            started = self._clock()
            item = self._wait_sync(waiter, timeout)
            waited = self._clock() - started
        obj = self._prepare(item) if item is _SLOT or self._validate is not None else item
        if isinstance(obj, _Awaitable):
            if inspect.iscoroutine(obj.awaitable):
                obj.awaitable.close()  # never awaited: close it rather than leave a warning
            self._free_slot_and_wake()
            raise TypeError(f"pool {self.name!r}: factory is asynchronous; use acquire()/get()")
        return self._register(obj, lease, site, waited)

    def _prepare(self, item: Any) -> Any:
        """Outside the lock: validate a reused object (discard it if invalid) or create one."""
        if item is not _SLOT:
            try:
                ok = self._validate(item)
            except Exception:  # noqa: BLE001 - a validator that raises says "invalid"
                ok = False
            if ok:
                return item
            self._drop(item)  # its slot stays ours: create the replacement in it
        try:
            obj = self.factory()
        except BaseException:
            self._free_slot_and_wake()
            raise
        if inspect.isawaitable(obj):
            return _Awaitable(obj)
        self._count_created()
        return obj

    async def _created_async(self, awaitable: Any) -> T:
        try:
            obj = await awaitable
        except BaseException:
            self._free_slot_and_wake()
            raise
        self._count_created()
        return obj

    def _create_sync(self) -> T:
        obj = self.factory()
        if inspect.isawaitable(obj):
            raise ValueError(f"min_idle needs a synchronous factory, got {self.factory!r}")
        return obj

    def _count_created(self) -> None:
        with self._lock:
            self.created += 1

    def _register(self, obj: T, lease: Lease | None, site: Any, waited: float) -> T:
        now = self._clock()
        if lease is None:
            try:
                record = _Tracked(obj, self._on_drop)
            except TypeError:
                self._checkin_untracked(obj)
                raise TypeError(
                    f"pool {self.name!r}: {type(obj).__name__} objects cannot be weakly referenced, "
                    "so get() cannot notice leaks; use lease() or acquire()"
                ) from None
            record.key, record.since, record.site = id(obj), now, site
        elif site is not None:
            record = _Tracked(lease, self._on_drop)
            record.key, record.since, record.site = id(lease), now, site
            lease._record = record
        else:
            record = lease
        if lease is not None:
            lease.obj, lease.since = obj, now
        with self._lock:
            if self._pending:  # before the insert: a dead object's id may have been reused
                self._drain_leaks()
            self._out[id(lease) if record is lease else record.key] = record
            self.acquires += 1
            self.wait.observe(waited)
        if self._leak_sites:
            self._log_leaks()
        return obj

    # --- waiting --------------------------------------------------------------------------
    def _timeout_of(self, timeout: float | None) -> float:
        if timeout is None:
            return self.timeout
        _check_timeout("timeout", timeout)
        return timeout

    async def _wait_async(self, waiter: _Waiter, timeout: float) -> Any:
        try:
            if math.isinf(timeout):
                await waiter.fut
            else:
                async with asyncio.timeout(timeout):
                    await waiter.fut
        except BaseException as error:
            return self._abandon(waiter, error, timeout)
        return waiter.grant

    def _wait_sync(self, waiter: _Waiter, timeout: float) -> Any:
        if waiter.lock.acquire(timeout=-1 if math.isinf(timeout) else timeout):
            return waiter.grant
        return self._abandon(waiter, TimeoutError(), timeout)

    def _abandon(self, waiter: _Waiter, error: BaseException, timeout: float) -> Any:
        """A wait ended by timeout or cancellation: leave the queue, or keep a late grant."""
        with self._lock:
            if self._pending:
                self._drain_leaks()
            granted = waiter.grant is not None
            if not granted:
                self._waiters.remove(waiter)
                if isinstance(error, TimeoutError):
                    self.timeouts += 1
                waiting = len(self._waiters)
        if granted:
            if isinstance(error, TimeoutError):
                return waiter.grant  # granted as the timeout fired: use it
            self._give_back(waiter.grant)
            raise error
        if isinstance(error, TimeoutError):
            raise PoolTimeout(self.name, timeout, self.max_size, waiting) from None
        raise error

    # --- checkin --------------------------------------------------------------------------
    def _checkin(self, key: int, record: Any, obj: T, *, discard: bool = False) -> None:
        with self._lock:
            if self._pending:
                self._drain_leaks()
            found = self._out.pop(key, None)
            if found is None or (record is not None and found is not record):
                if found is not None:
                    self._out[key] = found
                raise ValueError(f"pool {self.name!r}: {obj!r} is not checked out (released twice?)")
            if self._reset is None and not discard:
                waiter = self._grant(obj)
        if self._reset is not None and not discard:
            try:
                self._reset(obj)
            except Exception as error:  # noqa: BLE001 - a failed reset means a broken object
                log.debug("pool %r: reset failed, discarding the object: %r", self.name, error)
                discard = True
            else:
                with self._lock:
                    waiter = self._grant(obj)
        if discard:
            self._drop(obj)
            self._free_slot_and_wake()
        elif waiter is not None:
            self._wake(waiter)

    def _checkin_untracked(self, obj: T) -> None:
        self._give_back(obj)

    def _give_back(self, item: Any) -> None:
        with self._lock:
            waiter = self._free_slot() if item is _SLOT else self._grant(item)
        if waiter is not None:
            self._wake(waiter)

    def _grant(self, obj: Any) -> _Waiter | None:
        """Under the lock: hand ``obj`` to the first waiter, or make it idle."""
        if self._waiters:
            waiter = self._waiters.popleft()
            waiter.grant = obj
            return waiter
        self._idle.append(obj)
        return None

    def _free_slot(self) -> _Waiter | None:
        """Under the lock: hand a slot to the first waiter, or shrink the pool."""
        if self._waiters:
            waiter = self._waiters.popleft()
            waiter.grant = _SLOT
            return waiter
        self._size -= 1
        return None

    def _free_slot_and_wake(self) -> None:
        self._give_back(_SLOT)

    def _wake(self, waiter: _Waiter) -> None:
        """Outside the lock: tell a waiter about its grant."""
        if not self._notify(waiter):
            self._give_back(waiter.grant)

    @staticmethod
    def _notify(waiter: _Waiter) -> bool:
        """False when the waiter's loop is closed, so nobody will ever take the grant."""
        if waiter.lock is not None:
            waiter.lock.release()
            return True
        try:
            if asyncio._get_running_loop() is waiter.loop:
                _resolve(waiter.fut)
            else:
                waiter.loop.call_soon_threadsafe(_resolve, waiter.fut)
        except RuntimeError:
            return False
        return True

    def _drop(self, obj: T) -> None:
        with self._lock:
            self.discarded += 1
        if self._dispose is not None:
            try:
                self._dispose(obj)
            except Exception as error:  # noqa: BLE001 - the object is gone either way
                log.debug("pool %r: dispose failed: %r", self.name, error)

    # --- leaks ----------------------------------------------------------------------------
    def _make_drop_callback(self) -> Callable[[_Tracked], None]:
        pool_ref = weakref.ref(self)

        def on_drop(record: _Tracked) -> None:
            # Runs wherever the object died, maybe inside gc or inside our own locked section:
            # no blocking, no logging; reclaim now only if the lock is free, else leave it
            # to the next operation or scrape.
            pool = pool_ref()
            if pool is None:
                return
            pool._pending.append(record)
            if pool._lock.acquire(blocking=False):
                try:
                    pool._drain_leaks()
                finally:
                    pool._lock.release()

        return on_drop

    def _drain_leaks(self) -> None:
        """Under the lock: count dropped checkouts and hand their slots on (or shrink)."""
        while self._pending:
            record = self._pending.pop()
            if self._out.get(record.key) is not record:
                continue  # released before it died
            del self._out[record.key]
            self.leaked += 1
            if len(self._leak_sites) < 20:  # the warning names a few sites; the count is exact
                self._leak_sites.append(record.site)
            # Notifying never blocks nor runs user code, so it is safe under the lock.
            while (waiter := self._free_slot()) is not None and not self._notify(waiter):
                pass

    def _log_leaks(self) -> None:
        now = self._clock()
        sites, self._leak_sites = self._leak_sites, []
        last = self._last_leak_log
        if last is not None and now - last < self._leak_log_interval:
            return
        self._last_leak_log = now
        where = ", ".join(dict.fromkeys(f"{f}:{n}" for f, n in filter(None, sites)))
        log.warning(
            "pool %r: %d object(s) garbage-collected without being returned (%d leaked in total; "
            "slots reclaimed; logged at most every %gs); acquired at %s",
            self.name, len(sites), self.leaked, self._leak_log_interval, where or "unknown",
        )


def _resolve(fut: asyncio.Future) -> None:
    if not fut.done():
        fut.set_result(None)


def _site() -> tuple[str, int] | None:
    """(file, line) of the first caller outside this package: two attribute reads per frame."""
    frame = sys._getframe(2)
    while frame is not None and frame.f_code.co_filename.startswith(_PACKAGE_DIR):
        frame = frame.f_back
    return (frame.f_code.co_filename, frame.f_lineno) if frame is not None else None


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and not math.isnan(value)


def _check_timeout(name: str, value: object) -> None:
    _check(_is_number(value) and value > 0, name, value, "must be a number > 0 (math.inf: no limit)")


def _check(ok: bool, name: str, value: object, why: str) -> None:
    if not ok:
        raise ValueError(f"{name}={value!r} {why}")
