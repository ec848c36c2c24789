"""The explorer's HTTP surface: a static page and a JSON API under ``Config.explorer_path``.

Security contract:

* Off by default: without ``Config(explorer_enabled=True)`` no route exists (404).
* Credentials: every API call needs ``auth_token`` / ``basic_auth`` (401 otherwise, with the
  metrics endpoint's challenges). Without credentials the explorer may only be served on a
  loopback address (``require_safe_exposure`` refuses to start otherwise), and then answers only
  requests from loopback whose ``Host`` is a loopback name (no DNS-rebinding from a web page).
* GET reads; actions (walk chains, open an allocation window, run a census, ``malloc_trim``)
  are POSTs with a
  JSON body: a cross-site page cannot send one without a CORS preflight, which is never
  granted, and a request marked cross-site by ``Sec-Fetch-Site`` or a foreign ``Origin`` is
  refused (403) even with credentials the browser attached by itself (basic auth).
* Object contents are hidden unless ``explorer_show_contents`` (see ``describe.py``).
* The page (``static/``) carries no data: it is the same bytes as in the package, served without
  credentials so that a bearer-token user can open it and type the token; every datum comes from
  the API. Everything is sent with a strict Content-Security-Policy, ``nosniff`` and no caching.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
from collections.abc import Awaitable, Callable
from importlib import resources
from typing import Any, TypeVar
from urllib.parse import urlsplit

import tornado.web

from ..web.credentials import Credentials
from ..web.exposure import is_loopback
from ..web.protected import ProtectedHandler
from .core import Explorer

T = TypeVar("T")

MAX_BODY = 4096
"""Largest JSON body an action accepts."""
CALL_TIMEOUT = 10.0
"""Seconds a request served from another thread waits for the application's loop."""
_STATIC = {"app.js": "application/javascript", "app.css": "text/css"}
_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


def _page(name: str) -> bytes:
    return resources.files(__package__).joinpath("static", name).read_bytes()


class _Base(ProtectedHandler):
    """Security headers, loopback-only mode, thread hand-over and JSON helpers."""

    SUPPORTED_METHODS = ("GET",)
    needs_auth = True

    def initialize(self, explorer: Explorer, credentials: Credentials) -> None:
        self.explorer = explorer
        self.credentials = credentials

    def set_default_headers(self) -> None:
        self.set_header("Content-Security-Policy", _CSP)
        self.set_header("X-Content-Type-Options", "nosniff")
        self.set_header("Referrer-Policy", "no-referrer")
        self.set_header("Cache-Control", "no-store")

    def prepare(self) -> None:
        if not self.credentials.required and not self._local():
            raise tornado.web.HTTPError(403, reason="explorer without credentials: loopback only")
        if self.needs_auth:
            super().prepare()

    def _local(self) -> bool:
        host = self.request.host or ""
        name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
        return is_loopback(self.request.remote_ip or "") and is_loopback(name)

    def check_xsrf_cookie(self) -> None:
        return None  # no cookies are used; POSTs are checked in _json_body instead

    async def on_loop(self, fn: Callable[[], Awaitable[T]]) -> T:
        """Run ``fn()`` on the explorer's loop (the metrics server has a loop of its own)."""
        loop = self.explorer.loop
        if asyncio.get_running_loop() is loop:
            return await fn()
        if loop.is_closed():
            raise tornado.web.HTTPError(503, reason="application loop is closed")
        coro = _call(fn)
        try:
            future = asyncio.run_coroutine_threadsafe(coro, loop)
        except RuntimeError:  # closed between the check and the call
            coro.close()
            raise tornado.web.HTTPError(503, reason="application loop is closed") from None
        try:
            return await asyncio.wait_for(asyncio.wrap_future(future), CALL_TIMEOUT)
        except TimeoutError:
            future.cancel()
            raise tornado.web.HTTPError(503, reason="application loop did not answer") from None

    def send_json(self, value: Any, status: int = 200) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json; charset=utf-8")
        self.finish(json.dumps(_finite(value), default=str, allow_nan=False))

    def json_body(self) -> dict[str, Any]:
        """The POST body as a JSON object, after the same-origin checks."""
        site = self.request.headers.get("Sec-Fetch-Site")
        if site is not None and site not in ("same-origin", "none"):
            raise tornado.web.HTTPError(403, reason="cross-site request refused")
        origin = self.request.headers.get("Origin")
        if origin is not None and urlsplit(origin).netloc != self.request.host:
            raise tornado.web.HTTPError(403, reason="cross-origin request refused")
        content_type = self.request.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if content_type != "application/json":
            raise tornado.web.HTTPError(415, reason="send Content-Type: application/json")
        if len(self.request.body) > MAX_BODY:
            raise tornado.web.HTTPError(413, reason=f"body over {MAX_BODY} bytes")
        try:
            body = json.loads(self.request.body or b"{}")
        except ValueError:
            raise tornado.web.HTTPError(400, reason="body is not JSON") from None
        if not isinstance(body, dict):
            raise tornado.web.HTTPError(400, reason="body must be a JSON object")
        return body


def _finite(value: Any) -> Any:
    """``value`` with infinities and NaNs as strings: JSON has no such numbers (an unbounded
    pool's capacity is ``math.inf``) and the page's ``JSON.parse`` would reject them."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(item) for item in value]
    return value


async def _call(fn: Callable[[], Awaitable[T]]) -> T:
    return await fn()


async def _value(fn: Callable[[], T]) -> T:
    return fn()


def _bad(error: Exception) -> tornado.web.HTTPError:
    # Reasons go into the status line: keep them one short printable line.
    reason = re.sub(r"[^ -~]", "?", str(error))[:200]
    return tornado.web.HTTPError(409 if isinstance(error, RuntimeError) else 400, reason=reason)


class PageHandler(_Base):
    """The page (``/``) and its two static files; no data, so no credentials needed."""

    needs_auth = False

    def get(self, name: str | None = None) -> None:
        if name is None and not self.request.path.endswith("/"):
            self.redirect(self.request.path + "/")
            return
        file = name or "index.html"
        self.set_header("Content-Type", _STATIC.get(file, "text/html; charset=utf-8"))
        self.finish(_page(file))


class SummaryHandler(_Base):
    async def get(self) -> None:
        self.send_json(await self.on_loop(lambda: _value(self.explorer.summary)))


class TypeHandler(_Base):
    async def get(self) -> None:
        name = self.get_query_argument("name", "")
        if not 0 < len(name) <= 300:
            raise tornado.web.HTTPError(
                400, reason="name must be a type name of 1 to 300 characters"
            )
        self.send_json(await self.on_loop(lambda: _value(lambda: self.explorer.type_detail(name))))


class ChainsHandler(_Base):
    SUPPORTED_METHODS = ("POST",)

    async def post(self) -> None:
        body = self.json_body()
        name, samples = body.get("type"), body.get("samples", 3)
        if not isinstance(name, str) or not 0 < len(name) <= 300:
            raise tornado.web.HTTPError(
                400, reason="type must be a type name of 1 to 300 characters"
            )

        async def start() -> dict[str, Any]:
            try:
                return self.explorer.start_walk(name, samples)
            except (ValueError, RuntimeError) as error:
                raise _bad(error) from None

        self.send_json(await self.on_loop(start), status=202)


class AllocationsHandler(_Base):
    SUPPORTED_METHODS = ("GET", "POST")

    async def get(self) -> None:
        self.send_json(await self.on_loop(lambda: _value(self.explorer.allocations.status)))

    async def post(self) -> None:
        body = self.json_body()
        window = self.explorer.allocations
        seconds = body.get("seconds", min(10.0, window.max_seconds))
        frames = body.get("frames", 1)
        types = body.get("types", [])
        if (
            not isinstance(types, list)
            or len(types) > 10
            or not all(isinstance(t, str) and 0 < len(t) <= 300 for t in types)
        ):
            raise tornado.web.HTTPError(400, reason="types must be a list of at most 10 type names")

        async def start() -> dict[str, Any]:
            try:
                return window.start(seconds=seconds, frames=frames, types=types)
            except (ValueError, RuntimeError) as error:
                raise _bad(error) from None

        self.send_json(await self.on_loop(start), status=202)


class CensusHandler(_Base):
    SUPPORTED_METHODS = ("POST",)

    async def post(self) -> None:
        self.json_body()

        async def run() -> dict[str, Any]:
            try:
                return await self.explorer.census_now()
            except RuntimeError as error:
                raise _bad(error) from None

        self.send_json(await self.on_loop(run))


class MallocTrimHandler(_Base):
    """``malloc_trim(0)`` and how much RSS it gave back (409 where there is no glibc)."""

    SUPPORTED_METHODS = ("POST",)

    async def post(self) -> None:
        self.json_body()

        async def run() -> dict[str, Any]:
            try:
                return self.explorer.malloc_trim()
            except RuntimeError as error:
                raise _bad(error) from None

        self.send_json(await self.on_loop(run))


def explorer_routes(
    explorer: Explorer, credentials: Credentials
) -> list[tuple[str, type, dict[str, Any]]]:
    """URL specs of the explorer under ``explorer.config.explorer_path``; ``config`` holds the
    credentials of the server that serves them."""
    prefix = re.escape(explorer.config.explorer_path)
    kwargs = {"explorer": explorer, "credentials": credentials}
    return [
        (rf"{prefix}/?", PageHandler, kwargs),
        (rf"{prefix}/static/(app\.js|app\.css)", PageHandler, kwargs),
        (rf"{prefix}/api/summary", SummaryHandler, kwargs),
        (rf"{prefix}/api/type", TypeHandler, kwargs),
        (rf"{prefix}/api/chains", ChainsHandler, kwargs),
        (rf"{prefix}/api/allocations", AllocationsHandler, kwargs),
        (rf"{prefix}/api/census", CensusHandler, kwargs),
        (rf"{prefix}/api/malloc_trim", MallocTrimHandler, kwargs),
    ]
