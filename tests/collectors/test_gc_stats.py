import gc
import sys

from prometheus_client import CollectorRegistry

from tornado_memory_exporter.collectors.gc_stats import GCStatsCollector, incremental_gc


class FakeGC:
    """Known counts for a two-generation collector (the labels must follow get_stats())."""

    garbage = [object(), object(), object()]

    def get_stats(self):
        return [
            {"collections": 40, "collected": 900, "uncollectable": 0},
            {"collections": 4, "collected": 120, "uncollectable": 2},
        ]

    def get_count(self):
        return (321, 3)

    def get_threshold(self):
        return (700, 10)

    def get_freeze_count(self):
        return 5000


def test_exact_values_from_a_fake_gc():
    registry = CollectorRegistry()
    registry.register(GCStatsCollector("tornado", gc_module=FakeGC()))
    value = registry.get_sample_value
    assert value("tornado_gc_generation_objects", {"generation": "0"}) == 321
    assert value("tornado_gc_generation_objects", {"generation": "1"}) == 3
    assert value("tornado_gc_generation_objects", {"generation": "2"}) is None
    assert value("tornado_gc_threshold", {"generation": "0"}) == 700
    assert value("tornado_gc_collections_total", {"generation": "0"}) == 40
    assert value("tornado_gc_collected_objects_total", {"generation": "1"}) == 120
    assert value("tornado_gc_uncollectable_objects_total", {"generation": "1"}) == 2
    assert value("tornado_gc_garbage_objects") == 3
    assert value("tornado_gc_frozen_objects") == 5000


def test_real_gc_generations_match_get_stats():
    registry = CollectorRegistry()
    registry.register(GCStatsCollector("tornado"))
    for generation in range(len(gc.get_stats())):
        labels = {"generation": str(generation)}
        assert registry.get_sample_value("tornado_gc_collections_total", labels) >= 0
    assert (
        registry.get_sample_value(
            "tornado_gc_collections_total", {"generation": str(len(gc.get_stats()))}
        )
        is None
    )


def test_names_never_clash_with_prometheus_client_defaults():
    from prometheus_client import GC_COLLECTOR, PLATFORM_COLLECTOR, PROCESS_COLLECTOR

    registry = CollectorRegistry(auto_describe=True)
    for default in (GC_COLLECTOR, PLATFORM_COLLECTOR, PROCESS_COLLECTOR):
        registry.register(default)
    registry.register(GCStatsCollector("tornado"))  # raises ValueError on a duplicate name


class FakeIncrementalGC(FakeGC):
    """CPython 3.14.0-3.14.4: young and old generations behind the three-slot API."""

    def get_stats(self):
        return [
            {"collections": 50, "collected": 800, "uncollectable": 0},
            {"collections": 7, "collected": 300, "uncollectable": 1},  # increments of the old one
            {"collections": 1, "collected": 20, "uncollectable": 0},  # gc.collect()
        ]

    def get_count(self):
        return (1500, 2, 0)

    def get_threshold(self):
        return (2000, 10, 0)  # young threshold, old scan rate, meaningless


class FakeGC315(FakeGC):
    """CPython 3.15: get_stats() gains per-generation duration and candidates."""

    def get_stats(self):
        return [
            {
                "collections": 9,
                "collected": 90,
                "uncollectable": 0,
                "candidates": 400,
                "duration": 0.01,
            },
            {
                "collections": 2,
                "collected": 8,
                "uncollectable": 0,
                "candidates": 90,
                "duration": 0.02,
            },
            {
                "collections": 1,
                "collected": 1,
                "uncollectable": 0,
                "candidates": 900,
                "duration": 0.3,
            },
        ]

    def get_count(self):
        return (100, 2, 1)

    def get_threshold(self):
        return (2000, 10, 10)


def scrape(fake, version_info):
    registry = CollectorRegistry()
    registry.register(GCStatsCollector("tornado", gc_module=fake, version_info=version_info))
    return registry.get_sample_value


def test_incremental_gc_exports_only_what_keeps_its_meaning():
    value = scrape(FakeIncrementalGC(), (3, 14, 2, "final", 0))
    assert value("tornado_gc_threshold", {"generation": "0"}) == 2000
    assert value("tornado_gc_threshold", {"generation": "1"}) is None  # a scan rate
    assert value("tornado_gc_threshold", {"generation": "2"}) is None  # always 0
    assert value("tornado_gc_generation_objects", {"generation": "0"}) == 1500
    assert value("tornado_gc_generation_objects", {"generation": "1"}) is None
    assert [value("tornado_gc_collections_total", {"generation": g}) for g in "012"] == [50, 7, 1]
    assert value("tornado_gc_uncollectable_objects_total", {"generation": "1"}) == 1


def test_the_same_shape_on_a_classic_collector_exports_every_threshold():
    value = scrape(FakeIncrementalGC(), (3, 14, 5, "final", 0))
    assert [value("tornado_gc_threshold", {"generation": g}) for g in "012"] == [2000, 10, 0]


def test_315_extra_stats_fields_are_ignored():
    value = scrape(FakeGC315(), (3, 15, 0, "alpha", 1))
    assert [value("tornado_gc_collections_total", {"generation": g}) for g in "012"] == [9, 2, 1]
    assert [value("tornado_gc_threshold", {"generation": g}) for g in "012"] == [2000, 10, 10]
    assert value("tornado_gc_collected_objects_total", {"generation": "2"}) == 1


def test_incremental_gc_is_314_0_to_314_4_only():
    assert [
        incremental_gc(v) for v in ((3, 13, 9), (3, 14, 0), (3, 14, 4), (3, 14, 5), (3, 15, 0))
    ] == [False, True, True, False, False]


def test_real_interpreter_thresholds_follow_its_collector():
    value = scrape(gc, sys.version_info)
    exported = [value("tornado_gc_threshold", {"generation": str(g)}) for g in range(3)]
    if incremental_gc(sys.version_info):
        assert exported == [gc.get_threshold()[0], None, None]
    else:
        assert exported == list(gc.get_threshold())
