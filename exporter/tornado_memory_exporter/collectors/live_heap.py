"""The live Python heap after a full collection: the floor under the allocation sawtooth."""

from __future__ import annotations

import gc
import sys
import time
from collections.abc import Callable, Iterator

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ..faults import Faults
from .gc_hook import GCHook


class LiveHeapRecorder(Collector):
    """``<ns>_python_allocated_blocks_after_gc`` and
    ``<ns>_gc_last_full_collection_timestamp_seconds``: ``sys.getallocatedblocks()`` as it was
    at the end of the last collection of the oldest generation, and when that was (the JVM's
    ``used_after_last_gc``, Go's ``/gc/heap/live:bytes``). Both are absent until a full
    collection has run; the library never starts one.

    The ``gc.callbacks`` hook acts only on ``stop`` of the oldest generation and writes two
    slots of a preallocated list: no lock, no logging, no metric object
    (prometheus/client_python#322). The count is written before the time and a scrape reads the
    time first, so a scrape racing a collection may serve the new count beside the old time for
    one scrape, never an old count beside a new time. Failures are counted in a plain int and
    reported to ``faults`` at the next scrape.

    Under the incremental collector of CPython 3.14.0-3.14.4 automatic collections of the old
    generation are increments reported as generation 1: only an explicit ``gc.collect()`` (the
    app's) ends a full collection there, so the gauge moves rarely.

    No ``<ns>_process_resident_memory_after_gc_bytes``: every way of reading the resident set
    on Linux is a system call (``read`` of ``/proc/self/statm`` even on a kept descriptor;
    ``getrusage`` gives only the peak), and a gc callback runs inside whatever allocation
    triggered the collection, in any thread: a system call there stalls that allocation and
    may block on the kernel (procfs under memory pressure), which the observer must not do.
    """

    def __init__(
        self,
        namespace: str,
        faults: Faults,
        *,
        generations: int | None = None,
        callbacks: list | None = None,
        allocated_blocks: Callable[[], int] = sys.getallocatedblocks,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._ns = namespace
        count = generations if generations is not None else len(gc.get_stats())
        self._oldest = count - 1
        self._allocated_blocks = allocated_blocks
        self._clock = clock
        self._last: list[float] = [0, 0.0]  # [blocks, unix time]; time 0.0: none seen yet
        self._hook = GCHook("live_heap", faults, self._on_gc, callbacks)

    def start(self) -> None:
        """Hook into the collector (idempotent)."""
        self._hook.start()

    def stop(self) -> None:
        """Unhook; the last value stays readable."""
        self._hook.stop()

    def _on_gc(self, phase: str, info: dict) -> None:
        try:
            if phase == "stop" and info["generation"] == self._oldest:
                self._last[0] = self._allocated_blocks()
                self._last[1] = self._clock()
        except Exception:  # noqa: BLE001 - never raise into the collector
            self._hook.failures += 1

    def _families(self) -> tuple[GaugeMetricFamily, GaugeMetricFamily]:
        return (
            GaugeMetricFamily(
                f"{self._ns}_python_allocated_blocks_after_gc",
                "sys.getallocatedblocks() at the end of the last collection of the oldest "
                "generation: the live Python heap without the garbage of the sawtooth.",
            ),
            GaugeMetricFamily(
                f"{self._ns}_gc_last_full_collection_timestamp_seconds",
                "When the last collection of the oldest generation ended (Unix time).",
            ),
        )

    def describe(self) -> Iterator[Metric]:
        yield from self._families()

    def collect(self) -> Iterator[Metric]:
        self._hook.report()
        at = self._last[1]  # the time first: see the class docstring
        blocks = self._last[0]
        if at:
            blocks_family, at_family = self._families()
            blocks_family.add_metric([], blocks)
            at_family.add_metric([], at)
            yield blocks_family
            yield at_family
