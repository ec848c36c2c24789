"""A real Bokeh server, embedded (``bokeh.server.server.Server``) and as ``bokeh serve`` with the
app hook of docs/installing.md; real Bokeh client sessions open and close WebSockets on it."""

from __future__ import annotations

import asyncio
import functools
import gc
import sys
import time

import pytest
from realapps import Session, assert_healthy, assert_published_once, get, need, recipe, value
from realbin import Daemon, free_port, wait_for
from tornado.httpclient import AsyncHTTPClient, HTTPClientError

from tornado_memory_exporter import Config, install

need("bokeh")
from bokeh.client import pull_session  # noqa: E402
from bokeh.models import Div  # noqa: E402
from bokeh.server.server import Server  # noqa: E402

WS = "bokeh.server.views.ws.WSHandler"
# Bokeh's answers, the same with ours installed ("/" redirects to the only app).
PAGES = {"/app": 200, "/": 200, "/static/js/bokeh.min.js": 200, "/nothing-here": 404}


def make_doc(doc) -> None:
    doc.add_root(Div(text="hello"))


async def fetch(url: str) -> tuple[int, str]:
    try:
        response = await AsyncHTTPClient().fetch(url, request_timeout=30)
    except HTTPClientError as error:
        return error.code, ""
    return response.code, response.body.decode()


def alive(text: str, state: str, handler: str = WS) -> float:
    """Bokeh's WebSocket handlers in ``state`` at the last census (0 when the series is absent)."""
    return value(text, "tornado_handlers_alive", handler=handler, state=state) or 0.0


async def until(what: str, probe, timeout: float = 20.0):
    deadline = time.monotonic() + timeout
    while not (result := await probe()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.1)
    return result


def test_embedded_server_keeps_its_routes_and_counts_its_websocket_sessions():
    async def main() -> None:
        scope = {
            "make_doc": make_doc,
            "install": functools.partial(install, config=Config(census_interval=0)),
            "Server": functools.partial(
                Server,
                address="127.0.0.1",
                # Bokeh keeps a closed session (and its handler) until it discards unused ones.
                check_unused_sessions_milliseconds=200,
                unused_session_lifetime_milliseconds=200,
            ),
        }
        exec(recipe("bokeh-embedded").replace("port=5006", "port=0"), scope)  # the recipe
        server, exporter = scope["server"], scope["exporter"]
        base = f"http://127.0.0.1:{server.port}"
        try:
            try:
                assert {path: (await fetch(base + path))[0] for path in PAGES} == PAGES
                # The census counts the whole process: earlier tests' handlers are the baseline.
                gc.collect()  # earlier tests' garbage freed now, not between two censuses
                await exporter.census_now()
                text = (await fetch(base + "/metrics"))[1]
                opened, closed = alive(text, "open"), alive(text, "closed")
                sessions = [await Session.open(base + "/app") for _ in range(3)]
                await exporter.census_now()
                text = (await fetch(base + "/metrics"))[1]
                assert (alive(text, "open"), alive(text, "closed")) == (opened + 3, closed)
                for session in sessions:
                    await session.close()

                async def settled() -> bool:
                    await exporter.census_now()
                    text = (await fetch(base + "/metrics"))[1]
                    return (alive(text, "open"), alive(text, "closed")) == (opened, closed)

                await until("Bokeh to discard the closed sessions", settled)
                text = (await fetch(base + "/metrics"))[1]
                assert_published_once(text)
                assert_healthy(text)
            finally:
                exporter.stop()
        finally:
            server.stop()

    asyncio.run(main())


# The command: the app's main.py and its WebSocket handler (`panel serve` runs Bokeh's server
# and its app hooks, with a handler of its own).
SERVE = {
    "bokeh": (
        "from bokeh.io import curdoc\nfrom bokeh.models import Div\n"
        "curdoc().add_root(Div(text='hello'))\n",
        WS,
    ),
    "panel": ("import panel as pn\npn.panel('hello').servable()\n", "panel.io.server.WSHandler"),
}


@pytest.mark.parametrize("command", sorted(SERVE))
def test_serve_with_the_app_hook_recipe_counts_a_real_session(command: str):
    need(command)  # the client resolves the app's models (Panel's) through it
    main, handler = SERVE[command]
    port, metrics_port = free_port(), free_port()
    with Daemon(command) as daemon:
        app = daemon.dir / "shop"
        app.mkdir()
        (app / "main.py").write_text(main)
        hook = recipe("bokeh-app-hooks").replace("census_interval=30", "census_interval=0.5")
        (app / "app_hooks.py").write_text(hook.replace("port=9464", f"port={metrics_port}"))
        daemon.spawn(
            [
                *(sys.executable, "-m", command, "serve", str(app)),
                *("--address", "127.0.0.1", "--port", str(port)),
                *("--allow-websocket-origin", f"127.0.0.1:{port}"),
                # discard closed sessions (and their handlers) quickly
                *("--check-unused-sessions", "200", "--unused-session-lifetime", "200"),
            ]
        )
        metrics = f"http://127.0.0.1:{metrics_port}/metrics"

        def scrape_when(condition) -> str:
            def probe() -> str | None:
                assert daemon.process.poll() is None, daemon.log_tail()
                code, text = get(metrics)
                return text if code == 200 and condition(text) else None

            return wait_for(f"a census of the {command} serve process", probe, timeout=60)

        scrape_when(lambda text: (value(text, "tornado_census_objects_scanned") or 0) > 0)
        session = pull_session(url=f"http://127.0.0.1:{port}/shop")
        try:
            text = scrape_when(lambda text: alive(text, "open", handler) == 1)
        finally:
            session.close()
        assert get(f"http://127.0.0.1:{port}/shop")[0] == 200
        text = scrape_when(
            lambda text: alive(text, "open", handler) == alive(text, "closed", handler) == 0
        )
        assert_published_once(text)
        assert_healthy(text)
