"""The demo's leak scenarios: real leaks, each switchable at run time and each matching an alert.

Every scenario acts on the traffic of one demo endpoint (the background load or a user's curl):
while it is on, each request to that endpoint leaks a little; switching it off releases what was
leaked, so the alert resolves. Each is capped so a forgotten demo cannot exhaust the machine.

Uncollectable cycles: since Python 3.4 (PEP 442) cycles through objects with ``__del__`` are
collected, so they never count as uncollectable. What CPython 3.11 still reports in
``gc.get_stats()[g]["uncollectable"]`` and moves to ``gc.garbage`` are cycles through objects
whose type has a *legacy* ``tp_del`` slot, which only C code can set. CPython's own test hook
``_testcapi.with_tp_del`` sets it on a Python class (CPython's test_gc uses it for the same
purpose); the scenario is reported unavailable on an interpreter built without ``_testcapi``.
"""

from __future__ import annotations

import gc
import sys
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import tornado.ioloop

try:
    from _testcapi import with_tp_del
except ImportError:  # an interpreter built without CPython's test modules
    with_tp_del = None


@dataclass
class Leak:
    """One scenario: its switch, what it leaks, and the alert it should raise."""

    name: str
    endpoint: str
    alert: str
    what: str
    cap: int
    on: bool = False
    size: int = 0
    unavailable: str | None = None

    def switch(self, on: bool) -> None:
        """Turn the scenario on or off; off releases what it leaked."""
        if on and self.unavailable:
            raise ValueError(f"leak {self.name!r} is unavailable here: {self.unavailable}")
        self.on = on
        if not on:
            self.release()

    def release(self) -> None:
        """Free what the scenario leaked (nothing for leaks that do not accumulate)."""
        self.size = 0

    @property
    def capped(self) -> bool:
        """Whether the leak reached its cap and stopped growing."""
        return self.size >= self.cap

    def describe(self) -> dict[str, Any]:
        """The JSON shown by ``GET /leaks``."""
        return {
            "on": self.on,
            "size": self.size,
            "cap": self.cap,
            "endpoint": self.endpoint,
            "alert": self.alert,
            "what": self.what,
            "available": self.unavailable is None,
            **({"reason": self.unavailable} if self.unavailable else {}),
        }


# What the handlers and websockets scenarios leak into: module globals, as in the classic
# leaks (Tornado's own chat demo keeps its clients in a class-level set), so that the page
# names them as the census does: "kept alive by tornado_memory_exporter.demo.leaks.REPORTS
# (module global) > list". Held by the scenario, the path from a root ran through the demo's
# serve() coroutine, the service and its dict of scenarios (a label of 170 characters).
REPORTS: list[Any] = []
"""Finished ``ReportHandler`` instances the ``handlers`` scenario keeps."""
CHAT_ROOM: set[Any] = set()
"""The chat's members; the ``websockets`` scenario forgets to remove the closed ones."""


@dataclass
class HandlerLeak(Leak):
    """Finished request handlers appended to a module-level list: the classic Tornado leak."""

    kept: list[Any] = field(default_factory=list)

    def keep(self, handler: Any) -> None:
        if self.on and not self.capped:
            self.kept.append(handler)
            self.size = len(self.kept)

    def release(self) -> None:
        self.kept.clear()
        self.size = 0


@dataclass
class CacheLeak(Leak):
    """A response cache: bounded LRU normally, never evicting while the leak is on."""

    bounded_size: int = 64
    cache: OrderedDict[str, bytes] = field(default_factory=OrderedDict)

    def store(self, key: str, value: bytes) -> None:
        if self.on and self.capped:
            return
        self.cache[key] = value
        self.cache.move_to_end(key)
        while not self.on and len(self.cache) > self.bounded_size:
            self.cache.popitem(last=False)
        self.size = len(self.cache)

    def release(self) -> None:
        self.cache.clear()
        self.size = 0


class _Uncollectable:
    """Half of a two-object cycle the collector must leave in ``gc.garbage``."""

    __slots__ = ("partner",)  # no __dict__: gc.garbage then holds exactly these objects

    def __tp_del__(self) -> None:
        """Called by the legacy ``tp_del`` slot when the demo finally frees the object."""


if with_tp_del is not None:
    _Uncollectable = with_tp_del(_Uncollectable)


@dataclass
class CycleLeak(Leak):
    """Reference cycles that the collector finds but cannot free (see the module docstring)."""

    def __post_init__(self) -> None:
        if with_tp_del is None:
            self.unavailable = "needs CPython's _testcapi module (with_tp_del) for a legacy tp_del"

    def make_cycle(self) -> None:
        if self.on and not self.capped:
            first, second = _Uncollectable(), _Uncollectable()
            first.partner, second.partner = second, first
            self.size += 2  # both become uncollectable at the next collection that sees them
        else:
            # ordinary collectable cycles, so gc's collected counters move as in a real app
            first, second = [], []
            first.append(second)
            second.append(first)

    def release(self) -> None:
        # Break each cycle, then drop our objects from gc.garbage: plain refcounting frees them.
        ours = [obj for obj in gc.garbage if type(obj) is _Uncollectable]
        for obj in ours:
            obj.partner = None
        gc.garbage[:] = [obj for obj in gc.garbage if type(obj) is not _Uncollectable]
        ours.clear()
        self.size = 0


@dataclass
class GarbageLeak(Leak):
    """A reference cycle left behind by every request, as Tornado's own exception handling
    leaves them (tornado issues 1872, 2229, 3346): the handler keeps the ``exc_info`` of an
    error it recovered from, and the traceback's frame holds the handler. Nothing keeps the
    cycle alive: it is garbage, freed by the next collection of its generation, so the
    forked census counts it under ``<ns>_unreachable_objects`` and
    ``<ns>_handlers_alive{state="unreachable"}``, the GC's collected counters and pauses grow,
    and no leak alert fires (``<ns>_objects`` counts reachable objects only)."""

    rows: int = 50
    """Rows of the page each handler holds: garbage that costs bytes, not just a count."""

    def leave_cycle(self, handler: Any) -> None:
        if not self.on:
            return
        handler.page = [{"row": i, "cells": [i] * 8} for i in range(self.rows)]
        try:
            raise LookupError("template not found: falling back to the default page")
        except LookupError:
            handler.failure = sys.exc_info()  # handler -> traceback -> this frame -> handler
        self.size += 1


# Seconds one blocking call lasts: longer than the exporter's lag probe interval (0.5 s) by more
# than the fast profile's lag threshold (0.2 s), so that every call delays a probe by at least
# 0.5 s whatever their phases. A 0.5 s call delayed none by more than 0.1 s in a minute (30
# calls): the load's 1 s period kept each call in step with the probe, which ran just before
# the call and was next due as it ended; TornadoIOLoopBlocked fired in 1 run of 4.
BLOCK_SECONDS = 1.0


@dataclass
class BlockingLeak(Leak):
    """A synchronous call (think requests.get or a big hash) made on the IOLoop."""

    block_seconds: float = BLOCK_SECONDS

    def maybe_block(self) -> None:
        if self.on:
            time.sleep(self.block_seconds)  # deliberately blocking the loop: that is the demo
            self.size += 1


@dataclass
class PoolLeak(Leak):
    """Objects taken from an ``ObjectPool`` and dropped without being returned."""


@dataclass
class HTTPLeak(Leak):
    """More concurrent upstream calls than the ``AsyncHTTPClient``'s ``max_clients``."""

    fanout: int = 3


@dataclass
class WebSocketLeak(Leak):
    """The chat room: ``open()`` joins it, ``on_close()`` leaves it, except while the leak is on
    (the classic WebSocket leak: closed connections kept in the set of clients)."""

    room: set[Any] = field(default_factory=set)

    def join(self, member: Any) -> None:
        self.room.add(member)

    def leave(self, member: Any) -> None:
        if self.on and not self.capped:
            self.size += 1  # forgotten: the closed handler stays in the room
        else:
            self.room.discard(member)

    def release(self) -> None:
        self.room.difference_update([m for m in self.room if m.ws_connection is None])
        self.size = 0


@dataclass
class SlowConsumerLeak(Leak):
    """A client of the ticker feed that stops reading while the server keeps pushing to it."""

    client: Any = None
    """The consumer's IOStream while the leak is on (the service connects it)."""

    def release(self) -> None:
        if self.client is not None:
            self.client.close()  # the server's stream to it closes and its queue is freed
            self.client = None
        self.size = 0


@dataclass
class TimerLeak(Leak):
    """A timeout scheduled per request and never cancelled (a session expiry an hour away that
    logout should have cancelled): IOLoop timers of one callback pile up. While off the same
    callback is scheduled ``steady_delay`` ahead and runs, a steady population of timers."""

    leak_delay: float = 3600.0
    steady_delay: float = 1.0
    timers: list[Any] = field(default_factory=list)

    def schedule(self, callback: Callable[..., None], *args: Any) -> float:
        """Schedule ``callback(*args)`` on the current IOLoop; returns the delay chosen."""
        loop = tornado.ioloop.IOLoop.current()
        if self.on and not self.capped:
            self.timers.append(loop.call_later(self.leak_delay, callback, *args))
            self.size = len(self.timers)
            return self.leak_delay
        loop.call_later(self.steady_delay, callback, *args)
        return self.steady_delay

    def release(self) -> None:
        for timer in self.timers:  # called on the loop's thread (the switch handler)
            tornado.ioloop.IOLoop.current().remove_timeout(timer)
        self.timers.clear()
        self.size = 0


def make_leaks() -> dict[str, Leak]:
    """A fresh set of all scenarios, by name (the names of ``POST /leaks/<name>``). The
    ``handlers`` and ``websockets`` scenarios of every set leak into the same module globals
    (``REPORTS``, ``CHAT_ROOM``): one demo service per process."""
    leaks: list[Leak] = [
        HandlerLeak(
            "handlers",
            "/report",
            "TornadoHandlersLeaking",
            "finished ReportHandler instances kept alive by a global list",
            cap=20_000,
            kept=REPORTS,
        ),
        CacheLeak(
            "cache",
            "/items",
            "TornadoWatchedObjectGrowing",
            "the watched response cache stops evicting (1 KiB per request)",
            cap=50_000,
        ),
        PoolLeak(
            "pool",
            "/db",
            "TornadoPoolLeak",
            "ObjectPool connections dropped while checked out",
            cap=1_000_000,
        ),
        CycleLeak(
            "cycles",
            "/session",
            "TornadoGCUncollectable",
            "reference cycles the collector cannot free, left in gc.garbage",
            cap=20_000,
        ),
        GarbageLeak(
            "cycles-per-request",
            "/render",
            "none (garbage waiting for the collector, not a leak)",
            "each request leaves its handler in a reference cycle (kept exception info)",
            cap=1 << 62,
        ),
        BlockingLeak(
            "blocking",
            "/compute",
            "TornadoIOLoopBlocked",
            "a 1 s synchronous call on the IOLoop per request",
            cap=1_000_000,
        ),
        HTTPLeak(
            "http",
            "/fanout",
            "TornadoPoolSaturated",
            "each request fans out to a slow upstream beyond the AsyncHTTPClient's max_clients",
            cap=1_000_000,
        ),
        WebSocketLeak(
            "websockets",
            "/chat",
            "TornadoHandlersLeaking",
            "closed chat connections kept in the room's set of clients (on_close forgets them)",
            cap=20_000,
            room=CHAT_ROOM,
        ),
        SlowConsumerLeak(
            "slow-consumer",
            "/ticker",
            "TornadoWriteBuffersGrowing",
            "a ticker client stops reading while the server keeps pushing (bytes queued)",
            cap=64 << 20,
        ),
        TimerLeak(
            "timers",
            "/login",
            "TornadoTimersGrowing",
            "each login schedules a session expiry an hour away that nothing cancels",
            cap=20_000,
        ),
    ]
    return {leak.name: leak for leak in leaks}
