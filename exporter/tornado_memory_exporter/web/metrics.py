"""Serving a registry over HTTP from Tornado: the handler, and a server on a port of its own."""

from __future__ import annotations

import asyncio
import gzip
import re
import time
from collections.abc import Callable
from concurrent.futures import Executor, ThreadPoolExecutor

import tornado.web
from prometheus_client import REGISTRY
from prometheus_client.exposition import choose_encoder, generate_latest
from prometheus_client.registry import Collector

from ..config import Config
from .credentials import Credentials
from .protected import ProtectedHandler

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


def literal(path: str) -> str:
    """A Tornado route pattern matching exactly ``path`` (``+``, ``(``, ``$``... as themselves)."""
    return (
        re.escape(path) + "$"
    )  # our own "$": Tornado adds none when the escaped path ends with one


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


class Renderer:
    """Renders registries into response bodies on ``executor`` (the loop's default executor
    when ``None``), and keeps each body ``cache_seconds`` (0: render every scrape).

    Rendering is most of a scrape's cost (milliseconds in pure Python); on a thread it leaves
    the app's IOLoop serving requests meanwhile (collectors are read from the separate
    server's thread anyway, so they are thread-safe). With many scrapers, a cache of one
    second caps the cost at about one render per second per format.
    """

    def __init__(self, *, cache_seconds: float = 0.0, executor: Executor | None = None) -> None:
        self.cache_seconds = cache_seconds
        self._executor = executor
        # (registry id, content type, gzipped) -> (expires, registry, body); a handful of keys.
        self._bodies: dict[tuple[int, str, bool], tuple[float, Collector, bytes]] = {}

    async def render(
        self,
        registry: Collector,
        encoder: Callable[[Collector], bytes],
        content_type: str,
        *,
        gzipped: bool,
        cacheable: bool = True,
    ) -> bytes:
        """The body of ``registry`` in the format of ``encoder``, gzipped if asked."""
        key = (id(registry), content_type, gzipped)
        now = time.monotonic()
        if cacheable and self.cache_seconds > 0:
            cached = self._bodies.get(key)
            if cached is not None and cached[0] > now and cached[1] is registry:
                return cached[2]
        body = await asyncio.get_running_loop().run_in_executor(
            self._executor, _render, encoder, registry, gzipped
        )
        if cacheable and self.cache_seconds > 0:
            self._bodies[key] = (now + self.cache_seconds, registry, body)
        return body

    def close(self) -> None:
        """Drop the cached bodies and end the executor's thread (a render in progress, a few
        milliseconds, finishes first; queued ones are cancelled)."""
        self._bodies.clear()
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)


def render_thread(cache_seconds: float = 0.0) -> Renderer:
    """A renderer with a thread of its own, as ``install()`` and the metrics server use."""
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="metrics-render")
    return Renderer(cache_seconds=cache_seconds, executor=executor)


def _render(encoder: Callable[[Collector], bytes], registry: Collector, gzipped: bool) -> bytes:
    body = encoder(registry)
    return gzip.compress(body, compresslevel=6) if gzipped else body


class MetricsHandler(ProtectedHandler):
    """Serves a registry in the Prometheus text or OpenMetrics format.

    Configured the Tornado way, through the URL spec::

        app.add_handlers(r".*", [(r"/metrics", MetricsHandler, {"registry": registry})])

    Supports content negotiation, gzip, ``?name[]=`` filtering, GET and HEAD; other methods
    get 405. With ``credentials`` (or credentials in ``config``) it answers 401 until they are
    given. ``renderer`` renders (and caches) bodies; without one, bodies are rendered on the
    loop's default executor and never cached.
    """

    SUPPORTED_METHODS = ("GET", "HEAD")

    def initialize(
        self,
        registry: Collector = REGISTRY,
        config: Config | None = None,
        *,
        credentials: Credentials | None = None,
        renderer: Renderer | None = None,
    ) -> None:
        self.registry = registry
        if credentials is None:
            credentials = Credentials.of(config) if config is not None else Credentials()
        self.credentials = credentials
        self.renderer = renderer if renderer is not None else Renderer()

    async def get(self) -> None:
        names = self.get_arguments("name[]")
        if len(names) > MAX_NAME_FILTERS:
            raise tornado.web.HTTPError(400, reason=f"at most {MAX_NAME_FILTERS} name[] filters")
        encoder, content_type = negotiate(self.request.headers.get("Accept"))
        registry = self.registry.restricted_registry(names) if names else self.registry
        gzipped = gzip_accepted(self.request.headers.get("Accept-Encoding"))
        # Filtered scrapes are not cached: their keys are the client's to choose (unbounded).
        body = await self.renderer.render(
            registry, encoder, content_type, gzipped=gzipped, cacheable=not names
        )
        if gzipped:
            self.set_header("Content-Encoding", "gzip")
        self.set_header("Vary", "Accept, Accept-Encoding")
        self.set_header("Content-Type", content_type)
        self.set_header("Cache-Control", "no-store")
        self.write(body)

    head = get  # Tornado drops the body of a HEAD response and keeps its Content-Length
