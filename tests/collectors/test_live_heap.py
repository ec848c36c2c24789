import gc
import time

from appserver import AppServer
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from tornado_memory_exporter.collectors.live_heap import LiveHeapRecorder
from tornado_memory_exporter.faults import Faults

BLOCKS = "tornado_python_allocated_blocks_after_gc"
AT = "tornado_gc_last_full_collection_timestamp_seconds"
STOP = {"collected": 0, "uncollectable": 0}


def make(callbacks, blocks, clock, faults=None):
    recorder = LiveHeapRecorder(
        "tornado",
        faults or Faults(),
        generations=3,
        callbacks=callbacks,
        allocated_blocks=lambda: blocks[0],
        clock=lambda: clock[0],
    )
    registry = CollectorRegistry()
    registry.register(recorder)
    return recorder, registry


def test_only_the_end_of_an_oldest_generation_collection_is_recorded():
    callbacks, blocks, clock = [], [1000], [1700000000.5]
    recorder, registry = make(callbacks, blocks, clock)
    recorder.start()
    (hook,) = callbacks
    value = registry.get_sample_value
    for generation in (0, 1):
        hook("start", {"generation": generation})
        hook("stop", {"generation": generation, **STOP})
    hook("start", {"generation": 2})
    assert value(BLOCKS) is None and value(AT) is None  # nothing before a full collection ends
    hook("stop", {"generation": 2, **STOP})
    assert (value(BLOCKS), value(AT)) == (1000, 1700000000.5)
    blocks[0], clock[0] = 5000, 1700000060.0
    for generation in (0, 1):
        hook("stop", {"generation": generation, **STOP})
    hook("start", {"generation": 2})
    assert (value(BLOCKS), value(AT)) == (1000, 1700000000.5)
    hook("stop", {"generation": 2, **STOP})
    assert (value(BLOCKS), value(AT)) == (5000, 1700000060.0)


def test_start_is_idempotent_and_stop_unhooks_keeping_the_value():
    callbacks, blocks, clock = [], [7], [1.0]
    recorder, registry = make(callbacks, blocks, clock)
    recorder.start()
    recorder.start()
    assert len(callbacks) == 1
    callbacks[0]("stop", {"generation": 2, **STOP})
    recorder.stop()
    assert callbacks == []
    assert registry.get_sample_value(BLOCKS) == 7


def test_a_failing_read_never_raises_and_is_counted_at_the_next_scrape():
    callbacks, faults = [], Faults()
    recorder = LiveHeapRecorder(
        "tornado", faults, generations=3, callbacks=callbacks, allocated_blocks=lambda: 1 // 0
    )
    recorder.start()
    callbacks[0]("stop", {"generation": 2, **STOP})
    callbacks[0]("stop", {})  # no generation: swallowed too
    assert faults.counts["live_heap"] == 0  # nothing counted or logged inside the callback
    assert list(recorder.collect()) == []
    assert faults.counts["live_heap"] == 2
    list(recorder.collect())
    assert faults.counts["live_heap"] == 2


def test_real_collections_move_the_gauge_only_for_the_oldest_generation():
    recorder = LiveHeapRecorder("tornado", Faults())
    registry = CollectorRegistry()
    registry.register(recorder)
    value = registry.get_sample_value
    oldest = len(gc.get_stats()) - 1
    was_enabled = gc.isenabled()
    gc.disable()  # no automatic collection between the test's own ones
    recorder.start()
    try:
        gc.collect(0)
        assert value(BLOCKS) is None
        gc.collect(oldest)  # the test may collect; the library never does
        first, first_at = value(BLOCKS), value(AT)
        kept = [[] for _ in range(10_000)]  # 10,000 more live blocks
        for generation in range(oldest):
            gc.collect(generation)
            assert (value(BLOCKS), value(AT)) == (first, first_at)
        gc.collect(oldest)
        second, second_at = value(BLOCKS), value(AT)
    finally:
        recorder.stop()
        if was_enabled:
            gc.enable()
    assert first > 0 and second_at >= first_at
    assert 10_000 <= second - first < 10_050  # the kept lists, plus the test's own few objects
    assert len(kept) == 10_000


def test_a_real_app_serves_the_heap_after_the_apps_full_collection():
    was_enabled = gc.isenabled()
    gc.disable()  # no automatic full collection but the one below until the scrape is read
    try:
        with AppServer() as server:
            started = time.time()
            gc.collect()  # the app's own full collection (the library never makes one)
            ended = time.time()
            samples = {
                sample.name: sample.value
                for family in text_string_to_metric_families(server.scrape())
                for sample in family.samples
            }
    finally:
        if was_enabled:
            gc.enable()
    assert samples[BLOCKS] > 0
    assert started <= samples[AT] <= ended
