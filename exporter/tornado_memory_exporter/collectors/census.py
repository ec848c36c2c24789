"""The heap census as Prometheus metrics, read from the latest published snapshot."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from ..census.snapshot import CensusSnapshot


class CensusCollector(Collector):
    """``<ns>_objects{type}`` (reachable ones when forked), ``<ns>_unreachable_objects{type}``,
    ``<ns>_object_holder_info``, ``<ns>_ioloop_timers{callback}``, ``<ns>_gc_tracked_objects``
    and the census self-metrics.

    ``snapshot()`` returns the latest :class:`~.census.CensusSnapshot` or ``None``: before the
    first census the families are empty (no made-up zeros; a census that never succeeds shows
    only in ``<ns>_exporter_errors_total{collector="census"}``). A scrape costs one pass over
    the bounded exported set. ``<ns>_census_interval_seconds`` is exported from the start, so
    that alerts can tell a census that never succeeds from one that is disabled (0).
    """

    MODES = ("fork", "inloop")

    def __init__(
        self,
        namespace: str,
        snapshot: Callable[[], CensusSnapshot | None],
        fallbacks: Callable[[], Mapping[str, int]] = dict,
        interval: float = 0.0,
    ) -> None:
        self._ns = namespace
        self._snapshot = snapshot
        self._fallbacks = fallbacks
        self._interval = interval

    def _families(self) -> dict[str, GaugeMetricFamily]:
        ns = self._ns
        return {
            "objects": GaugeMetricFamily(
                f"{ns}_objects",
                "Live objects by type (module.QualName; builtins bare) at the last heap census "
                "(gc-tracked ones in the loop, garbage included; forked, reachable ones only and "
                "the untracked ones they reach too): top by count, bytes and growth, allowlist; "
                'type="other" holds the rest.',
                labels=["type"],
            ),
            "bytes": GaugeMetricFamily(
                f"{ns}_object_bytes",
                "Shallow bytes (sys.getsizeof) of the live objects by type at the last forked "
                'census, on the label set of <ns>_objects; type="other" holds the rest.',
                labels=["type"],
            ),
            "unreachable": GaugeMetricFamily(
                f"{ns}_unreachable_objects",
                "Unreachable objects by type at the last forked census: reference cycles (and what "
                "only they hold) waiting for the garbage collector, not leaks; same label rules "
                'as <ns>_objects, type="other" holds the rest.',
                labels=["type"],
            ),
            "unreachable_bytes": GaugeMetricFamily(
                f"{ns}_unreachable_object_bytes",
                "Shallow bytes of the unreachable objects by type at the last forked census, on "
                'the label set of <ns>_unreachable_objects; type="other" holds the rest.',
                labels=["type"],
            ),
            "unreachable_total": GaugeMetricFamily(
                f"{ns}_census_unreachable_objects",
                "Unreachable objects (garbage waiting for the collector) at the last forked "
                "census, all types (sum of <ns>_unreachable_objects).",
            ),
            "unreachable_total_bytes": GaugeMetricFamily(
                f"{ns}_census_unreachable_bytes",
                "Shallow bytes of the unreachable objects at the last forked census, all types.",
            ),
            "reachability": GaugeMetricFamily(
                f"{ns}_census_reachability",
                "1 when the last census told reachable objects from garbage (forked: "
                "<ns>_objects counts reachable objects only), 0 when it could not (in the loop: "
                "<ns>_objects includes garbage waiting for the collector).",
            ),
            "holder": GaugeMetricFamily(
                f"{ns}_object_holder_info",
                "1 for what keeps a growing type (or a handler class with reachable finished or "
                "closed instances) alive: the shortest path from a root to a sample instance, "
                "named by code (module global, class attribute, container kind), never content.",
                labels=["type", "holder"],
            ),
            "timers": GaugeMetricFamily(
                f"{ns}_ioloop_timers",
                "Timers scheduled (not cancelled) on the IOLoop by callback (module.qualname) at "
                'the last census; callback="other" holds the rest.',
                labels=["callback"],
            ),
            "untracked": GaugeMetricFamily(
                f"{ns}_gc_untracked_objects",
                "Objects not tracked by gc that the last forked census reached and counted.",
            ),
            "mode": GaugeMetricFamily(
                f"{ns}_census_mode",
                "1 for where the last heap census ran (fork: a forked child; inloop: IOLoop "
                "slices).",
                labels=["mode"],
            ),
            "child_memory": GaugeMetricFamily(
                f"{ns}_census_child_memory_bytes",
                "Private memory of the last census child at the end of its count (pages copied on "
                "write plus its own), the memory a forked census costs.",
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

    def _fallback_family(self) -> CounterMetricFamily:
        return CounterMetricFamily(
            f"{self._ns}_census_fallbacks",
            "Censuses meant to fork that ran in the loop, by reason (unsupported, headroom, "
            "fork_error, deadline, child_error).",
            labels=["reason"],
        )

    def _interval_family(self) -> GaugeMetricFamily:
        return GaugeMetricFamily(
            f"{self._ns}_census_interval_seconds",
            "Seconds between scheduled heap censuses (Config.census_interval); 0: the census "
            "is disabled.",
            value=self._interval,
        )

    def describe(self) -> Iterator[Metric]:
        yield self._interval_family()
        yield from self._families().values()
        yield self._fallback_family()

    def collect(self) -> Iterator[Metric]:
        yield self._interval_family()
        f = self._families()
        fallbacks = self._fallbacks()
        if fallbacks:
            family = self._fallback_family()
            for reason, n in sorted(fallbacks.items()):
                family.add_metric([reason], n)
            yield family
        s = self._snapshot()
        if s is None:
            return
        for name, count in sorted(s.objects.items()):
            f["objects"].add_metric([name], count)
        for name, size in sorted((s.sizes or {}).items()):
            f["bytes"].add_metric([name], size)
        if s.unreachable is not None:
            for name, count in sorted(s.unreachable.items()):
                f["unreachable"].add_metric([name], count)
            f["unreachable_total"].add_metric([], sum(s.unreachable.values()))
        if s.unreachable_sizes is not None:
            for name, size in sorted(s.unreachable_sizes.items()):
                f["unreachable_bytes"].add_metric([name], size)
            f["unreachable_total_bytes"].add_metric([], sum(s.unreachable_sizes.values()))
        f["reachability"].add_metric([], 1.0 if s.reachability else 0.0)
        for name, holder in sorted(s.holders.items()):
            f["holder"].add_metric([name, holder], 1.0)
        for callback, count in sorted(s.timers.items()):
            f["timers"].add_metric([callback], count)
        if s.untracked is not None:
            f["untracked"].add_metric([], s.untracked)
        if s.child_private_bytes is not None:
            f["child_memory"].add_metric([], s.child_private_bytes)
        for mode in self.MODES:
            f["mode"].add_metric([mode], 1.0 if s.mode == mode else 0.0)
        f["tracked"].add_metric([], s.tracked)
        f["scanned"].add_metric([], s.scanned)
        f["duration"].add_metric([], s.duration)
        f["stall"].add_metric([], s.max_stall)
        f["last"].add_metric([], s.finished_at)
        yield from (family for family in f.values() if family.samples)
