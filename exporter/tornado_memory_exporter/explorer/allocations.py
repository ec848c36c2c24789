"""Allocation sites on demand: a bounded tracemalloc window that stops by itself.

``tracemalloc`` slows every allocation while it traces (measured and reported with each
window) and its snapshot is one C call proportional to the traces kept, so it runs only inside a
window a user asks for, capped in length (``MAX_SECONDS``) and in
stack depth (``MAX_FRAMES``). At the end of the window:

1. one snapshot is taken (its stall is reported);
2. for the types of interest (the growing ones, and any asked for) the live instances allocated
   during the window are attributed to their allocation line (``get_object_traceback``), in a
   heap pass sliced like the census (on Python 3.11 this misses instances of classes with an
   instance ``__dict__``: CPython issue 101430);
3. tracemalloc is stopped, unless something else had started it before the window;
4. the top sites by growth (``Snapshot.compare_to`` against the snapshot taken at the start)
   are computed in a worker thread, off the IOLoop.
"""

from __future__ import annotations

import asyncio
import gc
import linecache
import sys
import time
import tracemalloc
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any

from .. import validate
from ..about import PACKAGE_DIR
from ..census.slicer import HeapPass, Slicer, chunks
from ..census.typenames import type_name
from ..faults import Faults

# Longest allocation-tracing window a user may start, and the deepest stack it records:
# tracing slows every allocation (about 2x at 10 frames), so a window must end by itself.
MAX_SECONDS = 60.0
MAX_FRAMES = 10

TOP_SITES = 20
"""Allocation sites reported per window."""
TOP_SITES_PER_TYPE = 5
BY_TYPE_NOTE = (
    "Python 3.11's tracemalloc cannot find where instances of classes with an instance __dict__ "
    "were allocated (CPython issue 101430, fixed in 3.12): see the top sites instead"
)
PER_TYPE_ATTRIBUTION = sys.version_info >= (3, 12)
"""Whether ``get_object_traceback`` finds every instance (3.12+); on 3.11 the window adds
``BY_TYPE_NOTE`` and the top sites stand in for the instances it cannot attribute."""
MAX_TYPES = 10
"""Types whose instances are attributed to allocation lines at the end of a window."""
CHUNK = 2048
"""Objects attributed between two looks at the clock."""

# Allocations of the observer itself are not the application's.
_FILTERS = [
    tracemalloc.Filter(False, tracemalloc.__file__),
    tracemalloc.Filter(False, PACKAGE_DIR + "*"),
    tracemalloc.Filter(False, "<frozen importlib._bootstrap*>"),
    tracemalloc.Filter(False, "<unknown>"),
]


def _allocation_probe(rounds: int = 5, size: int = 2000) -> float:
    """Best-of-``rounds`` seconds to allocate ``size`` small lists: the cost tracing adds."""
    best = float("inf")
    for _ in range(rounds):
        started = time.perf_counter()
        [[] for _ in range(size)]
        best = min(best, time.perf_counter() - started)
    return best


def _site(frame: tracemalloc.Frame) -> dict[str, Any]:
    code = linecache.getline(frame.filename, frame.lineno).strip()
    return {"file": frame.filename, "line": frame.lineno, "code": code[:200]}


def top_sites(
    baseline: tracemalloc.Snapshot, final: tracemalloc.Snapshot, frames: int, limit: int = TOP_SITES
) -> list[dict[str, Any]]:
    """Sites that grew most between the snapshots: a pure function (runs in a worker thread)."""
    key = "traceback" if frames > 1 else "lineno"
    stats = final.filter_traces(_FILTERS).compare_to(baseline.filter_traces(_FILTERS), key)
    rows = []
    for stat in stats:
        if stat.size_diff <= 0:
            continue
        row = _site(stat.traceback[-1])  # the most recent frame: the allocating line
        row.update(size_diff=stat.size_diff, count_diff=stat.count_diff)
        if frames > 1:
            row["stack"] = [f"{f.filename}:{f.lineno}" for f in stat.traceback]
        rows.append(row)
        if len(rows) >= limit:
            break
    return rows


async def attribute(
    objects: list[Any], wanted: Iterable[str], slicer: Slicer
) -> dict[str, list[dict[str, Any]]]:
    """Allocation lines of the live instances of the ``wanted`` types that tracemalloc saw
    being allocated, most frequent first: ``{type: [{file, line, code, count}]}``."""
    wanted = set(wanted)
    verdicts: dict[type, str | None] = {}
    sites: dict[str, Counter[tuple[str, int]]] = {}
    async for chunk in chunks(objects, slicer, CHUNK):
        for obj in chunk:
            cls = type(obj)
            if cls not in verdicts:
                name = type_name(cls)
                verdicts[cls] = name if name in wanted else None
            name = verdicts[cls]
            if name is None:
                continue
            traceback = tracemalloc.get_object_traceback(obj)
            if traceback is not None:
                frame = traceback[-1]
                sites.setdefault(name, Counter())[frame.filename, frame.lineno] += 1
    out = {}
    for name, counter in sites.items():
        rows = []
        for (filename, lineno), count in counter.most_common(TOP_SITES_PER_TYPE):
            row = _site(tracemalloc.Frame((filename, lineno)))
            row["count"] = count
            rows.append(row)
        out[name] = rows
    return out


class AllocationWindow:
    """One tracemalloc window at a time, on ``loop``; ``status()`` is what the API shows."""

    def __init__(
        self,
        *,
        loop: asyncio.AbstractEventLoop,
        faults: Faults,
        max_seconds: float = MAX_SECONDS,
        max_frames: int = MAX_FRAMES,
        slice_budget: float,
        interesting: Callable[[], list[str]] = list,
        get_objects: Callable[[], list[Any]] = gc.get_objects,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self._loop = loop
        self._faults = faults
        self.max_seconds = max_seconds
        self.max_frames = max_frames
        self._budget = slice_budget
        self._interesting = interesting
        self._get_objects = get_objects
        self._wall = wall
        self._state: dict[str, Any] = {"state": "idle"}
        self._ours = False
        self._baseline: tracemalloc.Snapshot | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._task: asyncio.Task[None] | None = None
        self._types: list[str] = []
        faults.declare("explorer_tracemalloc")

    @property
    def active(self) -> bool:
        """Whether a window is tracing or being finished."""
        return self._state["state"] in ("tracing", "finishing")

    def status(self) -> dict[str, Any]:
        """The current or last window: state, timing, overhead, sites (a fresh dict)."""
        return dict(self._state)

    def start(self, *, seconds: float, frames: int, types: Iterable[str] = ()) -> dict[str, Any]:
        """Start tracing for ``seconds`` with ``frames`` frames per allocation (``ValueError``
        beyond the caps, ``RuntimeError`` while a window is open). Call on the loop's thread."""
        validate.number("seconds", seconds, minimum=0.0, above=True, maximum=self.max_seconds)
        validate.integer("frames", frames, minimum=1, maximum=self.max_frames)
        if self.active:
            raise RuntimeError("an allocation window is already open")
        self._types = list(types)[:MAX_TYPES]
        before = _allocation_probe()
        self._ours = not tracemalloc.is_tracing()
        if self._ours:
            tracemalloc.start(frames)
        during = _allocation_probe()
        self._baseline = tracemalloc.take_snapshot()
        now = self._wall()
        self._state = {
            "state": "tracing",
            "seconds": seconds,
            "frames": tracemalloc.get_traceback_limit(),
            "started_at": now,
            "ends_at": now + seconds,
            "started_by_explorer": self._ours,
            "overhead": {"allocation_slowdown": round(during / before, 2) if before > 0 else None},
        }
        self._timer = self._loop.call_later(seconds, self._end)
        return self.status()

    def _end(self) -> None:
        self._timer = None
        self._task = self._loop.create_task(self._finish())

    async def _finish(self) -> None:
        state = self._state
        state["state"] = "finishing"
        try:
            started = time.perf_counter()
            final = tracemalloc.take_snapshot()
            snapshot_seconds = time.perf_counter() - started
            overhead = state["overhead"]
            overhead["snapshot_seconds"] = snapshot_seconds
            overhead["tracemalloc_memory_bytes"] = tracemalloc.get_tracemalloc_memory()
            overhead["traced_peak_bytes"] = tracemalloc.get_traced_memory()[1]
            wanted = list(dict.fromkeys([*self._types, *self._interesting()]))[:MAX_TYPES]
            heap = HeapPass(self._budget, get_objects=self._get_objects)
            async with heap:
                assert heap.slicer is not None
                by_type = await attribute(heap.objects, wanted, heap.slicer)
            slicer = heap.slicer
            slicer.end_slice()
            overhead["max_stall_seconds"] = max(slicer.max_stall, snapshot_seconds)
            self._stop_tracing()
            baseline, self._baseline = self._baseline, None
            frames = state["frames"]
            sites = await self._loop.run_in_executor(None, top_sites, baseline, final, frames)
            del baseline, final
            state.update(state="done", finished_at=self._wall(), sites=sites, by_type=by_type)
            if not PER_TYPE_ATTRIBUTION:
                state["by_type_note"] = BY_TYPE_NOTE
        except asyncio.CancelledError:
            self._stop_tracing()
            raise
        except Exception as error:  # noqa: BLE001 - counted, shown, and tracing still stops
            self._stop_tracing()
            self._faults.record("explorer_tracemalloc", error)
            state.update(state="error", error=f"{type(error).__name__}: {error}")

    def _stop_tracing(self) -> None:
        if self._ours and tracemalloc.is_tracing():
            tracemalloc.stop()
        self._ours = False

    def stop(self) -> None:
        """End any window now and stop tracing if the window started it (safe to call twice)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._task is not None and not self._task.done():
            self._task.cancel()
        self._task = None
        self._stop_tracing()
        self._baseline = None
        if self.active:
            self._state = {**self._state, "state": "cancelled"}
