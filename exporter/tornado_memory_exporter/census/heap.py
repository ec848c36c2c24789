"""Heap census: live gc-tracked objects counted by type, in IOLoop slices, published as a snapshot.

What it sees: ``gc.get_objects()`` returns only gc-tracked objects (instances, most containers,
functions, types...), about a third of a typical heap: ``str``, ``int``, ``float`` and
containers holding only atomic values are untracked, and so is everything ``gc.freeze()`` moved
to the permanent generation (objects allocated after the freeze, where leaks live, are seen).

The observer effect, and how it is kept small:

* ``gc.get_objects()`` is one C call that cannot be sliced: it is the census's longest stall
  (the floor, ~15-150 ns per object depending on how scattered the heap is). Everything after
  it (counting by type object, the handler, stream and timer checks, naming the distinct
  types, releasing the list) runs in slices of at most ``slice_budget`` seconds that yield
  to the loop between them.
* Objects are counted by type object, and each distinct type is named once (``typenames``).
* ``gc.collect`` is never called; no reference to a counted object survives the census (the
  list is released, in slices too: freeing a million references at once is itself a stall);
  the census's own objects (task, coroutines, snapshot...) are taken out by identity.
* Scrapes read the published :class:`CensusSnapshot` and never walk the heap.

Forked (``mode="fork"``, or ``"auto"`` where it is safe: ``fork.py``), the census runs in a
child process on a copy-on-write image of the heap (``child.py``): the loop is held only for
``os.fork()`` and for publishing the answer, and the child also counts the untracked objects
and the bytes of every type, and tells reachable objects from cyclic garbage
(``reach.py``) and names what holds the growing types (``holders.py``). In the loop, every
tracked object is counted as live: garbage waiting for the collector included
(``<ns>_census_reachability`` 0). When the child cannot run, the census runs in the loop and the
reason is counted (``fallbacks``).
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from functools import cached_property
from itertools import compress
from typing import Any, NamedTuple

from tornado.ioloop import PeriodicCallback

from ..faults import Faults
from . import child
from .fork import REASONS, Fallback, Forker
from .handler_states import handler_classes, handler_state, websocket_classes
from .holders import MAX_HOLDER_LENGTH
from .selection import TypeSelector, project
from .slicer import HeapPass, Slicer, chunks
from .snapshot import CensusSnapshot
from .streams import StreamTally, add_stream, stream_classes
from .timers import callback_name, scheduled_callback, timer_classes
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
    timers: frozenset[type] = frozenset()
    """``asyncio.TimerHandle`` classes: scheduled timers on ``loop`` counted by callback."""
    loop: Any = None
    """The event loop whose timers are counted."""

    @classmethod
    def alive(cls, loop: Any = None) -> Kinds:
        """Every such class alive now; timers of ``loop`` (none without one)."""
        timers = timer_classes() if loop is not None else frozenset()
        return cls(
            frozenset(handler_classes()), websocket_classes(), stream_classes(), timers, loop
        )

    @cached_property
    def special(self) -> frozenset[type]:
        return self.handlers | self.streams | self.timers


class HeapCounts(NamedTuple):
    """What :func:`count_by_type` counted."""

    types: Counter[type]
    handlers: Counter[tuple[type, str]]
    """``(handler class, state)`` -> live instances."""
    streams: StreamTally
    timers: Counter[Any]
    """Callback (unwrapped: ``timers.unwrap``) -> scheduled timers on ``kinds.loop``."""


def tally_special(
    objects: Sequence[Any],
    kinds: Kinds,
    handlers: Counter[tuple[type, str]],
    streams: StreamTally,
    timers: Counter[Any],
) -> None:
    """Add the handlers, streams and timers among ``objects`` to ``handlers``, ``streams``
    and ``timers``.

    Pure (no loop, no logging, no user code): the in-loop census runs it on the chunks that
    hold such objects, and a forked child can run it on its whole list.
    """
    special, stream_types, websockets = kinds.special, kinds.streams, kinds.websockets
    timer_types, loop = kinds.timers, kinds.loop
    for obj in compress(objects, map(special.__contains__, map(type, objects))):
        cls = type(obj)
        if cls in stream_types:
            add_stream(streams, obj)
        elif cls in timer_types:
            callback = scheduled_callback(obj, loop)
            if callback is not None:
                timers[callback] += 1
        else:
            handlers[cls, handler_state(obj, websockets)] += 1


async def count_by_type(
    objects: list[Any], slicer: Slicer, *, kinds: Kinds = Kinds()
) -> HeapCounts:
    """Count ``objects`` by type object, ``kinds.handlers`` instances by state,
    ``kinds.streams`` instances by buffer and ``kinds.timers`` by callback.

    A pure function over ``objects`` (tests pass synthetic lists); only slices of
    ``CHUNK`` objects exist at a time beyond the list itself.
    """
    counts: Counter[type] = Counter()
    handlers: Counter[tuple[type, str]] = Counter()
    streams = StreamTally()
    timers: Counter[Any] = Counter()
    special = kinds.special
    seen = 0
    async for chunk in chunks(objects, slicer, CHUNK):
        counts.update(map(type, chunk))
        if special:
            # Only chunks that hold handlers or streams pay for the per-instance look.
            now = sum(counts[cls] for cls in special)
            if now != seen:
                seen = now
                tally_special(chunk, kinds, handlers, streams, timers)
        del chunk
    return HeapCounts(counts, handlers, streams, timers)


FIRST_CENSUS_DELAY = 2.0
"""Seconds from ``start()`` to the first scheduled census (or the interval, if shorter): a new
user sees ``<ns>_objects`` at once rather than one interval later, while the start of the app
itself (imports, warm-up) is left alone."""
JITTER = 0.2
"""``PeriodicCallback`` jitter: each interval is drawn within +-10 %, so that the workers of a
``fork_processes`` app drift apart instead of all censusing (and forking) at once."""
HOLDER_LENGTH = MAX_HOLDER_LENGTH


class HeapCensus:
    """Runs censuses on ``loop`` (the first within ``FIRST_CENSUS_DELAY`` of ``start()``, then
    every ``interval`` seconds with +-10 % jitter, when ``interval > 0``; or on demand with
    :meth:`run_now`) and holds the latest snapshot.

    The census never counts itself: what it holds while it counts (its task and coroutines,
    the previous snapshot, the type-name cache's weak references, the enumeration; in a child
    also its closure) is listed by identity in :meth:`_own_objects` and taken out, not
    subtracted by a counted stack depth."""

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
        forker: Forker | None = None,
    ) -> None:
        self._loop = loop
        self.selector = selector
        bounds = {"top_n": selector.top_n, "growth_n": selector.growth_n, "hold": selector.hold}
        self.garbage_selector = TypeSelector(**bounds)
        """Exported types of ``<ns>_unreachable_objects`` (the same bounds as ``selector``)."""
        self.timer_selector = TypeSelector(**bounds)
        """Exported callbacks of ``<ns>_ioloop_timers`` (the same bounds as ``selector``)."""
        self._faults = faults
        self.interval = interval
        self.slice_budget = slice_budget
        self.watchlist = watchlist
        self._get_objects = get_objects
        self._clock = clock
        self._wall = wall
        self._pause = pause
        self._names = TypeNames()
        self.snapshot: CensusSnapshot | None = None
        self._task: asyncio.Task[CensusSnapshot] | None = None
        self._first: asyncio.TimerHandle | None = None
        self._periodic: PeriodicCallback | None = None
        self._stack: list[Any] = []
        """The running census's task and coroutines (see ``_own_objects``)."""
        self.forker = forker
        """Runs the census in a child (``None``: always in the loop)."""
        self.fallbacks: dict[str, int] = dict.fromkeys(REASONS, 0) if forker is not None else {}
        """Censuses that meant to fork and ran in the loop, by reason."""
        faults.declare("census")
        if forker is not None:
            faults.declare("census_fork")

    @property
    def scheduled(self) -> bool:
        """Whether scheduled censuses are on (``start()`` with an interval, no ``stop()``)."""
        return self._first is not None or self._periodic is not None

    def start(self) -> None:
        """Start the schedule (no-op when ``interval`` is 0); call on the loop's thread."""
        if self.interval > 0 and not self.scheduled:
            self._first = self._loop.call_later(
                min(FIRST_CENSUS_DELAY, self.interval), self._first_census
            )

    def stop(self) -> None:
        """Stop the schedule and cancel a census in progress (safe to call twice)."""
        if self._first is not None:
            self._first.cancel()
            self._first = None
        if self._periodic is not None:
            self._periodic.stop()
            self._periodic = None
        if self._task is not None and not self._task.done():
            self._task.cancel()
        self._task = None
        if self.forker is not None:
            self.forker.close()

    def _first_census(self) -> None:
        self._first = None
        self._periodic = PeriodicCallback(self._scheduled, self.interval * 1000, jitter=JITTER)
        self._periodic.start()
        self._scheduled()

    def _scheduled(self) -> None:
        if self._task is not None and not self._task.done():
            return  # an overrun: the census in progress is this interval's
        self.run_now().add_done_callback(_retrieve)

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
        task = asyncio.current_task()
        self._stack = [task, task.get_coro()] if task is not None else []
        del task
        try:
            return await self._ours(self._count())
        except asyncio.CancelledError:
            raise
        except Exception as error:
            self._faults.record("census", error)
            raise
        finally:
            self._stack = []

    def _ours(self, coroutine: Coroutine[Any, Any, Any]) -> Coroutine[Any, Any, Any]:
        """``coroutine``, listed as the census's own before it runs."""
        self._stack.append(coroutine)
        return coroutine

    def _own_objects(self) -> list[Any]:
        """What the census itself holds now, by identity: its task and coroutines (and the
        list naming them), the published snapshot and its containers, the type-name cache's
        weak references. The list returned is new (so not among what it lists)."""
        own: list[Any] = [self._stack, *self._stack, *self._names.refs()]
        if self.snapshot is not None:
            own += self.snapshot.parts()
        return own

    async def _count(self) -> CensusSnapshot:
        if self.forker is not None:
            reason = self.forker.refusal()
            if reason is None:
                try:
                    return await self._ours(self._count_in_child())
                except Fallback as fallback:
                    reason = fallback.reason
                    if reason not in ("unsupported", "headroom"):
                        self._faults.record("census_fork", fallback)
            self.fallbacks[reason] = self.fallbacks.get(reason, 0) + 1
        return await self._ours(self._count_in_loop())

    async def _count_in_child(self) -> CensusSnapshot:
        assert self.forker is not None
        kinds = Kinds.alive(self._loop)
        holder_types = frozenset(self.selector.grown)
        own = self._own_objects()

        def work() -> tuple[Any, ...]:
            return tuple(
                child.census(
                    count_by_type=count_by_type, kinds=kinds, own=own, holder_types=holder_types
                )
            )

        own += [kinds, holder_types, work, *(work.__closure__ or ())]
        try:
            value, forked = await self._ours(self.forker.run(work))
        finally:
            own.clear()  # own -> work -> its cell -> own: broken here, not left to the collector
        try:
            answer = child.ChildCensus.from_wire(value)
        except ValueError as error:
            raise Fallback("child_error", str(error)) from None
        del value
        published = self._clock()
        slicer = Slicer(self.slice_budget, clock=self._clock, pause=self._pause)
        slicer.max_stall = forked.fork_seconds
        return await self._publish(
            {name: n for name, (n, _) in answer.types.items()},
            slicer,
            started=published - forked.wall_seconds,
            sizes={name: size for name, (_, size) in answer.types.items()},
            garbage=answer.garbage,
            timers=answer.timers,
            handlers={(name, state): n for name, state, n in answer.handlers},
            streams=StreamTally(*answer.streams),
            holders=answer.holders,
            tracked=answer.tracked,
            distinct_types=answer.distinct,
            mode="fork",
            reachability=answer.reachability,
            own=answer.own,
            untracked=answer.untracked,
            pymalloc=answer.pymalloc,
            child_seconds=answer.seconds,
            child_private_bytes=answer.private_bytes,
        )

    async def _count_in_loop(self) -> CensusSnapshot:
        heap = HeapPass(
            self.slice_budget, get_objects=self._get_objects, clock=self._clock, pause=self._pause
        )
        heap.enumerate()  # no coroutine of its own: the census's stack is the one listed
        own = [heap, *self._own_objects()]
        async with heap:
            slicer = heap.slicer
            assert slicer is not None
            tracked = len(heap.objects)
            counts, handler_counts, streams, timer_counts = await count_by_type(
                heap.objects, slicer, kinds=Kinds.alive(self._loop)
            )
        # Each of `own` was alive at the enumeration (they are older, or hold it), so each
        # tracked one is in it exactly once: taking out their types takes out exactly them.
        own_types = Counter(map(type, filter(gc.is_tracked, {id(o): o for o in own}.values())))
        del own
        counts.subtract(own_types)
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
        timers: dict[str, int] = {}
        for callback, n in timer_counts.items():
            name = callback_name(callback)
            timers[name] = timers.get(name, 0) + n
        del timer_counts
        return await self._publish(
            by_name,
            slicer,
            started=heap.started,
            handlers=handlers,
            streams=streams,
            timers=timers,
            tracked=tracked,
            distinct_types=distinct,
            own=own_types.total(),
        )

    async def _publish(
        self,
        by_name: dict[str, int],
        slicer: Slicer,
        *,
        started: float,
        sizes: dict[str, int] | None = None,
        garbage: dict[str, tuple[int, int]] | None = None,
        timers: dict[str, int],
        holders: dict[str, str] | None = None,
        **fields: Any,
    ) -> CensusSnapshot:
        """Select the exported types, measure the watched objects and publish the snapshot;
        ``fields`` are the mode's own (handlers, streams, what the child reports)."""
        await slicer.pause()  # selection (~2.5 ms at 10,000 types) gets a slice of its own
        now = self._wall()
        if sizes is None:
            exported = self.selector.select(by_name, now)
            exported_sizes = None
        else:
            exported = self.selector.select(by_name, now, sizes=sizes, basis="fork")
            exported_sizes = project(sizes, exported)
        unreachable = unreachable_sizes = None
        if garbage is not None:
            dead = {name: n for name, (n, _) in garbage.items()}
            dead_sizes = {name: size for name, (_, size) in garbage.items()}
            unreachable = self.garbage_selector.select(dead, now, sizes=dead_sizes, basis="fork")
            unreachable_sizes = project(dead_sizes, unreachable)
        exported_timers = self.timer_selector.select(timers, now)
        # One holder per type: for the growth selection and the leaking handler classes.
        wanted = set(self.selector.grown) | {name for name, _ in fields.get("handlers", {})}
        exported_holders = {
            name: label[:HOLDER_LENGTH] for name, label in (holders or {}).items() if name in wanted
        }
        scanned = sum(by_name.values())
        if self.watchlist is not None:
            await self.watchlist.measure(slicer)
        slicer.end_slice()
        snapshot = CensusSnapshot(
            objects=exported,
            sizes=exported_sizes,
            unreachable=unreachable,
            unreachable_sizes=unreachable_sizes,
            timers=exported_timers,
            holders=exported_holders,
            scanned=scanned,
            duration=self._clock() - started,
            max_stall=slicer.max_stall,
            finished_at=self._wall(),
            **fields,
        )
        self.snapshot = snapshot
        return snapshot


def _retrieve(task: asyncio.Task[CensusSnapshot]) -> None:
    """A scheduled census's outcome, retrieved so that asyncio does not log it (a failure is
    already counted in ``_census``)."""
    if not task.cancelled():
        task.exception()
