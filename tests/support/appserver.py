"""A real Tornado app with the exporter installed, served on 127.0.0.1 from a background thread,
so that synchronous tests (and a real Prometheus) can talk to it over HTTP."""

from __future__ import annotations

import asyncio
import threading
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable
from concurrent.futures import Future
from typing import Any, TypeVar

import tornado.httpserver
import tornado.netutil
import tornado.web
from prometheus_client import CollectorRegistry

from tornado_memory_exporter import Config, Exporter, install

T = TypeVar("T")


class AppServer:
    """Runs ``app`` on its own IOLoop thread with ``install(app, ...)`` on a fresh registry.

    Use as a context manager; ``call(coro_fn)`` runs a coroutine function on the app's loop
    and returns its result (for ``exporter.census_now()`` and friends).
    """

    def __init__(
        self,
        app: tornado.web.Application | None = None,
        *,
        config: Config | None = None,
        path: str = "/metrics",
        registry: CollectorRegistry | None = None,
    ) -> None:
        self.app = app if app is not None else tornado.web.Application([])
        self.config = config if config is not None else Config(census_interval=0)
        self.path = path
        self.registry = registry if registry is not None else CollectorRegistry()
        self.loop = asyncio.new_event_loop()
        self.exporter: Exporter
        self.port = 0
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def target(self) -> str:
        """host:port, as a Prometheus scrape target."""
        return f"127.0.0.1:{self.port}"

    def __enter__(self) -> AppServer:
        self._thread.start()
        self.call(self._start)
        return self

    async def _start(self) -> None:
        sockets = tornado.netutil.bind_sockets(0, address="127.0.0.1")
        self.port = sockets[0].getsockname()[1]
        self._server = tornado.httpserver.HTTPServer(self.app)
        self._server.add_sockets(sockets)
        self.exporter = install(self.app, self.path, config=self.config, registry=self.registry)

    def call(self, coro_fn: Callable[[], Awaitable[T]], timeout: float = 60) -> T:
        """Run ``coro_fn()`` on the app's loop and wait for its result."""
        future: Future[T] = asyncio.run_coroutine_threadsafe(_as_coro(coro_fn), self.loop)
        return future.result(timeout)

    def get(
        self, path: str = "/metrics", headers: dict[str, str] | None = None
    ) -> tuple[int, dict, bytes]:
        """(status, headers, body) of a GET; HTTP errors are returned, not raised."""
        request = urllib.request.Request(self.url + path, headers=headers or {})
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, dict(response.headers), response.read()
        except urllib.error.HTTPError as error:
            return error.code, dict(error.headers), error.read()

    def scrape(self) -> str:
        status, _, body = self.get(self.path)
        assert status == 200, (status, body[:500])
        return body.decode()

    def __exit__(self, *exc: object) -> None:
        async def shutdown() -> None:
            self.exporter.stop()
            self._server.stop()
            await self._server.close_all_connections()

        try:
            self.call(shutdown, timeout=10)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(timeout=10)
            self.loop.close()


async def _as_coro(coro_fn: Callable[[], Awaitable[Any]]) -> Any:
    return await coro_fn()
