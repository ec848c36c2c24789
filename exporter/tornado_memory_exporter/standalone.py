"""``start_metrics_server()``: our endpoints served apart from the application, on a port and
a thread of their own; ``start_in_thread()``: the exporter too, for apps that hide their loop."""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.registry import Collector

from . import validate
from .config import Config
from .explorer import explorer_routes
from .install import Exporter, install
from .web.credentials import Credentials
from .web.exposure import require_safe_exposure
from .web.metrics import MetricsHandler, literal, render_thread
from .web.server import MetricsServer


def start_metrics_server(
    port: int = 9464,
    address: str = "127.0.0.1",
    registry: Collector | None = None,
    config: Config | None = None,
    *,
    path: str = "/metrics",
    explorer: Any = None,
) -> MetricsServer:
    """Serve ``registry`` on ``http://address:port/metrics`` from a thread of its own.

    Binds to 127.0.0.1 unless told otherwise; pass ``address="0.0.0.0"`` (and credentials in
    ``config``) to let other hosts scrape. ``port=0`` picks a free port (see ``.port``).
    ``path`` is literal, like ``install()``'s. ``explorer=exporter.explorer`` serves the leak
    explorer there too; without credentials in
    ``config`` it is refused (``ValueError``) on a non-loopback ``address``.
    """
    validate.port("port", port)
    validate.url_path("path", path)
    if config is None:
        config = explorer.config if explorer is not None else Config()
    credentials = Credentials.of(config)
    if explorer is not None:
        require_safe_exposure(credentials, address)
    renderer = render_thread(config.scrape_cache_seconds)
    metrics = {
        "registry": registry if registry is not None else REGISTRY,
        "credentials": credentials,
        "renderer": renderer,
    }
    routes: list[Any] = [(literal(path), MetricsHandler, metrics)]
    if explorer is not None:
        routes += explorer_routes(explorer, credentials)
    try:
        return MetricsServer(port=port, address=address, routes=routes, on_stop=renderer.close)
    except BaseException:
        renderer.close()
        raise


class ExporterThread:
    """What ``start_in_thread()`` returns: the ``exporter`` running on a loop of its own, the
    metrics ``server`` and its ``url``; ``stop()`` ends both and the thread."""

    def __init__(
        self,
        exporter: Exporter,
        server: MetricsServer,
        loop: asyncio.AbstractEventLoop,
        thread: threading.Thread,
    ) -> None:
        self.exporter = exporter
        self.server = server
        self._loop = loop
        self._thread = thread

    @property
    def url(self) -> str:
        """Base URL of the metrics server (``url + "/metrics"`` is the scrape URL)."""
        return self.server.url

    @property
    def running(self) -> bool:
        """Whether the thread still runs the exporter."""
        return self._thread.is_alive()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the exporter, close the port and end the thread (safe to call twice)."""
        if not self._thread.is_alive():
            return
        self.server.stop()
        asyncio.run_coroutine_threadsafe(_stop(self.exporter), self._loop).result(timeout)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout)


async def _stop(exporter: Exporter) -> None:
    exporter.stop()


def start_in_thread(
    port: int = 9464,
    address: str = "127.0.0.1",
    *,
    config: Config | None = None,
    registry: CollectorRegistry | None = None,
    path: str = "/metrics",
) -> ExporterThread:
    """The exporter for code that holds no running loop it can hand out (Streamlit, WSGI apps,
    scripts): a daemon thread runs ``install(None, None)`` on an event loop of its own, and
    ``start_metrics_server()`` serves it on ``http://address:port/metrics``. Call it from plain
    synchronous code, once per process::

        exporter = start_in_thread(port=9464, config=Config(census_interval=30))
        ...
        exporter.stop()

    Errors (a bad option, a taken port) are raised here, with nothing left running. The loop
    lag metrics then describe the exporter's own loop, not the application's.
    """
    validate.port("port", port)
    ready: concurrent.futures.Future[tuple[Exporter, MetricsServer]] = concurrent.futures.Future()
    loop = asyncio.new_event_loop()

    async def start() -> tuple[Exporter, MetricsServer]:
        exporter = install(None, None, config=config, registry=registry)
        try:
            server = start_metrics_server(
                port,
                address,
                registry=exporter.served,
                config=exporter.config,
                path=path,
                explorer=exporter.explorer,
            )
        except BaseException:
            exporter.stop()
            raise
        return exporter, server

    def run() -> None:
        asyncio.set_event_loop(loop)
        try:
            ready.set_result(loop.run_until_complete(start()))
        except BaseException as error:  # noqa: BLE001 - handed to the caller
            ready.set_exception(error)
            loop.close()
            return
        try:
            loop.run_forever()
        finally:
            loop.close()

    thread = threading.Thread(target=run, name="tornado-memory-exporter", daemon=True)
    thread.start()
    exporter, server = ready.result()
    return ExporterThread(exporter, server, loop, thread)
