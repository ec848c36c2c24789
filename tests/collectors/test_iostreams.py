"""``IOStreamsCollector``: the stream tally of a snapshot handed in, as four gauges."""

from prometheus_client import CollectorRegistry

from tornado_memory_exporter.census.snapshot import CensusSnapshot
from tornado_memory_exporter.census.streams import StreamTally
from tornado_memory_exporter.collectors.iostreams import IOStreamsCollector


def test_exact_values_from_a_snapshot_and_nothing_before_the_first_census():
    tally = StreamTally(
        open=12,
        write_buffer_bytes=9_000_000,
        write_buffer_max_bytes=8_000_000,
        read_buffer_bytes=4096,
    )
    current: list[CensusSnapshot | None] = [None]
    registry = CollectorRegistry()
    registry.register(IOStreamsCollector("shop", lambda: current[0]))
    assert [s for family in registry.collect() for s in family.samples] == []
    current[0] = CensusSnapshot(
        objects={},
        handlers={},
        tracked=0,
        scanned=0,
        distinct_types=0,
        duration=0.1,
        max_stall=0.01,
        finished_at=1.0,
        streams=tally,
    )
    assert registry.get_sample_value("shop_iostreams_open") == 12
    assert registry.get_sample_value("shop_iostream_write_buffer_bytes") == 9_000_000
    assert registry.get_sample_value("shop_iostream_write_buffer_max_bytes") == 8_000_000
    assert registry.get_sample_value("shop_iostream_read_buffer_bytes") == 4096
