"""Benchmarks, not part of the test run: ``python -m bench [name ...]`` runs all or the named ones.

These machines are noisy (two cores shared with other work), so a lone absolute time means little:
every bench measures its subject side by side with a peer in the same run, interleaving the two,
and prints medians and ratios. The helpers here are what the bench modules share.
"""

from __future__ import annotations

import asyncio
import importlib
import math
import multiprocessing
import statistics
from collections.abc import Sequence
from multiprocessing.connection import Connection

# What Prometheus 2.42 (the Debian 12 package) sends with every scrape: it asks for OpenMetrics
# first and accepts gzip, so a scrape timed with these headers costs what production scrapes cost.
PROMETHEUS_HEADERS = {
    "Accept": "application/openmetrics-text;version=1.0.0,"
    "application/openmetrics-text;version=0.0.1;"
    "q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1",
    "Accept-Encoding": "gzip",
    "User-Agent": "Prometheus/2.42.0",
    "X-Prometheus-Scrape-Timeout-Seconds": "10",
}


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in 0..100) of ``values``: always a measured value."""
    if not values:
        raise ValueError("percentile() of no values")
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def median(values: Sequence[float]) -> float:
    """The median of ``values``."""
    return statistics.median(values)


def fmt_seconds(seconds: float) -> str:
    """A duration with a unit a reader takes in at a glance (``812 us``, ``1.42 ms``)."""
    if seconds < 1e-3:
        return f"{seconds * 1e6:.0f} us"
    if seconds < 1:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds:.2f} s"


class ChildServer:
    """A Tornado app served on 127.0.0.1 by a fresh interpreter (``spawn``), so that its loop and
    the bench's client never share a GIL.

    ``factory`` is ``"module:function"``, an ``async def`` taking ``kwargs`` and returning the
    ``tornado.web.Application`` to serve (on the child's loop, so it may call ``install()``)::

        with ChildServer("bench.wrk:hello_app", exporter=True) as server:
            urlopen(f"{server.url}/")
    """

    def __init__(self, factory: str, **kwargs: object) -> None:
        self.factory = factory
        self.kwargs = kwargs
        self.port = 0
        context = multiprocessing.get_context("spawn")
        self._parent, child = context.Pipe()
        self._process = context.Process(
            target=_serve_child, args=(factory, kwargs, child), name=f"bench-{factory}", daemon=True
        )

    @property
    def url(self) -> str:
        """Base URL of the served app."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        """Process id of the child (for CPU accounting or a profiler), once started."""
        return self._process.pid

    def start(self) -> ChildServer:
        """Start the child without waiting for it (``with`` waits): start several, then enter
        each, and they boot in parallel."""
        if self._process.pid is None:
            self._process.start()
        return self

    def __enter__(self) -> ChildServer:
        self.start()
        if not self._parent.poll(60):
            self._process.kill()
            raise RuntimeError(f"{self.factory} did not start within 60 s")
        try:
            reply = self._parent.recv()
        except EOFError:  # died before it could say why (its traceback is on stderr)
            self._process.join(10)
            raise RuntimeError(f"{self.factory} exited with {self._process.exitcode}") from None
        if isinstance(reply, BaseException):
            self._process.join(10)
            raise RuntimeError(f"{self.factory} failed to start") from reply
        self.port = reply
        return self

    def __exit__(self, *exc: object) -> None:
        self._process.terminate()
        self._process.join(10)
        if self._process.is_alive():
            self._process.kill()
            self._process.join()


def _serve_child(factory: str, kwargs: dict, conn: Connection) -> None:
    module_name, _, function_name = factory.partition(":")

    async def serve() -> None:
        try:
            build = getattr(importlib.import_module(module_name), function_name)
            app = await build(**kwargs)
            server = app.listen(0, address="127.0.0.1")
            port = next(iter(server._sockets.values())).getsockname()[1]
        except BaseException as error:  # handed to the parent, which raises it
            conn.send(error)
            raise
        conn.send(port)
        await asyncio.Event().wait()  # serve until the parent terminates us

    asyncio.run(serve())
