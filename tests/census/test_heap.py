"""Heap census: exact counts through a real app, the bounded label set, slicing, and that the
census neither collects, keeps, nor counts what it must not."""

from __future__ import annotations

import asyncio
import gc
import sys
import time
import urllib.request
from collections import Counter

import pytest
import tornado.web
from appserver import AppServer
from exposition_samples import samples
from realbin import wait_for

from tornado_memory_exporter import Config
from tornado_memory_exporter.census.heap import CHUNK, HeapCensus, count_by_type
from tornado_memory_exporter.census.selection import OTHER, TypeSelector
from tornado_memory_exporter.census.slicer import BUSY_SLICE, Slicer
from tornado_memory_exporter.census.streams import StreamTally
from tornado_memory_exporter.census.typenames import TypeNames, type_name
from tornado_memory_exporter.census.watchlist import Watchlist
from tornado_memory_exporter.collectors.census import CensusCollector
from tornado_memory_exporter.faults import Faults, GuardedCollector


class Leaky:
    """Instances leak: the handler below keeps each one in LEAKED."""


LEAKED: list[Leaky] = []


class LeakHandler(tornado.web.RequestHandler):
    def get(self) -> None:
        LEAKED.append(Leaky())
        self.write("ok")


def objects_by_type(text: str) -> dict[str, float]:
    return {dict(labels)["type"]: v for labels, v in samples(text, "tornado_objects").items()}


def scalar(text: str, name: str) -> float:
    return samples(text, name)[()]


LEAKY = f"{__name__}.Leaky"


def test_a_leak_shows_as_its_exact_count_growth_and_types_sum_to_the_scanned_total():
    LEAKED.clear()
    app = tornado.web.Application([("/leak", LeakHandler)])
    # In the loop: its own objects are known exactly (test_fork.py has the forked twin).
    config = Config(census_interval=0, census_allowlist=(LEAKY,), census_mode="inloop")
    with AppServer(app, config=config) as server:
        assert "tornado_objects" not in server.scrape()  # nothing published before a census
        server.call(server.exporter.census_now)
        before = objects_by_type(server.scrape())[LEAKY]
        for _ in range(7):
            with urllib.request.urlopen(server.url + "/leak", timeout=10) as response:
                assert response.read() == b"ok"
        snapshot = server.call(server.exporter.census_now)
        text = server.scrape()
    by_type = objects_by_type(text)
    assert before == 0
    assert by_type[LEAKY] == 7
    assert (
        sum(by_type.values()) == scalar(text, "tornado_census_objects_scanned") == snapshot.scanned
    )
    # Ours at enumeration time, by identity: the heap pass, the census task, its coroutines and
    # the list naming them, its name cache's weakrefs (one per type named), the last snapshot.
    assert snapshot.own > 100
    assert scalar(text, "tornado_gc_tracked_objects") - snapshot.scanned == snapshot.own
    assert scalar(text, "tornado_census_reachability") == 0
    assert scalar(text, "tornado_census_last_success_timestamp_seconds") == snapshot.finished_at
    assert scalar(text, "tornado_census_max_stall_seconds") == snapshot.max_stall > 0
    assert (
        scalar(text, "tornado_census_duration_seconds") == snapshot.duration >= snapshot.max_stall
    )
    LEAKED.clear()


def _census(
    objects: list, selector: TypeSelector, faults: Faults | None = None, **kwargs
) -> HeapCensus:
    kwargs.setdefault("get_objects", lambda: list(objects))
    return HeapCensus(
        loop=asyncio.get_running_loop(),
        selector=selector,
        faults=faults or Faults(),
        interval=0,
        slice_budget=0.005,
        **kwargs,
    )


def test_the_census_name_cache_never_shows_as_weakref_growth():
    # The first census names every type it meets and caches each name under a weak reference:
    # hundreds of new weakref.ref objects that the second census must not report as growth.
    weakref_type = "weakref.ReferenceType"

    async def run() -> tuple[int, int]:
        selector = TypeSelector(top_n=0, growth_n=0, allowlist=(weakref_type,), hold=0)
        census = HeapCensus(
            loop=asyncio.get_running_loop(),
            selector=selector,
            faults=Faults(),
            interval=0,
            slice_budget=0.005,
        )
        first = (await census.run_now()).objects[weakref_type]
        second = (await census.run_now()).objects[weakref_type]
        return first, second

    first, second = asyncio.run(run())
    # Growth is the bug (hundreds of names); weak references of earlier tests' objects that the
    # collector frees between the two censuses may lower the count, which is not.
    assert second - first <= 5  # the event loop's own bookkeeping, not hundreds of names


class Big:
    pass


class Small:
    pass


class Static:
    pass


def test_a_small_steadily_growing_type_is_exported_by_growth_while_large_static_ones_stay():
    heap: list[object] = [Big() for _ in range(5000)] + [Static() for _ in range(3000)]
    now = [1000.0]

    async def run() -> list[dict[str, int]]:
        selector = TypeSelector(top_n=2, growth_n=1, hold=0)
        census = _census(heap, selector, wall=lambda: now[0])
        seen = []
        for _ in range(4):
            heap.extend(Small() for _ in range(10))
            seen.append(dict((await census.run_now()).objects))
            now[0] += 60
        return seen

    seen = asyncio.run(run())
    big, small, static = (f"{__name__}.{n}" for n in ("Big", "Small", "Static"))
    # Baseline census: Small (10) is neither top-2 nor grown.
    assert seen[0] == {big: 5000, static: 3000, OTHER: 10}
    for i, exported in enumerate(seen[1:], 2):
        assert exported == {big: 5000, static: 3000, small: 10 * i, OTHER: 0}


def test_exported_types_are_held_then_age_out_and_a_gone_type_reads_zero():
    selector = TypeSelector(top_n=1, growth_n=0, hold=100)
    assert selector.select({"a": 5, "b": 1}, now=0) == {"a": 5, OTHER: 1}
    # b overtakes a: a stays exported (held), its count keeps being exact.
    assert selector.select({"a": 2, "b": 9}, now=50) == {"a": 2, "b": 9, OTHER: 0}
    assert selector.select({"b": 9, "c": 4}, now=100) == {"a": 0, "b": 9, OTHER: 4}
    assert selector.select({"b": 9, "c": 4}, now=100.5) == {"b": 9, OTHER: 4}


def test_allowlisted_types_are_always_exported_and_growth_needs_actual_growth():
    selector = TypeSelector(top_n=0, growth_n=3, allowlist=("x.Y",), hold=0)
    assert selector.select({"a": 1, "b": 2}, now=0) == {"x.Y": 0, OTHER: 3}
    assert selector.select({"a": 1, "b": 1, "c": 2}, now=1) == {"x.Y": 0, "c": 2, OTHER: 2}


def test_ten_thousand_distinct_classes_stay_within_the_label_bound():
    config = Config(
        census_interval=0,
        census_top_n=20,
        census_allowlist=("a.B",),
        census_mode="inloop",
    )
    classes = []
    with AppServer(config=config) as server:
        server.call(server.exporter.census_now)  # baseline without the classes
        classes = [type(f"Generated{i}", (), {}) for i in range(10_000)]
        instances = [[cls() for _ in range(1 + i % 3)] for i, cls in enumerate(classes)]
        snapshot = server.call(server.exporter.census_now)
        text = server.scrape()
    by_type = objects_by_type(text)
    assert len(by_type) <= 20 + 10 + 1 + 1
    assert snapshot.distinct_types >= 10_000
    assert sum(by_type.values()) == snapshot.scanned
    # Growth picks generated classes with 3 instances (+3 is the most a generated class grew).
    grown = [name for name in by_type if ".Generated" in name]
    assert grown and all(by_type[name] == 3 for name in grown)
    del instances, classes


def test_the_census_never_calls_gc_collect_and_leaves_no_reference_behind(monkeypatch):
    def forbidden(*args: object) -> int:
        raise AssertionError("the census called gc.collect()")

    target = Leaky()
    holder = [target]
    refcount = sys.getrefcount(target)
    referrers = [id(r) for r in gc.get_referrers(target)]
    class_referrers = len(gc.get_referrers(Leaky))
    monkeypatch.setattr(gc, "collect", forbidden)
    asyncio.run(_run_real(forbidden))
    assert sys.getrefcount(target) == refcount
    assert [id(r) for r in gc.get_referrers(target)] == referrers
    assert len(gc.get_referrers(Leaky)) == class_referrers
    assert holder[0] is target


async def _run_real(forbidden) -> None:
    faults = Faults()
    watchlist = Watchlist(faults)
    watchlist.watch("big", [{"k": [i]} for i in range(5000)])  # pympler runs under the patch too
    census = HeapCensus(
        loop=asyncio.get_running_loop(),
        selector=TypeSelector(top_n=5, growth_n=5, hold=60),
        faults=faults,
        interval=0,
        slice_budget=0.005,
        watchlist=watchlist,
    )
    await census.run_now()
    await census.run_now()
    assert gc.collect is forbidden
    assert faults.counts == {"census": 0, "watch": 0}
    assert watchlist.readings()["big"].items == 5000


def test_counting_yields_whenever_the_next_chunk_would_overrun_the_budget():
    ticks = [0.0]
    pauses = []

    def clock() -> float:
        ticks[0] += 0.001  # every look at the clock: 1 ms later
        return ticks[0]

    async def pause(seconds: float) -> None:
        pauses.append(seconds)

    objects = [Big() for _ in range(10 * CHUNK)] + [Small() for _ in range(5)]
    slicer = Slicer(0.005, clock=clock, pause=pause)
    counts, handlers, streams, timers = asyncio.run(count_by_type(objects, slicer))
    assert timers == {}
    assert counts == {Big: 10 * CHUNK, Small: 5}
    assert handlers == {}
    assert streams == StreamTally()
    # Every read of the clock is 1 ms later, so a chunk is seen to cost 1 ms (two reads apart)
    # and the slicer yields when elapsed + 1.5 x 1 ms would pass 5 ms. Slice 1 fits 1 chunk:
    # before chunk 2, 4 ms have elapsed. Each later slice begins right at a chunk (its check
    # ran before the pause), so before its second chunk only 3 ms have elapsed: it would fit 2.
    # But each yield "took" 1 ms (> 10 % of the budget: other callbacks ran), so after the
    # first pause slices shrink to 1 ms (20 %) with 1 ms gaps: 1 chunk each from then on.
    # 11 chunks: 1 + 1 + ... -> 11 slices, 10 pauses.
    assert pauses == [0, 0.005 * BUSY_SLICE] * 10
    assert slicer.slices == 11


def test_a_failing_census_is_counted_and_the_scrape_still_works(registry):
    faults = Faults()

    def broken() -> list:
        raise RuntimeError("enumeration failed")

    async def run() -> HeapCensus:
        census = _census([], TypeSelector(top_n=1, growth_n=1, hold=0), faults, get_objects=broken)
        with pytest.raises(RuntimeError, match="enumeration failed"):
            await census.run_now()
        return census

    census = asyncio.run(run())
    assert faults.counts["census"] == 1
    assert census.snapshot is None
    registry.register(
        GuardedCollector("census", CensusCollector("tornado", lambda: census.snapshot), faults)
    )
    # No snapshot: no made-up series; only the schedule, which is configuration, not a reading.
    assert [m.name for m in registry.collect()] == ["tornado_census_interval_seconds"]


LAST = "tornado_census_last_success_timestamp_seconds"


def test_the_schedule_runs_censuses_on_its_own_and_stop_ends_it():
    with AppServer(config=Config(census_interval=0.05)) as server:
        first = wait_for(
            "a scheduled census",
            lambda: samples(server.scrape(), LAST).get(()),
            timeout=10,
            interval=0.01,
        )
        wait_for(
            "a second scheduled census",
            lambda: samples(server.scrape(), LAST)[()] > first,
            timeout=10,
            interval=0.01,
        )

        async def stop() -> bool:
            census = server.exporter.census_now()  # one in progress, cancelled by stop()
            server.exporter.stop()
            try:
                await census
            except asyncio.CancelledError:
                return True
            return False

        assert server.call(stop)  # HeapCensus.scheduled goes False too: see the test below


def test_type_names_are_module_qualname_with_builtins_bare_and_never_run_metaclass_code():
    class Meta(type):
        def __getattribute__(cls, name: str) -> object:
            if name in ("__qualname__", "__module__", "__name__"):
                raise AssertionError("user code ran")
            return super().__getattribute__(name)

    class Outer:
        class Inner:
            pass

    weird = Meta("Weird", (), {})
    names = TypeNames()
    assert names(dict) == "dict"
    here = "test_type_names_are_module_qualname_with_builtins_bare_and_never_run_metaclass_code"
    assert names(Outer.Inner) == f"{__name__}.{here}.<locals>.Outer.Inner"
    assert names(weird) == f"{__name__}.Weird"
    assert type_name(tornado.web.RequestHandler) == "tornado.web.RequestHandler"
    assert type_name(type("x" * 500, (), {})) == f"{__name__}.{'x' * 500}"[:200]
    assert len(names) == 3  # cached weakly: dict, Inner, Weird


def test_census_now_on_a_stopped_exporter_says_so():
    with AppServer() as server:

        async def stopped() -> None:
            server.exporter.stop()
            with pytest.raises(RuntimeError, match="stopped exporter"):
                server.exporter.census_now()

        server.call(stopped)


def test_on_a_busy_loop_slices_shrink_and_every_yield_is_followed_by_a_gap():
    recorded: list[float] = []

    async def pause(seconds: float) -> None:
        recorded.append(seconds)
        await asyncio.sleep(seconds)

    async def run() -> Counter:
        done = False

        async def busy() -> None:  # a request handler that holds the loop 3 ms per step
            while not done:
                started = time.perf_counter()
                while time.perf_counter() - started < 0.003:
                    pass
                await asyncio.sleep(0)

        competitor = asyncio.ensure_future(busy())
        await asyncio.sleep(0)
        slicer = Slicer(0.002, clock=time.perf_counter, pause=pause)
        counts, _, _, _ = await count_by_type([Big() for _ in range(100_000)], slicer)
        done = True
        await competitor
        return counts

    assert asyncio.run(run()) == {Big: 100_000}
    assert len(recorded) >= 2
    assert recorded == [0, 0.002 * BUSY_SLICE] * (len(recorded) // 2)


def test_the_first_census_comes_seconds_after_start_then_every_interval():
    async def times(interval: float, runs: int) -> list[float]:
        loop = asyncio.get_running_loop()
        done: list[float] = []
        census = HeapCensus(
            loop=loop,
            selector=TypeSelector(top_n=5, growth_n=0, allowlist=(), hold=0),
            faults=Faults(),
            interval=interval,
            slice_budget=0.005,
            get_objects=lambda: [1, "a"],
        )
        started = loop.time()
        census.start()
        seen = None
        try:
            while len(done) < runs and loop.time() - started < 10:
                await asyncio.sleep(0.005)
                if census.snapshot is not seen:
                    seen = census.snapshot
                    done.append(loop.time() - started)
            assert census.scheduled
        finally:
            census.stop()
        assert not census.scheduled
        return [done[0], *(b - a for a, b in zip(done, done[1:], strict=False))]

    first, *gaps = asyncio.run(times(0.3, 3))  # an interval shorter than the first delay wins
    assert 0.3 <= first < 0.6
    assert all(0.3 * 0.9 - 0.02 <= gap <= 0.3 * 1.1 + 0.1 for gap in gaps), gaps
