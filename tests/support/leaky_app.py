"""A Tornado app that leaks on purpose, for the explorer's tests: instances kept by a module-level
list, instances kept by a closure an IOLoop timer holds, and a dict keyed by secrets."""

from __future__ import annotations

import tornado.ioloop
import tornado.web

LEAKED: list[LeakedRecord] = []
"""Grows by ``PER_REQUEST`` records on each GET /leak, never shrinks."""
PER_REQUEST = 50
SECRETS: dict[str, SecretHolder] = {}


class LeakedRecord:
    """What /leak leaks."""

    def __init__(self, payload: bytearray) -> None:
        self.payload = payload


class HeldByCallback:
    """What the closure scheduled by ``start_callback_leak`` keeps alive."""


class SecretHolder:
    """Kept in ``SECRETS`` under a key that must never appear in the explorer's output."""

    def __init__(self, value: str) -> None:
        self.value = value


def leak(n: int = PER_REQUEST) -> None:
    for _ in range(n):
        LEAKED.append(LeakedRecord(bytearray(512)))  # <- the leaking line


def line_of(text: str) -> int:
    """Number of the first line of this file that contains ``text``."""
    with open(__file__) as source:
        for number, line in enumerate(source, 1):
            if text in line:
                return number
    raise AssertionError(f"{text!r} not found")


def leak_line() -> int:
    """Line number of the leaking line."""
    return line_of("# <- the leaking" + " line")


def start_callback_leak(n: int) -> tornado.ioloop.IOLoop:
    """Keep ``n`` ``HeldByCallback`` in a closure that a one-hour IOLoop timer holds; returns
    the timer's handle (cancel it with ``IOLoop.current().remove_timeout``)."""
    held = [HeldByCallback() for _ in range(n)]

    def tick() -> None:
        held.append(HeldByCallback())

    return tornado.ioloop.IOLoop.current().call_later(3600, tick)


class LeakHandler(tornado.web.RequestHandler):
    def get(self) -> None:
        leak()
        self.write(f"{len(LEAKED)}\n")


def make_app() -> tornado.web.Application:
    return tornado.web.Application([(r"/leak", LeakHandler)])


def main(port: int, token: str) -> None:
    """Serve the leaky app with the explorer on 127.0.0.1:``port`` until killed (the browser
    test runs it in a child process, so that the browser driver's own allocations and GIL use
    stay out of what the explorer measures)."""
    import asyncio

    from prometheus_client import CollectorRegistry

    from tornado_memory_exporter import Config, install

    async def serve() -> None:
        app = make_app()
        app.listen(port, address="127.0.0.1")
        config = Config(census_interval=0, explorer_enabled=True, auth_token=token)
        install(app, config=config, registry=CollectorRegistry())
        await asyncio.Event().wait()

    asyncio.run(serve())
