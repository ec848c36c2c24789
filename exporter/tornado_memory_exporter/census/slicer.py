"""Long heap work on the IOLoop, in slices: a budgeted slice of work, then a yield.

Three pieces, shared by the census, the explorer's chain walk and its allocation window:
:class:`Slicer` keeps the budget, :func:`paced` / :func:`chunks` pace a loop of steps whose
size adapts to what the previous step cost, and :class:`HeapPass` enumerates the heap once and
always releases that list in slices, even when the work is cancelled.
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, Self

# Longest single census slice on the loop: 5 ms slices kept request p99 within 1.25x of an
# uninstrumented app under wrk (bench/census.py); 10k-object slices are well inside it.
SLICE_BUDGET = 0.005
RELEASE_CHUNK = 65536
"""References dropped between two looks at the clock when the object list is released."""
MARGIN = 1.5
"""A step is assumed to cost up to this many times what the previous one did (noisy machines)."""
BUSY = 0.1
"""A yield that took longer than this fraction of the budget means other callbacks were waiting."""
BUSY_SLICE = 0.2
"""On a busy loop slices (and the gaps between them) shrink to this fraction of the budget."""
SMALLEST_STEP = 16
"""Steps never shrink below this many items."""


class Slicer:
    """Bookkeeping of one census's slices: ``await slicer.checkpoint(next_cost)`` yields to the
    loop when doing ``next_cost`` more seconds of work would overrun the slice budget.

    ``pause(seconds)`` is ``asyncio.sleep``. A yield is ``pause(0)``. When other callbacks
    ran meanwhile (the loop is busy serving requests), the following slices shrink to
    ``BUSY_SLICE`` of the budget and each is preceded by a gap as long: after ``sleep(0)`` the
    census would resume ahead of the requests' next steps, so a request needing several loop
    steps would wait one slice per step, and under wrk nearly every request in the census
    window would wait a whole budget (p99 +45 % at 1M objects). Short slices with gaps keep
    the census at most half of a busy loop and each request's wait near 1 ms. An idle loop
    keeps full slices and no gaps, so an idle census takes no longer.
    """

    def __init__(
        self,
        budget: float,
        *,
        clock: Callable[[], float],
        pause: Callable[[float], Awaitable[Any]],
        start: float | None = None,
    ) -> None:
        self.budget = budget
        self.limit = budget
        """Length of the current slice: ``budget``, or ``budget * BUSY_SLICE`` on a busy loop."""
        self.clock = clock
        self._pause = pause
        self.slice_start = clock() if start is None else start
        self.max_stall = 0.0
        self.slices = 1

    def end_slice(self) -> None:
        self.max_stall = max(self.max_stall, self.clock() - self.slice_start)

    async def checkpoint(self, next_cost: float = 0.0) -> None:
        """Yield first if ``next_cost`` (the previous step's cost, padded by ``MARGIN``) more
        seconds would end the slice past its budget."""
        if self.clock() - self.slice_start + MARGIN * next_cost > self.limit:
            await self.pause()

    async def pause(self) -> None:
        """End this slice and yield to the loop (see the class docstring for the gap)."""
        self.end_slice()
        yielded = self.clock()
        await self._pause(0)
        if self.clock() - yielded > self.budget * BUSY:
            self.limit = self.budget * BUSY_SLICE
            await self._pause(self.limit)
        else:
            self.limit = self.budget
        self.slices += 1
        self.slice_start = self.clock()


async def paced(slicer: Slicer, size: int, more: Callable[[], bool]) -> AsyncIterator[int]:
    """Step sizes for a loop of work, for as long as ``more()``: before each step it checkpoints
    with the previous step's cost, so a step that would overrun the slice starts after a yield;
    a step costing more than half the budget halves the next one (down to ``SMALLEST_STEP``),
    one costing less than an eighth doubles it (up to ``size``). Between steps the caller holds
    no reference that the loop's other callbacks must be able to free."""
    step, cost = size, 0.0
    while more():
        await slicer.checkpoint(cost)
        began = slicer.clock()
        yield step
        cost = slicer.clock() - began
        if cost > slicer.budget / 2 and step > SMALLEST_STEP:
            step //= 2
        elif cost < slicer.budget / 8 and step < size:
            step = min(size, step * 2)


async def chunks(seq: Sequence[Any], slicer: Slicer, size: int) -> AsyncIterator[Sequence[Any]]:
    """``seq`` in consecutive slices of at most ``size`` items, paced by :func:`paced`."""
    start = 0

    def more() -> bool:
        return start < len(seq)

    async for step in paced(slicer, size, more):
        yield seq[start : start + step]
        start += step


async def release(objects: list[Any], slicer: Slicer) -> None:
    """Empty ``objects`` from the end, a slice at a time (dropping a million references at
    once takes longer than one slice budget)."""
    async for step in paced(slicer, RELEASE_CHUNK, lambda: bool(objects)):
        del objects[-step:]


class HeapPass:
    """One enumeration of the heap, for ``async with``: ``objects`` is ``gc.get_objects()``
    taken on entry (the one stall that cannot be sliced), followed at once by a yield; on exit
    the list is emptied in slices, whether the work finished, failed or was cancelled.

    The pass itself is alive at the enumeration, so ``objects`` holds it: a census takes it
    out by identity (``HeapCensus._own_objects``).
    """

    def __init__(
        self,
        budget: float,
        *,
        get_objects: Callable[[], list[Any]] = gc.get_objects,
        clock: Callable[[], float] = time.perf_counter,
        pause: Callable[[float], Awaitable[Any]] = asyncio.sleep,
    ) -> None:
        self._budget = budget
        self._get_objects = get_objects
        self._clock = clock
        self._pause = pause
        self.objects: list[Any] = []
        self.slicer: Slicer | None = None
        self.started = 0.0

    def enumerate(self) -> None:
        """Take the enumeration now (``async with`` does it on entry when it was not taken):
        a caller that lists its own objects by identity calls this from its own frame, so
        that no further coroutine of the pass is alive at the enumeration."""
        self.started = self._clock()
        self.objects = self._get_objects()
        self.slicer = Slicer(self._budget, clock=self._clock, pause=self._pause, start=self.started)

    async def __aenter__(self) -> Self:
        if self.slicer is None:
            self.enumerate()
        assert self.slicer is not None
        try:
            await self.slicer.pause()  # the loop's turn right after the stall
        except BaseException:
            await self.__aexit__()
            raise
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self.slicer is not None
        try:
            await release(self.objects, self.slicer)
        finally:
            self.objects.clear()  # cancelled again while releasing: drop the rest at once
