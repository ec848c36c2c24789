"""Event-loop health: how late a periodic probe runs, and how many asyncio tasks are alive."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Sequence

from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from ..buckets import BucketCounts, add_histogram


class IOLoopProbe(Collector):
    """``<ns>_ioloop_lag_seconds`` and ``<ns>_asyncio_tasks``.

    A callback asks to run every ``interval`` seconds and records how late it actually ran: a
    handler that blocks the loop for 300 ms shows up as one observation of about 0.3 s. The
    task count is read at scrape time (one pass over asyncio's weak task set).
    """

    def __init__(
        self,
        namespace: str,
        *,
        loop: asyncio.AbstractEventLoop,
        interval: float,
        buckets: Sequence[float],
    ) -> None:
        self._ns = namespace
        self._loop = loop
        self._interval = interval
        self.lag = BucketCounts(buckets)
        self._handle: asyncio.TimerHandle | None = None
        self._due = 0.0

    def start(self) -> None:
        """Start probing; must be called on the loop's thread."""
        if self._handle is None:
            self._schedule(self._loop.time())

    def stop(self) -> None:
        """Stop probing (safe to call twice)."""
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _schedule(self, now: float) -> None:
        self._due = now + self._interval
        self._handle = self._loop.call_at(self._due, self._tick)

    def _tick(self) -> None:
        now = self._loop.time()
        self.lag.observe(max(0.0, now - self._due))
        self._schedule(now)

    def _families(self) -> tuple[HistogramMetricFamily, GaugeMetricFamily]:
        return (
            HistogramMetricFamily(
                f"{self._ns}_ioloop_lag_seconds",
                "How late a periodic probe ran on the IOLoop: time the loop was blocked.",
            ),
            GaugeMetricFamily(f"{self._ns}_asyncio_tasks", "Live asyncio tasks on the IOLoop."),
        )

    def describe(self) -> Iterator[Metric]:
        yield from self._families()

    def collect(self) -> Iterator[Metric]:
        lag, tasks = self._families()
        add_histogram(lag, [], self.lag)
        yield lag
        if not self._loop.is_closed():
            tasks.add_metric([], len(asyncio.all_tasks(self._loop)))
            yield tasks
