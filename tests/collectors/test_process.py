from collections import namedtuple

import psutil
import pytest
from prometheus_client import CollectorRegistry

from tornado_memory_exporter.collectors.memory_limit import MemoryLimit
from tornado_memory_exporter.collectors.process import ProcessCollector
from tornado_memory_exporter.faults import Faults

Mem = namedtuple("Mem", "rss vms")
FullMem = namedtuple("FullMem", "rss vms uss pss swap")


class FakeProcess:
    """Just the psutil.Process surface the collector reads, with known values."""

    def __init__(self, *, fail=None):
        self.fail = fail

    def oneshot(self):
        import contextlib

        return contextlib.nullcontext()

    def memory_info(self):
        if self.fail:
            raise self.fail
        return Mem(rss=150 * 2**20, vms=900 * 2**20)

    def memory_full_info(self):
        return FullMem(
            rss=150 * 2**20, vms=900 * 2**20, uss=100 * 2**20, pss=120 * 2**20, swap=4096
        )

    def num_fds(self):
        return 17

    def num_threads(self):
        return 3

    def create_time(self):
        return 1_700_000_000.5


class FixedLimit(MemoryLimit):
    def __init__(self, value):
        self.value = value

    def bytes(self):
        return self.value


@pytest.fixture
def status(tmp_path):
    path = tmp_path / "status"
    path.write_text("Name:\tpython\nVmPeak:\t  999 kB\nVmHWM:\t  204800 kB\nVmRSS:\t  153600 kB\n")
    return path


def collect(collector):
    registry = CollectorRegistry()
    registry.register(collector)
    return registry


def test_every_process_gauge_has_the_fake_values(status):
    registry = collect(
        ProcessCollector(
            "tornado",
            Faults(),
            proc=FakeProcess(),
            status_path=status,
            memory_limit=FixedLimit(2 * 2**30),
            allocated_blocks=lambda: 123_456,
        )
    )
    value = registry.get_sample_value
    assert value("tornado_process_resident_memory_bytes") == 150 * 2**20
    assert value("tornado_process_virtual_memory_bytes") == 900 * 2**20
    assert value("tornado_process_resident_memory_peak_bytes") == 204800 * 1024
    assert value("tornado_process_memory_limit_bytes") == 2 * 2**30
    assert value("tornado_process_open_fds") == 17
    assert value("tornado_process_threads") == 3
    assert value("tornado_process_start_time_seconds") == 1_700_000_000.5
    assert value("tornado_python_allocated_blocks") == 123_456
    # USS/PSS/swap cost an smaps read: off unless asked for.
    assert value("tornado_process_unique_memory_bytes") is None


def test_full_memory_is_opt_in(status):
    registry = collect(
        ProcessCollector(
            "shop",
            Faults(),
            full_memory=True,
            proc=FakeProcess(),
            status_path=status,
            memory_limit=FixedLimit(1),
        )
    )
    assert registry.get_sample_value("shop_process_unique_memory_bytes") == 100 * 2**20
    assert registry.get_sample_value("shop_process_proportional_memory_bytes") == 120 * 2**20
    assert registry.get_sample_value("shop_process_swap_bytes") == 4096


@pytest.mark.parametrize("error", [psutil.AccessDenied(1), psutil.NoSuchProcess(1)])
def test_a_failing_psutil_costs_only_its_own_gauges(status, error):
    faults = Faults()
    collector = ProcessCollector(
        "tornado",
        faults,
        proc=FakeProcess(fail=error),
        status_path=status,
        memory_limit=FixedLimit(5),
        allocated_blocks=lambda: 7,
    )
    samples = {s.name: s.value for family in collector.collect() for s in family.samples}
    assert samples == {
        "tornado_process_resident_memory_peak_bytes": 204800 * 1024,
        "tornado_process_memory_limit_bytes": 5,
        "tornado_python_allocated_blocks": 7,
    }
    assert faults.counts["process"] == 1


def test_peak_falls_back_to_ru_maxrss_without_proc_status(tmp_path):
    registry = collect(
        ProcessCollector(
            "tornado",
            Faults(),
            proc=FakeProcess(),
            status_path=tmp_path / "missing",
            memory_limit=FixedLimit(5),
        )
    )
    import resource

    peak = registry.get_sample_value("tornado_process_resident_memory_peak_bytes")
    assert peak >= resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 > 0


def test_real_process_values_are_plausible():
    registry = collect(ProcessCollector("tornado", Faults()))
    rss = registry.get_sample_value("tornado_process_resident_memory_bytes")
    peak = registry.get_sample_value("tornado_process_resident_memory_peak_bytes")
    limit = registry.get_sample_value("tornado_process_memory_limit_bytes")
    assert 0 < rss <= peak <= limit
    assert registry.get_sample_value("tornado_python_allocated_blocks") > 1000
