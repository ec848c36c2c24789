"""Leak explorer's chain walk against objgraph's ``find_backref_chain``, on the same heap.

A heap of ``--size`` live gc-tracked objects (dicts, lists, instances) holds a leak: instances in
a list, in a dict, in a module global. On an asyncio loop, next to a probe coroutine that
records the longest gap between its own turns (the longest loop stall), each round runs, side by
side:

- ours: ``pick_samples`` + ``walk`` for 3 samples (what ``POST /debug/memory/api/chains`` runs),
  with the default census slice budget;
- objgraph: ``find_backref_chain(sample, is_proper_module)`` for 1 sample, one blocking call
  (``gc.get_referrers`` per link, each a full heap scan).

- floor: ``gc.get_objects()`` alone, the one call neither the walk nor the census can slice.

Both must find the same module global. Prints medians over ``--rounds`` and the ratio of the
longest stalls (what a live server's requests feel). objgraph comes from the ``bench`` extra.

    .venv/bin/python -m bench.explorer [--size 1000000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import importlib.util
import sys
import time
import types

from bench import fmt_seconds, median
from tornado_memory_exporter.census.slicer import SLICE_BUDGET, Slicer, release
from tornado_memory_exporter.census.typenames import type_name
from tornado_memory_exporter.explorer.backrefs import Roots, pick_samples, walk


class Leaked:
    pass


class Filler:
    def __init__(self, i: int) -> None:
        self.i = i
        self.items = [i]


def build_heap(size: int) -> types.ModuleType:
    module = types.ModuleType("leaky_module")
    sys.modules["leaky_module"] = module
    # Each Filler is 2 tracked objects (instance, list); a third of the heap is dicts.
    module.FILLER = [Filler(i) for i in range(size // 3)]  # type: ignore[attr-defined]
    module.MAPS = [{"k": i, "v": [i]} for i in range(size // 6)]  # type: ignore[attr-defined]
    module.REGISTRY = {"leaks": [Leaked() for _ in range(1000)]}  # type: ignore[attr-defined]
    return module


async def probe(stalls: list[float], stop: asyncio.Event) -> None:
    last = time.perf_counter()
    while not stop.is_set():
        await asyncio.sleep(0)
        now = time.perf_counter()
        stalls.append(now - last)
        last = now


async def measure(subject) -> tuple[float, float, object]:
    stalls: list[float] = []
    stop = asyncio.Event()
    task = asyncio.create_task(probe(stalls, stop))
    await asyncio.sleep(0)
    started = time.perf_counter()
    result = await subject()
    elapsed = time.perf_counter() - started
    stop.set()
    await task
    return elapsed, max(stalls, default=0.0), result


async def ours() -> str:
    budget = SLICE_BUDGET
    clock = time.perf_counter
    started = clock()
    objects = gc.get_objects()
    slicer = Slicer(budget, clock=clock, pause=asyncio.sleep, start=started)
    await slicer.pause()
    _, samples = await pick_samples(
        objects, lambda cls: type_name(cls) == "__main__.Leaked", slicer, 3
    )
    results = await walk(objects, samples, slicer, Roots())
    await release(objects, slicer)  # as Explorer does: dropping 1M references at once is a stall
    del objects, samples
    names = {r.root.name for r in results if r.root is not None}
    return ",".join(sorted(names))


async def floor() -> str:
    objects = gc.get_objects()  # the one call the walk (and the census) cannot slice
    n = len(objects)
    del objects
    return f"{n:,} objects"


async def objgraph_chain() -> str:
    import objgraph

    sample = next(o for o in gc.get_objects() if type(o) is Leaked)
    chain = objgraph.find_backref_chain(sample, objgraph.is_proper_module)
    del sample
    return chain[0].__name__ if chain and isinstance(chain[0], types.ModuleType) else "?"


async def main(size: int, rounds: int) -> None:
    build_heap(size)
    print(f"heap: {len(gc.get_objects()):,} gc-tracked objects; {rounds} rounds, interleaved")
    subjects = {"floor": floor, "ours": ours}
    if importlib.util.find_spec("objgraph") is not None:
        subjects["objgraph"] = objgraph_chain
    else:
        print("objgraph is not installed (pip install -e '.[bench]'): measuring ours only")
    rows: dict[str, list[tuple[float, float]]] = {name: [] for name in subjects}
    for _ in range(rounds):
        for name, subject in subjects.items():
            elapsed, stall, found = await measure(subject)
            if name == "ours" and found != "leaky_module.REGISTRY":
                raise AssertionError(f"the walk ended at {found!r}, not leaky_module.REGISTRY")
            rows[name].append((elapsed, stall))
            total, longest = fmt_seconds(elapsed), fmt_seconds(stall)
            print(f"  {name:9s} total {total:>9s}  longest stall {longest:>9s}  root {found}")
    med = {name: (median([r[0] for r in v]), median([r[1] for r in v])) for name, v in rows.items()}
    for name, (total, stall) in med.items():
        print(
            f"median {name:9s} total {fmt_seconds(total):>9s}  "
            f"longest stall {fmt_seconds(stall):>9s}"
        )
    ratio = med["ours"][1] / med["floor"][1]
    print(f"ours/floor: longest stall x{ratio:.2f} (floor: gc.get_objects())")
    if "objgraph" in med:
        print(
            f"objgraph/ours: longest stall x{med['objgraph'][1] / med['ours'][1]:.1f}, total time "
            f"x{med['objgraph'][0] / med['ours'][0]:.2f} (ours follows 3 samples, objgraph 1)"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    asyncio.run(main(args.size, args.rounds))
