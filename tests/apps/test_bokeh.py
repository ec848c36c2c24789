"""A real Bokeh server, embedded (``bokeh.server.server.Server``) and as ``bokeh serve`` with the
app hook of docs/installing.md; real Bokeh client sessions open and close WebSockets on it."""

from __future__ import annotations

import asyncio
import time

from realapps import assert_healthy, assert_published_once, need, value
from tornado.httpclient import AsyncHTTPClient, HTTPClientError

from tornado_memory_exporter import Config, install

need("bokeh")
from bokeh.client import pull_session  # noqa: E402
from bokeh.models import Div  # noqa: E402
from bokeh.server.server import Server  # noqa: E402

WS = "bokeh.server.views.ws.WSHandler"
PAGES = ("/app", "/", "/static/js/bokeh.min.js", "/nothing-here")


def make_doc(doc) -> None:
    doc.add_root(Div(text="hello"))


async def fetch(url: str) -> tuple[int, str]:
    try:
        response = await AsyncHTTPClient().fetch(url, request_timeout=30)
    except HTTPClientError as error:
        return error.code, ""
    return response.code, response.body.decode()


def alive(text: str, state: str) -> float:
    """Bokeh's WebSocket handlers in ``state`` at the last census (0 when the series is absent)."""
    return value(text, "tornado_handlers_alive", handler=WS, state=state) or 0.0


async def until(what: str, probe, timeout: float = 20.0):
    deadline = time.monotonic() + timeout
    while not (result := await probe()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.1)
    return result


def test_embedded_server_keeps_its_routes_and_counts_its_websocket_sessions():
    async def main() -> None:
        server = Server(
            {"/app": make_doc},
            port=0,
            address="127.0.0.1",
            # Bokeh keeps a closed session (and its handler) until it discards unused sessions.
            check_unused_sessions_milliseconds=200,
            unused_session_lifetime_milliseconds=200,
        )
        server.start()
        base = f"http://127.0.0.1:{server.port}"
        try:
            before = {path: (await fetch(base + path))[0] for path in PAGES}
            # The recipe: Bokeh serves no metrics of its own; its Tornado app is server._tornado.
            exporter = install(server._tornado, "/metrics", config=Config(census_interval=0))
            try:
                assert {path: (await fetch(base + path))[0] for path in PAGES} == before
                sessions = [
                    await asyncio.to_thread(pull_session, url=base + "/app") for _ in range(3)
                ]
                await exporter.census_now()
                text = (await fetch(base + "/metrics"))[1]
                assert alive(text, "open") == 3 and alive(text, "closed") == 0
                for session in sessions:
                    await asyncio.to_thread(session.close)

                async def closed() -> bool:
                    await exporter.census_now()
                    text = (await fetch(base + "/metrics"))[1]
                    return alive(text, "open") == 0 and alive(text, "closed") == 0

                await until("Bokeh to discard the closed sessions", closed)
                text = (await fetch(base + "/metrics"))[1]
                assert_published_once(text)
                assert_healthy(text)
            finally:
                exporter.stop()
        finally:
            server.stop()

    asyncio.run(main())
