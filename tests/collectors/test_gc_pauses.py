import gc
import sys

from prometheus_client import CollectorRegistry

from tornado_memory_exporter.collectors.gc_pauses import GCPauseRecorder
from tornado_memory_exporter.faults import Faults


def make(callbacks=None, faults=None):
    recorder = GCPauseRecorder(
        "tornado",
        faults or Faults(),
        buckets=(0.001, 1.0),
        generations=3,
        callbacks=callbacks if callbacks is not None else [],
    )
    registry = CollectorRegistry()
    registry.register(recorder)
    return recorder, registry


def test_start_stop_pairs_become_one_observation_per_generation():
    callbacks = []
    recorder, registry = make(callbacks)
    recorder.start()
    (hook,) = callbacks
    hook("start", {"generation": 2})
    hook("stop", {"generation": 2, "collected": 0, "uncollectable": 0})
    hook("start", {"generation": 0})
    hook("stop", {"generation": 0, "collected": 0, "uncollectable": 0})
    value = registry.get_sample_value
    assert value("tornado_gc_pause_seconds_count", {"generation": "2"}) == 1
    assert value("tornado_gc_pause_seconds_count", {"generation": "0"}) == 1
    assert value("tornado_gc_pause_seconds_count", {"generation": "1"}) == 0
    assert value("tornado_gc_pause_seconds_bucket", {"generation": "2", "le": "+Inf"}) == 1


def test_start_is_idempotent_and_stop_unhooks():
    callbacks = []
    recorder, _ = make(callbacks)
    recorder.start()
    recorder.start()
    assert len(callbacks) == 1
    recorder.stop()
    assert callbacks == []


def test_a_failing_callback_never_raises_and_is_counted_at_the_next_scrape():
    callbacks, faults = [], Faults()
    recorder, registry = make(callbacks, faults)
    recorder.start()
    callbacks[0]("start", {})
    callbacks[0]("stop", {"generation": 99})  # out of range: must be swallowed
    assert faults.counts["gc_pauses"] == 0  # nothing logged or counted inside the callback
    list(recorder.collect())
    assert faults.counts["gc_pauses"] == 1
    list(recorder.collect())
    assert faults.counts["gc_pauses"] == 1  # each failure reported once


def test_real_collections_are_timed():
    recorder = GCPauseRecorder("tornado", Faults(), buckets=(0.001, 1.0))
    registry = CollectorRegistry()
    registry.register(recorder)
    recorder.start()
    try:
        gc.collect(2)  # the test may collect; the library never does
    finally:
        recorder.stop()
    assert registry.get_sample_value("tornado_gc_pause_seconds_count", {"generation": "2"}) == 1
    assert registry.get_sample_value("tornado_gc_pause_seconds_sum", {"generation": "2"}) > 0


def test_the_interpreters_own_duration_is_used_where_given():
    # 3.15 puts the collection's duration in the callback info: it is recorded as given, not our
    # clock pair (which also counts the other callbacks' time).
    callbacks = []
    recorder, registry = make(callbacks)
    recorder.start()
    callbacks[0]("start", {"generation": 1})
    callbacks[0](
        "stop",
        {"generation": 1, "collected": 3, "uncollectable": 0, "candidates": 40, "duration": 0.5},
    )
    value = registry.get_sample_value
    assert value("tornado_gc_pause_seconds_sum", {"generation": "1"}) == 0.5
    assert value("tornado_gc_pause_seconds_bucket", {"generation": "1", "le": "0.001"}) == 0
    assert value("tornado_gc_pause_seconds_bucket", {"generation": "1", "le": "1.0"}) == 1


def test_incremental_collections_land_in_generation_one():
    # 3.14.0-3.14.4: automatic collections are young (0) or an increment of the old generation
    # reported as 1; gc.collect() is still reported as 2.
    callbacks = []
    recorder, registry = make(callbacks)
    recorder.start()
    for generation in (0, 1, 1, 2):
        callbacks[0]("start", {"generation": generation})
        callbacks[0]("stop", {"generation": generation, "collected": 0, "uncollectable": 0})
    counts = [
        registry.get_sample_value("tornado_gc_pause_seconds_count", {"generation": str(g)})
        for g in range(3)
    ]
    assert counts == [1, 2, 1]


def test_a_stop_without_start_or_duration_records_nothing():
    callbacks = []
    recorder, registry = make(callbacks)
    recorder.start()
    callbacks[0]("stop", {"generation": 0, "collected": 0, "uncollectable": 0})
    assert registry.get_sample_value("tornado_gc_pause_seconds_count", {"generation": "0"}) == 0
    assert recorder.failures == 0


def test_real_callback_info_matches_what_the_recorder_reads():
    seen = []

    def spy(phase, info):
        seen.append((phase, dict(info)))

    gc.callbacks.append(spy)
    try:
        gc.collect()
    finally:
        gc.callbacks.remove(spy)
    stops = [info for phase, info in seen if phase == "stop"]
    assert stops and all(0 <= info["generation"] < len(gc.get_stats()) for info in stops)
    if sys.version_info >= (3, 15):
        assert all(info["duration"] >= 0 for info in stops)
