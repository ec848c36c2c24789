"""The explorer's state: census history, chain walks and the allocation window of one exporter.

Everything here runs on the application's IOLoop (the API hands calls over to it when served
from ``start_metrics_server``'s thread), so no lock is needed and heap walks yield to that loop.
"""

from __future__ import annotations

import asyncio
import gc
import sys
import threading
import time
import tracemalloc
import weakref
from collections import OrderedDict
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import tornado.ioloop

from .. import validate
from ..census import child
from ..census.fork import Fallback
from ..census.slicer import SLICE_BUDGET, HeapPass, Slicer
from ..census.typenames import type_name
from ..collectors import allocator
from ..config import Config
from ..faults import Faults
from .allocations import AllocationWindow
from .backrefs import Roots, pick_samples, walk
from .describe import describe_chain
from .history import CensusHistory

if TYPE_CHECKING:
    from ..census.heap import HeapCensus
    from ..census.watchlist import Watchlist
    from ..pools.registry import PoolRegistry

MAX_SAMPLES = 5
"""Instances of one type whose chains one walk follows."""
KEPT_WALKS = 20
"""Walk results kept (one per type, least recently asked dropped first)."""
MAX_ROOTS = 100
OBSERVE_INTERVAL = 1.0
"""Seconds between looks for a new census snapshot (a reference comparison)."""
_POOL_FIELDS = (
    "capacity",
    "in_use",
    "idle",
    "waiting",
    "leaked",
    "timeouts",
    "oldest_checkout_seconds",
)
"""The ``PoolSnapshot`` fields the explorer's pool table shows."""


class Explorer:
    """What ``/debug/memory`` shows, for one exporter (``exporter.explorer``).

    ``add_root(name, obj)`` registers an application object (a cache, a registry) at which
    reference chains stop, named; ``install()`` registers the application as ``application``.
    """

    def __init__(
        self,
        *,
        config: Config,
        loop: asyncio.AbstractEventLoop,
        faults: Faults,
        census: HeapCensus | None = None,
        watchlist: Watchlist | None = None,
        pools: PoolRegistry | None = None,
        get_objects: Callable[[], list[Any]] = gc.get_objects,
    ) -> None:
        self.config = config
        self.loop = loop
        self._faults = faults
        self._census = census
        self._watchlist = watchlist
        self._pools = pools
        self._get_objects = get_objects
        self.history = CensusHistory()
        self.allocations = AllocationWindow(
            loop=loop,
            faults=faults,
            slice_budget=SLICE_BUDGET,
            interesting=self._growing,
            get_objects=get_objects,
        )
        self._walks: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._walk_task: asyncio.Task[None] | None = None
        self._roots: dict[str, Callable[[], Any]] = {}
        self._observer: tornado.ioloop.PeriodicCallback | None = None
        faults.declare("explorer")

    # --- lifecycle ------------------------------------------------------------------------
    def start(self) -> None:
        """Start following censuses; call on the loop's thread."""
        if self._census is not None and self._observer is None:
            self._observer = tornado.ioloop.PeriodicCallback(self.observe, OBSERVE_INTERVAL * 1000)
            self._observer.start()

    def stop(self) -> None:
        """Stop following censuses, cancel a walk, end an allocation window."""
        if self._observer is not None:
            self._observer.stop()
            self._observer = None
        if self._walk_task is not None and not self._walk_task.done():
            self._walk_task.cancel()
        self._walk_task = None
        self.allocations.stop()

    def observe(self) -> None:
        """Keep the census's latest snapshot in the history (cheap when there is none new)."""
        if self._census is not None:
            self.history.observe(self._census.snapshot)

    def add_root(self, name: str, obj: object) -> None:
        """Stop reference chains at ``obj`` and call it ``name`` (held weakly where possible)."""
        validate.label_value("name", name)
        if name not in self._roots and len(self._roots) >= MAX_ROOTS:
            raise ValueError(f"cannot add root {name!r}: at most {MAX_ROOTS} roots")
        try:
            self._roots[name] = weakref.ref(obj)
        except TypeError:  # dict, list...: held strongly, like exporter.watch() does
            self._roots[name] = lambda: obj

    def remove_root(self, name: str) -> None:
        """Forget the root ``name`` (no error if unknown)."""
        self._roots.pop(name, None)

    # --- reads ----------------------------------------------------------------------------
    def _baseline(self) -> dict[str, int] | None:
        return self._census.selector.baseline if self._census is not None else None

    def _growing(self) -> list[str]:
        return [
            row["type"]
            for row in self.history.types(self._baseline(), limit=5)
            if row["growth"] > 0
        ]

    def summary(self) -> dict[str, Any]:
        """Censuses, types by growth, handlers, watched objects, pools, allocation window."""
        self.observe()
        return {
            "censuses": self.history.censuses(),
            "types": self.history.types(self._baseline()),
            "handlers": self.history.handlers(),
            "watched": self._faults.call("explorer", self._watched, []),
            "pools": self._faults.call("explorer", self._pool_rows, []),
            "allocations": self.allocations.status(),
            "contents_shown": self.config.explorer_show_contents,
            "census_running": self._census is not None,
        }

    def _watched(self) -> list[dict[str, Any]]:
        if self._watchlist is None:
            return []
        readings = self._watchlist.readings()
        return [
            {"name": name, "items": r.items, "bytes": r.bytes, "exact": r.exact}
            for name, r in sorted(readings.items())
        ]

    def _pool_rows(self) -> list[dict[str, Any]]:
        if self._pools is None:
            return []
        rows = {
            name: {
                field: value
                for field in _POOL_FIELDS
                if (value := getattr(snap, field)) is not None
            }
            for name, snap in self._pools.snapshots().items()
        }
        for name, pool in self._pools.object_pools().items():  # where checkouts came from
            if name in rows:
                rows[name]["checkouts"] = pool.checkouts()
                rows[name]["leak_sites"] = pool.leak_sites()
        return [{"pool": name, **row} for name, row in sorted(rows.items())]

    def type_detail(self, name: str) -> dict[str, Any]:
        """Counts of ``name`` over the kept censuses and its latest chain walk, if any."""
        self.observe()
        walk_result = self._walks.get(name)
        if walk_result is not None:
            self._walks.move_to_end(name)
        return {
            "type": name,
            "counts": self.history.counts(name),
            "censuses": [s["finished_at"] for s in self.history.censuses()],
            "walk": walk_result,
            "allocations": self.allocations.status(),
        }

    # --- actions --------------------------------------------------------------------------
    def start_walk(self, name: str, samples: int = 3) -> dict[str, Any]:
        """Start walking the chains of ``samples`` instances of type ``name`` (one walk at a
        time: ``RuntimeError`` while another runs). Call on the loop's thread."""
        validate.integer("samples", samples, minimum=1, maximum=MAX_SAMPLES)
        if self._walk_task is not None and not self._walk_task.done():
            raise RuntimeError("a chain walk is already running")
        state = {"type": name, "state": "running", "started_at": time.time()}
        self._walks[name] = state
        self._walks.move_to_end(name)
        while len(self._walks) > KEPT_WALKS:
            self._walks.popitem(last=False)
        self._walk_task = self.loop.create_task(self._walk(name, samples, state))
        return dict(state)

    async def _walk(self, name: str, samples: int, state: dict[str, Any]) -> None:
        forker = self._census.forker if self._census is not None else None
        if forker is not None and forker.refusal() is None:
            try:
                await self._walk_in_child(forker, name, samples, state)
                return
            except Fallback as fallback:  # counted, then walked in the loop
                self._faults.record("explorer", fallback)
        await self._walk_in_loop(name, samples, state)

    async def _walk_in_child(
        self, forker: Any, name: str, samples: int, state: dict[str, Any]
    ) -> None:
        """The whole walk in a forked child: the loop is held only for the fork. Other
        threads' stacks are taken here (the child has only the forking thread)."""
        frames = _other_threads_frames()
        registered = {n: obj for n, ref in self._roots.items() if (obj := ref()) is not None}
        describe = self._describe

        def work() -> dict[str, Any]:
            objects = gc.get_objects()
            slicer = child.unpaced()
            count, picked = child.run_sync(
                pick_samples(objects, lambda cls: type_name(cls) == name, slicer, samples)
            )
            walked = child.run_sync(
                walk(objects, picked, slicer, Roots(registered=registered), extra=frames)
            )
            chains = child.run_sync(describe(picked, walked, slicer))
            return {"count": count, "chains": chains}

        answer, forked = await forker.run(work)
        state.update(
            state="done",
            count=answer["count"],
            chains=answer["chains"],
            duration_seconds=forked.wall_seconds,
            max_stall_seconds=forked.fork_seconds,
            slices=1,
            mode="fork",
            finished_at=time.time(),
        )

    async def _walk_in_loop(self, name: str, samples: int, state: dict[str, Any]) -> None:
        heap = HeapPass(SLICE_BUDGET, get_objects=self._get_objects)
        frames = _other_threads_frames()
        try:
            async with heap:
                slicer = heap.slicer
                assert slicer is not None
                objects = heap.objects
                # Uncached naming: pick_samples asks once per distinct type, and a cache of weak
                # references to every type would itself show up as growth in the next census.
                count, picked = await pick_samples(
                    objects, lambda cls: type_name(cls) == name, slicer, samples
                )
                roots = Roots(
                    registered={
                        n: obj for n, ref in self._roots.items() if (obj := ref()) is not None
                    }
                )
                walked = await walk(objects, picked, slicer, roots, extra=frames)
                del frames, objects
                chains = await self._describe(picked, walked, slicer)
                del picked, walked
        except Exception as error:  # noqa: BLE001 - counted and shown; a walk never hurts the app
            self._faults.record("explorer", error)
            state.update(state="error", error=f"{type(error).__name__}: {error}")
            return
        slicer.end_slice()
        state.update(
            state="done",
            count=count,
            chains=chains,
            duration_seconds=time.perf_counter() - heap.started,
            max_stall_seconds=slicer.max_stall,
            slices=slicer.slices,
            mode="inloop",
            finished_at=time.time(),
        )

    async def _describe(
        self, picked: list[Any], walked: list[Any], slicer: Slicer
    ) -> list[dict[str, Any]]:
        show = self.config.explorer_show_contents
        chains = []
        for sample, result in zip(picked, walked, strict=True):
            await slicer.checkpoint()
            root = result.root
            chain: dict[str, Any] = {
                "root": None if root is None else {"kind": root.kind, "name": root.name},
                "reason": result.reason,
                "steps": describe_chain(result.path, root, show_contents=show),
            }
            allocated = (
                tracemalloc.get_object_traceback(sample) if tracemalloc.is_tracing() else None
            )
            if allocated is not None:
                chain["allocated_at"] = f"{allocated[-1].filename}:{allocated[-1].lineno}"
            chains.append(chain)
        return chains

    def malloc_trim(self) -> dict[str, Any]:
        """``malloc_trim(0)`` now: glibc returns the free pages of its heaps to the OS; the
        answer says how many bytes RSS gave back (``RuntimeError`` where there is no glibc).
        It holds malloc's locks for its duration (``seconds``), so it is an operator's action,
        never scheduled."""
        return allocator.trim()

    async def census_now(self) -> dict[str, Any]:
        """Run a census now and return the summary including it."""
        if self._census is None:
            raise RuntimeError("no heap census is running")
        self.history.observe(await self._census.run_now())
        return self.summary()


def _other_threads_frames() -> list[Any]:
    """The stacks of the other threads, innermost first: running frames are roots too."""
    me = threading.get_ident()
    frames = []
    for ident, frame in sys._current_frames().items():
        while frame is not None and ident != me:
            frames.append(frame)
            frame = frame.f_back
    return frames
