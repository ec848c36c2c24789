"""GC pause times, recorded from ``gc.callbacks`` into plain state and exported at scrape time."""

from __future__ import annotations

import gc
from collections.abc import Iterator, Sequence
from time import perf_counter

from prometheus_client.core import HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from ..buckets import BucketCounts, add_histogram
from ..faults import Faults
from .gc_hook import GCHook


class GCPauseRecorder(Collector):
    """``<ns>_gc_pause_seconds{generation}``: wall time of each collection, per generation.

    The callback only reads the clock and bumps preallocated list slots: no lock, no logging,
    no prometheus_client metric object (prometheus/client_python#322). A failure inside it is
    counted in a plain int and reported to ``faults`` at the next scrape. Where the interpreter
    times the collection itself (3.15's ``duration`` in the callback info) that figure is used:
    it leaves out the other callbacks' time that our clock pair would include.
    """

    def __init__(
        self,
        namespace: str,
        faults: Faults,
        *,
        buckets: Sequence[float],
        generations: int | None = None,
        callbacks: list | None = None,
    ) -> None:
        self._name = f"{namespace}_gc_pause_seconds"
        count = generations if generations is not None else len(gc.get_stats())
        self._states = [BucketCounts(buckets) for _ in range(count)]
        self._started: float | None = None
        self._hook = GCHook("gc_pauses", faults, self._on_gc, callbacks)

    def start(self) -> None:
        """Hook into the collector (idempotent)."""
        self._hook.start()

    def stop(self) -> None:
        """Unhook; recorded pauses stay readable."""
        self._hook.stop()

    @property
    def failures(self) -> int:
        """Failures of the callback so far (reported to ``faults`` at the next scrape)."""
        return self._hook.failures

    def _on_gc(self, phase: str, info: dict) -> None:
        try:
            if phase == "start":
                self._started = perf_counter()
                return
            started, self._started = self._started, None
            duration = info.get("duration")
            if duration is None and started is not None:
                duration = perf_counter() - started
            if duration is not None:
                self._states[info["generation"]].observe(duration)
        except Exception:  # noqa: BLE001 - never raise into the collector
            self._hook.failures += 1

    def _family(self) -> HistogramMetricFamily:
        return HistogramMetricFamily(
            self._name, "Wall time of garbage collections, by generation.", labels=["generation"]
        )

    def describe(self) -> Iterator[Metric]:
        yield self._family()

    def collect(self) -> Iterator[Metric]:
        self._hook.report()
        family = self._family()
        for generation, state in enumerate(self._states):
            add_histogram(family, [str(generation)], state)
        yield family
