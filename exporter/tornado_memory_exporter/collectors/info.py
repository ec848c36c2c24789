"""``<ns>_exporter_info``: which versions produced these metrics."""

from __future__ import annotations

import platform
from collections.abc import Iterator

import tornado
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ..about import __version__


class InfoCollector(Collector):
    """A constant gauge of 1 labelled with the exporter, Python and Tornado versions."""

    def __init__(self, namespace: str) -> None:
        self._name = f"{namespace}_exporter_info"
        self._labels = {
            "version": __version__,
            "python": platform.python_version(),
            "tornado": tornado.version,
        }

    def _family(self) -> GaugeMetricFamily:
        return GaugeMetricFamily(
            self._name,
            "Versions of tornado-memory-exporter, Python and Tornado.",
            labels=list(self._labels),
        )

    def describe(self) -> Iterator[Metric]:
        yield self._family()

    def collect(self) -> Iterator[Metric]:
        family = self._family()
        family.add_metric(list(self._labels.values()), 1)
        yield family
