"""Event-loop utilisation: the time the loop spent running callbacks rather than waiting for I/O."""

from __future__ import annotations

import asyncio
import selectors
from collections.abc import Callable, Iterator
from time import perf_counter
from typing import Any

from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from ..faults import log


class LoopBusyMeter(Collector):
    """``<ns>_ioloop_busy_seconds_total``: ``rate()`` of it is the loop's utilisation (0 to 1),
    Node's event-loop utilisation: near 1 is a CPU-bound loop (scale out), a low figure with
    high ``<ns>_ioloop_lag_seconds`` is a loop idle but blocked now and then.

    How: an asyncio selector loop spends its idle time in exactly one place, the selector's
    ``select(timeout)``; every other moment it runs callbacks, its own bookkeeping or
    collections. ``start()`` shadows the selector's ``select`` with a wrapper that notes the
    clock on the way in and out of every ``select`` that may wait, and busy time is what lies
    between one such wait ending and the next one starting. A ``select(0)`` (callbacks ready,
    or a timer due: the loop polls without waiting) is left untimed and counts as busy, so a
    saturated loop pays one Python call and a comparison per iteration, and an idle one two
    clock reads per wait (not per callback): ``python -m bench.loop_busy`` measures both.

    Limits, stated:
    - it reads the loop's private ``_selector`` attribute (asyncio publishes no hook for this;
      no private asyncio function is called): a loop without one (uvloop, the proactor loop,
      Tornado's selector thread on Windows) is not measured: the series is then absent and
      the reason logged once;
    - time between two runs of a stopped loop (``run_until_complete`` and the next) counts as
      busy: Tornado apps run one loop forever, where this never arises;
    - the selector's own event translation after the system call returns counts as idle
      (microseconds per iteration);
    - a loop blocked in a callback shows its blocked time at a scrape taken meanwhile from
      another thread, since busy time runs from the last ``select`` exit to "now";
    - under ``start_in_thread()`` the loop measured is the exporter's own (as for the lag).

    ``stop()`` restores what it wrapped; if something else wrapped the selector after us, our
    wrapper stays in its chain but only passes calls through.
    """

    def __init__(
        self,
        namespace: str,
        *,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self._name = f"{namespace}_ioloop_busy_seconds"
        self._loop = loop
        # Busy seconds up to the last wait's start, and the clock when the last wait ended
        # (None during a wait). Written by the loop's thread, read by scrapes on any thread:
        # see _busy() for why two plain attributes are safe.
        self._busy_before = 0.0
        self._exited: float | None = perf_counter()
        self._reported = 0.0
        self._selector: selectors.BaseSelector | None = None
        self._wrapper: Callable[..., Any] | None = None
        self._shadowed: Callable[..., Any] | None = None  # an instance attribute we replaced
        self._measuring = False
        self.unmeasured: str | None = None
        """Why the loop is not measured (series absent), or ``None``."""

    def start(self) -> None:
        """Wrap the loop's selector (idempotent); on a loop it cannot measure, log why once."""
        if self._measuring:
            return
        reason = self._refusal()
        if reason is not None:
            if self.unmeasured is None:
                log.info("%s is not served: %s", self._name, reason)
            self.unmeasured = reason
            return
        selector = self._loop._selector  # type: ignore[attr-defined]
        inner = selector.select
        self._shadowed = vars(selector).get("select")
        self._wrapper = self._timed(inner)
        selector.select = self._wrapper
        self._selector = selector
        self._busy_before, self._exited = self._reported, perf_counter()
        self._measuring = True

    def stop(self) -> None:
        """Unwrap the selector (safe to call twice); the count so far stays readable."""
        if not self._measuring:
            return
        self._reported = self._busy()
        self._measuring = False  # a wrapper left in someone else's chain now only passes through
        selector = self._selector
        if selector is not None and vars(selector).get("select") is self._wrapper:
            if self._shadowed is not None:
                selector.select = self._shadowed
            else:
                del selector.select
        self._selector = self._wrapper = self._shadowed = None

    def _refusal(self) -> str | None:
        # Why: asyncio has no public hook around the wait; reading the attribute (never calling a
        # private function) and checking its type means a loop built otherwise degrades to an
        # absent series, not an error.
        selector = getattr(self._loop, "_selector", None)
        loop_type = f"{type(self._loop).__module__}.{type(self._loop).__qualname__}"
        if not isinstance(selector, selectors.BaseSelector):
            return f"the loop ({loop_type}) has no Python selector to time (uvloop, proactor)"
        return None

    def _timed(self, select: Callable[..., Any]) -> Callable[..., Any]:
        clock, meter = perf_counter, self

        def timed_select(timeout: float | None = None) -> Any:
            # timeout 0: callbacks are ready or a timer is due, so this poll is part of the
            # loop's work, not a wait. Leaving it untimed keeps a saturated loop (every
            # iteration polls) at one comparison per iteration instead of two clock reads.
            if timeout == 0 or not meter._measuring:
                return select(timeout)
            entered = clock()
            exited = meter._exited
            if exited is not None:
                meter._busy_before += entered - exited
            meter._exited = None
            try:
                return select(timeout)
            finally:
                meter._exited = clock()

        return timed_select

    def _busy(self) -> float:
        # Read the clock, then the busy seconds, then the wait's end: a wait starting or ending
        # between these reads can only make the figure smaller than the truth (never count an
        # interval twice), and the clamp below keeps the counter from going down meanwhile.
        now = perf_counter()
        busy = self._busy_before
        exited = self._exited
        if exited is not None:
            busy += max(0.0, now - exited)
        self._reported = max(self._reported, busy)
        return self._reported

    def _family(self) -> CounterMetricFamily:
        return CounterMetricFamily(
            self._name,
            "Seconds the IOLoop spent running callbacks rather than waiting for I/O "
            "(rate() is its utilisation, 0-1).",
        )

    def describe(self) -> Iterator[Metric]:
        yield self._family()

    def collect(self) -> Iterator[Metric]:
        if self._measuring:
            family = self._family()
            family.add_metric([], self._busy())
            yield family
