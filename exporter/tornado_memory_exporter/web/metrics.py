"""Serving a registry over HTTP from Tornado: the handler, and a server on a port of its own."""

from __future__ import annotations

import asyncio
import gzip
import re
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

from ..config import Config
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




