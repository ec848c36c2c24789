"""The demo service: a few real endpoints, the leak switches, and a steady background load."""

from __future__ import annotations

import asyncio
import base64
import itertools
import logging
import os
import socket
import urllib.parse
from collections import Counter
from typing import Any

import tornado.httpclient
import tornado.ioloop
import tornado.iostream
import tornado.web
import tornado.websocket
from tornado.httpclient import AsyncHTTPClient, HTTPRequest
from tornado.log import access_log

from ..install import Exporter
from ..pools.pool import ObjectPool, PoolTimeout
from .leaks import (
    BlockingLeak,
    CacheLeak,
    CycleLeak,
    GarbageLeak,
    HandlerLeak,
    HTTPLeak,
    Leak,
    SlowConsumerLeak,
    TimerLeak,
    WebSocketLeak,
    make_leaks,
)

log = logging.getLogger("tornado_memory_exporter.demo")

# Seconds between two requests of the background load, per endpoint: enough for the graphs to
# move and the fast-profile alerts to fire within minutes, light enough for a laptop.
LOAD_SCHEDULE: dict[str, float] = {
    "/": 1.0,
    "/report": 0.2,
    "/items": 0.2,
    "/db": 0.2,
    "/session": 0.2,
    "/render": 0.2,
    "/compute": 2.0,  # with the blocking leak on, the loop is stalled a third of the time
    "/fanout": 0.5,
    "/login": 0.2,
}
# The chat's background: members always connected, each talking every CHAT_PERIOD seconds, and a
# visitor that connects, says hello and leaves every VISITOR_PERIOD seconds.
CHAT_MEMBERS = 20
CHAT_PERIOD = 2.0
VISITOR_PERIOD = 0.5
# The ticker pushes TICK_BYTES every TICK_PERIOD seconds to each client (640 KiB/s) without
# waiting for the previous write: no back-pressure, the bug a slow consumer exposes.
TICK_BYTES = 32 * 1024
TICK_PERIOD = 0.05
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
        self.write(
            {
                "metrics": f"{base}/metrics",
                "leaks": f"{base}/leaks",
                "switch": f"curl -X POST -d on {base}/leaks/<name>   (or -d off)",
                "endpoints": sorted(LOAD_SCHEDULE) + ["/slow?seconds=1"],
                "websockets": ["/chat", "/ticker"],
            }
        )


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


class RenderHandler(DemoHandler):
    """Renders a page; with ``cycles-per-request`` on, leaves itself in a reference cycle."""

    def get(self) -> None:
        leak: GarbageLeak = self.leak("cycles-per-request")
        leak.leave_cycle(self)
        self.write({"cycles_left": leak.size})


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


def expire_session(session: str) -> None:
    """What a session's expiry timeout runs (the demo keeps no sessions: nothing to end)."""


class LoginHandler(DemoHandler):
    """Schedules the session's expiry; with the ``timers`` leak on, an hour away and never
    cancelled."""

    def get(self) -> None:
        leak: TimerLeak = self.leak("timers")
        delay = leak.schedule(expire_session, self.get_argument("user", "guest")[:64])
        self.write({"session_expires_in": delay, "leaked_timers": leak.size})


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


class ChatSocket(tornado.websocket.WebSocketHandler):
    """A chat room: every message goes to every member. With the ``websockets`` leak on,
    ``on_close`` forgets to remove the member from the room."""

    def initialize(self, service: DemoService) -> None:
        self.room: WebSocketLeak = service.leaks["websockets"]

    def open(self) -> None:
        self.room.join(self)

    def on_message(self, message: str | bytes) -> None:
        for member in list(self.room.room):
            if member.ws_connection is not None:  # kept-but-closed members are skipped
                try:
                    member.write_message(message)
                except tornado.websocket.WebSocketClosedError:
                    pass

    def on_close(self) -> None:
        self.room.leave(self)


class TickerSocket(tornado.websocket.WebSocketHandler):
    """A price feed: pushes a snapshot every ``TICK_PERIOD`` without waiting for the client (at
    most the slow-consumer leak's cap queued per client, so a stuck demo stays bounded)."""

    def initialize(self, service: DemoService) -> None:
        self.leak: SlowConsumerLeak = service.leaks["slow-consumer"]
        self.queued = 0
        self.timer: tornado.ioloop.PeriodicCallback | None = None

    def open(self) -> None:
        self.timer = tornado.ioloop.PeriodicCallback(self.tick, TICK_PERIOD * 1000)
        self.timer.start()

    def tick(self) -> None:
        if self.ws_connection is None or self.queued >= self.leak.cap:
            return
        self.queued += TICK_BYTES
        self.write_message(os.urandom(TICK_BYTES), binary=True).add_done_callback(self._written)
        if self.get_argument("who", "") == self.leak.name:
            self.leak.size = self.queued

    def _written(self, future: asyncio.Future[None]) -> None:
        self.queued -= TICK_BYTES
        if not future.cancelled():
            future.exception()  # a closed client: nothing to report

    def on_close(self) -> None:
        if self.timer is not None:
            self.timer.stop()


class LeaksHandler(DemoHandler):
    """``GET /leaks`` lists the scenarios; ``POST /leaks/<name>`` (``on``/``off``) switches one."""

    def get(self, name: str | None = None) -> None:
        if name is None:
            self.write({n: leak.describe() for n, leak in self.service.leaks.items()})
        else:
            self.write(self._find(name).describe())

    async def post(self, name: str | None = None) -> None:
        if name is None:
            raise tornado.web.HTTPError(405)
        leak = self._find(name)
        state = (
            self.get_argument("state", None) or self.request.body.decode("utf-8", "replace")
        ).strip()
        if state not in ("on", "off"):
            raise tornado.web.HTTPError(400, reason=f"state {state[:20]!r} must be 'on' or 'off'")
        try:
            leak.switch(state == "on")
        except ValueError as error:
            raise tornado.web.HTTPError(409, reason=str(error)) from None
        log.info("leak %s switched %s", name, state)
        await self.service.switched(leak)
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
        return tornado.web.Application(
            [
                (r"/", IndexHandler, kwargs),
                (r"/report", ReportHandler, kwargs),
                (r"/items", ItemsHandler, kwargs),
                (r"/db", DbHandler, kwargs),
                (r"/session", SessionHandler, kwargs),
                (r"/render", RenderHandler, kwargs),
                (r"/compute", ComputeHandler, kwargs),
                (r"/fanout", FanoutHandler, kwargs),
                (r"/login", LoginHandler, kwargs),
                (r"/slow", SlowHandler, kwargs),
                (r"/chat", ChatSocket, kwargs),
                (r"/ticker", TickerSocket, kwargs),
                (r"/leaks", LeaksHandler, kwargs),
                (r"/leaks/([^/]+)", LeaksHandler, kwargs),
            ],
            log_function=log_request,
        )

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
        for leak in self.leaks.values():
            await self.switched(leak)
        if load:
            self._load_client = AsyncHTTPClient(
                force_instance=True, max_clients=len(LOAD_SCHEDULE) + 2
            )
            for path, period in LOAD_SCHEDULE.items():
                self.spawn(self._load(path, period))
            for n in range(CHAT_MEMBERS):
                self.spawn(self._chat_member(n))
            self.spawn(self._chat_visitors())
            self.spawn(self._ticker_reader())

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

    async def switched(self, leak: Leak) -> None:
        """Act on a leak just switched: the slow consumer connects to the ticker, stops reading."""
        if isinstance(leak, SlowConsumerLeak) and leak.on and leak.client is None:
            leak.client = await self._connect_silent_client(f"/ticker?who={leak.name}")

    async def _connect_silent_client(self, path: str) -> tornado.iostream.IOStream:
        """A WebSocket client that completes the handshake and then never reads again."""
        url = urllib.parse.urlsplit(self.base_url)
        sock = socket.socket()
        sock.setsockopt(
            socket.SOL_SOCKET, socket.SO_RCVBUF, 4096
        )  # a small window, as a phone on a bad link
        stream = tornado.iostream.IOStream(sock)
        await stream.connect((url.hostname, url.port))
        await stream.write(
            (
                f"GET {path} HTTP/1.1\r\nHost: {url.netloc}\r\n"
                "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {base64.b64encode(os.urandom(16)).decode()}\r\n"
                f"Sec-WebSocket-Version: 13\r\n{LOAD_HEADER}: 1\r\n\r\n"
            ).encode()
        )
        await stream.read_until(b"\r\n\r\n")
        return stream

    async def _ws(self, path: str) -> tornado.websocket.WebSocketClientConnection:
        request = HTTPRequest(
            f"ws{self.base_url.removeprefix('http')}{path}", headers={LOAD_HEADER: "1"}
        )
        return await tornado.websocket.websocket_connect(request)

    async def _chat_member(self, n: int) -> None:
        client = await self._ws("/chat")
        try:
            await asyncio.sleep(CHAT_PERIOD * n / CHAT_MEMBERS)  # spread the members' turns
            while True:
                await client.write_message(f"member {n}: hello at {self.load_responses.total()}")
                await asyncio.sleep(CHAT_PERIOD)
        finally:
            client.close()

    async def _chat_visitors(self) -> None:
        while True:
            try:
                client = await self._ws("/chat")
                await client.write_message("a visitor says hello")
                client.close()
            except (
                OSError,
                tornado.httpclient.HTTPClientError,
                tornado.websocket.WebSocketClosedError,
            ):
                pass  # a busy demo refused one visitor: the next one comes anyway
            await asyncio.sleep(VISITOR_PERIOD)

    async def _ticker_reader(self) -> None:
        client = await self._ws("/ticker")
        try:
            while await client.read_message() is not None:
                pass
        finally:
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
                url, raise_error=False, request_timeout=10.0, headers={LOAD_HEADER: "1"}
            )
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
        f"  {name:<18} {leak.alert:<28} {leak.what}"
        + ("" if leak.unavailable is None else " (unavailable)")
        for name, leak in leaks.items()
    )
