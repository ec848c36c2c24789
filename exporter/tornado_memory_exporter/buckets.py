"""Histogram state safe to write from a gc callback: plain lists, no lock, no metric object."""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Sequence

from prometheus_client.core import HistogramMetricFamily
from prometheus_client.utils import floatToGoString

# Bucket bounds are fixed, not options: the dashboards' and alerts' quantiles and thresholds
# (0.1 s gen-2 pause, 0.1 s loop lag) sit on these boundaries.
GC_PAUSE_BUCKETS = (0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)
LOOP_LAG_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class BucketCounts:
    """Non-cumulative bucket counts plus a sum; turned into a cumulative histogram when read.

    ``observe`` does one bisect and two in-place updates, so it allocates almost nothing and
    takes no lock (prometheus/client_python#322: a lock taken inside a gc callback can
    deadlock). A reader may see ``sum`` one observation ahead of the counts; Prometheus
    tolerates that, a deadlock it would not.
    """

    __slots__ = ("bounds", "counts", "total", "_les")

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = tuple(bounds)
        self.counts = [0] * (len(self.bounds) + 1)  # the last slot is +Inf
        self.total = 0.0
        # The `le` labels, formatted once rather than on every scrape.
        self._les = tuple(floatToGoString(bound) for bound in (*self.bounds, float("inf")))

    def observe(self, value: float) -> None:
        """Record one observation."""
        self.counts[bisect_left(self.bounds, value)] += 1
        self.total += value

    def cumulative(self) -> tuple[list[tuple[str, int]], float]:
        """``([(le, cumulative count), ...], sum)`` in the form HistogramMetricFamily takes."""
        counts = list(self.counts)  # one consistent copy of the list
        total = self.total
        buckets, running = [], 0
        for le, count in zip(self._les, counts, strict=False):
            running += count
            buckets.append((le, running))
        return buckets, total


def add_histogram(family: HistogramMetricFamily, labels: list[str], state: BucketCounts) -> None:
    """Add ``state`` to ``family`` as one labelled histogram."""
    buckets, total = state.cumulative()
    family.add_metric(labels, buckets, total)
