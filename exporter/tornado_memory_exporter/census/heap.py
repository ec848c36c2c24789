"""Heap census: live gc-tracked objects counted by type, in IOLoop slices, published as a snapshot.

What it sees: ``gc.get_objects()`` returns only gc-tracked objects (instances, most containers,
functions, types...), about a third of a typical heap: ``str``, ``int``, ``float`` and
containers holding only atomic values are untracked, and so is everything ``gc.freeze()`` moved
to the permanent generation (objects allocated after the freeze, where leaks live, are seen).

The observer effect, and how it is kept small:

* ``gc.get_objects()`` is one C call that cannot be sliced: it is the census's longest stall
  (the floor, ~15-150 ns per object depending on how scattered the heap is). Everything after it
  (counting by type object, the handler and stream checks, naming the distinct types, releasing the list)
  runs in slices of at most ``slice_budget`` seconds that yield to the loop between them.
* Objects are counted by type object, and each distinct type is named once (``typenames``).
* ``gc.collect`` is never called; no reference to a counted object survives the census (the
  list is released, in slices too: freeing a million references at once is itself a stall);
  the census's own task and coroutines are taken out of the counts.
* Scrapes read the published :class:`CensusSnapshot` and never walk the heap.

Forked (``mode="fork"``, or ``"auto"`` where it is safe: ``fork.py``), the census runs in a
child process on a copy-on-write image of the heap (``child.py``): the loop is held only for
``os.fork()`` and for publishing the answer, and the child also counts the untracked objects
and the bytes of every type. When the child cannot run, the census runs in the loop and the
reason is counted (``fallbacks``).
"""

from __future__ import annotations

import asyncio
import gc
import random
import time
import types
import weakref
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from functools import cached_property
from itertools import compress
from typing import Any, NamedTuple

from ..faults import Faults
from . import child
from .fork import REASONS, Fallback, Forker
from .handler_states import handler_classes, handler_state, websocket_classes
from .selection import TypeSelector, project
from .slicer import HeapPass, Slicer, chunks
from .snapshot import CensusSnapshot
from .streams import StreamTally, add_stream, stream_classes
from .typenames import TypeNames
from .watchlist import Watchlist

CHUNK = 4096
"""Objects counted between two looks at the clock (~0.1-0.5 ms of work)."""
NAME_CHUNK = 256
"""Distinct types named between two looks at the clock."""


@dataclass(frozen=True)
class Kinds:
    """The types whose instances the census looks into, beyond counting them."""

    handlers: frozenset[type] = frozenset()
    """``RequestHandler`` classes: counted by state."""
    websockets: frozenset[type] = frozenset()
    """The subset of ``handlers`` counted as open/closed WebSockets."""
    streams: frozenset[type] = frozenset()
    """``BaseIOStream`` classes: open streams and their buffers summed."""

    @classmethod
    def alive(cls) -> Kinds:
        """Every such class alive now."""
        return cls(frozenset(handler_classes()), websocket_classes(), stream_classes())

    @cached_property
    def special(self) -> frozenset[type]:
        return self.handlers | self.streams


class HeapCounts(NamedTuple):
    """What :func:`count_by_type` counted."""

    types: Counter[type]
    handlers: Counter[tuple[type, str]]
    """``(handler class, state)`` -> live instances."""
    streams: StreamTally


def tally_special(
    objects: Sequence[Any], kinds: Kinds, handlers: Counter[tuple[type, str]], streams: StreamTally
) -> None:
    """Add the handlers and streams among ``objects`` to ``handlers`` and ``streams``.

    Pure (no loop, no logging, no user code): the in-loop census runs it on the chunks that
    hold such objects, and a forked child can run it on its whole list.
    """
    special, stream_types, websockets = kinds.special, kinds.streams, kinds.websockets
    for obj in compress(objects, map(special.__contains__, map(type, objects))):
        cls = type(obj)
        if cls in stream_types:
            add_stream(streams, obj)
        else:
            handlers[cls, handler_state(obj, websockets)] += 1


async def count_by_type(
    objects: list[Any], slicer: Slicer, *, kinds: Kinds = Kinds()
) -> HeapCounts:
    """Count ``objects`` by type object, ``kinds.handlers`` instances by state and
    ``kinds.streams`` instances by buffer.

    A pure function over ``objects`` (tests pass synthetic lists); only slices of
    ``CHUNK`` objects exist at a time beyond the list itself.
    """
    counts: Counter[type] = Counter()
    handlers: Counter[tuple[type, str]] = Counter()
    streams = StreamTally()
    special = kinds.special
    seen = 0
    async for chunk in chunks(objects, slicer, CHUNK):
        counts.update(map(type, chunk))
        if special:
            # Only chunks that hold handlers or streams pay for the per-instance look.
            now = sum(counts[cls] for cls in special)
            if now != seen:
                seen = now
                tally_special(chunk, kinds, handlers, streams)
        del chunk
    return HeapCounts(counts, handlers, streams)


FIRST_CENSUS_DELAY = 2.0
"""Seconds from ``start()`` to the first scheduled census (or the interval, if shorter): a new
user sees ``<ns>_objects`` at once rather than one interval later, while the start of the app
itself (imports, warm-up) is left alone."""


class HeapCensus:
    """Runs censuses on ``loop`` (the first within ``FIRST_CENSUS_DELAY`` of ``start()``, then
    every ``interval`` seconds with +-10 % jitter, when ``interval > 0``; or on demand with
    :meth:`run_now`) and holds the latest snapshot."""

    def __init__(
        self,
        *,
        loop: asyncio.AbstractEventLoop,
        selector: TypeSelector,
        faults: Faults,
        interval: float,
        slice_budget: float,
        watchlist: Watchlist | None = None,
        get_objects: Callable[[], list[Any]] = gc.get_objects,
        clock: Callable[[], float] = time.perf_counter,
        wall: Callable[[], float] = time.time,
        pause: Callable[[float], Awaitable[Any]] = asyncio.sleep,
        jitter: Callable[[], float] = lambda: random.uniform(-0.1, 0.1),
        forker: Forker | None = None,
    ) -> None:
        self._loop = loop
        self.selector = selector
        self._faults = faults
        self.interval = interval
        self.slice_budget = slice_budget
        self.watchlist = watchlist
        self._get_objects = get_objects
        self._clock = clock
        self._wall = wall
        self._pause = pause
        self._jitter = jitter
        self._names = TypeNames()
        self.snapshot: CensusSnapshot | None = None
        self._task: asyncio.Task[CensusSnapshot] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._running = False
        self.forker = forker
        """Runs the census in a child (``None``: always in the loop)."""
        self.fallbacks: dict[str, int] = dict.fromkeys(REASONS, 0) if forker is not None else {}
        """Censuses that meant to fork and ran in the loop, by reason."""
        faults.declare("census")
        if forker is not None:
            faults.declare("census_fork")

    def start(self) -> None:
        """Start the schedule (no-op when ``interval`` is 0); call on the loop's thread."""
        self._running = True
        if self.interval > 0 and self._timer is None:
            self._schedule(min(FIRST_CENSUS_DELAY, self.interval * (1.0 + self._jitter())))

    def stop(self) -> None:
        """Stop the schedule and cancel a census in progress (safe to call twice)."""
        self._running = False
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._task is not None and not self._task.done():
            self._task.cancel()
        self._task = None
        if self.forker is not None:
            self.forker.close()

    def _schedule(self, delay: float | None = None) -> None:
        if delay is None:
            delay = self.interval * (1.0 + self._jitter())
        self._timer = self._loop.call_later(delay, self._scheduled)

    def _scheduled(self) -> None:
        self._timer = None
        if self._running:
            self.run_now().add_done_callback(self._scheduled_done)

    def _scheduled_done(self, task: asyncio.Task[CensusSnapshot]) -> None:
        if not task.cancelled():
            task.exception()  # already counted in _census; retrieved so asyncio does not log it
        if self._running and self._timer is None:
            self._schedule()

    def run_now(self) -> asyncio.Task[CensusSnapshot]:
        """Start a census now (after the one in progress, if any); await the returned task for
        its snapshot. Must be called on the loop's thread."""
        task = self._loop.create_task(self._census(self._task))
        self._task = task
        return task

    async def _census(self, previous: asyncio.Task[CensusSnapshot] | None) -> CensusSnapshot:
        if previous is not None and not previous.done():
            await asyncio.wait([previous])
        del previous
        try:
            return await self._count()
        except asyncio.CancelledError:
            raise
        except Exception as error:
            self._faults.record("census", error)
            raise

    async def _count(self) -> CensusSnapshot:
        if self.forker is not None:
            reason = self.forker.refusal()
            if reason is None:
                try:
                    return await self._count_in_child()
                except Fallback as fallback:
                    reason = fallback.reason
                    if reason not in ("unsupported", "headroom"):
                        self._faults.record("census_fork", fallback)
            self.fallbacks[reason] = self.fallbacks.get(reason, 0) + 1
        return await self._count_in_loop()

    async def _count_in_child(self) -> CensusSnapshot:
        assert self.forker is not None
        # Alive at the fork and the census's own: this task and the four coroutines on its
        # stack (_census, _count, _count_in_child, Forker.run).
        ours: Counter[type] = Counter({types.CoroutineType: 4})
        task = asyncio.current_task()
        if task is not None:
            ours[type(task)] += 1
        del task
        kinds = Kinds.alive()

        def work() -> dict[str, Any]:
            return child.census(count_by_type=count_by_type, kinds=kinds, ours=ours)

        answer, forked = await self.forker.run(work)
        del work
        published = self._clock()
        slicer = Slicer(self.slice_budget, clock=self._clock, pause=self._pause)
        slicer.max_stall = forked.fork_seconds
        rows = answer["types"]
        by_name = {name: row[0] for name, row in rows.items()}
        sizes = {name: row[1] for name, row in rows.items()}
        del rows
        handlers = {(name, state): n for name, state, n in answer["handlers"]}
        streams = StreamTally(*answer["streams"])
        return await self._publish(
            by_name,
            slicer,
            started=published - forked.wall_seconds,
            sizes=sizes,
            handlers=handlers,
            streams=streams,
            tracked=answer["tracked"],
            distinct_types=answer["distinct"],
            mode="fork",
            untracked=answer["untracked"],
            pymalloc=answer["pymalloc"],
            child_seconds=answer["seconds"],
            child_private_bytes=answer["private_bytes"],
        )

    async def _count_in_loop(self) -> CensusSnapshot:
        task = asyncio.current_task()
        own_weakrefs = len(self._names)  # one weakref.ref per cached type name
        heap = HeapPass(
            self.slice_budget, get_objects=self._get_objects, clock=self._clock, pause=self._pause
        )
        async with heap:
            slicer = heap.slicer
            assert slicer is not None
            tracked = len(heap.objects)
            counts, handler_counts, streams = await count_by_type(
                heap.objects, slicer, kinds=Kinds.alive()
            )
        # Ours and alive at the enumeration: the pass, the cached names' weak references, this
        # task and the three coroutines on its stack (_census, _count, _count_in_loop). Everything
        # else the census uses is created after the enumeration, so it is not counted.
        ours: Counter[type] = Counter({HeapPass: HeapPass.OWN, weakref.ref: own_weakrefs})
        if task is not None:
            ours[type(task)] += 1
            ours[types.CoroutineType] += 3
        del task
        counts.subtract(ours)
        counts = +counts  # drops the types whose only objects were ours
        by_name: dict[str, int] = {}
        names = self._names
        pending = list(counts.items())
        async for batch in chunks(pending, slicer, NAME_CHUNK):
            for cls, n in batch:
                name = names(cls)
                by_name[name] = by_name.get(name, 0) + n
        del pending
        distinct = len(counts)
        del counts
        handlers: dict[tuple[str, str], int] = {}
        for (cls, state), n in handler_counts.items():
            key = (names(cls), state)
            handlers[key] = handlers.get(key, 0) + n
        return await self._publish(
            by_name,
            slicer,
            started=heap.started,
            handlers=handlers,
            streams=streams,
            tracked=tracked,
            distinct_types=distinct,
        )

    async def _publish(
        self,
        by_name: dict[str, int],
        slicer: Slicer,
        *,
        started: float,
        sizes: dict[str, int] | None = None,
        **fields: Any,
    ) -> CensusSnapshot:
        """Select the exported types, measure the watched objects and publish the snapshot;
        ``fields`` are the mode's own (handlers, streams, what the child reports)."""
        await slicer.pause()  # selection (~2.5 ms at 10,000 types) gets a slice of its own
        if sizes is None:
            exported = self.selector.select(by_name, self._wall())
            exported_sizes = None
        else:
            exported = self.selector.select(by_name, self._wall(), sizes=sizes, basis="fork")
            exported_sizes = project(sizes, exported)
        scanned = sum(by_name.values())
        if self.watchlist is not None:
            await self.watchlist.measure(slicer)
        slicer.end_slice()
        snapshot = CensusSnapshot(
            objects=exported,
            sizes=exported_sizes,
            scanned=scanned,
            duration=self._clock() - started,
            max_stall=slicer.max_stall,
            finished_at=self._wall(),
            **fields,
        )
        self.snapshot = snapshot
        return snapshot
