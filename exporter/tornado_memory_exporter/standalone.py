"""``start_metrics_server()``: our endpoints served apart from the application, on a port and
a thread of their own."""

from __future__ import annotations

from typing import Any

from prometheus_client import REGISTRY
from prometheus_client.registry import Collector

from . import validate
from .config import Config
from .explorer import explorer_routes
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
