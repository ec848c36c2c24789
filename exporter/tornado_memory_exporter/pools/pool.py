"""``ObjectPool``: a bounded object pool, safe across threads and coroutines, that reports its use.

    pool = ObjectPool(Connection, max_size=8, name="db")
    async with pool.acquire(timeout=1.0) as conn: ...     # coroutines
    with pool.acquire_sync(timeout=1.0) as conn: ...      # threads and executors

How it stays correct and cheap:

- One ``threading.Lock`` guards the slow paths (creating, waiting, validating, leak reclaim) and
  is never held while user code (factory, reset, validate, dispose) runs.
- The hot path of ``acquire()`` takes no lock: when an idle object is ready and nobody waits,
  it is one ``list.pop()`` and one ``dict`` store, each atomic under the GIL, so no object can
  go to two holders. A release is one ``dict.pop()`` and one ``list.append()``; a releaser that
  then sees waiters hands idle objects to them under the lock, and a new waiter re-checks for
  idle objects after queueing, so no wakeup is lost.
- At capacity, acquirers wait in FIFO order; a release or a freed slot goes to the first
  waiter. (An acquirer racing a waiter's arrival by a few bytecodes may still be served first.)
- The two histograms cost no lock of their own. A wait is observed under the lock the waiter
  took anyway; the lock-free checkouts, which waited 0 s, are not even counted as they happen:
  they are worked out when the pool is read (``_count_lock_free``). A hold is observed by the
  release that ends it, lock-free like the release itself: a bucket's ``+= 1`` has no point
  where the GIL switches threads, so no count is lost. It costs a release one clock read (and
  a bisect when the hold is longer than the first bucket bound).
"""

from __future__ import annotations

import asyncio
import heapq
import inspect
import math
import threading
import time
import weakref
from bisect import bisect_left
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Generic, TypeVar

from .. import validate as check  # `validate` is an option of ObjectPool
from ..buckets import BucketCounts
from .leaks import LeakLog, Tracked, call_site, log
from .snapshot import PoolSnapshot
from .waiting import PoolTimeout, Waiter, check_timeout

T = TypeVar("T")
DEFAULT_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
SLOT = object()  # a grant of "create a new object", as opposed to a grant of an existing one
NOT_IDLE = object()  # the lock-free checkout found nothing to hand out: take the locked path
_new_lease = object.__new__

__all__ = ["DEFAULT_BUCKETS", "Lease", "ObjectPool", "PoolSnapshot", "PoolTimeout"]


class Lease(Generic[T]):
    """One checkout of a ``T``: a context manager from ``acquire()``, or a handle from ``lease()``.

    A lease from ``lease()`` is already checked out (do not enter it): give it back with
    ``release()`` or ``discard()``; garbage-collected before that, it counts as leaked. Use it
    for objects that cannot be weakly referenced (``bytearray``, ``dict``...).
    """

    # A lease holds no pool state: entering and leaving it call the pool's _lend/_end (the
    # lock-free paths) or its _checkout_async/_checkout_sync (the locked ones).
    __slots__ = ("__weakref__", "_pool", "_timeout", "obj", "since")
    obj: T
    """The object checked out."""
    since: float
    """When it was checked out, on the pool's clock."""

    def __init__(self, pool: ObjectPool[T], timeout: float | None) -> None:
        if timeout is not None:
            check_timeout("timeout", timeout)
        self._pool: ObjectPool[T] | None = pool
        self._timeout = timeout

    async def __aenter__(self) -> T:
        pool = self._pool
        obj = pool._lend(self)
        if obj is NOT_IDLE:
            obj = await pool._checkout_async(self._timeout, self, None)
        return obj

    async def __aexit__(self, exc_type: object, exc: object, tb: object) -> None:
        pool = self._pool
        if pool is not None:  # None: released or discarded inside the block
            pool._end(self)

    def __enter__(self) -> T:
        pool = self._pool
        obj = pool._lend(self)
        if obj is NOT_IDLE:
            obj = pool._checkout_sync(self._timeout, self, None)
        return obj

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        pool = self._pool
        if pool is not None:
            pool._end(self)

    def release(self) -> None:
        """Give the object back (after ``reset``); leaving a ``with`` block then does nothing."""
        self._close(discard=False)

    def discard(self) -> None:
        """Drop the object (it is broken); its slot becomes free for a new one."""
        self._close(discard=True)

    def _close(self, discard: bool) -> None:
        pool = self._pool
        if pool is None:
            raise ValueError(f"this lease of {self.obj!r} was already released")
        if discard:
            pool._discard(self)
        else:
            pool._end(self)
        self._pool = None


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
      acquiring line is logged at most once per ``leak_log_interval`` seconds. (A ``with``
      block always gives its object back, so ``acquire()`` needs no such tracking.)
    - ``buckets``: the bounds, in seconds, of both histograms: how long acquirers waited and
      how long each checkout was held. ``clock`` times both (and the checkouts' ages).
    """

    def __init__(
        self,
        factory: Callable[[], T] | Callable[[], Awaitable[T]],
        max_size: int = 10,
        *,
        name: str,
        min_idle: int = 0,
        reset: Callable[[T], object] | None = None,
        validate: Callable[[T], bool] | None = None,
        dispose: Callable[[T], object] | None = None,
        timeout: float = 30.0,
        leak_log_interval: float = 60.0,
        buckets: Sequence[float] = DEFAULT_BUCKETS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        check.function("factory", factory)
        check.integer("max_size", max_size, minimum=1)
        check.label_value("name", name)
        check.integer("min_idle", min_idle, minimum=0, maximum=max_size)
        for opt, value in (("reset", reset), ("validate", validate), ("dispose", dispose)):
            check.function(opt, value, optional=True)
        check_timeout("timeout", timeout)
        check.number("leak_log_interval", leak_log_interval, minimum=0.0, infinite=True)
        if not isinstance(buckets, (tuple, list)):
            raise check.OptionTypeError(
                f"buckets={buckets!r} must be a sequence of increasing positive numbers"
            )
        bounds = check.buckets("buckets", tuple(buckets))
        self.factory = factory
        self.max_size = max_size
        self.name = name
        self.timeout = timeout
        self._reset, self._validate, self._dispose = reset, validate, dispose
        self._clock = clock
        self._lock = threading.Lock()
        self._idle: list[T] = []
        self._size = 0  # objects alive or being created, idle or not
        # Checked-out records: lease -> lease (acquire()); id(object or lease) -> Tracked
        # (get(), lease()). Each record has .since, for the ages and the hold histogram.
        self._out: dict[Any, Any] = {}
        self._waiters: deque[Waiter] = deque()
        self._pending: list[Tracked] = []  # appended by weakref callbacks, which take no lock
        self._leaks = LeakLog(name, leak_log_interval, clock)
        self._wait = BucketCounts(bounds)  # waits of the locked path
        self._lock_free = 0  # checkouts that did not take the lock, as of the last reading
        self._hold = BucketCounts(bounds)
        self._first_bound = bounds[0]
        self.created = self.discarded = self.timeouts = self.leaked = 0
        self._on_drop = _leak_callback(self)
        for _ in range(min_idle):
            obj = factory()
            if inspect.isawaitable(obj):
                raise ValueError(
                    f"min_idle={min_idle} needs a synchronous factory, got {factory!r}"
                )
            self._idle.append(obj)
        self._size = self.created = min_idle

    def __repr__(self) -> str:
        return f"<ObjectPool {self.name!r} max_size={self.max_size}>"

    # --- public API -----------------------------------------------------------------------
    def acquire(self, timeout: float | None = None) -> Lease[T]:
        """``async with pool.acquire(timeout=1.0) as obj`` in coroutines, ``with
        pool.acquire_sync(timeout=1.0) as obj`` in threads and executors: the object is given
        back when the block exits."""
        # Lease(self, timeout) without the call to __init__: this runs on every checkout.
        if timeout is not None and not (type(timeout) is float and timeout > 0):
            check_timeout("timeout", timeout)
        lease = _new_lease(Lease)
        lease._pool, lease._timeout = self, timeout
        return lease

    # One lease serves both statements; the second name tells a reader which one to expect.
    acquire_sync = acquire

    async def get(self, timeout: float | None = None) -> T:
        """Take an object; give it back with ``put(obj)``. It must be weakly referenceable."""
        return await self._checkout_async(timeout, None, call_site())

    def get_sync(self, timeout: float | None = None) -> T:
        """Blocking ``get()``."""
        return self._checkout_sync(timeout, None, call_site())

    def put(self, obj: T, *, discard: bool = False) -> None:
        """Give back an object from ``get()``; ``discard=True`` drops it and frees its slot."""
        self._checkin(id(obj), obj, discard)

    async def lease(self, timeout: float | None = None) -> Lease[T]:
        """Take an object wrapped in a ``Lease`` (for any object): ``lease.obj``, ``release()``."""
        lease = Lease(self, timeout)
        await self._checkout_async(timeout, lease, call_site())
        return lease

    def lease_sync(self, timeout: float | None = None) -> Lease[T]:
        """Blocking ``lease()``."""
        lease = Lease(self, timeout)
        self._checkout_sync(timeout, lease, call_site())
        return lease

    def checkouts(self, limit: int = 5) -> list[dict[str, Any]]:
        """The ``limit`` longest-held checkouts, oldest first: ``age_seconds`` and, for
        ``get()``/``lease()``, the acquiring ``site`` (``{"file", "line"}``, else None). Code
        locations only, never object contents: the leak explorer shows them."""
        with self._lock:
            records = list(self._out.values())
        now = self._clock()
        oldest = heapq.nsmallest(limit, records, key=lambda r: r.since)
        return [
            {"age_seconds": max(0.0, now - r.since), "site": _site(getattr(r, "site", None))}
            for r in oldest
        ]

    def leak_sites(self) -> list[dict[str, Any]]:
        """Where the most recent leaked objects (up to ``LeakLog.MAX_SITES``) were acquired:
        ``{"file", "line", "count"}`` per site, most frequent first."""
        sites = Counter(filter(None, self._leaks.recent))
        return [{**_site(site), "count": n} for site, n in sites.most_common()]

    def pool_snapshot(self) -> PoolSnapshot:
        """Current gauges, counters and histograms (one short lock, no user code)."""
        with self._lock:
            if self._pending:
                self._drain_leaks()
            now = self._clock()
            wait = _copy(self._wait, first_bucket_extra=self._count_lock_free())
            records = list(self._out.values())  # one C call: atomic under the GIL
            idle = len(self._idle)
            oldest = min((r.since for r in records), default=now)
            snap = PoolSnapshot(
                capacity=self.max_size,
                in_use=self._size - idle,
                idle=idle,
                waiting=len(self._waiters),
                acquires=sum(wait.counts),
                created=self.created,
                discarded=self.discarded,
                timeouts=self.timeouts,
                leaked=self.leaked,
                oldest_checkout_seconds=max(0.0, now - oldest),
                wait=wait,
                hold=_copy(self._hold),
            )
        self._leaks.flush(snap.leaked)
        return snap

    def _count_lock_free(self) -> int:
        """Under the lock: how many checkouts took the lock-free path (waiting 0 s).

        Counting them as they happen would cost every checkout a counter update. Instead:
        every checkout is still out, given back (one hold observation) or leaked, and those
        that took the lock are counted by the wait histogram; the rest took no lock. A
        lock-free release between its ``_out.pop`` and its hold observation hides one for an
        instant (never counts one twice, as the hold is read first), so the count only ever
        runs behind: the max keeps it monotonic, and exact once it settles.
        """
        settled = sum(self._hold.counts)  # before _out: see above
        settled += self.leaked + len(self._out)
        self._lock_free = max(self._lock_free, settled - sum(self._wait.counts))
        return self._lock_free

    # --- the lock-free paths of acquire() -------------------------------------------------
    def _lend(self, lease: Lease[T]) -> Any:
        """Check out an idle object into ``lease`` without the lock, when one is ready, nobody
        waits and none needs validating; else ``NOT_IDLE`` (take the locked path)."""
        if self._validate is None and not self._waiters:
            try:
                lease.obj = obj = self._idle.pop()
            except IndexError:
                return NOT_IDLE
            lease.since = self._clock()
            self._out[lease] = lease
            return obj
        return NOT_IDLE

    def _end(self, lease: Lease[T]) -> None:
        """Give back what ``lease`` holds: lock-free when there is nothing to reset (a waiter
        or a leak to reclaim then takes the lock)."""
        if self._reset is None and self._out.pop(lease, None) is not None:
            held = self._clock() - lease.since
            self._idle.append(lease.obj)
            # BucketCounts.observe(), inlined, without its bisect for the holds shorter than
            # the first bound: where a checkout lasts microseconds, this is most of its cost.
            hold = self._hold
            if held <= self._first_bound:
                hold.counts[0] += 1
            else:
                hold.counts[bisect_left(hold.bounds, held)] += 1
            hold.total += held
            if self._waiters or self._pending:
                self._after_put()
            return
        self._checkin(self._key(lease), lease.obj)

    def _discard(self, lease: Lease[T]) -> None:
        self._checkin(self._key(lease), lease.obj, discard=True)

    def _key(self, lease: Lease[T]) -> Any:
        """Where ``lease``'s checkout is recorded: under itself (``acquire()``), else under its
        id (``lease()``: a weak record, so that its loss is noticed)."""
        return lease if lease in self._out else id(lease)

    # --- the locked paths: checkout -------------------------------------------------------
    def _take(self) -> Any:
        """Under the lock: an idle object, ``SLOT`` (create one), or None (must wait)."""
        if self._pending:
            self._drain_leaks()
        if self._waiters:
            self._hand_idle()  # serve the queue before a newcomer
            if self._waiters:
                return None
        try:
            return self._idle.pop()
        except IndexError:
            pass
        if self._size < self.max_size:
            self._size += 1
            return SLOT
        return None

    def _enqueue(self, loop: asyncio.AbstractEventLoop | None) -> Waiter:
        """Under the lock: queue a waiter, then re-check for an object a lock-free release
        put back before it could see this waiter."""
        waiter = Waiter(loop)
        self._waiters.append(waiter)
        self._hand_idle()
        return waiter

    async def _checkout_async(self, timeout: float | None, lease: Any, site: Any) -> T:
        timeout = self._timeout_of(timeout)  # before queueing: a bad value must not leave a waiter
        with self._lock:
            item = self._take()
            if item is None:
                waiter = self._enqueue(asyncio.get_running_loop())
        waited = 0.0
        if item is None:
            started = self._clock()
            item = await self._wait_async(waiter, timeout)
            waited = self._clock() - started
        if item is SLOT or self._validate is not None:
            item = self._prepare(item)
            if isinstance(item, _Created):
                item = await self._created_async(item.awaitable)
        return self._register(item, lease, site, waited)

    def _checkout_sync(self, timeout: float | None, lease: Any, site: Any) -> T:
        timeout = self._timeout_of(timeout)
        with self._lock:
            item = self._take()
            if item is None:
                waiter = self._enqueue(None)
        waited = 0.0
        if item is None:
            started = self._clock()
            item = self._wait_sync(waiter, timeout)
            waited = self._clock() - started
        if item is SLOT or self._validate is not None:
            item = self._prepare(item)
            if isinstance(item, _Created):
                if inspect.iscoroutine(item.awaitable):
                    item.awaitable.close()  # never awaited: close it rather than leave a warning
                self._give_back(SLOT)
                raise TypeError(f"pool {self.name!r}: factory is asynchronous; use acquire()/get()")
        return self._register(item, lease, site, waited)

    def _prepare(self, item: Any) -> Any:
        """Outside the lock: validate a reused object (discard it if invalid) or create one."""
        if item is not SLOT:
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
            self._give_back(SLOT)
            raise
        if inspect.isawaitable(obj):
            return _Created(obj)
        with self._lock:
            self.created += 1
        return obj

    async def _created_async(self, awaitable: Any) -> T:
        try:
            obj = await awaitable
        except BaseException:
            self._give_back(SLOT)
            raise
        with self._lock:
            self.created += 1
        return obj

    def _register(self, obj: T, lease: Any, site: Any, waited: float) -> T:
        now = self._clock()
        if lease is None:
            try:
                record: Any = Tracked(obj, self._on_drop)
            except TypeError:
                self._give_back(obj)
                raise TypeError(
                    f"pool {self.name!r}: {type(obj).__name__} objects cannot be weakly "
                    "referenced, so get() cannot notice leaks; use lease() or acquire()"
                ) from None
            record.key, record.since, record.site = id(obj), now, site
        else:
            lease.obj, lease.since = obj, now
            record = lease
            if site is not None:  # lease(): the lease is the wrapper whose loss is noticed
                record = Tracked(lease, self._on_drop)
                record.key, record.since, record.site = id(lease), now, site
        with self._lock:
            if self._pending:  # before the insert: a dead object's id may have been reused
                self._drain_leaks()
            self._out[lease if record is lease else record.key] = record
            self._wait.observe(waited)
        if self._leaks.sites:
            self._leaks.flush(self.leaked)
        return obj

    # --- the locked paths: waiting --------------------------------------------------------
    def _timeout_of(self, timeout: float | None) -> float:
        if timeout is None:
            return self.timeout
        check_timeout("timeout", timeout)
        return timeout

    async def _wait_async(self, waiter: Waiter, timeout: float) -> Any:
        try:
            if math.isinf(timeout):
                await waiter.fut
            else:
                async with asyncio.timeout(timeout):
                    await waiter.fut
        except BaseException as error:  # noqa: BLE001 - timeout or cancellation: both handled
            return self._abandon(waiter, error, timeout)
        return waiter.grant

    def _wait_sync(self, waiter: Waiter, timeout: float) -> Any:
        # Lock.acquire() refuses timeouts above TIMEOUT_MAX (~292 years): wait forever instead.
        if waiter.lock.acquire(timeout=-1 if timeout > threading.TIMEOUT_MAX else timeout):
            return waiter.grant
        return self._abandon(waiter, TimeoutError(), timeout)

    def _abandon(self, waiter: Waiter, error: BaseException, timeout: float) -> Any:
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

    # --- the locked paths: checkin --------------------------------------------------------
    def _checkin(self, key: Any, obj: T, discard: bool = False) -> None:
        """Give back what is checked out under ``key`` (a lease, or the id of an object or of a
        lease from ``lease()``)."""
        with self._lock:
            if self._pending:
                self._drain_leaks()
            record = self._out.pop(key, None)
            if record is None:
                raise ValueError(
                    f"pool {self.name!r}: {obj!r} is not checked out (released twice?)"
                )
            self._hold.observe(self._clock() - record.since)
        if discard:
            self._drop(obj)
            self._give_back(SLOT)
            return
        if self._reset is not None:
            try:
                self._reset(obj)
            except Exception as error:  # noqa: BLE001 - a failed reset means a broken object
                log.debug("pool %r: reset failed, discarding the object: %r", self.name, error)
                self._drop(obj)
                self._give_back(SLOT)
                return
        self._give_back(obj)

    def _after_put(self) -> None:
        """After a lock-free release that saw waiters (or pending leaks): serve them."""
        with self._lock:
            if self._pending:
                self._drain_leaks()
            self._hand_idle()

    def _hand_idle(self) -> None:
        """Under the lock: give idle objects to waiters, first come first served."""
        while self._waiters:
            try:
                obj = self._idle.pop()
            except IndexError:
                return
            waiter = self._waiters.popleft()
            waiter.grant = obj
            if not waiter.notify():
                self._idle.append(obj)  # its loop is gone: try the next waiter

    def _give_back(self, item: Any) -> None:
        """Return an object (or, for ``SLOT``, a slot) to the first waiter, or to the pool."""
        with self._lock:
            if item is SLOT:
                self._free_slot()
            else:
                self._idle.append(item)
                self._hand_idle()

    def _free_slot(self) -> None:
        """Under the lock: hand a slot to the first waiter, or shrink the pool."""
        while self._waiters:
            waiter = self._waiters.popleft()
            waiter.grant = SLOT
            if waiter.notify():
                return
        self._size -= 1

    def _drop(self, obj: T) -> None:
        with self._lock:
            self.discarded += 1
        if self._dispose is not None:
            try:
                self._dispose(obj)
            except Exception as error:  # noqa: BLE001 - the object is gone either way
                log.debug("pool %r: dispose failed: %r", self.name, error)

    # --- leaks ----------------------------------------------------------------------------
    def _reclaim(self, record: Tracked) -> None:
        """A checkout record's weakref callback: its object died while checked out. It runs
        wherever the object died, maybe inside the gc or inside this pool's own locked
        section: never block, never log. Reclaim now if the lock is free, else leave it to the
        next operation or scrape."""
        self._pending.append(record)
        if self._lock.acquire(blocking=False):
            try:
                self._drain_leaks()
            finally:
                self._lock.release()

    def _drain_leaks(self) -> None:
        """Under the lock: count dropped checkouts and hand their slots on (or shrink)."""
        while self._pending:
            record = self._pending.pop()
            if self._out.get(record.key) is not record:
                continue  # given back before it died
            del self._out[record.key]
            self.leaked += 1
            self._leaks.add(record.site)
            self._free_slot()


class _Created:
    """What an asynchronous factory returned, still to be awaited (never a pooled object)."""

    __slots__ = ("awaitable",)

    def __init__(self, awaitable: Any) -> None:
        self.awaitable = awaitable


def _leak_callback(pool: ObjectPool) -> Callable[[Tracked], None]:
    """The weakref callback of ``pool``'s checkout records; it holds the pool weakly, so that
    records outliving their pool keep nothing alive."""
    pool_ref = weakref.ref(pool)

    def on_drop(record: Tracked) -> None:
        pool = pool_ref()
        if pool is not None:
            pool._reclaim(record)

    return on_drop


def _copy(counts: BucketCounts, first_bucket_extra: int = 0) -> BucketCounts:
    """A copy of ``counts`` for a snapshot, with ``first_bucket_extra`` more in its first bucket."""
    copy = BucketCounts(counts.bounds)
    copy.counts, copy.total = list(counts.counts), counts.total
    copy.counts[0] += first_bucket_extra
    return copy


def _site(site: tuple[str, int] | None) -> dict[str, Any] | None:
    return {"file": site[0], "line": site[1]} if site is not None else None
