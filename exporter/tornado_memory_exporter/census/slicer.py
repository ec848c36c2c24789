"""Slicing long heap work on the IOLoop: a budgeted slice, then a yield (see :class:`Slicer`)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

RELEASE_CHUNK = 65536
"""References dropped between two looks at the clock when the object list is released."""


MARGIN = 1.5
"""A step is assumed to cost up to this many times what the previous one did (noisy machines)."""


BUSY = 0.1
"""A yield that took longer than this fraction of the budget means other callbacks were waiting."""


BUSY_SLICE = 0.2
"""On a busy loop slices (and the gaps between them) shrink to this fraction of the budget."""


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


async def release(objects: list[Any], slicer: Slicer) -> None:
    """Empty ``objects`` from the end, a slice at a time (dropping a million references at
    once takes longer than one slice budget)."""
    cost = 0.0
    while objects:
        await slicer.checkpoint(cost)
        started = slicer.clock()
        del objects[-RELEASE_CHUNK:]
        cost = slicer.clock() - started
