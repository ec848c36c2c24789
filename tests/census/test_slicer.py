"""The shared slicing pieces: paced steps, chunks, and a heap pass that always releases."""

from __future__ import annotations

import asyncio

from tornado_memory_exporter.census.slicer import RELEASE_CHUNK, HeapPass, Slicer, chunks


class Clock:
    """Every look at the clock is ``step`` seconds after the previous one."""

    def __init__(self, step: float) -> None:
        self.now, self.step = 0.0, step

    def __call__(self) -> float:
        self.now += self.step
        return self.now


async def no_pause(seconds: float) -> None:
    pass


def test_chunks_cover_the_sequence_once_in_order_and_shrink_when_steps_are_slow():
    slicer = Slicer(0.004, clock=Clock(0.003), pause=no_pause)  # each step "costs" 3 ms > budget/2

    async def sizes() -> list[int]:
        return [len(c) async for c in chunks(list(range(1000)), slicer, 256)]

    got = asyncio.run(sizes())
    assert sum(got) == 1000
    assert got[:4] == [256, 128, 64, 32]
    assert set(got[4:-1]) == {16}  # never below SMALLEST_STEP (the last chunk is what is left)


def test_a_cancelled_heap_pass_still_releases_its_list_in_slices():
    objects = [object() for _ in range(3 * RELEASE_CHUNK)]
    pauses: list[float] = []
    entered = asyncio.Event()

    async def pause(seconds: float) -> None:
        pauses.append(seconds)
        await asyncio.sleep(0)

    heap = HeapPass(1e-9, get_objects=lambda: objects, pause=pause)

    async def work() -> None:
        async with heap:
            entered.set()
            await asyncio.sleep(3600)

    async def main() -> None:
        task = asyncio.create_task(work())
        await entered.wait()
        before = len(pauses)
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass
        assert objects == []
        assert len(pauses) - before >= 3  # one slice per RELEASE_CHUNK at a tiny budget

    asyncio.run(main())
