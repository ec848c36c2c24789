"""The garbage collector's own counters: generation counts, thresholds, collections, garbage."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from types import ModuleType
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector


class GCStatsCollector(Collector):
    """``<ns>_gc_*`` from ``gc.get_count()``, ``gc.get_threshold()``, ``gc.get_stats()``,
    ``gc.garbage`` and ``gc.get_freeze_count()``: O(1) reads, no heap walk.

    Generation labels come from ``len(gc.get_stats())``, so an interpreter with a different
    number of generations is described as it is. ``gc_module`` lets tests pass a fake.
    """

    def __init__(self, namespace: str, *, gc_module: ModuleType | Any = gc) -> None:
        self._ns = namespace
        self._gc = gc_module

    def _families(self) -> dict[str, Any]:
        ns, gen = self._ns, ["generation"]
        return {
            "count": GaugeMetricFamily(
                f"{ns}_gc_generation_objects",
                "Collection counter of each generation (gc.get_count()): allocations since the last "
                "gen-0 collection, or collections of the younger generation since its own last one.", labels=gen),
            "threshold": GaugeMetricFamily(
                f"{ns}_gc_threshold", "Collection threshold of each generation.", labels=gen),
            "collections": CounterMetricFamily(
                f"{ns}_gc_collections", "Collections of each generation.", labels=gen),
            "collected": CounterMetricFamily(
                f"{ns}_gc_collected_objects", "Objects freed by collections of each generation.", labels=gen),
            "uncollectable": CounterMetricFamily(
                f"{ns}_gc_uncollectable_objects",
                "Objects found uncollectable by collections of each generation.", labels=gen),
            "garbage": GaugeMetricFamily(
                f"{ns}_gc_garbage_objects", "Objects in gc.garbage (uncollectable, kept for inspection)."),
            "frozen": GaugeMetricFamily(
                f"{ns}_gc_frozen_objects", "Objects moved to the permanent generation by gc.freeze()."),
        }

    def describe(self) -> Iterator[Metric]:
        yield from self._families().values()

    def collect(self) -> Iterator[Metric]:
        f = self._families()
        stats = self._gc.get_stats()
        counts = self._gc.get_count()
        thresholds = self._gc.get_threshold()
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
