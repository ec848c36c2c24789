"""What runs in the forked child: isolation first, then the work, then ``os._exit``.

The child is a copy of the parent at the instant of the fork, with one thread (the one that
forked) and every lock in whatever state the parent's other threads left it. So it takes none
it did not create: it logs nothing, prints nothing, imports nothing (everything it calls is
bound at this module's import, in the parent), runs no application code (types are named
through ``type``'s own descriptors, sizes are read only through builtin ``__sizeof__``
slots, the garbage collector is off so no ``__del__`` runs) and leaves through ``os._exit``:
no ``atexit`` handler runs and no inherited ``sys.stdout``/C stdio buffer is flushed twice.

Isolation (``isolate``), before any work:

* every Python-level signal handler goes back to ``SIG_DFL`` and the wakeup fd is unset: the
  parent's asyncio loop shares that socket, and a signal to the child must not wake the
  parent's handlers (a ``SIGTERM`` sent to the child simply ends it);
* ``oom_score_adj`` 1000: under memory pressure the kernel kills the child first;
* ``PR_SET_PDEATHSIG`` (Linux): the kernel kills the child when the forking thread dies, and
  an EOF on the pipe ends it too (it writes its answer only at the end);
* every inherited descriptor but the answer pipe and 0-2 is closed, so a socket the parent
  closes is really closed (a client waiting for EOF does not wait for the census);
* ``nice`` 19: on a busy machine the application's threads keep the CPU (the deadline bounds
  how long a starved census may take).

What it counts (``census``): every gc-tracked object (``gc.get_objects()``), partitioned into
reachable, unreachable (cyclic garbage waiting for the collector) and the census's own
(``reach.py``: the collector's own test, without collecting), plus every untracked object
reachable from them (``str``, ``bytes``, ``int``, ``float``, tuples and dicts
of atoms...: ``gc.get_referents`` breadth-first from the tracked objects, through untracked
containers, each object once by ``id``), and the shallow bytes of each (``sys.getsizeof``).
Not seen: objects referenced only from C state that no tracked object reaches (a C
extension's private buffers), and what ``gc.freeze()`` moved to the permanent generation.
"""

from __future__ import annotations

import gc
import itertools
import math
import os
import re
import signal
import sys
import time
import types
from collections import Counter
from collections.abc import Callable, Coroutine, Iterable, Sequence
from itertools import chain, compress, count, filterfalse
from operator import not_
from typing import Any, NamedTuple, NoReturn

from . import wire
from .handler_states import CLOSED, FINISHED, UNREACHABLE, WEBSOCKET_STATES, handler_state
from .holders import Namer
from .reach import Reach, keys, partition, shortest_paths
from .slicer import Slicer
from .timers import callback_name
from .typenames import type_name

LEAK_STATES = (FINISHED, CLOSED)
"""Handler states whose reachable instances are a leak: their holder is looked for."""

OOM_SCORE_ADJ = b"/proc/self/oom_score_adj"
PR_SET_PDEATHSIG = 1
WALK_CHUNK = 4096
"""Objects whose referents one ``gc.get_referents`` call returns."""

_TYPE_MRO = vars(type)["__mro__"]
_TYPE_DICT = vars(type)["__dict__"]
_TYPE_FLAGS = vars(type)["__flags__"]
_HAVE_GC = 1 << 14
_CODE = types.CodeType
_CODE_PARTS = (
    "co_consts",
    "co_names",
    "co_localsplusnames",
    "co_filename",
    "co_name",
    "co_qualname",
    "co_linetable",
    "co_exceptiontable",
)
"""What a code object stores (``co_code``, ``co_varnames``, ``co_lnotab`` are built on access)."""
_GC_HEAD = sys.getsizeof([]) - [].__sizeof__()
_C_SLOTS = (
    types.WrapperDescriptorType,
    types.MethodDescriptorType,
    types.BuiltinFunctionType,
    types.ClassMethodDescriptorType,
)
_ROW = re.compile(r"^\s*(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s*$")
_STAT = re.compile(r"^(.*?)\s*=\s*([\d,]+)\s*$")
_UNUSED_POOLS = re.compile(r"^(\d+) unused pools \* (\d+) bytes")
_ARENAS = re.compile(r"^(\d+) arenas \* (\d+) bytes/arena")


# ------------------------------------------------------------------------------ the process
def main(
    write_fd: int, work: Callable[[], Any], *, parent: int, prctl: Callable[..., int] | None
) -> NoReturn:
    """The child's whole life after ``os.fork()``: isolate, ``work()``, write, ``os._exit``."""
    status = 0
    try:
        gc.disable()  # a collection here would run finalizers (application code)
        isolate(write_fd, parent=parent, prctl=prctl)
        answer = wire.encode(wire.OK, work())
    except BaseException as error:  # noqa: BLE001 - reported to the parent, never raised
        status = 1
        answer = wire.encode(wire.ERROR, f"{type(error).__name__}: {error.args!r}"[:500])
    try:
        view = memoryview(answer)
        while view:
            view = view[os.write(write_fd, view) :]
    except BaseException:  # noqa: BLE001 - the parent went away: nothing left to do
        status = 2
    finally:
        os._exit(status)


def isolate(keep_fd: int, *, parent: int, prctl: Callable[..., int] | None) -> None:
    """Signals, wakeup fd, OOM score, death with the parent, inherited descriptors."""
    for signum in signal.valid_signals():
        try:
            handler = signal.getsignal(signum)
            if callable(handler):
                signal.signal(signum, signal.SIG_DFL)
        except (OSError, ValueError, RuntimeError):
            continue  # SIGKILL, SIGSTOP, real-time signals Python cannot set
    signal.set_wakeup_fd(-1)
    try:
        fd = os.open(OOM_SCORE_ADJ, os.O_WRONLY)
        try:
            os.write(fd, b"1000")
        finally:
            os.close(fd)
    except OSError:
        pass  # not Linux, or /proc not mounted: the deadline still bounds the child
    if prctl is not None:
        prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:  # the parent died before the death signal was armed
        os._exit(3)
    try:
        os.nice(19)  # the app's threads keep the CPU; the census takes what is left
    except OSError:
        pass
    os.closerange(3, keep_fd)
    os.closerange(keep_fd + 1, max(keep_fd + 2, os.sysconf("SC_OPEN_MAX")))


def run_sync(coro: Coroutine[Any, Any, Any]) -> Any:
    """Drive a coroutine that never waits (a :func:`unpaced` slicer) to its result."""
    try:
        coro.send(None)
    except StopIteration as stop:
        return stop.value
    coro.close()
    raise RuntimeError("a child step waited on the event loop")


async def _no_pause(seconds: float) -> None:
    return None


def unpaced() -> Slicer:
    """A slicer whose budget never runs out: the shared sliced steps run straight through."""
    return Slicer(math.inf, clock=time.perf_counter, pause=_no_pause)


# ------------------------------------------------------------------------------- the census
def reachable_untracked(tracked: list[Any], seen: set[int] | None = None) -> list[Any]:
    """Every object not tracked by gc that ``tracked`` reaches, directly or through other
    untracked containers, once each; ``seen`` (ids) are skipped, and what is found is added."""
    is_tracked = gc.is_tracked
    get_referents = gc.get_referents
    seen = set() if seen is None else seen
    add = seen.add
    found: list[Any] = []
    frontier = tracked
    while frontier:
        fresh = []
        append = fresh.append
        for start in range(0, len(frontier), WALK_CHUNK):
            for obj in filterfalse(
                is_tracked, get_referents(*frontier[start : start + WALK_CHUNK])
            ):
                key = id(obj)
                if key not in seen:
                    add(key)
                    append(obj)
        found += fresh
        # Code objects are untracked and have no tp_traverse: their constants, names and
        # line tables (a good share of a real heap) are reached through their attributes.
        for code in [obj for obj in fresh if type(obj) is _CODE]:
            for attr in _CODE_PARTS:
                part = getattr(code, attr, None)
                if part is not None and not is_tracked(part) and id(part) not in seen:
                    add(id(part))
                    fresh.append(part)
                    found.append(part)
        frontier = fresh
    return found


def builtin_sizeof(cls: type) -> bool:
    """Whether ``cls``'s ``__sizeof__`` is a C slot (so ``sys.getsizeof`` runs no Python
    code), looked up along its MRO through ``type``'s own descriptors."""
    for klass in _TYPE_MRO.__get__(cls, type):
        namespace = _TYPE_DICT.__get__(klass, type)
        if "__sizeof__" in namespace:
            return isinstance(namespace["__sizeof__"], _C_SLOTS)
    return True


def bytes_by_type(objects: Iterable[Any], distinct: Iterable[type]) -> dict[type, int]:
    """Shallow bytes (``sys.getsizeof``) by type; a type with a Python ``__sizeof__`` is
    measured by ``object.__sizeof__`` (its basic size) plus the gc header, never by its code."""
    python_sizeof = {cls for cls in distinct if not builtin_sizeof(cls)}
    totals: dict[type, int] = {}
    get = totals.get
    getsizeof = sys.getsizeof
    if not python_sizeof:
        for obj in objects:
            cls = type(obj)
            totals[cls] = get(cls, 0) + getsizeof(obj)
        return totals
    basic = object.__sizeof__
    for obj in objects:
        cls = type(obj)
        if cls in python_sizeof:
            size = basic(obj) + (_GC_HEAD if _TYPE_FLAGS.__get__(cls, type) & _HAVE_GC else 0)
        else:
            size = getsizeof(obj)
        totals[cls] = get(cls, 0) + size
    return totals


class ChildCensus(NamedTuple):
    """The child's answer, read by the parent by attribute (on the wire: a plain tuple of
    these fields in this order, ``wire.VERSION`` 2)."""

    types: dict[str, tuple[int, int]]
    """Reachable objects (all of them without ``reachability``): name -> (count, bytes)."""
    garbage: dict[str, tuple[int, int]]
    """Unreachable objects (cyclic garbage and what only it holds): name -> (count, bytes)."""
    handlers: list[tuple[str, str, int]]
    """``(handler class, state, n)``; unreachable handlers have the state ``unreachable``."""
    streams: tuple[int, int, int, int]
    """``StreamTally`` fields of the reachable open streams."""
    timers: dict[str, int]
    """Scheduled timers on the census's loop by callback name."""
    holders: dict[str, str]
    """Type name -> holder label (``holders.Namer``) for the types asked about."""
    tracked: int
    untracked: int
    distinct: int
    own: int
    """Tracked objects taken out as the census's own (the untracked ones only they hold are
    not counted anywhere)."""
    reachability: bool
    pymalloc: dict[str, int] | None
    private_bytes: int | None
    seconds: float

    @classmethod
    def from_wire(cls, value: Any) -> ChildCensus:
        """The answer from its wire form; ``ValueError`` for anything of another shape."""
        if type(value) is not tuple or len(value) != len(cls._fields):
            raise ValueError(f"census answer of an unknown shape ({type(value).__name__})")
        return cls(*value)


def _first_positions(
    reachable: list[Any], wanted: frozenset[type], sample: Callable[[Any], bool], start: int = 0
) -> dict[type, int]:
    """Position in ``reachable`` (from ``start`` on) of the first instance of each ``wanted``
    type that ``sample`` accepts (the first found is on the shallowest level: a shortest
    path)."""
    first: dict[type, int] = {}
    if not wanted:
        return first
    types = map(type, itertools.islice(reachable, start, None))
    for position in compress(count(start), map(wanted.__contains__, types)):
        obj = reachable[position]
        cls = type(obj)
        if cls not in first and sample(obj):
            first[cls] = position
            if len(first) == len(wanted):
                break
    return first


def _named(counts: Counter[type], sizes: dict[type, int]) -> dict[str, tuple[int, int]]:
    rows: dict[str, list[int]] = {}
    for cls, n in counts.items():
        if n <= 0:
            continue
        row = rows.setdefault(type_name(cls), [0, 0])
        row[0] += n
        row[1] += sizes.get(cls, 0)
    return {name: (n, size) for name, (n, size) in rows.items()}


def census(
    *,
    count_by_type: Callable[..., Coroutine[Any, Any, Any]],
    kinds: Any,
    own: Sequence[Any] = (),
    holder_types: frozenset[str] = frozenset(),
    full: bool = True,
    reachability: bool = True,
) -> ChildCensus:
    """The census, in the child: reachable and unreachable objects by type name (counts and
    bytes), handlers, streams, timers, holders, allocator stats.

    ``count_by_type`` is the census's own classification (``heap.count_by_type``), run
    unpaced, so that whatever it counts besides types applies in both modes. ``own``: the
    census's objects alive at the fork (its task, coroutines, closure, last snapshot), taken
    out by identity with what only they hold (``reach.partition``). ``holder_types``: type
    names whose holder is looked for (with every handler class that has reachable finished or
    closed instances). ``reachability=False`` counts every object as reachable (the census
    before reachability, kept for the benchmark)."""
    started = time.perf_counter()
    objects = gc.get_objects()
    tracked = len(objects)
    if reachability:
        reach = partition(objects, [*own, own])
    else:
        own_ids = set(keys([*own, own]))
        mine = list(map(own_ids.__contains__, keys(objects)))
        reach = Reach(
            list(compress(objects, map(not_, mine))), [0], [], list(compress(objects, mine))
        )
        del mine
    del objects
    seen: set[int] = set()
    live_untracked = reachable_untracked(reach.reachable, seen) if full else []
    if full:
        reachable_untracked(reach.own, seen)  # claimed for the census, counted nowhere
    garbage_untracked = reachable_untracked(reach.unreachable, seen) if full else []
    del seen
    live = run_sync(count_by_type(reach.reachable, unpaced(), kinds=kinds))
    counts = live.types + Counter(map(type, live_untracked))
    sizes = bytes_by_type(chain(reach.reachable, live_untracked), counts)
    handler_kinds = type(kinds)(handlers=kinds.handlers, websockets=kinds.websockets)
    dead = run_sync(count_by_type(reach.unreachable, unpaced(), kinds=handler_kinds))
    dead_counts = dead.types + Counter(map(type, garbage_untracked))
    dead_sizes = bytes_by_type(chain(reach.unreachable, garbage_untracked), dead_counts)
    handler_rows: dict[tuple[str, str], int] = {}
    for (cls, state), n in live.handlers.items():
        key = (type_name(cls), state)
        handler_rows[key] = handler_rows.get(key, 0) + n
    for (cls, state), n in dead.handlers.items():
        name = type_name(cls)
        handler_rows.setdefault((name, state), 0)  # tells the collector the handler's kind
        handler_rows[name, UNREACHABLE] = handler_rows.get((name, UNREACHABLE), 0) + n
    timers: dict[str, int] = {}
    for callback, n in live.timers.items():
        name = callback_name(callback)
        timers[name] = timers.get(name, 0) + n
    holders = find_holders(reach, counts, live.handlers, holder_types) if reachability else {}
    private = private_bytes()  # the peak: every page the walk wrote is copied by now
    streams = live.streams
    return ChildCensus(
        types=_named(counts, sizes),
        garbage=_named(dead_counts, dead_sizes),
        handlers=[(name, state, n) for (name, state), n in handler_rows.items()],
        streams=(
            streams.open,
            streams.write_buffer_bytes,
            streams.write_buffer_max_bytes,
            streams.read_buffer_bytes,
        ),
        timers=timers,
        holders=holders,
        tracked=tracked,
        untracked=len(live_untracked) + len(garbage_untracked),
        distinct=len(counts),
        own=len(reach.own),
        reachability=reachability,
        pymalloc=pymalloc_stats(),
        private_bytes=private,
        seconds=time.perf_counter() - started,
    )


def find_holders(
    reach: Reach,
    counts: Counter[type],
    handlers: Counter[tuple[type, str]],
    names: frozenset[str],
) -> dict[str, str]:
    """Holder labels for the reachable types named in ``names`` and the handler classes with
    reachable finished or closed instances (a sample of each in that state), by type name.
    Bounded: at most one pass over the reachable heap (``reach.shortest_paths``)."""
    wanted = frozenset(cls for cls in counts if type_name(cls) in names)
    leaking = frozenset(cls for (cls, state), n in handlers.items() if state in LEAK_STATES and n)
    websockets = frozenset(cls for (cls, state) in handlers if state in WEBSOCKET_STATES)
    first: dict[type, int] = {}
    # Below the roots first: an instance held from outside the heap (a C stack, a C
    # extension) names nothing; one held by the application's own objects does.
    below = reach.levels[1] if len(reach.levels) > 1 else len(reach.reachable)
    for start in (below, 0):
        first.update(
            _first_positions(reach.reachable, wanted - leaking - first.keys(), _any, start)
        )
        first.update(
            _first_positions(
                reach.reachable,
                leaking - first.keys(),
                lambda obj: handler_state(obj, websockets) in LEAK_STATES,
                start,
            )
        )
    if not first:
        return {}
    found = list(first.items())
    paths = shortest_paths(reach, [position for _, position in found], len(reach.reachable) + 1)
    namer = Namer()
    return {
        type_name(cls): namer.name(path)
        for (cls, _), path in zip(found, paths, strict=True)
        if path is not None
    }


def _any(obj: Any) -> bool:
    return True


# ----------------------------------------------------------------------- allocator, memory
def pymalloc_stats() -> dict[str, int] | None:
    """pymalloc's arenas, pools and blocks from ``sys._debugmallocstats()``, which prints to
    the C ``stderr``: fd 2 is pointed at an anonymous file for the call (the child's own fd
    2; the parent's is never touched). ``None`` where there is no pymalloc to ask."""
    debug = getattr(sys, "_debugmallocstats", None)
    memfd_create = getattr(os, "memfd_create", None)
    if debug is None or memfd_create is None:
        return None
    fd = memfd_create("pymalloc-stats")
    saved = os.dup(2)
    try:
        os.dup2(fd, 2)
        try:
            debug()
        finally:
            os.dup2(saved, 2)
        os.lseek(fd, 0, os.SEEK_SET)
        chunks = []
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
    finally:
        os.close(saved)
        os.close(fd)
    return parse_pymalloc(b"".join(chunks).decode("ascii", "replace"))


def parse_pymalloc(text: str) -> dict[str, int] | None:
    """The figures of ``sys._debugmallocstats()``'s pymalloc section (up to its first
    ``Total``): arenas, pools (used, empty) and blocks (used, free) and their bytes."""
    stats = {"pools_used": 0, "blocks_used": 0, "blocks_free": 0}
    found = False
    for line in text.splitlines():
        row = _ROW.match(line)
        if row is not None:
            _, _, pools, used, free = map(int, row.groups())
            stats["pools_used"] += pools
            stats["blocks_used"] += used
            stats["blocks_free"] += free
            continue
        if (match := _ARENAS.match(line)) is not None:
            stats["arena_size"] = int(match.group(2))
        elif (match := _UNUSED_POOLS.match(line)) is not None:
            stats["pools_empty"] = int(match.group(1))
            stats["pool_size"] = int(match.group(2))
            stats["pools_empty_bytes"] = int(match.group(1)) * int(match.group(2))
        elif (match := _STAT.match(line)) is not None:
            key, value = match.group(1).strip(), int(match.group(2).replace(",", ""))
            if key == "Total":
                stats["total_bytes"] = value
                found = True
                break
            name = {
                "# arenas allocated current": "arenas",
                "# arenas highwater mark": "arenas_highwater",
                "# bytes in allocated blocks": "allocated_bytes",
                "# bytes in available blocks": "available_bytes",
                "# bytes lost to pool headers": "pool_headers_bytes",
                "# bytes lost to quantization": "quantization_bytes",
                "# bytes lost to arena alignment": "alignment_bytes",
            }.get(key)
            if name is not None:
                stats[name] = value
    return stats if found and "arenas" in stats else None


def private_bytes() -> int | None:
    """This process's private memory (``Private_Clean + Private_Dirty`` of
    ``/proc/self/smaps_rollup``): in the child, the pages copied on write plus its own."""
    try:
        fd = os.open(b"/proc/self/smaps_rollup", os.O_RDONLY)
    except OSError:
        return None
    try:
        data = b""
        while chunk := os.read(fd, 65536):
            data += chunk
    finally:
        os.close(fd)
    total = 0
    for line in data.split(b"\n"):
        if line.startswith((b"Private_Clean:", b"Private_Dirty:")):
            total += int(line.split()[1]) * 1024
    return total
