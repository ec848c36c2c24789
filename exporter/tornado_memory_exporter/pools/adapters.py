"""Snapshots of the pools a Tornado app already has, for ``exporter.pools.register(name, target)``.

- ``tornado.simple_httpclient.SimpleAsyncHTTPClient`` (the default ``AsyncHTTPClient``):
  capacity ``max_clients``, in_use the active requests, idle the free slots, waiting the
  queued requests, which time out "in request queue" when they wait too long; the hold
  histogram is how long each request kept its slot.
- ``tornado.curl_httpclient.CurlAsyncHTTPClient`` (when pycurl is installed): its curl
  handles, and how long each request kept one (hold).
- ``concurrent.futures.ThreadPoolExecutor``: capacity ``max_workers``, in_use busy workers,
  waiting queued tasks, the wait histogram of time spent queued and the hold histogram of
  time spent running. The executor exposes none of these, so registering it wraps that one
  instance's ``submit`` (undone by ``unregister``); tasks submitted before registration are
  not seen.
- SQLAlchemy (the ``sqlalchemy`` extra): an ``Engine``, ``AsyncEngine`` or ``QueuePool``:
  capacity ``pool_size + max_overflow``, in_use checked out (overflow included), idle checked
  in, plus acquires, connections created, invalidated (discarded), checkout timeouts, the
  checkout wait histogram and the hold histogram (checkout to checkin). It listens to pool
  events and wraps the instance's ``_do_get`` (the only place a checkout waits or times out);
  ``unregister`` removes both.

Every adapter can tell the hold: each sees where a slot is taken and given back.

These read the pools' own attributes (some private: ``max_clients`` has no public getter):
the tests run every adapter against the real library so that a change there shows up.
"""

from __future__ import annotations

import math
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from tornado.simple_httpclient import SimpleAsyncHTTPClient

from ..buckets import BucketCounts
from .pool import DEFAULT_BUCKETS
from .snapshot import PoolSnapshot


def adapt(target: Any) -> Any:
    """An object with ``pool_snapshot()`` (and maybe ``close()``) for ``target``, or None."""
    if isinstance(target, SimpleAsyncHTTPClient):
        return _SimpleClient(target)
    # Not imported here: pycurl loads libcurl (+5.8 MiB RSS); an app with a curl client has it.
    curl = sys.modules.get("tornado.curl_httpclient")
    if curl is not None and isinstance(target, curl.CurlAsyncHTTPClient):
        return _CurlClient(target)
    if isinstance(target, ThreadPoolExecutor):
        return _Executor(target)
    module = type(target).__module__ or ""
    if module.startswith("sqlalchemy."):
        return _sqlalchemy(target)
    return None


class _SimpleClient:
    """Besides the gauges, counts requests (acquires) and the requests that timed out while
    queued ("Timeout in request queue", tornadoweb/tornado#2127) by wrapping that instance's
    ``fetch_impl`` and queue-timeout callback, and times how long each request holds its slot
    by wrapping ``_handle_request`` (it receives the callback that frees the slot); ``close``
    restores all three. They run on the IOLoop's thread only, so no lock is needed."""

    def __init__(self, client: SimpleAsyncHTTPClient) -> None:
        if "_on_timeout" in vars(client):
            raise ValueError(f"{client!r} is already registered (its queue timeout is wrapped)")
        self._client = client
        self.requests = self.timeouts = 0
        self.hold = BucketCounts(DEFAULT_BUCKETS)
        fetch_impl, on_timeout = client.fetch_impl, client._on_timeout
        handle_request = client._handle_request

        def counted_fetch_impl(request: Any, callback: Any) -> None:
            self.requests += 1
            fetch_impl(request, callback)

        def counted_on_timeout(key: object, info: str | None = None) -> None:
            self.timeouts += 1
            on_timeout(key, info)

        def timed_handle_request(request: Any, release: Callable[[], None], done: Any) -> None:
            taken = time.monotonic()

            def timed_release() -> None:
                self.hold.observe(time.monotonic() - taken)
                release()

            handle_request(request, timed_release, done)

        client.fetch_impl = counted_fetch_impl  # type: ignore[method-assign]
        client._on_timeout = counted_on_timeout  # type: ignore[method-assign]
        client._handle_request = timed_handle_request  # type: ignore[method-assign]

    def close(self) -> None:
        """Restore the client's own methods."""
        for name in ("fetch_impl", "_on_timeout", "_handle_request"):
            vars(self._client).pop(name, None)

    def pool_snapshot(self) -> PoolSnapshot:
        client = self._client
        active = len(client.active)
        return PoolSnapshot(
            capacity=client.max_clients,
            in_use=active,
            idle=max(0, client.max_clients - active),
            waiting=len(client.queue),
            acquires=self.requests,
            timeouts=self.timeouts,
            hold=self.hold,
        )


class _CurlClient:
    """Reads the client's handle lists; times how long each request holds a handle by
    wrapping that instance's ``_finish``, which gives the handle back (its ``info`` holds the
    loop time the handle was taken); ``close`` restores it. IOLoop thread only: no lock."""

    def __init__(self, client: Any) -> None:
        if "_finish" in vars(client):
            raise ValueError(f"{client!r} is already registered (its _finish is wrapped)")
        self._client = client
        self.hold = BucketCounts(DEFAULT_BUCKETS)
        finish = client._finish

        def timed_finish(curl: Any, *args: Any, **kwargs: Any) -> None:
            if curl.info is not None:
                self.hold.observe(client.io_loop.time() - curl.info["curl_start_ioloop_time"])
            finish(curl, *args, **kwargs)

        client._finish = timed_finish

    def close(self) -> None:
        """Restore the client's own ``_finish``."""
        vars(self._client).pop("_finish", None)

    def pool_snapshot(self) -> PoolSnapshot:
        client = self._client
        handles, free = len(client._curls), len(client._free_list)
        return PoolSnapshot(
            capacity=handles,
            in_use=handles - free,
            idle=free,
            waiting=len(client._requests),
            hold=self.hold,
        )


class _Counts:
    """Counters shared by the wrapping adapters, updated under one lock from any thread."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.submitted = 0
        self.dequeued = 0
        """Left the queue: a task began running (executor), a checkout got its connection or
        gave up (SQLAlchemy). ``submitted - dequeued`` is who is waiting."""
        self.finished = self.timeouts = 0
        self.wait = BucketCounts(DEFAULT_BUCKETS)
        self.hold = BucketCounts(DEFAULT_BUCKETS)
        """Time a task ran (executor), a connection was checked out (SQLAlchemy)."""


class _Executor:
    def __init__(self, executor: ThreadPoolExecutor) -> None:
        if "submit" in vars(executor):
            raise ValueError(f"{executor!r} is already registered (its submit is wrapped)")
        self._executor = executor
        self._counts = counts = _Counts()
        submit = executor.submit

        def counted_submit(fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
            queued = time.monotonic()

            def run() -> Any:
                started = time.monotonic()
                with counts.lock:
                    counts.dequeued += 1
                    counts.wait.observe(started - queued)
                try:
                    return fn(*args, **kwargs)
                finally:
                    held = time.monotonic() - started
                    with counts.lock:
                        counts.finished += 1
                        counts.hold.observe(held)

            with counts.lock:
                counts.submitted += 1
            try:
                return submit(run)
            except BaseException:  # shut down or broken: it was never queued
                with counts.lock:
                    counts.submitted -= 1
                raise

        executor.submit = counted_submit  # type: ignore[method-assign]

    def close(self) -> None:
        """Restore the executor's own ``submit``."""
        vars(self._executor).pop("submit", None)

    def pool_snapshot(self) -> PoolSnapshot:
        counts, executor = self._counts, self._executor
        with counts.lock:
            busy = counts.dequeued - counts.finished
            waiting = counts.submitted - counts.dequeued
            dequeued = counts.dequeued
        threads = len(executor._threads)
        return PoolSnapshot(
            capacity=executor._max_workers,
            in_use=busy,
            idle=max(0, threads - busy),
            waiting=waiting,
            acquires=dequeued,
            created=threads,
            wait=counts.wait,
            hold=counts.hold,
        )


def _sqlalchemy(target: Any) -> Any:
    from sqlalchemy import event
    from sqlalchemy.exc import TimeoutError as CheckoutTimeout
    from sqlalchemy.pool import QueuePool

    engine = getattr(target, "sync_engine", target)
    pool = getattr(engine, "pool", target)
    if not isinstance(pool, QueuePool):
        raise ValueError(
            f"target={target!r} uses {type(pool).__name__}; only QueuePool-based SQLAlchemy "
            "pools have a capacity to export"
        )
    return _SQLAlchemyPool(engine if engine is not pool else None, pool, event, CheckoutTimeout)


class _SQLAlchemyPool:
    def __init__(
        self, engine: Any, pool: Any, event: Any, timeout_error: type[BaseException]
    ) -> None:
        if "_do_get" in vars(pool):
            raise ValueError(f"{pool!r} is already registered (its _do_get is wrapped)")
        self._engine = engine
        self._pool = pool
        self._listened = pool  # listeners are removed through the pool they were added to
        self._event = event
        self._timeout_error = timeout_error
        self._counts = _Counts()
        self._out: dict[int, float] = {}  # id(connection record) -> checkout time
        self.created = self.invalidated = self.acquires = 0
        self._wrap(pool)
        # engine.dispose() swaps in pool.recreate(), which shares these listeners (its
        # dispatch) but not the _do_get wrapper: engine_disposed moves the wrapper over.
        if engine is not None:
            event.listen(engine, "engine_disposed", self._on_disposed)
        self._listeners: list[tuple[str, Callable[..., None]]] = [
            ("connect", self._on_connect),
            ("checkout", self._on_checkout),
            ("checkin", self._on_checkin),
            ("invalidate", self._on_invalidate),
        ]
        for name, listener in self._listeners:
            event.listen(pool, name, listener)

    def _wrap(self, pool: Any) -> None:
        counts, timeout_error, do_get = self._counts, self._timeout_error, pool._do_get

        def counted_do_get() -> Any:
            started = time.monotonic()
            with counts.lock:
                counts.submitted += 1
            try:
                return do_get()
            except timeout_error:
                with counts.lock:
                    counts.timeouts += 1
                raise
            finally:
                with counts.lock:
                    counts.dequeued += 1
                    counts.wait.observe(time.monotonic() - started)

        pool._do_get = counted_do_get

    def _current(self) -> Any:
        """The engine's pool now, following ``engine.dispose()``."""
        pool = self._engine.pool if self._engine is not None else self._pool
        if pool is not self._pool:
            vars(self._pool).pop("_do_get", None)
            self._wrap(pool)
            self._pool = pool
        return pool

    def _on_disposed(self, engine: Any) -> None:
        self._current()

    def close(self) -> None:
        """Remove the listeners and the ``_do_get`` wrapper."""
        if self._engine is not None:
            self._event.remove(self._engine, "engine_disposed", self._on_disposed)
        for name, listener in self._listeners:
            self._event.remove(self._listened, name, listener)
        vars(self._current()).pop("_do_get", None)

    def _on_connect(self, dbapi_connection: Any, record: Any) -> None:
        with self._counts.lock:
            self.created += 1

    def _on_checkout(self, dbapi_connection: Any, record: Any, proxy: Any) -> None:
        with self._counts.lock:
            self.acquires += 1
            self._out[id(record)] = time.monotonic()

    def _on_checkin(self, dbapi_connection: Any, record: Any) -> None:
        now = time.monotonic()
        with self._counts.lock:
            since = self._out.pop(id(record), None)
            if since is not None:
                self._counts.hold.observe(now - since)

    def _on_invalidate(self, dbapi_connection: Any, record: Any, exception: Any) -> None:
        with self._counts.lock:
            self.invalidated += 1

    def pool_snapshot(self) -> PoolSnapshot:
        pool, counts = self._current(), self._counts
        overflow = pool._max_overflow
        with counts.lock:
            waiting = counts.submitted - counts.dequeued
            acquires, timeouts = self.acquires, counts.timeouts
            now = time.monotonic()
            oldest = min(self._out.values(), default=now)
            created, invalidated = self.created, self.invalidated
        return PoolSnapshot(
            capacity=math.inf if overflow < 0 else pool.size() + overflow,
            in_use=max(0, pool.checkedout()),
            idle=pool.checkedin(),
            waiting=waiting,
            acquires=acquires,
            created=created,
            discarded=invalidated,
            timeouts=timeouts,
            oldest_checkout_seconds=now - oldest,
            wait=counts.wait,
            hold=counts.hold,
        )
