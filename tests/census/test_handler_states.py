"""``<ns>_handlers_alive{handler,state}``: finished handlers kept alive, and ones still active;
WebSocket handlers open, or closed and kept alive (real tornado.websocket clients)."""

from __future__ import annotations

import asyncio
import gc
import threading
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
import tornado.httpclient
import tornado.web
import tornado.websocket
from appserver import AppServer
from prometheus_client.parser import text_string_to_metric_families

from tornado_memory_exporter.census.handler_states import (
    UNREACHABLE,
    handler_classes,
    handler_state,
)

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
    assert ours == {(kept, "finished"): 3, (kept, "active"): 0, (kept, UNREACHABLE): 0}
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


# --- WebSocket handlers: open / closed, with real tornado.websocket clients ---------------------

ROOM: set[tornado.websocket.WebSocketHandler] = set()
LOOKUPS: list[str] = []


class ChatSocket(tornado.websocket.WebSocketHandler):
    """Joins ROOM on open and forgets to leave it on close: the classic WebSocket leak."""

    def open(self) -> None:
        ROOM.add(self)

    def on_message(self, message: str | bytes) -> None:
        self.write_message(message)


class NosySocket(ChatSocket):
    """Records every attribute lookup made while the census runs: the census must make none."""

    def __getattribute__(self, name: str) -> Any:
        if LOOKUPS and LOOKUPS[0] == "recording":
            LOOKUPS.append(name)
        return super().__getattribute__(name)

    def __getattr__(self, name: str) -> Any:
        if LOOKUPS and LOOKUPS[0] == "recording":
            LOOKUPS.append(f"__getattr__ {name}")
        raise AttributeError(name)


class RefusedSocket(tornado.websocket.WebSocketHandler):
    """Refuses every upgrade (cross-origin), and is kept alive anyway."""

    def check_origin(self, origin: str) -> bool:
        ROOM.add(self)
        return False


class PendingSocket(tornado.websocket.WebSocketHandler):
    """Its upgrade waits in prepare() until the test lets it go on."""

    async def prepare(self) -> None:
        ROOM.add(self)
        self.settings["started"].set()
        await self.settings["release"].wait()


def socket_states(server: AppServer, *classes: type) -> dict[tuple[str, str], float]:
    server.call(server.exporter.census_now)
    names = {f"{__name__}.{cls.__qualname__}" for cls in classes}
    return {key: n for key, n in handlers_alive(server.scrape()).items() if key[0] in names}


@pytest.fixture
def chat() -> Iterator[AppServer]:
    ROOM.clear()
    app = tornado.web.Application(
        [
            ("/chat", ChatSocket),
            ("/nosy", NosySocket),
            ("/refused", RefusedSocket),
            ("/pending", PendingSocket),
        ]
    )
    with AppServer(app) as server:
        yield server
    ROOM.clear()


def connect(
    server: AppServer, path: str, n: int
) -> list[tornado.websocket.WebSocketClientConnection]:
    async def go() -> list[tornado.websocket.WebSocketClientConnection]:
        return [
            await tornado.websocket.websocket_connect(f"ws://{server.target}{path}")
            for _ in range(n)
        ]

    return server.call(go)


def test_open_websockets_are_open_and_closed_ones_kept_alive_are_closed(chat: AppServer) -> None:
    chat_name = f"{__name__}.ChatSocket"
    clients = connect(chat, "/chat", 10)
    assert socket_states(chat, ChatSocket) == {
        (chat_name, "open"): 10,
        (chat_name, "closed"): 0,
        (chat_name, UNREACHABLE): 0,
    }

    async def close_six() -> None:
        for client in clients[:6]:
            client.close()
        while (
            sum(1 for h in ROOM if h.ws_connection is None) < 6
        ):  # the server saw the close frames
            await asyncio.sleep(0.01)
        # and the echo still works on the four open ones
        for client in clients[6:]:
            await client.write_message("ping")
            assert await client.read_message() == "ping"

    chat.call(close_six)
    assert socket_states(chat, ChatSocket) == {
        (chat_name, "open"): 4,
        (chat_name, "closed"): 6,
        (chat_name, UNREACHABLE): 0,
    }

    async def close_rest() -> None:
        for client in clients[6:]:
            client.close()
        while any(h.ws_connection is not None for h in ROOM):
            await asyncio.sleep(0.01)

    chat.call(close_rest)
    assert socket_states(chat, ChatSocket) == {
        (chat_name, "open"): 0,
        (chat_name, "closed"): 10,
        (chat_name, UNREACHABLE): 0,
    }
    ROOM.clear()
    gc.collect()  # the test (never the library) frees the handlers' cycles
    assert socket_states(chat, ChatSocket) == {}  # no live instance: the class drops out


def test_a_server_side_close_counts_as_closed_at_once(chat: AppServer) -> None:
    name = f"{__name__}.ChatSocket"
    connect(chat, "/chat", 3)

    async def close_one() -> None:
        next(iter(ROOM)).close()  # the closing handshake has only started

    chat.call(close_one)
    assert socket_states(chat, ChatSocket) == {
        (name, "open"): 2,
        (name, "closed"): 1,
        (name, UNREACHABLE): 0,
    }


def test_refused_and_pending_upgrades(chat: AppServer) -> None:
    refused, pending = f"{__name__}.RefusedSocket", f"{__name__}.PendingSocket"

    async def events() -> None:
        chat.app.settings["started"], chat.app.settings["release"] = (
            asyncio.Event(),
            asyncio.Event(),
        )

    chat.call(events)

    async def refuse() -> int:
        try:
            await tornado.websocket.websocket_connect(
                tornado.httpclient.HTTPRequest(
                    f"ws://{chat.target}/refused", headers={"Origin": "http://elsewhere.example"}
                )
            )
        except tornado.httpclient.HTTPClientError as error:
            return error.code
        return 101

    assert chat.call(refuse) == 403

    async def start_pending() -> asyncio.Future[Any]:
        future = tornado.websocket.websocket_connect(f"ws://{chat.target}/pending")
        await chat.app.settings["started"].wait()
        return future

    upgrade = chat.call(start_pending)
    # A refused upgrade kept alive is a leak (closed); an upgrade still under way is not.
    assert socket_states(chat, RefusedSocket, PendingSocket) == {
        (refused, "open"): 0,
        (refused, "closed"): 1,
        (pending, "open"): 1,
        (pending, "closed"): 0,
        (refused, UNREACHABLE): 0,
        (pending, UNREACHABLE): 0,
    }

    async def release() -> None:
        chat.app.settings["release"].set()
        client = await upgrade
        client.close()

    chat.call(release)


def test_the_census_runs_no_code_of_the_handler_class(chat: AppServer) -> None:
    name = f"{__name__}.NosySocket"
    clients = connect(chat, "/nosy", 2)

    async def close_one() -> None:
        clients[0].close()
        while sum(1 for h in ROOM if h.ws_connection is None) < 1:
            await asyncio.sleep(0.01)

    chat.call(close_one)
    LOOKUPS[:] = ["recording"]
    try:
        states = socket_states(chat, NosySocket)
    finally:
        recorded = LOOKUPS[1:]
        LOOKUPS.clear()
    assert states == {(name, "open"): 1, (name, "closed"): 1, (name, UNREACHABLE): 0}
    assert recorded == []


@pytest.mark.parametrize(
    ("attributes", "websocket", "state"),
    [
        ({}, False, "active"),
        ({"_finished": True}, False, "finished"),
        ({}, True, "open"),  # no connection yet, not finished: the upgrade is under way
        ({"_finished": True}, True, "closed"),  # finished without a connection: refused or close()d
        ({"_finished": True, "_on_close_called": True}, True, "closed"),
        (
            {"_finished": True, "ws_connection": object()},
            True,
            "open",
        ),  # a protocol of its own making
    ],
)
def test_handler_state_reads_only_the_instance_dict(
    attributes: dict, websocket: bool, state: str
) -> None:
    class Bare(tornado.websocket.WebSocketHandler):
        def __init__(self) -> None:  # no application, no request: only the attributes given
            self.__dict__.update(attributes)

    handler = Bare()
    assert handler_state(handler, frozenset({Bare}) if websocket else frozenset()) == state
