"""Process memory as the kernel sees it: RSS, peak, limit, file descriptors, threads, and the
size of Python's own heap in allocator blocks."""

from __future__ import annotations

import resource
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ..faults import Faults
from .memory_limit import MemoryLimit


class ProcessCollector(Collector):
    """``<ns>_process_*`` and ``<ns>_python_allocated_blocks``, read at scrape time (a few /proc
    reads, tens of microseconds). Each source fails alone: its failure is counted under
    ``collector="process"`` and the other gauges are still served.
    """

    def __init__(
        self,
        namespace: str,
        faults: Faults,
        *,
        full_memory: bool = False,
        proc: psutil.Process | None = None,
        status_path: str | Path = "/proc/self/status",
        memory_limit: MemoryLimit | None = None,
        allocated_blocks: Callable[[], int] = sys.getallocatedblocks,
    ) -> None:
        self._ns = namespace
        self._faults = faults
        self._full_memory = full_memory
        self._proc = proc if proc is not None else psutil.Process()
        self._status_path = Path(status_path)
        self._limit = memory_limit if memory_limit is not None else MemoryLimit()
        self._allocated_blocks = allocated_blocks
        faults.declare("process")

    def _gauges(self) -> dict[str, GaugeMetricFamily]:
        ns = self._ns
        specs = [
            ("resident_memory_bytes", "Resident set size (RSS) of the process."),
            ("virtual_memory_bytes", "Virtual memory size of the process."),
            ("resident_memory_peak_bytes", "Peak resident set size since the process started."),
            (
                "memory_limit_bytes",
                "Memory the process may use: its cgroup limit, else the host's total.",
            ),
            ("open_fds", "Open file descriptors."),
            ("threads", "OS threads in the process."),
            ("start_time_seconds", "Start time of the process since the Unix epoch."),
        ]
        if self._full_memory:
            specs += [
                (
                    "unique_memory_bytes",
                    "Unique set size (USS): memory freed if the process exited.",
                ),
                (
                    "proportional_memory_bytes",
                    "Proportional set size (PSS): RSS with shared pages divided.",
                ),
                ("swap_bytes", "Memory of the process swapped out."),
            ]
        gauges = {key: GaugeMetricFamily(f"{ns}_process_{key}", doc) for key, doc in specs}
        gauges["allocated_blocks"] = GaugeMetricFamily(
            f"{ns}_python_allocated_blocks",
            "Memory blocks currently allocated by Python's allocator (sys.getallocatedblocks()).",
        )
        return gauges

    def describe(self) -> Iterator[Metric]:
        yield from self._gauges().values()

    def collect(self) -> Iterator[Metric]:
        gauges = self._gauges()
        values: dict[str, float] = {}
        self._guard(lambda: values.update(self._from_psutil()))
        self._guard(lambda: values.update(resident_memory_peak_bytes=self._peak_rss()))
        self._guard(lambda: values.update(memory_limit_bytes=self._limit.bytes()))
        self._guard(lambda: values.update(allocated_blocks=self._allocated_blocks()))
        if self._full_memory:
            self._guard(lambda: values.update(self._full()))
        for key, gauge in gauges.items():
            if key in values:
                gauge.add_metric([], values[key])
                yield gauge

    def _guard(self, read: Callable[[], None]) -> None:
        self._faults.call("process", read, None)

    def _from_psutil(self) -> dict[str, float]:
        with self._proc.oneshot():
            memory = self._proc.memory_info()
            return {
                "resident_memory_bytes": memory.rss,
                "virtual_memory_bytes": memory.vms,
                "open_fds": self._proc.num_fds(),
                "threads": self._proc.num_threads(),
                "start_time_seconds": self._proc.create_time(),
            }

    def _peak_rss(self) -> int:
        # VmHWM is exact and per process; ru_maxrss (KiB on Linux) is the portable fallback.
        try:
            for line in self._status_path.read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
        except OSError:
            pass
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

    def _full(self) -> dict[str, float]:
        full = self._proc.memory_full_info()
        return {
            "unique_memory_bytes": full.uss,
            "proportional_memory_bytes": getattr(full, "pss", full.uss),
            "swap_bytes": getattr(full, "swap", 0),
        }
