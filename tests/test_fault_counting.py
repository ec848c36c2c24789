import logging

from prometheus_client import CollectorRegistry

from tornado_memory_exporter.faults import Faults, FaultsCollector, GuardedCollector


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


class Exploding:
    def describe(self):
        return []

    def collect(self):
        raise OSError("no /proc here")


def test_failures_are_counted_every_time_but_logged_once_per_interval(caplog):
    clock = Clock()
    faults = Faults(log_interval=60, clock=clock)
    with caplog.at_level(logging.WARNING, logger="tornado_memory_exporter"):
        for _ in range(5):
            faults.record("process", OSError("boom"))
        clock.now += 59
        faults.record("process", OSError("boom"))
        clock.now += 1
        faults.record("process", OSError("boom"))
    assert faults.counts == {"process": 7}
    assert len(caplog.records) == 2
    assert "'process' failed (1 failures so far" in caplog.records[0].getMessage()
    assert "(7 failures so far" in caplog.records[1].getMessage()


def test_guarded_collector_contains_the_failure_and_the_errors_counter_reports_it():
    registry = CollectorRegistry()
    faults = Faults()
    registry.register(GuardedCollector("process", Exploding(), faults))
    registry.register(FaultsCollector("tornado", faults))
    assert registry.get_sample_value("tornado_exporter_errors_total", {"collector": "process"}) == 1
    assert registry.get_sample_value("tornado_exporter_errors_total", {"collector": "process"}) == 2


def test_declared_sources_are_exported_at_zero():
    registry = CollectorRegistry()
    faults = Faults(sources=["gc", "ioloop"])
    registry.register(FaultsCollector("shop", faults))
    assert registry.get_sample_value("shop_exporter_errors_total", {"collector": "gc"}) == 0
    assert registry.get_sample_value("shop_exporter_errors_total", {"collector": "ioloop"}) == 0
