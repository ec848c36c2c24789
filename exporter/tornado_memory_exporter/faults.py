"""Containment of failing sources: count every failure, log a source at most once per interval."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

log = logging.getLogger("tornado_memory_exporter")

T = TypeVar("T")


class Faults:
    """Per-source failure counts, plus rate-limited logging.

    Plain dicts and ints only: it is written from scrapes, timers and gc callbacks, and must
    never block or raise itself.
    """

    def __init__(
        self,
        *,
        log_interval: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        sources: Iterable[str] = (),
    ) -> None:
        self.log_interval = log_interval
        self._clock = clock
        self.counts: dict[str, int] = dict.fromkeys(sources, 0)
        self._last_logged: dict[str, float] = {}

    def declare(self, source: str) -> None:
        """Make ``source`` appear with a zero count before it ever fails."""
        self.counts.setdefault(source, 0)

    def record(self, source: str, error: BaseException, count: int = 1) -> None:
        """Count ``count`` failures of ``source``; log unless it was logged within the interval."""
        self.counts[source] = self.counts.get(source, 0) + count
        now = self._clock()
        last = self._last_logged.get(source)
        if last is None or now - last >= self.log_interval:
            self._last_logged[source] = now
            log.warning(
                "metrics source %r failed (%d failures so far; logged at most every %gs): %s: %s",
                source,
                self.counts[source],
                self.log_interval,
                type(error).__name__,
                error,
            )

    def call(self, source: str, func: Callable[[], T], default: T) -> T:
        """Return ``func()``, or ``default`` after recording the failure."""
        try:
            return func()
        except Exception as error:  # noqa: BLE001 - containment is the point
            self.record(source, error)
            return default


class GuardedCollector(Collector):
    """Wrap a collector so that its failure costs only its own metrics, never the scrape.

    The inner collector's output is materialised inside the guard: a failure half-way through
    yields nothing of it rather than a half-written family.
    """

    def __init__(self, source: str, inner: Collector, faults: Faults) -> None:
        self.source = source
        self.inner = inner
        self._faults = faults
        faults.declare(source)

    def describe(self) -> Iterable[Metric]:
        describe = getattr(self.inner, "describe", None)
        return describe() if describe is not None else []

    def collect(self) -> Iterable[Metric]:
        return self._faults.call(self.source, lambda: list(self.inner.collect()), [])


class FaultsCollector(Collector):
    """``<ns>_exporter_errors_total{collector}``."""

    def __init__(self, namespace: str, faults: Faults) -> None:
        self._name = f"{namespace}_exporter_errors"
        self._faults = faults

    def _family(self) -> CounterMetricFamily:
        return CounterMetricFamily(
            self._name,
            "Failures of a metrics source, by source; its other metrics are still served.",
            labels=["collector"],
        )

    def describe(self) -> Iterator[Metric]:
        yield self._family()

    def collect(self) -> Iterator[Metric]:
        family = self._family()
        for source, count in sorted(self._faults.counts.items()):
            family.add_metric([source], count)
        yield family
