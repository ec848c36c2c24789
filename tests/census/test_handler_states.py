"""``<ns>_handlers_alive{handler,state}``: finished handlers kept alive, and ones still active."""

from __future__ import annotations

import asyncio
import gc
import threading
import urllib.request

import tornado.web
from appserver import AppServer
from prometheus_client.parser import text_string_to_metric_families
from tornado_memory_exporter.census.handler_states import handler_classes

KEPT: list[tornado.web.RequestHandler] = []


class KeptHandler(tornado.web.RequestHandler):
    """Leaks itself into a global list: finished, and alive."""

    def get(self) -> None:
        KEPT.append(self)
        self.write("kept")


class SlowHandler(tornado.web.RequestHandler):
    """Stays active until the test lets it finish."""

    async def get(self) -> None:
        self.settings["started"].set()
        await self.settings["release"].wait()
        self.write("slow")


def handlers_alive(text: str) -> dict[tuple[str, str], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == "tornado_handlers_alive":
                out[s.labels["handler"], s.labels["state"]] = s.value
    return out


def fetch(url: str, results: list[bytes]) -> None:
    with urllib.request.urlopen(url, timeout=30) as response:
        results.append(response.read())


def test_finished_handlers_kept_alive_and_active_ones_are_counted_by_class_and_state():
    KEPT.clear()
    app = tornado.web.Application([("/kept", KeptHandler), ("/slow", SlowHandler)])
    kept, slow = f"{__name__}.KeptHandler", f"{__name__}.SlowHandler"
    with AppServer(app) as server:

        async def events() -> None:
            app.settings["started"], app.settings["release"] = asyncio.Event(), asyncio.Event()

        server.call(events)
        for _ in range(3):
            results: list[bytes] = []
            fetch(server.url + "/kept", results)
            assert results == [b"kept"]
        slow_results: list[bytes] = []
        client = threading.Thread(target=fetch, args=(server.url + "/slow", slow_results))
        client.start()
        server.call(app.settings["started"].wait)
        server.call(server.exporter.census_now)
        during = handlers_alive(server.scrape())

        async def release() -> None:
            app.settings["release"].set()

        server.call(release)
        client.join(30)
        assert slow_results == [b"slow"]
        gc.collect()  # the test (never the library) frees the finished handler's cycles
        server.call(server.exporter.census_now)
        after = handlers_alive(server.scrape())
    assert during[kept, "finished"] == 3
    assert during[kept, "active"] == 0
    assert during[slow, "active"] == 1
    assert during[slow, "finished"] == 0
    # The metrics handler serving the scrape is not alive at census time, the slow one is gone
    # (other modules' handlers may be alive in this process: only ours are checked).
    ours = {key: value for key, value in after.items() if key[0].startswith(f"{__name__}.")}
    assert ours == {(kept, "finished"): 3, (kept, "active"): 0}
    KEPT.clear()


def test_handler_classes_finds_every_generation_of_subclass_and_keeps_none_alive():
    class Base(tornado.web.RequestHandler):
        pass

    class Child(Base):
        pass

    class GrandChild(Child):
        pass

    found = handler_classes()
    assert {tornado.web.RequestHandler, Base, Child, GrandChild, KeptHandler, SlowHandler} <= found
    assert dict not in found
    name = GrandChild.__qualname__
    del found, Base, Child, GrandChild
    gc.collect()
    assert name not in {cls.__qualname__ for cls in handler_classes()}
