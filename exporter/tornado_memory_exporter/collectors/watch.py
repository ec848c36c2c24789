"""``<ns>_watched_object_items{name}`` and ``<ns>_watched_object_bytes{name}``, read from the
watch list's latest readings (measured by the census, ``census.watchlist``)."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ..census.watchlist import Watchlist


class WatchCollector(Collector):
    """``<ns>_watched_object_items{name}`` and ``<ns>_watched_object_bytes{name}``."""

    def __init__(self, namespace: str, watchlist: Watchlist) -> None:
        self._ns = namespace
        self._watchlist = watchlist

    def _families(self) -> tuple[GaugeMetricFamily, GaugeMetricFamily]:
        return (
            GaugeMetricFamily(
                f"{self._ns}_watched_object_items",
                "len() of an object registered with exporter.watch(), at the last heap census.",
                labels=["name"],
            ),
            GaugeMetricFamily(
                f"{self._ns}_watched_object_bytes",
                "Deep size (pympler asizeof, extrapolated from a prefix for large containers) of "
                "an object registered with exporter.watch(), at the last heap census.",
                labels=["name"],
            ),
        )

    def describe(self) -> Iterator[Metric]:
        yield from self._families()

    def collect(self) -> Iterator[Metric]:
        items, size = self._families()
        for name, reading in sorted(self._watchlist.readings().items()):
            if reading.items is not None:
                items.add_metric([name], reading.items)
            if reading.bytes is not None:
                size.add_metric([name], reading.bytes)
        yield items
        yield size
