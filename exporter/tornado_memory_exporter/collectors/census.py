"""The heap census as Prometheus metrics, read from the latest published snapshot."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from ..census.snapshot import CensusSnapshot


class CensusCollector(Collector):
    """``<ns>_objects{type}``, ``<ns>_gc_tracked_objects`` and the census self-metrics.

    ``snapshot()`` returns the latest :class:`~.census.CensusSnapshot` or ``None``: before the
    first census the families are empty (no made-up zeros; a census that never succeeds shows
    only in ``<ns>_exporter_errors_total{collector="census"}``). A scrape costs one pass over
    the bounded exported set. ``<ns>_census_interval_seconds`` is exported from the start, so
    that alerts can tell a census that never succeeds from one that is disabled (0).
    """

    def __init__(self, namespace: str, snapshot: Callable[[], CensusSnapshot | None],
                 interval: float = 0.0) -> None:
        self._ns = namespace
        self._snapshot = snapshot
        self._interval = interval

    def _families(self) -> dict[str, GaugeMetricFamily]:
        ns = self._ns
        return {
            "objects": GaugeMetricFamily(
                f"{ns}_objects",
                "Live gc-tracked objects by type (module.QualName; builtins bare) at the last heap "
                'census: top by count, top by growth, allowlist; type="other" holds the rest.',
                labels=["type"],
            ),
            "tracked": GaugeMetricFamily(
                f"{ns}_gc_tracked_objects",
                "Objects tracked by the garbage collector (len(gc.get_objects())), last census.",
            ),
            "scanned": GaugeMetricFamily(
                f"{ns}_census_objects_scanned",
                "Objects counted by the last heap census (sum of <ns>_objects over type).",
            ),
            "duration": GaugeMetricFamily(
                f"{ns}_census_duration_seconds", "Wall time of the last heap census."
            ),
            "stall": GaugeMetricFamily(
                f"{ns}_census_max_stall_seconds",
                "Longest time one slice of the last heap census held the IOLoop (the "
                "gc.get_objects() enumeration included).",
            ),
            "last": GaugeMetricFamily(
                f"{ns}_census_last_success_timestamp_seconds",
                "Unix time the last successful heap census was published.",
            ),
        }

    def _interval_family(self) -> GaugeMetricFamily:
        return GaugeMetricFamily(
            f"{self._ns}_census_interval_seconds",
            "Seconds between scheduled heap censuses (Config.census_interval); 0: the census is disabled.",
            value=self._interval,
        )

    def describe(self) -> Iterator[Metric]:
        yield self._interval_family()
        yield from self._families().values()

    def collect(self) -> Iterator[Metric]:
        yield self._interval_family()
        f = self._families()
        s = self._snapshot()
        if s is None:
            return
        for name, count in sorted(s.objects.items()):
            f["objects"].add_metric([name], count)
        f["tracked"].add_metric([], s.tracked)
        f["scanned"].add_metric([], s.scanned)
        f["duration"].add_metric([], s.duration)
        f["stall"].add_metric([], s.max_stall)
        f["last"].add_metric([], s.finished_at)
        yield from f.values()
