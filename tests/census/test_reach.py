"""Reachability in the forked census: exact counts of what is alive and what is garbage on
constructed heaps, the holder of each, against ``gc.collect()`` itself, and the census never
counting its own objects.

The tests build garbage on purpose, so each disables the collector while it builds and counts
(test code only: the library never touches the collector's switch but in its child).
"""

from __future__ import annotations

import asyncio
import gc
import os
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import tornado.ioloop
import tornado.web
from appserver import AppServer
from exposition_samples import samples

from tornado_memory_exporter import Config
from tornado_memory_exporter.census import child, reach
from tornado_memory_exporter.census.fork import Forker
from tornado_memory_exporter.census.heap import Kinds, count_by_type

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="fork mode needs Linux"
)


@pytest.fixture
def no_collector() -> Iterator[None]:
    gc.collect()  # start from a heap without old garbage (test code)
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def by_label(text: str, name: str, label: str = "type") -> dict[str, float]:
    return {dict(labels)[label]: v for labels, v in samples(text, name).items()}


def get(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            response.read()
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


# ------------------------------------------------------------------ handlers on a real app
KEPT_HANDLERS: list[tornado.web.RequestHandler] = []


class CycleHandler(tornado.web.RequestHandler):
    """Leaves a reference cycle through itself: garbage, not a leak."""

    def get(self) -> None:
        self.cycle = self
        self.write("ok")


class KeptHandler(tornado.web.RequestHandler):
    """Leaks itself into a module global."""

    def get(self) -> None:
        KEPT_HANDLERS.append(self)
        self.write("ok")


def test_cyclic_handlers_are_unreachable_and_kept_ones_finished_with_their_global_as_holder(
    no_collector: None,
) -> None:
    KEPT_HANDLERS.clear()
    cycle, kept = f"{__name__}.CycleHandler", f"{__name__}.KeptHandler"
    app = tornado.web.Application([("/cycle", CycleHandler), ("/kept", KeptHandler)])
    config = Config(census_interval=0, census_mode="fork", census_allowlist=(kept,))
    with AppServer(app, config=config) as server:
        server.call(server.exporter.census_now)  # the baseline: growth counts from here
        for _ in range(20):
            assert get(server.url + "/cycle") == 200
        for _ in range(7):
            assert get(server.url + "/kept") == 200
        snapshot = server.call(server.exporter.census_now)
        text = server.scrape()
    handlers = {
        (dict(labels)["handler"], dict(labels)["state"]): v
        for labels, v in samples(text, "tornado_handlers_alive").items()
    }
    assert handlers[cycle, "unreachable"] == 20
    assert handlers[cycle, "finished"] == 0
    assert handlers[kept, "finished"] == 7
    assert handlers[kept, "unreachable"] == 0
    assert by_label(text, "tornado_objects")[kept] == 7
    assert by_label(text, "tornado_unreachable_objects")[cycle] == 20
    assert scalar(text, "tornado_census_reachability") == 1
    unreachable = by_label(text, "tornado_unreachable_objects")
    assert sum(unreachable.values()) == scalar(text, "tornado_census_unreachable_objects")
    sizes = by_label(text, "tornado_unreachable_object_bytes")
    assert sizes.keys() == unreachable.keys()
    assert sum(sizes.values()) == scalar(text, "tornado_census_unreachable_bytes")
    holders = {
        dict(labels)["type"]: dict(labels)["holder"]
        for labels in samples(text, "tornado_object_holder_info")
    }
    assert holders[kept] == f"{__name__}.KEPT_HANDLERS (module global) > list"
    assert snapshot.holders[kept] == holders[kept]
    KEPT_HANDLERS.clear()


def scalar(text: str, name: str) -> float:
    return samples(text, name)[()]


# ------------------------------------------------------------ objects held one way each
class ByFrame:
    """Held only by a suspended coroutine's frame."""


class ByCell:
    """Held only by a closure cell."""


class ByClassAttribute:
    """Held only by a class attribute."""


class ByMethod:
    """Held only as the ``__self__`` of a bound method in a callback list."""

    def run(self) -> None:
        return None


class Registry:
    instance: ByClassAttribute | None = None


CLOSURES: list[Callable[[], Any]] = []
CALLBACKS: list[Callable[[], None]] = []
HELD = 3
GARBAGE = 5


async def holding(release: asyncio.Event) -> None:
    held = ByFrame()
    await release.wait()
    del held


def make_closure() -> Callable[[], Any]:
    held = ByCell()

    def closure() -> Any:
        return held

    return closure


def build(loop_objects: list[Any]) -> None:
    """``HELD`` reachable instances of each class, each held its one way, and ``GARBAGE``
    unreachable ones of each in reference cycles; nothing else refers to any of them."""
    release = asyncio.Event()
    loop_objects += [release, *(asyncio.ensure_future(holding(release)) for _ in range(HELD))]
    CLOSURES.extend(make_closure() for _ in range(HELD))
    Registry.instance = ByClassAttribute()
    CALLBACKS.extend(ByMethod().run for _ in range(HELD))
    for cls in (ByFrame, ByCell, ByClassAttribute, ByMethod):
        for _ in range(GARBAGE):
            obj = cls()
            obj.me = obj  # type: ignore[attr-defined]
    del obj


def test_exact_counts_and_holders_of_objects_held_by_frame_cell_class_and_bound_method(
    no_collector: None,
) -> None:
    names = {cls: f"{__name__}.{cls.__qualname__}" for cls in (ByFrame, ByCell, ByMethod)}
    names[ByClassAttribute] = f"{__name__}.ByClassAttribute"

    async def run() -> child.ChildCensus:
        loop = asyncio.get_running_loop()
        keep: list[Any] = []
        build(keep)
        await asyncio.sleep(0)  # the coroutines start and suspend on the event
        forker = Forker(
            loop=loop, mode="fork", deadline=60, headroom=0, available=lambda: 0, rss=lambda: 0
        )
        kinds = Kinds.alive(loop)
        wanted = frozenset(names.values())

        def work() -> tuple[Any, ...]:
            return tuple(
                child.census(count_by_type=count_by_type, kinds=kinds, holder_types=wanted)
            )

        value, _ = await forker.run(work)
        keep[0].set()
        await asyncio.gather(*keep[1:])
        return child.ChildCensus.from_wire(value)

    try:
        answer = asyncio.run(run())
    finally:
        CLOSURES.clear()
        CALLBACKS.clear()
        Registry.instance = None
    assert answer.reachability
    for cls, name in names.items():
        held = 1 if cls is ByClassAttribute else HELD
        assert answer.types[name][0] == held, name
        assert answer.garbage[name][0] == GARBAGE, name
    holders = answer.holders
    assert holders[names[ByClassAttribute]] == (f"{__name__}.Registry.instance (class attribute)")
    assert holders[names[ByCell]] == (
        f"{__name__}.CLOSURES (module global) > list > closure of {__name__}.make_closure"
        ".<locals>.closure"
    )
    assert holders[names[ByMethod]] == (
        f"{__name__}.CALLBACKS (module global) > list > bound method {__name__}.ByMethod.run"
    )
    assert holders[names[ByFrame]].endswith(f"suspended coroutine {__name__}.holding")


# ------------------------------------------------------------------ against gc.collect()
class Failing(tornado.web.RequestHandler):
    """Raises: Tornado keeps the exception, its traceback and frames in reference cycles."""

    def get(self) -> None:
        raise ValueError("boom")


def collect_in_child() -> int:
    """How many objects ``gc.collect()`` frees in a forked copy of this process (it runs
    finalizers: a test child only): the collector's own list of them (``DEBUG_SAVEALL``). Its
    return value also counts what a finalizer resurrected (about one per Tornado handler
    cycle), and the tracked count before and after also moves with what finalizers do."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(read_fd)
            gc.set_debug(gc.DEBUG_SAVEALL)
            gc.collect()
            os.write(write_fd, str(len(gc.garbage)).encode())
        finally:
            os._exit(0)
    os.close(write_fd)
    try:
        data = b""
        while chunk := os.read(read_fd, 64):
            data += chunk
    finally:
        os.close(read_fd)
        os.waitpid(pid, 0)
    return int(data)


def test_what_gc_collect_frees_equals_the_unreachable_count_within_one_percent(
    no_collector: None,
) -> None:
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", ".."))
    try:
        from bench.census import build_heap
    finally:
        sys.path.pop(0)
    roots = build_heap(100_000)
    app = tornado.web.Application([("/cycle", CycleHandler), ("/fail", Failing)])
    with AppServer(app, config=Config(census_interval=0, census_mode="fork")) as server:
        for _ in range(200):
            assert get(server.url + "/cycle") == 200
        for _ in range(100):
            assert get(server.url + "/fail") == 500

        async def both() -> tuple[int, int]:
            loop = asyncio.get_running_loop()
            forker = Forker(
                loop=loop, mode="fork", deadline=60, headroom=0, available=lambda: 0, rss=lambda: 0
            )

            def work() -> int:
                return len(reach.partition(gc.get_objects()).unreachable)

            ours, _ = await forker.run(work)
            return ours, collect_in_child()

        ours, freed = server.call(both)
    del roots
    assert freed > 200 * 3  # the cycles are there: each handler, its dict, its request...
    assert abs(ours - freed) <= 0.01 * freed, (ours, freed)


# --------------------------------------------------------------- the census's own objects
@pytest.mark.parametrize("mode", ["fork", "inloop"])
def test_an_idle_app_shows_no_type_of_the_exporter(mode: str) -> None:
    gc.collect()  # earlier tests' stopped exporters may still wait in cycles (test code)
    config = Config(census_interval=0, census_mode=mode, census_top_n=50)
    with AppServer(config=config) as server:
        for _ in range(4):
            server.call(server.exporter.census_now)
        text = server.scrape()
    for family in ("tornado_objects", "tornado_unreachable_objects", "tornado_object_bytes"):
        ours = [name for name in by_label(text, family) if name.startswith("tornado_memory_")]
        assert ours == [], family
    assert len(by_label(text, "tornado_objects")) > 50


# ------------------------------------------------------------------------------ timers
def named_timer() -> None:
    """Scheduled 500 times, never run."""


@pytest.mark.parametrize("mode", ["fork", "inloop"])
def test_500_scheduled_timers_of_one_function_read_500_under_its_name(mode: str) -> None:
    # Plus one PeriodicCallback of the same function; ten cancelled timers are not counted.
    with AppServer(config=Config(census_interval=0, census_mode=mode)) as server:

        async def schedule() -> list[object]:
            io_loop = tornado.ioloop.IOLoop.current()
            handles = [io_loop.call_later(3600, named_timer) for _ in range(510)]
            for handle in handles[500:]:
                io_loop.remove_timeout(handle)  # cancelled: not counted
            periodic = tornado.ioloop.PeriodicCallback(named_timer, 3_600_000)
            periodic.start()  # one more timer, named by the callback it runs
            return [*handles, periodic]

        handles = server.call(schedule)
        server.call(server.exporter.census_now)
        text = server.scrape()

        async def cancel() -> None:
            *timeouts, periodic = handles
            periodic.stop()
            for handle in timeouts:
                tornado.ioloop.IOLoop.current().remove_timeout(handle)

        server.call(cancel)
    timers = by_label(text, "tornado_ioloop_timers", "callback")
    assert timers[f"{__name__}.named_timer"] == 500 + 1
