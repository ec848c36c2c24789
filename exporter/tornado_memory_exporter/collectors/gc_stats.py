"""The garbage collector's own counters: generation counts, thresholds, collections, garbage."""

from __future__ import annotations

import gc
import sys
from collections.abc import Iterator, Sequence
from types import ModuleType
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector


class GCStatsCollector(Collector):
    """``<ns>_gc_*`` from ``gc.get_count()``, ``gc.get_threshold()``, ``gc.get_stats()``,
    ``gc.garbage`` and ``gc.get_freeze_count()``: O(1) reads, no heap walk.

    Generation labels come from ``len(gc.get_stats())``, so an interpreter with a different
    number of generations is described as it is. Under the incremental collector of CPython
    3.14.0-3.14.4 (two generations, young and old, behind the same three-slot API) only
    generation 0's count and threshold keep their meaning: the second threshold is the old
    generation's scan rate and the third is always 0, so neither is exported as a threshold.
    Extra keys in ``get_stats()`` (3.15's ``duration``, ``candidates``) are ignored.
    ``gc_module`` and ``version_info`` let tests pass the shapes of other interpreters.
    """

    def __init__(
        self,
        namespace: str,
        *,
        gc_module: ModuleType | Any = gc,
        version_info: Sequence[int] = sys.version_info,
    ) -> None:
        self._ns = namespace
        self._gc = gc_module
        # Slots of get_count()/get_threshold() that mean what the metric's help says.
        self._meaningful = 1 if incremental_gc(version_info) else None

    def _families(self) -> dict[str, Any]:
        ns, gen = self._ns, ["generation"]
        return {
            "count": GaugeMetricFamily(
                f"{ns}_gc_generation_objects",
                "Collection counter of each generation (gc.get_count()): allocations since "
                "the last gen-0 collection, or collections of the younger generation since "
                "its own last one.",
                labels=gen,
            ),
            "threshold": GaugeMetricFamily(
                f"{ns}_gc_threshold", "Collection threshold of each generation.", labels=gen
            ),
            "collections": CounterMetricFamily(
                f"{ns}_gc_collections", "Collections of each generation.", labels=gen
            ),
            "collected": CounterMetricFamily(
                f"{ns}_gc_collected_objects",
                "Objects freed by collections of each generation.",
                labels=gen,
            ),
            "uncollectable": CounterMetricFamily(
                f"{ns}_gc_uncollectable_objects",
                "Objects found uncollectable by collections of each generation.",
                labels=gen,
            ),
            "garbage": GaugeMetricFamily(
                f"{ns}_gc_garbage_objects",
                "Objects in gc.garbage (uncollectable, kept for inspection).",
            ),
            "frozen": GaugeMetricFamily(
                f"{ns}_gc_frozen_objects",
                "Objects moved to the permanent generation by gc.freeze().",
            ),
        }

    def describe(self) -> Iterator[Metric]:
        yield from self._families().values()

    def collect(self) -> Iterator[Metric]:
        f = self._families()
        stats = self._gc.get_stats()
        counts = self._gc.get_count()[: self._meaningful]
        thresholds = self._gc.get_threshold()[: self._meaningful]
        for generation, stat in enumerate(stats):
            label = [str(generation)]
            f["collections"].add_metric(label, stat["collections"])
            f["collected"].add_metric(label, stat["collected"])
            f["uncollectable"].add_metric(label, stat["uncollectable"])
            if generation < len(counts):
                f["count"].add_metric(label, counts[generation])
            if generation < len(thresholds):
                f["threshold"].add_metric(label, thresholds[generation])
        f["garbage"].add_metric([], len(self._gc.garbage))
        f["frozen"].add_metric([], self._gc.get_freeze_count())
        yield from f.values()


def incremental_gc(version_info: Sequence[int]) -> bool:
    """Whether this CPython runs the incremental collector (3.14.0-3.14.4; 3.14.5 reverted it)."""
    return (3, 14, 0) <= tuple(version_info[:3]) < (3, 14, 5)
