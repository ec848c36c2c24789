"""The demo service: a few real endpoints, the leak switches, and a steady background load."""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
from collections import Counter
from typing import Any

import tornado.web
from tornado.httpclient import AsyncHTTPClient
from tornado.log import access_log

from ..install import Exporter
from ..pools.pool import ObjectPool, PoolTimeout
from .leaks import BlockingLeak, CacheLeak, CycleLeak, HandlerLeak, HTTPLeak, Leak, make_leaks

log = logging.getLogger("tornado_memory_exporter.demo")

# Seconds between two requests of the background load, per endpoint: enough for the graphs to
# move and the fast-profile alerts to fire within minutes, light enough for a laptop.
LOAD_SCHEDULE: dict[str, float] = {
    "/": 1.0,
    "/report": 0.2,
    "/items": 0.2,
    "/db": 0.2,
    "/session": 0.2,
    "/compute": 1.0,
    "/fanout": 0.5,
}
UPSTREAM_MAX_CLIENTS = 4
DB_POOL_SIZE = 8
# Requests of the background load carry this header and stay out of the access log.
LOAD_HEADER = "X-Demo-Load"


class FakeConnection:
    """What the demo's ``ObjectPool`` hands out: stands in for a database connection."""

    _ids = itertools.count(1)

    def __init__(self) -> None:
        self.id = next(self._ids)
        self.buffer = bytearray(4096)  # a connection holds buffers: a leaked one costs memory


class DemoHandler(tornado.web.RequestHandler):
    """Base of the demo endpoints: configured with the service, JSON in and out."""

    def initialize(self, service: DemoService) -> None:
        self.service = service

    def leak(self, name: str) -> Any:
        return self.service.leaks[name]

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        self.set_header("Content-Type", "text/plain; charset=utf-8")
        self.finish(f"{status_code} {self._reason}\n")


class IndexHandler(DemoHandler):
    def get(self) -> None:
        base = f"{self.request.protocol}://{self.request.host}"
        self.write({
            "metrics": f"{base}/metrics",
            "leaks": f"{base}/leaks",
            "switch": f"curl -X POST -d on {base}/leaks/<name>   (or -d off)",
            "endpoints": sorted(LOAD_SCHEDULE) + ["/slow?seconds=1"],
        })


class ReportHandler(DemoHandler):
    """Builds a small report; with the ``handlers`` leak on, the finished handler stays alive."""

    def get(self) -> None:
        self.rows = [{"n": i, "square": i * i} for i in range(20)]  # state the handler holds on to
        self.write({"rows": len(self.rows)})
        leak: HandlerLeak = self.leak("handlers")
        leak.keep(self)


class ItemsHandler(DemoHandler):
    """Serves an item through the response cache (``exporter.watch("demo_cache", ...)``)."""

    def get(self) -> None:
        key = self.get_argument("id", "0")[:64]
        leak: CacheLeak = self.leak("cache")
        hit = key in leak.cache
        leak.store(key, leak.cache[key] if hit else os.urandom(1024))
        self.write({"id": key, "cached": hit, "cache_size": len(leak.cache)})


class DbHandler(DemoHandler):
    """Runs a fake query on a pooled connection; with the ``pool`` leak on, drops it instead."""

    async def get(self) -> None:
        leak: Leak = self.leak("pool")
        pool = self.service.db_pool
        try:
            if leak.on:
                await pool.get(timeout=0.5)  # never put() back: dropped while checked out
                leak.size += 1
                self.write({"leaked": leak.size})
                return
            async with pool.acquire(timeout=0.5) as conn:
                await asyncio.sleep(0.005)
                self.write({"connection": conn.id})
        except PoolTimeout:
            raise tornado.web.HTTPError(503, reason="database pool exhausted") from None


class SessionHandler(DemoHandler):
    """Creates per-session object graphs with cycles; with the ``cycles`` leak on, uncollectable."""

    def get(self) -> None:
        leak: CycleLeak = self.leak("cycles")
        leak.make_cycle()
        self.write({"uncollectable_created": leak.size})


class ComputeHandler(DemoHandler):
    """A CPU-light endpoint; with the ``blocking`` leak on, it makes a synchronous call."""

    def get(self) -> None:
        leak: BlockingLeak = self.leak("blocking")
        leak.maybe_block()
        self.write({"blocked_calls": leak.size})


class FanoutHandler(DemoHandler):
    """Calls the slow upstream; with the ``http`` leak on, fans out beyond ``max_clients``."""

    async def get(self) -> None:
        leak: HTTPLeak = self.leak("http")
        if leak.on:
            for _ in range(leak.fanout):
                self.service.spawn(self.service.call_upstream(seconds=2.0))
            leak.size += leak.fanout
            self.write({"fanned_out": leak.fanout})
            return
        await self.service.call_upstream(seconds=0.01)
        self.write({"fanned_out": 0})


class SlowHandler(DemoHandler):
    """The demo's upstream: answers after ``seconds`` (at most 5) without blocking the loop."""

    async def get(self) -> None:
        try:
            seconds = float(self.get_argument("seconds", "1"))
        except ValueError:
            raise tornado.web.HTTPError(400, reason="seconds must be a number") from None
        if not 0 <= seconds <= 5:
            raise tornado.web.HTTPError(400, reason="seconds must be from 0 to 5")
        await asyncio.sleep(seconds)
        self.write({"slept": seconds})


class LeaksHandler(DemoHandler):
    """``GET /leaks`` lists the scenarios; ``POST /leaks/<name>`` with body ``on``/``off`` switches one."""

    def get(self, name: str | None = None) -> None:
        if name is None:
            self.write({n: leak.describe() for n, leak in self.service.leaks.items()})
        else:
            self.write(self._find(name).describe())

    def post(self, name: str | None = None) -> None:
        if name is None:
            raise tornado.web.HTTPError(405)
        leak = self._find(name)
        state = (self.get_argument("state", None) or self.request.body.decode("utf-8", "replace")).strip()
        if state not in ("on", "off"):
            raise tornado.web.HTTPError(400, reason=f"state {state[:20]!r} must be 'on' or 'off'")
        try:
            leak.switch(state == "on")
        except ValueError as error:
            raise tornado.web.HTTPError(409, reason=str(error)) from None
        log.info("leak %s switched %s", name, state)
        self.write(leak.describe())

    def _find(self, name: str) -> Leak:
        leak = self.service.leaks.get(name)
        if leak is None:
            raise tornado.web.HTTPError(404, reason=f"no leak named {name[:40]!r}")
        return leak


class DemoService:
    """The demo's state: leak scenarios, a database-like pool, an upstream client, the load.

    ``make_app()`` builds the application; ``start(exporter, base_url)`` (on the running loop,
    after ``install()``) registers the pools and the watched cache and starts the load.
    """

    def __init__(self) -> None:
        self.leaks = make_leaks()
        self.db_pool = ObjectPool(FakeConnection, max_size=DB_POOL_SIZE, name="demo_db")
        self.upstream: AsyncHTTPClient | None = None
        self.base_url = ""
        self.load_responses: Counter[int] = Counter()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._load_client: AsyncHTTPClient | None = None

    def make_app(self) -> tornado.web.Application:
        """The demo application, without the exporter."""
        kwargs = {"service": self}
        return tornado.web.Application([
            (r"/", IndexHandler, kwargs),
            (r"/report", ReportHandler, kwargs),
            (r"/items", ItemsHandler, kwargs),
            (r"/db", DbHandler, kwargs),
            (r"/session", SessionHandler, kwargs),
            (r"/compute", ComputeHandler, kwargs),
            (r"/fanout", FanoutHandler, kwargs),
            (r"/slow", SlowHandler, kwargs),
            (r"/leaks", LeaksHandler, kwargs),
            (r"/leaks/([^/]+)", LeaksHandler, kwargs),
        ], log_function=log_request)

    async def start(self, exporter: Exporter, base_url: str, *, load: bool = True) -> None:
        """Register the demo's pools and watched cache with ``exporter``; start the load."""
        self.base_url = base_url
        self.upstream = AsyncHTTPClient(
            force_instance=True,
            max_clients=UPSTREAM_MAX_CLIENTS,
            defaults={"connect_timeout": 1.0, "request_timeout": 10.0},
        )
        exporter.pools.register("demo_db", self.db_pool)
        exporter.pools.register("upstream", self.upstream)
        exporter.watch("demo_cache", self.leaks["cache"].cache)
        if load:
            self._load_client = AsyncHTTPClient(force_instance=True, max_clients=len(LOAD_SCHEDULE) + 2)
            for path, period in LOAD_SCHEDULE.items():
                self.spawn(self._load(path, period))

    async def stop(self) -> None:
        """Stop the load and in-flight upstream calls, release every leak, close the clients."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for leak in self.leaks.values():
            leak.switch(False)
        for client in (self.upstream, self._load_client):
            if client is not None:
                client.close()

    def spawn(self, coro: Any) -> None:
        """Run ``coro`` in the background, keeping a reference until it ends."""
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def call_upstream(self, *, seconds: float) -> int:
        """One call to the slow endpoint through the pooled upstream client; returns the status."""
        assert self.upstream is not None, "start() first"
        # Marked as load, so that log_request keeps these twice-a-second calls off the terminal.
        response = await self.upstream.fetch(
            f"{self.base_url}/slow?seconds={seconds}", raise_error=False, headers={LOAD_HEADER: "1"}
        )
        return response.code  # 599 when it timed out waiting for a free client

    async def _load(self, path: str, period: float) -> None:
        assert self._load_client is not None
        for n in itertools.count():
            url = f"{self.base_url}{path}" + (f"?id={n}" if path == "/items" else "")
            response = await self._load_client.fetch(
                url, raise_error=False, request_timeout=10.0, headers={LOAD_HEADER: "1"})
            self.load_responses[response.code] += 1
            await asyncio.sleep(period)


def log_request(handler: tornado.web.RequestHandler) -> None:
    """Access log without the background load and scrapes, which would drown the user's requests."""
    status, request = handler.get_status(), handler.request
    line = "%d %s %s (%s) %.2fms"
    args = (status, request.method, request.uri, request.remote_ip, 1000 * request.request_time())
    if status >= 500:
        access_log.error(line, *args)
    elif status >= 400:
        access_log.warning(line, *args)
    elif LOAD_HEADER not in request.headers and request.path != "/metrics":
        access_log.info(line, *args)


def describe_leaks(leaks: dict[str, Leak]) -> str:
    """One line per scenario, for the banner the demo prints."""
    return "\n".join(
        f"  {name:<9} {leak.alert:<28} {leak.what}" + ("" if leak.unavailable is None else " (unavailable)")
        for name, leak in leaks.items()
    )
