"""The locked slow paths of ``ObjectPool``: creating and validating objects, FIFO waiting,
giving back, and reclaiming the slots of leaked objects.

``PoolCore`` holds no public API: ``pools.ObjectPool`` builds on it. Its lock is never held
while user code (factory, reset, validate, dispose) runs, and nothing done under it blocks:
waking a waiter is a lock release or a ``call_soon_threadsafe``.
"""

from __future__ import annotations

import asyncio
import inspect
import math
import threading
import weakref
from collections import deque
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from .. import validate
from ..buckets import BucketCounts
from .leaks import LeakLog, Tracked, log

T = TypeVar("T")
SLOT = object()  # a grant of "create a new object", as opposed to a grant of an existing one


class PoolTimeout(TimeoutError):
    """No object became free in time; ``pool`` is the pool's name."""

    def __init__(self, pool: str, timeout: float, max_size: int, waiting: int) -> None:
        super().__init__(
            f"pool {pool!r}: no object became free within {timeout:g}s "
            f"(all {max_size} in use, {waiting} other acquirers waiting)"
        )
        self.pool = pool


class _Waiter:
    __slots__ = ("fut", "grant", "lock", "loop")

    def __init__(self, loop: asyncio.AbstractEventLoop | None) -> None:
        self.loop = loop
        self.fut = loop.create_future() if loop is not None else None
        self.lock: threading.Lock | None = None
        if loop is None:
            self.lock = threading.Lock()
            self.lock.acquire()
        self.grant: Any = None  # None until granted: then an object, or SLOT


class _Created:
    """What an asynchronous factory returned, still to be awaited (never a pooled object)."""

    __slots__ = ("awaitable",)

    def __init__(self, awaitable: Any) -> None:
        self.awaitable = awaitable


class PoolCore(Generic[T]):
    """State and slow paths shared by every way of checking an object out and in."""

    # Set by ObjectPool.__init__ (declared here for the readers of this module).
    factory: Callable[[], Any]
    max_size: int
    name: str
    timeout: float
    _reset: Callable[[T], object] | None
    _validate: Callable[[T], bool] | None
    _dispose: Callable[[T], object] | None
    _clock: Callable[[], float]
    _lock: threading.Lock
    _idle: list[T]
    _size: int
    _out: dict[Any, Any]
    _waiters: deque[_Waiter]
    _pending: list[Tracked]
    _leaks: LeakLog
    _wait: BucketCounts
    _on_drop: Callable[[Tracked], None]
    created: int
    discarded: int
    timeouts: int
    leaked: int

    # --- checkout -------------------------------------------------------------------------
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

    def _enqueue(self, loop: asyncio.AbstractEventLoop | None) -> _Waiter:
        """Under the lock: queue a waiter, then re-check for an object a lock-free release
        put back before it could see this waiter."""
        waiter = _Waiter(loop)
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
                    "referenced, "
                    "so get() cannot notice leaks; use lease() or acquire()"
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

    # --- waiting --------------------------------------------------------------------------
    def _timeout_of(self, timeout: float | None) -> float:
        if timeout is None:
            return self.timeout
        check_timeout("timeout", timeout)
        return timeout

    async def _wait_async(self, waiter: _Waiter, timeout: float) -> Any:
        try:
            if math.isinf(timeout):
                await waiter.fut
            else:
                async with asyncio.timeout(timeout):
                    await waiter.fut
        except BaseException as error:  # noqa: BLE001 - timeout or cancellation: both handled
            return self._abandon(waiter, error, timeout)
        return waiter.grant

    def _wait_sync(self, waiter: _Waiter, timeout: float) -> Any:
        # Lock.acquire() refuses timeouts above TIMEOUT_MAX (~292 years): wait forever instead.
        if waiter.lock.acquire(timeout=-1 if timeout > threading.TIMEOUT_MAX else timeout):
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
    def _checkin(self, key: Any, obj: T, discard: bool = False) -> None:
        """Give back what is checked out under ``key`` (a lease, or the id of an object or of a
        lease from ``lease()``)."""
        with self._lock:
            if self._pending:
                self._drain_leaks()
            if self._out.pop(key, None) is None:
                raise ValueError(
                    f"pool {self.name!r}: {obj!r} is not checked out (released twice?)"
                )
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
            if not _notify(waiter):
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
            if _notify(waiter):
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


def drop_callback(pool: PoolCore) -> Callable[[Tracked], None]:
    pool_ref = weakref.ref(pool)

    def on_drop(record: Tracked) -> None:
        # Runs wherever the object died, maybe inside the gc or inside the pool's own locked
        # section: never block, never log. Reclaim now if the lock is free, else leave it to
        # the next operation or scrape.
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


def _notify(waiter: _Waiter) -> bool:
    """Wake a granted waiter (never blocks: safe under the lock); False if its loop is closed."""
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


def _resolve(fut: asyncio.Future) -> None:
    if not fut.done():
        fut.set_result(None)


def check_timeout(name: str, value: object) -> None:
    """A wait of ``value`` seconds: a number > 0, ``math.inf`` for no limit."""
    validate.number(name, value, minimum=0.0, above=True, infinite=True)
