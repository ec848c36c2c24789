"""``<ns>_iostreams_open`` and the IOStream buffer gauges, read from the latest census snapshot
(counted by ``census.streams``): what slow consumers of push and chat apps hold in memory."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ..census.snapshot import CensusSnapshot


class IOStreamsCollector(Collector):
    """Reads the stream tally of the latest census snapshot (``snapshot()`` returns it, or
    ``None`` before the first census: then the families are empty, as for the census's own)."""

    def __init__(self, namespace: str, snapshot: Callable[[], CensusSnapshot | None]) -> None:
        self._ns = namespace
        self._snapshot = snapshot

    def _families(self) -> dict[str, GaugeMetricFamily]:
        ns = self._ns
        return {
            "open": GaugeMetricFamily(
                f"{ns}_iostreams_open",
                "Open Tornado IOStreams (client and server connections) at the last heap census.",
            ),
            "write_buffer_bytes": GaugeMetricFamily(
                f"{ns}_iostream_write_buffer_bytes",
                "Bytes queued to be written, summed over open IOStreams, at the last heap census: "
                "data waiting for slow clients.",
            ),
            "write_buffer_max_bytes": GaugeMetricFamily(
                f"{ns}_iostream_write_buffer_max_bytes",
                "The largest single IOStream write queue at the last heap census.",
            ),
            "read_buffer_bytes": GaugeMetricFamily(
                f"{ns}_iostream_read_buffer_bytes",
                "Bytes read and not yet consumed, summed over open IOStreams, at the last "
                "heap census.",
            ),
        }

    def describe(self) -> Iterator[Metric]:
        yield from self._families().values()

    def collect(self) -> Iterator[Metric]:
        snapshot = self._snapshot()
        if snapshot is None:
            return
        families = self._families()
        for key, family in families.items():
            family.add_metric([], getattr(snapshot.streams, key))
        yield from families.values()
