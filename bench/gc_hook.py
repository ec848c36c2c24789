"""(b) What the GC pause hook costs an allocation-heavy loop.

The loop builds records the way a request handler builds a response (a dict holding a list and
a tuple per row) and keeps them until the batch is done: every ~700 tracked allocations trigger
a gen-0 collection, so the hook runs as often as it ever does. Variants, timed in many short
rounds, each round in a shuffled order (seeded) and from the same heap state:

- ``none``: no gc callback; ``none again``: the same, timed separately (the A/A control: how
  far apart two identical variants land on this machine, i.e. the noise floor);
- ``empty``: a callback that does nothing (the floor of any ``gc.callbacks`` hook);
- ``hook``: our ``GCPauseRecorder`` started, as ``install()`` starts it.

Rounds are timed in thread CPU time, so that other processes taking the core do not count;
the ratio printed is the median of per-round ratios to ``none``. A second pass times each call
of our callback inside real collections (median per call): the cost the ratio is made of.

    .venv/bin/python -m bench.gc_hook [--rounds 301] [--rows 5000]
"""

from __future__ import annotations

import argparse
import gc
import random
import sys
from array import array
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from time import perf_counter_ns, thread_time

from bench import median
from tornado_memory_exporter.buckets import GC_PAUSE_BUCKETS
from tornado_memory_exporter.collectors.gc_pauses import GCPauseRecorder
from tornado_memory_exporter.faults import Faults

VARIANTS = ("none", "none again", "empty", "hook")
GcCallback = Callable[[str, dict], None]


def allocate(rows: int) -> int:
    """The allocation-heavy loop: ``rows`` small records kept alive until the batch ends."""
    batch = []
    for i in range(rows):
        batch.append({"id": i, "tags": [i, i + 1], "pair": (i, -i)})
    return len(batch)


def _empty(phase: str, info: dict) -> None:
    pass


@contextmanager
def hooked(callback: GcCallback | None) -> Iterator[None]:
    """``callback`` in ``gc.callbacks`` for the duration of the block."""
    if callback is not None:
        gc.callbacks.append(callback)
    try:
        yield
    finally:
        while callback is not None and callback in gc.callbacks:
            gc.callbacks.remove(callback)


def recorder_callback(recorder_of: list[GCPauseRecorder] | None = None) -> GcCallback:
    """What ``GCPauseRecorder.start()`` puts in ``gc.callbacks``, taken from a list of our own
    (the recorder appended to ``recorder_of``, to read its failures)."""
    callbacks: list[GcCallback] = []
    recorder = GCPauseRecorder("bench", Faults(), buckets=GC_PAUSE_BUCKETS, callbacks=callbacks)
    recorder.start()
    if recorder_of is not None:
        recorder_of.append(recorder)
    return callbacks[0]


def time_rounds(
    *, rounds: int, rows: int, seed: int = 2
) -> tuple[dict[str, list[float]], list[int]]:
    """CPU seconds of ``allocate(rows)`` per variant and round, and the collections (by
    generation) of the last round (the same in every variant: the hook allocates nothing tracked).
    """
    recorders: list[GCPauseRecorder] = []
    callbacks: dict[str, GcCallback | None] = {
        "none": None,
        "none again": None,
        "empty": _empty,
        "hook": recorder_callback(recorders),
    }
    seconds: dict[str, list[float]] = {name: [] for name in VARIANTS}
    collections: list[int] = []
    order = list(VARIANTS)
    shuffle = random.Random(seed).shuffle
    for r in range(rounds + 1):  # round 0 warms up and is dropped
        shuffle(order)
        for name in order:
            gc.collect()  # the bench, not the library: every round starts from the same heap
            with hooked(callbacks[name]):
                before = [s["collections"] for s in gc.get_stats()]
                start = thread_time()
                allocate(rows)
                elapsed = thread_time() - start
                after = [s["collections"] for s in gc.get_stats()]
            if r:
                seconds[name].append(elapsed)
            collections = [b - a for a, b in zip(before, after, strict=False)]
    if recorders[0].failures:
        raise RuntimeError(f"the gc hook failed {recorders[0].failures} times")
    return seconds, collections


def time_calls_in_gc(callback: GcCallback, *, batches: int, rows: int) -> float:
    """Median seconds of one call of ``callback`` made by real collections (cold caches and all)."""
    durations = array("q", bytes(8 * (batches * rows // 100 + 1000)))
    calls = [0]

    def timed(phase: str, info: dict) -> None:
        start = perf_counter_ns()
        callback(phase, info)
        if calls[0] < len(durations):
            durations[calls[0]] = perf_counter_ns() - start
            calls[0] += 1

    with hooked(timed):
        for _ in range(batches):
            allocate(rows)
    return median(durations[: calls[0]]) / 1e9


def run(*, rounds: int = 301, rows: int = 5000) -> dict[str, float]:
    """Measure and print; returns the ratios to ``none`` (median of per-round ratios)."""
    # Everything imported so far moves to the permanent generation: the full collection that
    # starts each round then costs microseconds, and rounds only see their own objects.
    gc.collect()
    gc.freeze()
    seconds, collections = time_rounds(rounds=rounds, rows=rows)
    base = seconds["none"]
    ratios = {
        name: median([v / b for v, b in zip(seconds[name], base, strict=True)])
        for name in VARIANTS[1:]
    }
    per_call = {
        "empty": time_calls_in_gc(_empty, batches=20, rows=rows),
        "hook": time_calls_in_gc(recorder_callback(), batches=20, rows=rows),
    }
    total = sum(collections)
    print(f"(b) GC pause hook overhead: allocate({rows}) per round, {rounds} rounds per variant in")
    print(
        f"    shuffled order, thread CPU time; one round runs {total} collections "
        f"(by generation: {collections})."
    )
    for name in VARIANTS:
        line = f"    {name:10} median {median(seconds[name]) * 1e3:7.2f} ms"
        if name != "none":
            line += f"   ratio to none {ratios[name]:.3f}"
        print(line + ("   <- noise floor (A/A)" if name == "none again" else ""))
    share = 2 * per_call["hook"] * total / median(base)
    print(
        f"    one callback call inside a real collection (median): ours "
        f"{per_call['hook'] * 1e9:.0f} ns, empty {per_call['empty'] * 1e9:.0f} ns;"
        f" ours x2 per collection = {share * 100:.2f}% of a round"
    )
    return ratios


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.gc_hook", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--rounds", type=int, default=301, help="timed rounds per variant")
    parser.add_argument("--rows", type=int, default=5000, help="records allocated per round")
    args = parser.parse_args(argv)
    run(rounds=args.rounds, rows=args.rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
