import gc

from prometheus_client import CollectorRegistry
from tornado_memory_exporter.collectors.gc_stats import GCStatsCollector


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
    assert registry.get_sample_value(
        "tornado_gc_collections_total", {"generation": str(len(gc.get_stats()))}
    ) is None


def test_names_never_clash_with_prometheus_client_defaults():
    from prometheus_client import GC_COLLECTOR, PLATFORM_COLLECTOR, PROCESS_COLLECTOR

    registry = CollectorRegistry(auto_describe=True)
    for default in (GC_COLLECTOR, PLATFORM_COLLECTOR, PROCESS_COLLECTOR):
        registry.register(default)
    registry.register(GCStatsCollector("tornado"))  # raises ValueError on a duplicate name
