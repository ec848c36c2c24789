"""A metrics endpoint on a port of its own, served from a daemon thread."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

import tornado.httpserver
import tornado.netutil
import tornado.web

# Our endpoints take no request body; the separate server refuses a larger one unread.
MAX_BODY_SIZE = 4096


class MetricsServer:
    """Our endpoints (``routes``) on a port of their own, served by a Tornado loop in a daemon
    thread.

    Running apart from the application's IOLoop means ``/metrics`` still answers, and the lag
    histogram still tells the story, while the application's loop is blocked.
    """

    def __init__(
        self,
        *,
        port: int,
        address: str,
        routes: list[Any],
        on_stop: Callable[[], object] | None = None,
    ) -> None:
        self._on_stop = on_stop
        self.address = address
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._error: BaseException | None = None
        # Bind in the caller's thread so that a taken port raises here, not in the thread.
        self._sockets = tornado.netutil.bind_sockets(port, address=address)
        self.port: int = self._sockets[0].getsockname()[1]
        self._app = tornado.web.Application(routes)
        self._thread = threading.Thread(
            target=self._run, name=f"metrics-server-{self.port}", daemon=True
        )
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            raise self._error

    @property
    def url(self) -> str:
        """Base URL of the server."""
        host = f"[{self.address}]" if ":" in self.address else self.address
        return f"http://{host}:{self.port}"

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        try:
            server = tornado.httpserver.HTTPServer(self._app, max_body_size=MAX_BODY_SIZE)
            server.add_sockets(self._sockets)
        except BaseException as error:  # noqa: BLE001 - handed back to the caller
            self._error = error
            self._ready.set()
            loop.close()
            return
        self._loop = loop
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            server.stop()
            loop.run_until_complete(server.close_all_connections())
            loop.close()

    def stop(self) -> None:
        """Close the port and end the thread."""
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=5)
        if self._on_stop is not None:
            self._on_stop()
            self._on_stop = None
