"""Serving a registry over HTTP from Tornado: the handler, and a server on a port of its own."""

from __future__ import annotations

import asyncio
import gzip
import re
import threading
import time
import weakref
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import tornado.httpserver
import tornado.netutil
import tornado.web
from prometheus_client import REGISTRY
from prometheus_client.exposition import choose_encoder, generate_latest
from prometheus_client.registry import Collector

from . import auth
from .config import Config

# The classic text format every Prometheus reads (prometheus_client < 0.22 has no constant for it).
CONTENT_TYPE_PLAIN_0_0_4 = "text/plain; version=0.0.4; charset=utf-8"
# Beyond this many `name[]` filters a request is refused: the registry filter is linear in them.
MAX_NAME_FILTERS = 1000
# Accept headers longer than this are ignored rather than parsed (the text format is served).
MAX_ACCEPT_LENGTH = 4096
# Format versions we serve; choose_encoder() echoes any version >= 1.0.0 the client names into
# Content-Type (and hands it to the encoder), so anything else falls back to the text format.
SERVED_VERSIONS = frozenset({"0.0.4", "1.0.0"})
_VERSION = re.compile(r"version=([^;]*)")
# Our endpoints take no request body; the separate server refuses a larger one unread.
MAX_BODY_SIZE = 4096


def negotiate(accept: str | None) -> tuple[Callable[[Collector], bytes], str]:
    """Encoder and content type for an ``Accept`` header; anything odd gets the text format."""
    if accept and len(accept) <= MAX_ACCEPT_LENGTH:
        try:
            encoder, content_type = choose_encoder(accept)
        except Exception:  # noqa: BLE001 - a malformed version= must not become a 500
            pass
        else:
            version = _VERSION.search(content_type)
            if version is not None and version.group(1) in SERVED_VERSIONS:
                return encoder, content_type
    return generate_latest, CONTENT_TYPE_PLAIN_0_0_4


def gzip_accepted(accept_encoding: str | None) -> bool:
    """Whether the client listed gzip with a non-zero quality."""
    for part in (accept_encoding or "").split(","):
        coding, _, params = part.partition(";")
        if coding.strip().lower() == "gzip":
            return params.replace(" ", "") not in ("q=0", "q=0.0", "q=0.00", "q=0.000")
    return False


class ProtectedHandler(tornado.web.RequestHandler):
    """Base of our endpoints: optional auth, plain-text errors, never a traceback in a body."""

    config: Config

    def prepare(self) -> None:
        if not auth.authorized(self.config, self.request.headers.get("Authorization")):
            self.set_status(401)
            for challenge in auth.challenges(self.config):
                self.add_header("WWW-Authenticate", challenge)
            self._plain_error()  # send_error() would clear the challenge headers

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        if status_code == 405:  # RFC 9110 15.5.6: a 405 must say what is allowed
            self.set_header("Allow", ", ".join(self.SUPPORTED_METHODS))
        self._plain_error()

    def _plain_error(self) -> None:
        self.set_header("Content-Type", "text/plain; charset=utf-8")
        self.finish(f"{self.get_status()} {self._reason}\n")

    def compute_etag(self) -> None:
        return None  # metrics change on every scrape; hashing them is wasted work


class MetricsHandler(ProtectedHandler):
    """Serves a registry in the Prometheus text or OpenMetrics format.

    Configured the Tornado way, through the URL spec::

        app.add_handlers(r".*", [(r"/metrics", MetricsHandler, {"registry": registry})])

    Supports content negotiation, gzip, ``?name[]=`` filtering, GET and HEAD; other methods
    get 405. With credentials in ``config`` it answers 401 until they are given.
    """

    SUPPORTED_METHODS = ("GET", "HEAD")

    def initialize(self, registry: Collector = REGISTRY, config: Config | None = None) -> None:
        self.registry = registry
        self.config = config if config is not None else Config()

    async def get(self) -> None:
        names = self.get_arguments("name[]")
        if len(names) > MAX_NAME_FILTERS:
            raise tornado.web.HTTPError(400, reason=f"at most {MAX_NAME_FILTERS} name[] filters")
        encoder, content_type = negotiate(self.request.headers.get("Accept"))
        registry = self.registry.restricted_registry(names) if names else self.registry
        gzipped = gzip_accepted(self.request.headers.get("Accept-Encoding"))
        # Filtered scrapes are not cached: their keys are the client's to choose (unbounded).
        cache = _cache(self.registry, self.config.scrape_cache_seconds) if not names else None
        key = (content_type, gzipped)
        now = time.monotonic()
        cached = cache.get(key) if cache is not None else None
        if cached is not None and cached[0] > now:
            body = cached[1]
        else:
            # Rendering is most of a scrape's cost (milliseconds in pure Python); on a thread of
            # its own it leaves the app's IOLoop serving requests meanwhile. Collectors are read
            # from the separate server's thread anyway, so they are thread-safe.
            body = await asyncio.get_running_loop().run_in_executor(
                _renderer(), _render, encoder, registry, gzipped
            )
            if cache is not None:
                cache[key] = (now + self.config.scrape_cache_seconds, body)
        if gzipped:
            self.set_header("Content-Encoding", "gzip")
        self.set_header("Vary", "Accept, Accept-Encoding")
        self.set_header("Content-Type", content_type)
        self.set_header("Cache-Control", "no-store")
        self.write(body)

    head = get  # Tornado drops the body of a HEAD response and keeps its Content-Length


_executor: ThreadPoolExecutor | None = None
# registry -> {(content type, gzipped): (expires, body)}: a handful of keys per registry.
_bodies: weakref.WeakKeyDictionary[Any, dict[tuple[str, bool], tuple[float, bytes]]] = (
    weakref.WeakKeyDictionary()
)


def _cache(registry: Collector, seconds: float) -> dict[tuple[str, bool], tuple[float, bytes]] | None:
    if seconds <= 0:
        return None
    try:
        return _bodies.setdefault(registry, {})
    except TypeError:  # a collector that refuses weak references is rendered every time
        return None


def _renderer() -> ThreadPoolExecutor:
    global _executor
    if _executor is None:  # created on the first scrape, not at import
        _executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="metrics-render")
    return _executor


def _render(encoder: Callable[[Collector], bytes], registry: Collector, gzipped: bool) -> bytes:
    body = encoder(registry)
    return gzip.compress(body, compresslevel=6) if gzipped else body


class MetricsServer:
    """A metrics endpoint on a port of its own, served by a Tornado loop in a daemon thread.

    Running apart from the application's IOLoop means ``/metrics`` still answers, and the lag
    histogram still tells the story, while the application's loop is blocked.
    """

    def __init__(
        self, *, port: int, address: str, registry: Collector, config: Config, path: str,
        explorer: Any = None,
    ) -> None:
        self.address = address
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._error: BaseException | None = None
        # Bind in the caller's thread so that a taken port raises here, not in the thread.
        self._sockets = tornado.netutil.bind_sockets(port, address=address)
        self.port: int = self._sockets[0].getsockname()[1]
        routes: list[Any] = [(path, MetricsHandler, {"registry": registry, "config": config})]
        if explorer is not None:
            from .explorer import explorer_routes  # the explorer's handlers build on this module

            routes += explorer_routes(explorer, config)
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
    ``explorer=exporter.explorer`` serves the leak explorer there too; without credentials in
    ``config`` it is refused (``ValueError``) on a non-loopback ``address``.
    """
    if not isinstance(port, int) or isinstance(port, bool) or not 0 <= port <= 65535:
        raise ValueError(f"port={port!r} must be an integer from 0 to 65535")
    if not path.startswith("/"):
        raise ValueError(f"path={path!r} must start with '/'")
    if config is None:
        config = explorer.config if explorer is not None else Config()
    if explorer is not None:
        from .explorer import require_safe_exposure

        require_safe_exposure(config, address)
    return MetricsServer(
        port=port,
        explorer=explorer,
        address=address,
        registry=registry if registry is not None else REGISTRY,
        config=config,
        path=path,
    )
