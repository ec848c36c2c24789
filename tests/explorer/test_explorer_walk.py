"""The explorer's pure parts on synthetic heaps: chain walk, link descriptions, census history."""

from __future__ import annotations

import asyncio
import gc
import math
import os
import re
import subprocess
import sys
import time
import types
from pathlib import Path
from typing import ClassVar

from tornado_memory_exporter.census.slicer import Slicer
from tornado_memory_exporter.census.snapshot import CensusSnapshot
from tornado_memory_exporter.census.typenames import type_name
from tornado_memory_exporter.explorer.backrefs import (
    CHUNK,
    CLASS_ATTRIBUTE,
    FRAME,
    MODULE_GLOBAL,
    REGISTERED,
    Root,
    Roots,
    pick_samples,
    walk,
)
from tornado_memory_exporter.explorer.describe import REPR_LIMIT, describe_chain, safe_repr
from tornado_memory_exporter.explorer.history import CensusHistory


class Thing:
    pass


class Holder:
    things: ClassVar[list[Thing]] = []


def run(coro):
    return asyncio.run(coro)


def slicer(budget: float = 1.0, pauses: list[int] | None = None) -> Slicer:
    async def pause(seconds: float) -> None:
        if pauses is not None:
            pauses.append(1)

    return Slicer(budget, clock=time.perf_counter, pause=pause)


def fake_module(name: str, **globals_: object) -> types.ModuleType:
    module = types.ModuleType(name)
    vars(module).update(globals_)
    return module


def test_chain_ends_at_the_module_global_holding_the_list() -> None:
    thing = Thing()
    held = [Thing(), thing]
    module = fake_module("shop.cache", ENTRIES=held)
    noise = [[Thing()] for _ in range(100)]
    objects = [*noise, vars(module), held]
    roots = Roots(modules={"shop.cache": module})
    (result,) = run(walk(objects, [thing], slicer(), roots))
    assert result.root == Root(MODULE_GLOBAL, "shop.cache.ENTRIES")
    assert [type(x) for x in result.path] == [dict, list, Thing]
    assert result.path[1] is held and result.path[2] is thing
    steps = describe_chain(result.path, result.root, show_contents=False)
    assert steps == [
        {"type": "dict", "len": len(vars(module)), "via": ".ENTRIES"},
        {"type": "list", "len": 2, "via": "[1]"},
        {"type": "test_explorer_walk.Thing"},
    ]


def test_the_main_script_is_named_main_also_under_multiprocessing() -> None:
    # multiprocessing keeps the main script in sys.modules as "__mp_main__" too (and imports it
    # under that name in spawned workers): its globals and its types must carry one prefix.
    Local = type("Thing", (), {"__module__": "__mp_main__"})
    thing = Local()
    module = fake_module("__mp_main__", LEAKED=[thing])
    roots = Roots(modules={"__main__": module, "__mp_main__": module})
    (result,) = run(walk([vars(module), module.LEAKED], [thing], slicer(), roots))
    assert result.root == Root(MODULE_GLOBAL, "__main__.LEAKED")
    assert type_name(Local) == "__main__.Thing"


def test_samples_sharing_a_list_each_get_their_chain() -> None:
    things = [Thing() for _ in range(3)]
    module = fake_module("m", ALL=things)
    results = run(walk([vars(module), things], things, slicer(), Roots(modules={"m": module})))
    assert [r.root for r in results] == [Root(MODULE_GLOBAL, "m.ALL")] * 3
    assert [describe_chain(r.path, r.root, show_contents=False)[1]["via"] for r in results] == [
        "[0]",
        "[1]",
        "[2]",
    ]


def test_class_attribute_is_a_root() -> None:
    thing = Thing()
    Holder.things.append(thing)
    try:
        (class_dict,) = [r for r in gc.get_referents(Holder) if isinstance(r, dict)]
        objects = [Holder, class_dict, Holder.things]
        (result,) = run(walk(objects, [thing], slicer(), Roots(modules={})))
        assert result.root == Root(CLASS_ATTRIBUTE, "test_explorer_walk.Holder")
        steps = describe_chain(result.path, result.root, show_contents=False)
        assert [s.get("via") for s in steps] == [".__dict__", ".things", "[0]", None]
    finally:
        Holder.things.clear()


def test_suspended_generator_is_a_frame_root() -> None:
    thing = Thing()

    def keeper(kept: Thing):
        yield kept

    gen = keeper(thing)
    next(gen)
    (result,) = run(walk([gen], [thing], slicer(), Roots(modules={}, own_dir="/nowhere")))
    assert result.root is not None and result.root.kind == FRAME
    assert result.root.name.startswith("test_suspended_generator_is_a_frame_root.<locals>.keeper (")
    steps = describe_chain(result.path, result.root, show_contents=False)
    assert steps[0]["via"] == "local kept"


def test_own_frames_are_skipped_not_taken_for_roots() -> None:
    thing = Thing()

    def keeper(kept: Thing):
        yield kept

    gen = keeper(thing)
    next(gen)
    own = os.path.dirname(__file__)  # pretend this test is the explorer's own code
    (result,) = run(walk([gen], [thing], slicer(), Roots(modules={}, own_dir=own)))
    assert result.root is None and result.path == [thing]


def test_registered_root_stops_the_chain_first() -> None:
    thing = Thing()
    cache = {"k": [thing]}
    module = fake_module("app", CACHE=cache)
    roots = Roots(modules={"app": module}, registered={"sessions": cache})
    (result,) = run(walk([vars(module), cache, cache["k"]], [thing], slicer(), roots))
    assert result.root == Root(REGISTERED, "sessions")
    assert [type(x) for x in result.path] == [dict, list, Thing]


def test_a_cycle_with_no_root_is_reported_as_such() -> None:
    thing = Thing()
    thing.me = [thing]  # type: ignore[attr-defined]
    objects = [vars(thing), thing.me, thing]  # type: ignore[attr-defined]
    (result,) = run(walk(objects, [thing], slicer(), Roots(modules={})))
    assert result.root is None
    assert result.reason.startswith("no root: held only by a reference cycle")


def test_depth_limit_is_reported() -> None:
    thing = Thing()
    nested: list = [thing]
    chain = [nested]
    for _ in range(5):
        nested = [nested]
        chain.append(nested)
    module = fake_module("deep", TOP=nested)
    objects = [vars(module), *chain]
    (result,) = run(walk(objects, [thing], slicer(), Roots(modules={"deep": module}), max_depth=3))
    assert result.root is None and result.reason == "no root within 3 links"
    assert len(result.path) == 4  # three links up from the sample
    (full,) = run(walk(objects, [thing], slicer(), Roots(modules={"deep": module})))
    assert full.root == Root(MODULE_GLOBAL, "deep.TOP") and len(full.path) == 8


def test_walk_yields_to_the_loop_between_chunks_when_the_budget_is_spent() -> None:
    thing = Thing()
    held = [thing]
    module = fake_module("m", HELD=held)
    noise = [[i] for i in range(5 * CHUNK)]
    pauses: list[int] = []
    (result,) = run(
        walk(
            [*noise, vars(module), held],
            [thing],
            slicer(1e-9, pauses),
            Roots(modules={"m": module}),
        )
    )
    assert result.root == Root(MODULE_GLOBAL, "m.HELD")
    # Two levels over more than 5 chunks each, a checkpoint before every chunk.
    assert len(pauses) >= 2 * math.ceil(len(noise) / CHUNK)


def test_the_walk_leaves_no_referrer_behind() -> None:
    thing = Thing()
    held = [thing]
    module = fake_module("m", HELD=held)
    before = len(gc.get_referrers(thing))
    objects = [vars(module), held]
    results = run(walk(objects, [thing], slicer(), Roots(modules={"m": module})))
    assert results[0].root is not None
    del results
    assert len(gc.get_referrers(thing)) == before


def test_pick_samples_counts_all_and_picks_spread_instances() -> None:
    things = [Thing() for _ in range(10)]
    objects = [*things, [], {}, Holder]
    count, picked = run(pick_samples(objects, lambda cls: cls is Thing, slicer(), 3))
    assert count == 10
    assert picked == [things[9], things[6], things[3]]
    assert run(pick_samples(objects, lambda cls: False, slicer(), 3)) == (0, [])


def test_contents_hidden_by_default_and_truncated_when_shown() -> None:
    secret = "session-" + "x" * 300
    cache = {secret: Thing()}
    path = [cache, cache[secret]]
    hidden = describe_chain(path, None, show_contents=False)
    assert hidden[0] == {"type": "dict", "len": 1, "via": "[<hidden> key]"}
    assert "session" not in repr(hidden)
    shown = describe_chain(path, None, show_contents=True)
    assert shown[0]["via"].startswith("['session-xxx") and len(shown[0]["via"]) <= REPR_LIMIT + 2
    assert all(len(step["repr"]) <= REPR_LIMIT for step in shown)


def test_safe_repr_survives_a_failing_repr() -> None:
    class Broken:
        def __repr__(self) -> str:
            raise RuntimeError("boom")

    assert safe_repr(Broken()).startswith("<Broken instance at 0x")


def snapshot(objects: dict[str, int], at: float) -> CensusSnapshot:
    total = sum(objects.values())
    return CensusSnapshot(
        objects=objects,
        handlers={("app.H", "finished"): 2},
        holders={"app.Leak": "app.LEAKS (module global) > list", "app.H": "app.KEPT > list"},
        tracked=total,
        scanned=total,
        distinct_types=len(objects),
        duration=0.1,
        max_stall=0.01,
        finished_at=at,
    )


def test_history_keeps_a_bounded_ring_and_ranks_types_by_growth() -> None:
    history = CensusHistory(kept=3)
    first = snapshot({"dict": 100, "other": 10}, 1.0)
    assert history.observe(first) and not history.observe(first) and not history.observe(None)
    history.observe(snapshot({"dict": 100, "app.Leak": 5, "other": 10}, 2.0))
    history.observe(snapshot({"dict": 90, "app.Leak": 15, "other": 10}, 3.0))
    history.observe(snapshot({"dict": 95, "app.Leak": 30, "other": 10}, 4.0))
    assert len(history) == 3
    rows = history.types({"dict": 100, "other": 10})
    assert rows == [
        {
            "type": "app.Leak",
            "count": 30,
            "growth": 30,
            "last_growth": 15,
            "counts": [5, 15, 30],
            "holder": "app.LEAKS (module global) > list",
        },
        {
            "type": "dict",
            "count": 95,
            "growth": -5,
            "last_growth": 5,
            "counts": [100, 90, 95],
            "holder": None,
        },
    ]
    assert history.counts("app.Leak") == [5, 15, 30]
    assert [c["finished_at"] for c in history.censuses()] == [2.0, 3.0, 4.0]
    assert history.handlers() == [
        {"handler": "app.H", "state": "finished", "count": 2, "holder": "app.KEPT > list"}
    ]


def test_bench_explorer_runs_on_a_tiny_heap_and_finds_the_leak() -> None:
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run(
        [sys.executable, "-m", "bench.explorer", "--size", "3000", "--rounds", "1"],
        check=False,
        cwd=root,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert re.search(
        r"^  ours +total .* root leaky_module\.REGISTRY$", done.stdout, re.MULTILINE
    ), done.stdout
    assert re.search(r"^ours/floor: longest stall x\d+\.\d\d ", done.stdout, re.MULTILINE), (
        done.stdout
    )
