"""Allocator fragmentation: memory the allocators hold but Python does not use.

Two allocators sit under a CPython heap. pymalloc serves objects up to 512 bytes from 1 MiB
arenas of 16 KiB pools; an arena goes back to the OS only when every block in it is free, so a
few long-lived objects can pin arenas that are otherwise empty. glibc's malloc serves the rest
(and pymalloc's arenas are mmapped, not from it); its free lists and per-thread arenas keep
freed memory in the process. Either shows as RSS that grows while Python's live heap is flat.

* ``<ns>_pymalloc_*`` come from the census's ``sys._debugmallocstats()`` call, made in the
  forked child only (it walks every arena and prints to the C stderr): present in fork mode.
* ``<ns>_malloc_*`` come from glibc's ``mallinfo2()`` (glibc 2.33+), read in the process at
  most every ``ttl`` seconds: it walks malloc's free lists under malloc's lock.

``trim()`` is ``malloc_trim(0)`` (the explorer's action): glibc gives free pages back to the OS,
including the middle of its heaps; it reports how much RSS fell.
"""

from __future__ import annotations

import ctypes
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import psutil
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ..faults import Faults


class _Mallinfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena",
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",
            "usmblks",
            "fsmblks",
            "uordblks",
            "fordblks",
            "keepcost",
        )
    ]


def _libc() -> Any | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None)
    except OSError:
        return None


_LIBC = _libc()


def mallinfo2() -> dict[str, int] | None:
    """glibc's ``mallinfo2()`` as a dict, or ``None`` where it does not exist (musl, macOS,
    glibc before 2.33)."""
    function = getattr(_LIBC, "mallinfo2", None)
    if function is None:
        return None
    function.restype = _Mallinfo2
    function.argtypes = []
    info = function()
    return {name: getattr(info, name) for name, _ in _Mallinfo2._fields_}


def can_trim() -> bool:
    """Whether ``malloc_trim`` exists here (glibc)."""
    return getattr(_LIBC, "malloc_trim", None) is not None


def trim(rss: Callable[[], int] = lambda: psutil.Process().memory_info().rss) -> dict[str, Any]:
    """``malloc_trim(0)``: RSS before and after, bytes given back, and how long it took (it
    holds malloc's locks, so other threads' allocations wait meanwhile). ``RuntimeError``
    where there is no glibc."""
    function = getattr(_LIBC, "malloc_trim", None)
    if function is None:
        raise RuntimeError("malloc_trim is not available (not glibc)")
    function.argtypes = [ctypes.c_size_t]
    function.restype = ctypes.c_int
    before = rss()
    started = time.perf_counter()
    released = function(0)
    seconds = time.perf_counter() - started
    after = rss()
    return {
        "rss_before_bytes": before,
        "rss_after_bytes": after,
        "released_bytes": max(0, before - after),
        "malloc_trim_returned": released,
        "seconds": seconds,
    }


class AllocatorCollector(Collector):
    """``<ns>_pymalloc_*`` (from the latest census snapshot) and ``<ns>_malloc_*`` (glibc)."""

    def __init__(
        self,
        namespace: str,
        faults: Faults,
        pymalloc: Callable[[], Mapping[str, int] | None],
        *,
        malloc: Callable[[], dict[str, int] | None] = mallinfo2,
        ttl: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._ns = namespace
        self._faults = faults
        self._pymalloc = pymalloc
        self._malloc = malloc
        self._ttl = ttl
        self._clock = clock
        self._kept: tuple[float, dict[str, int] | None] | None = None
        faults.declare("allocator")

    def _families(self) -> dict[str, GaugeMetricFamily]:
        ns = self._ns
        return {
            "arenas": GaugeMetricFamily(
                f"{ns}_pymalloc_arenas",
                "pymalloc arenas allocated (1 MiB each on 3.10+), at the last forked census.",
            ),
            "pools": GaugeMetricFamily(
                f"{ns}_pymalloc_pools",
                "pymalloc pools by state: used (holding blocks) or empty (in an arena, free).",
                labels=["state"],
            ),
            "blocks": GaugeMetricFamily(
                f"{ns}_pymalloc_blocks",
                "pymalloc blocks by state: used (live objects) or free (in used pools).",
                labels=["state"],
            ),
            "bytes": GaugeMetricFamily(
                f"{ns}_pymalloc_bytes",
                "Bytes of pymalloc's arenas by state: allocated (live blocks), free (free blocks "
                "and empty pools) and overhead (pool headers, quantization, alignment); the sum "
                "is the arenas' size.",
                labels=["state"],
            ),
            "heap": GaugeMetricFamily(
                f"{ns}_malloc_heap_bytes",
                "glibc malloc's heap bytes by state (mallinfo2 uordblks, fordblks): in_use or "
                "free (held by malloc, not given back to the OS).",
                labels=["state"],
            ),
            "mmap": GaugeMetricFamily(
                f"{ns}_malloc_mmap_bytes",
                "Bytes glibc malloc serves from dedicated mmaps (mallinfo2 hblkhd; pymalloc arenas "
                "are not among them).",
            ),
            "releasable": GaugeMetricFamily(
                f"{ns}_malloc_releasable_bytes",
                "Free bytes at the top of glibc malloc's main heap that trimming returns at once "
                "(mallinfo2 keepcost).",
            ),
        }

    def describe(self) -> Iterator[Metric]:
        yield from self._families().values()

    def _malloc_info(self) -> dict[str, int] | None:
        now = self._clock()
        if self._kept is None or now >= self._kept[0]:
            self._kept = (now + self._ttl, self._faults.call("allocator", self._malloc, None))
        return self._kept[1]

    def collect(self) -> Iterator[Metric]:
        f = self._families()
        stats = self._pymalloc()
        if stats:
            f["arenas"].add_metric([], stats["arenas"])
            f["pools"].add_metric(["used"], stats["pools_used"])
            f["pools"].add_metric(["empty"], stats.get("pools_empty", 0))
            f["blocks"].add_metric(["used"], stats["blocks_used"])
            f["blocks"].add_metric(["free"], stats["blocks_free"])
            f["bytes"].add_metric(["allocated"], stats.get("allocated_bytes", 0))
            f["bytes"].add_metric(
                ["free"], stats.get("available_bytes", 0) + stats.get("pools_empty_bytes", 0)
            )
            f["bytes"].add_metric(
                ["overhead"],
                stats.get("pool_headers_bytes", 0)
                + stats.get("quantization_bytes", 0)
                + stats.get("alignment_bytes", 0),
            )
        info = self._malloc_info()
        if info is not None:
            f["heap"].add_metric(["in_use"], info["uordblks"])
            f["heap"].add_metric(["free"], info["fordblks"])
            f["mmap"].add_metric([], info["hblkhd"])
            f["releasable"].add_metric([], info["keepcost"])
        for family in f.values():
            if family.samples:
                yield family
