"""``exporter.watch()``: items and deep bytes of application objects, by weak reference."""

from __future__ import annotations

import asyncio
import time
import weakref

import pytest
from appserver import AppServer
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families
from pympler.asizeof import asizeof

from tornado_memory_exporter.census.slicer import Slicer
from tornado_memory_exporter.census.watchlist import MAX_WATCHES, Watchlist
from tornado_memory_exporter.collectors.watch import WatchCollector
from tornado_memory_exporter.faults import Faults


class Registry(dict):
    """A dict subclass: unlike a plain dict, weakly referenceable."""


def watched(text: str) -> dict[tuple[str, str], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name.startswith("tornado_watched_object_"):
                out[s.name.removeprefix("tornado_watched_object_"), s.labels["name"]] = s.value
    return out


def test_a_watched_dict_grows_in_items_and_bytes_and_a_watched_object_can_be_freed():
    sessions: dict[str, list] = {}
    holder = [Registry(a=[1, 2, 3])]  # the only strong reference, dropped below
    with AppServer() as server:

        async def watch() -> None:
            server.exporter.watch("sessions", sessions)
            server.exporter.watch("registry", holder[0])

        server.call(watch)
        server.call(server.exporter.census_now)
        empty = watched(server.scrape())
        for i in range(100):
            sessions[f"s{i}"] = [i * 1000003, "v" * i]
        expected_bytes = asizeof(sessions)
        server.call(server.exporter.census_now)
        grown = watched(server.scrape())
        ref = weakref.ref(holder[0])
        holder.clear()
        assert ref() is None  # watching did not keep it alive
        server.call(server.exporter.census_now)
        freed = watched(server.scrape())
    assert empty == {
        ("items", "sessions"): 0,
        ("bytes", "sessions"): asizeof({}),
        ("items", "registry"): 1,
        ("bytes", "registry"): asizeof(Registry(a=[1, 2, 3])),
    }
    assert grown[("items", "sessions")] == 100
    assert grown[("bytes", "sessions")] == expected_bytes > empty[("bytes", "sessions")]
    assert freed == {("items", "sessions"): 100, ("bytes", "sessions"): expected_bytes}


def _slicer(budget: float) -> Slicer:
    return Slicer(budget, clock=time.perf_counter, pause=asyncio.sleep)


def test_a_large_container_is_extrapolated_within_its_budget_and_close_to_the_exact_size():
    big = [[f"{i:08d}", i * 1000003] for i in range(20_000)]
    small = list(range(1000, 1100))
    watchlist = Watchlist(Faults())
    watchlist.watch("big", big)
    watchlist.watch("small", small)
    slicer = _slicer(0.0005)
    asyncio.run(watchlist.measure(slicer))
    readings = watchlist.readings()
    assert readings["small"].exact and readings["small"].bytes == asizeof(small)
    estimate = readings["big"]
    assert not estimate.exact
    assert estimate.items == 20_000
    exact = asizeof(big)
    assert abs(estimate.bytes - exact) / exact < 0.01
    assert slicer.slices > 2  # it yielded to the loop while measuring


def test_a_failing_object_costs_only_its_own_reading(registry: CollectorRegistry):
    class BadLen:
        def __len__(self) -> int:
            raise RuntimeError("len failed")

    faults = Faults()
    watchlist = Watchlist(faults)
    bad, good = BadLen(), [1, 2]
    watchlist.watch("bad", bad)
    watchlist.watch("good", good)
    asyncio.run(watchlist.measure(_slicer(0.005)))
    assert faults.counts["watch"] == 1
    registry.register(WatchCollector("tornado", watchlist))
    values = {
        (s.name, s.labels["name"]): s.value for family in registry.collect() for s in family.samples
    }
    assert values == {
        ("tornado_watched_object_items", "good"): 2,
        ("tornado_watched_object_bytes", "good"): asizeof(good),
    }


@pytest.mark.parametrize("name", ["", "x" * 101, 7, None])
def test_bad_names_are_refused_naming_the_value(name):
    with pytest.raises(ValueError, match=f"name={name!r}"):
        Watchlist(Faults()).watch(name, [])


def test_none_and_too_many_watches_are_refused():
    watchlist = Watchlist(Faults())
    with pytest.raises(ValueError, match="obj=None"):
        watchlist.watch("x", None)
    for i in range(MAX_WATCHES):
        watchlist.watch(f"w{i}", [])
    watchlist.watch("w0", {})  # replacing a name is not a new watch
    with pytest.raises(ValueError, match=f"name='extra': already watching {MAX_WATCHES}"):
        watchlist.watch("extra", [])
    watchlist.unwatch("w0")
    watchlist.watch("extra", [])
