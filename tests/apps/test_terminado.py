"""terminado, a plain Tornado app whose terminals are WebSockets: ``install(app)`` as for any
Tornado app (docs/installing.md); real shells over real WebSockets, counted open, then closed."""

from __future__ import annotations

import asyncio
import json
import time

from realapps import assert_healthy, assert_published_once, need, value
from tornado.httpclient import AsyncHTTPClient
from tornado.httpserver import HTTPServer
from tornado.netutil import bind_sockets
from tornado.websocket import websocket_connect

from tornado_memory_exporter import Config, install

need("terminado")
import tornado.web  # noqa: E402
from terminado import TermSocket, UniqueTermManager  # noqa: E402

TERM = "terminado.websocket.TermSocket"


def alive(text: str, state: str) -> float:
    return value(text, "tornado_handlers_alive", handler=TERM, state=state) or 0.0


def test_terminals_show_open_then_closed_and_every_series_once():
    async def main() -> None:
        manager = UniqueTermManager(shell_command=["sh"])
        app = tornado.web.Application([(r"/websocket", TermSocket, {"term_manager": manager})])
        sockets = bind_sockets(0, "127.0.0.1")
        port = sockets[0].getsockname()[1]
        server = HTTPServer(app)
        server.add_sockets(sockets)
        exporter = install(app, config=Config(census_interval=0))  # the recipe
        try:
            terminals = [
                await websocket_connect(f"ws://127.0.0.1:{port}/websocket") for _ in range(2)
            ]
            for terminal in terminals:  # a shell answers through the socket
                terminal.write_message(json.dumps(["stdin", "echo ready-$((40+2))\r"]))
                deadline = time.monotonic() + 20
                seen = ""
                while "ready-42" not in seen:
                    assert time.monotonic() < deadline, seen
                    message = await asyncio.wait_for(terminal.read_message(), 20)
                    seen += message or ""
            await exporter.census_now()
            scrape = f"http://127.0.0.1:{port}/metrics"
            text = (await AsyncHTTPClient().fetch(scrape)).body.decode()
            assert (alive(text, "open"), alive(text, "closed")) == (2, 0)
            for terminal in terminals:
                terminal.close()
            del terminal, terminals
            deadline = time.monotonic() + 20
            while True:
                await exporter.census_now()
                text = (await AsyncHTTPClient().fetch(scrape)).body.decode()
                if alive(text, "open") == 0:
                    break
                assert time.monotonic() < deadline, "the server never saw the terminals close"
                await asyncio.sleep(0.1)
            assert alive(text, "closed") == 0  # terminado keeps no closed socket
            assert_published_once(text)
            assert_healthy(text)
        finally:
            exporter.stop()
            await manager.shutdown()
            server.stop()

    asyncio.run(main())
