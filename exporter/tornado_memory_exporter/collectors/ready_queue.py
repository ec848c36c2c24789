"""Callbacks queued on the IOLoop to run now: a backlog the loop has not caught up with."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Iterator

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ..faults import log


class ReadyCallbacks(Collector):
    """``<ns>_ioloop_ready_callbacks``: callbacks the loop will run in its next iterations
    without waiting (``call_soon``, Tornado's ``add_callback``, futures' done callbacks, task
    steps), read at scrape time as ``len()`` of the loop's ready queue: O(1), nothing copied.

    The queue is asyncio's private ``_ready`` attribute: asyncio publishes no count of it.
    Issue 19 bans private asyncio *calls* (behaviour that may change under us); this is a read
    of one attribute, checked to be a ``deque`` at every scrape, so a loop built otherwise
    (uvloop, a future asyncio) costs the series, never an error: it is then absent and the
    reason logged once. Cancelled handles still in the queue count until the loop skips them.
    """

    def __init__(self, namespace: str, *, loop: asyncio.AbstractEventLoop) -> None:
        self._name = f"{namespace}_ioloop_ready_callbacks"
        self._loop = loop
        self.unmeasured: str | None = None
        """Why the queue cannot be read (series absent), or ``None``."""
        self._queue()

    def _queue(self) -> deque | None:
        # Why the private attribute: see the class docstring; only ever read, never called.
        queue = getattr(self._loop, "_ready", None)
        if isinstance(queue, deque):
            return queue
        if self.unmeasured is None:
            loop_type = f"{type(self._loop).__module__}.{type(self._loop).__qualname__}"
            self.unmeasured = f"the loop ({loop_type}) has no ready queue to read (uvloop)"
            log.info("%s is not served: %s", self._name, self.unmeasured)
        return None

    def _family(self) -> GaugeMetricFamily:
        return GaugeMetricFamily(
            self._name, "Callbacks queued on the IOLoop to run now (its ready queue)."
        )

    def describe(self) -> Iterator[Metric]:
        yield self._family()

    def collect(self) -> Iterator[Metric]:
        queue = self._queue()
        if queue is not None:
            family = self._family()
            family.add_metric([], len(queue))
            yield family
