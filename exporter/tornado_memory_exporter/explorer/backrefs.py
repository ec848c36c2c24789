"""Reference chains: what keeps a sample of a type's instances alive, walked back to a root.

objgraph's ``find_backref_chain`` idea (breadth-first over referrers until a root is met), made
safe for a live server:

* ``gc.get_referrers()`` scans the whole heap in one C call per object asked about: on a big
  heap that is a stall per chain link. Instead, one list from ``gc.get_objects()`` (the same
  single unsliceable call the census makes) is scanned once per chain *level* for every node of
  the frontier at once, in chunks that yield to the loop (``Slicer``, the census's budget). A
  chunk whose referents (one ``gc.get_referents(*chunk)`` C call) miss the frontier is skipped
  without looking at its objects one by one.
* Never forces a collection; the walk's own working objects are created after the enumeration,
  so they are never taken for referrers, and the walk's own coroutines (code in this package)
  are skipped.
* Roots: a module's globals, a class attribute, a running or suspended frame (other threads'
  stacks, coroutines, generators), an IOLoop callback (an asyncio handle or a Tornado
  ``PeriodicCallback``) or a root the application registered (``explorer.add_root``).

What it cannot see: referrers that are not gc-tracked (they cannot hold tracked objects anyway)
or that ``gc.freeze()`` moved to the permanent generation. A sample whose referrers run out
before a root is met is kept alive only by a reference cycle the collector has not reached yet,
or by such invisible holders; the walk says so.
"""

from __future__ import annotations

import functools
import gc
import sys
import types
from asyncio import Handle
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import islice
from typing import Any

import tornado.ioloop

from ..about import PACKAGE_DIR
from ..census.slicer import Slicer, chunks
from ..census.typenames import module_label, type_name

MODULE_GLOBAL = "module global"
CLASS_ATTRIBUTE = "class attribute"
FRAME = "frame"
CALLBACK = "ioloop callback"
REGISTERED = "registered root"

MAX_DEPTH = 16
"""Chain links walked before giving up on a sample (each costs one pass over the heap)."""
MAX_FRONTIER = 2000
"""Nodes carried to the next level; beyond it the widest fan-outs are cut (bounded memory)."""
TAIL = 1000
"""Matching instances remembered while sampling: the last ones in ``gc.get_objects()`` order,
which lists the oldest generation last, where long-lived (leaked) objects end up."""
CHUNK = 2048
"""Most objects whose referents are fetched in one ``gc.get_referents`` call; halved while a
step takes more than half the slice budget."""
BIG = 50_000
"""Builtin containers longer than this are searched apart, in pieces of ``PIECE`` items."""
PIECE = 8192
_BIG_TYPES = (list, tuple, dict, set, frozenset)
FINE = 128
"""Objects looked at one by one between two checkpoints, in a chunk that holds a frontier node."""

_CODE_HOLDERS = (
    types.CoroutineType,
    types.GeneratorType,
    types.AsyncGeneratorType,
    types.FrameType,
)


@dataclass(frozen=True)
class Root:
    kind: str
    name: str


@dataclass
class Walked:
    """One sample's chain, root first (``root`` is ``None`` when none was reached)."""

    path: list[Any]
    root: Root | None
    reason: str | None = None


def code_of(obj: Any) -> types.CodeType | None:
    """The code object behind a function, frame, coroutine or generator (else ``None``)."""
    for attr in ("__code__", "f_code", "cr_code", "gi_code", "ag_code"):
        code = (
            getattr(obj, attr, None)
            if isinstance(obj, (types.FunctionType, *_CODE_HOLDERS))
            else None
        )
        if isinstance(code, types.CodeType):
            return code
    return None


def where(obj: Any) -> str:
    """``qualname (file:line)`` of a function-like object, for labels; never its values."""
    code = code_of(obj)
    name = getattr(obj, "__qualname__", None) or (code.co_qualname if code else type(obj).__name__)
    if isinstance(obj, types.FrameType):
        return f"{code.co_qualname} ({code.co_filename}:{obj.f_lineno})"
    frame = (
        getattr(obj, "cr_frame", None)
        or getattr(obj, "gi_frame", None)
        or getattr(obj, "ag_frame", None)
    )
    if code is None:
        return str(name)
    line = frame.f_lineno if frame is not None else code.co_firstlineno
    return f"{name} ({code.co_filename}:{line})"


def callback_target(obj: Any) -> Any:
    """The application function inside a handle, partial, bound method or PeriodicCallback."""
    for _ in range(8):  # wrappers nest a few levels at most; a bound keeps odd objects cheap
        if isinstance(obj, tornado.ioloop.PeriodicCallback):
            obj = obj.callback
        elif isinstance(obj, Handle):
            callback, args = getattr(obj, "_callback", None), getattr(obj, "_args", None) or ()
            # Tornado wraps every callback in IOLoop._run_callback(partial(callback, *args)).
            bound = getattr(callback, "__self__", None)
            if isinstance(bound, tornado.ioloop.IOLoop) and args:
                callback = args[0]
            obj = callback
        elif isinstance(obj, functools.partial):
            obj = obj.func
        elif isinstance(obj, types.MethodType):
            obj = obj.__func__
        else:
            break
    return obj


class Roots:
    """Decides which referrers end a chain, and which are the walk's own and must be skipped."""

    def __init__(
        self,
        *,
        modules: Mapping[str, Any] | None = None,
        registered: Mapping[str, Any] | None = None,
        own_dir: str = PACKAGE_DIR,
    ) -> None:
        modules = dict(sys.modules) if modules is None else modules
        self._module_dicts = {
            id(d): module_label(name)
            for name, m in modules.items()
            if isinstance(d := getattr(m, "__dict__", None), dict)
        }
        self._registered = {id(obj): name for name, obj in (registered or {}).items()}
        self._own_dir = own_dir

    def skip(self, obj: Any) -> bool:
        """Whether ``obj`` is a frame, coroutine or generator of this package (the walk itself,
        a census in progress) and so no evidence of what the application holds."""
        if not isinstance(obj, _CODE_HOLDERS):
            return False
        code = code_of(obj)
        return code is not None and code.co_filename.startswith(self._own_dir)

    def root(self, referrer: Any, child: Any) -> Root | None:
        """The root ``referrer`` is when it holds ``child``, else ``None``."""
        rid = id(referrer)
        if rid in self._registered:
            return Root(REGISTERED, self._registered[rid])
        module = self._module_dicts.get(rid)
        if module is not None:
            return Root(MODULE_GLOBAL, f"{module}.{key_of(referrer, child) or '?'}")
        if isinstance(referrer, type):
            attr = key_of(vars(referrer), child) if isinstance(child, dict) else None
            return Root(
                CLASS_ATTRIBUTE,
                f"{type_name(referrer)}{'.' + attr if attr else ''}",
            )
        if isinstance(referrer, _CODE_HOLDERS):
            return Root(FRAME, where(referrer))
        if isinstance(referrer, (Handle, tornado.ioloop.PeriodicCallback)):
            kind = type(referrer).__name__
            return Root(CALLBACK, f"{kind} -> {where(callback_target(referrer))}")
        return None


def key_of(mapping: Any, value: Any, limit: int = 100_000) -> str | None:
    """The string key under which ``mapping`` holds ``value`` (first ``limit`` items only)."""
    if not isinstance(mapping, dict):
        return None
    for n, (key, item) in enumerate(mapping.items()):
        if item is value:
            return key if isinstance(key, str) else None
        if n >= limit:
            break
    return None


async def pick_samples(
    objects: Sequence[Any], wanted: Callable[[type], bool], slicer: Slicer, n: int
) -> tuple[int, list[Any]]:
    """Count the instances whose type is ``wanted`` and pick ``n`` of them, spread over the
    last ``TAIL`` found. ``wanted`` is asked once per distinct type."""
    verdicts: dict[type, bool] = {}
    tail: deque[Any] = deque(maxlen=TAIL)
    count = 0
    async for chunk in chunks(objects, slicer, CHUNK):
        for obj in chunk:
            cls = type(obj)
            ok = verdicts.get(cls)
            if ok is None:
                ok = verdicts[cls] = bool(wanted(cls))
            if ok:
                count += 1
                tail.append(obj)
    if not tail or n <= 0:
        return count, []
    step = max(1, len(tail) // n)
    picked = [tail[i] for i in range(len(tail) - 1, -1, -step)][:n]
    tail.clear()
    return count, picked


async def walk(
    objects: Sequence[Any],
    samples: Sequence[Any],
    slicer: Slicer,
    roots: Roots,
    *,
    extra: Iterable[Any] = (),
    max_depth: int = MAX_DEPTH,
    max_frontier: int = MAX_FRONTIER,
) -> list[Walked]:
    """Breadth-first from ``samples`` over referrers found in ``objects`` (plus ``extra``, e.g.
    other threads' frames) until each sample meets a root; one ``Walked`` per sample."""
    state = _Search(samples, roots, max_frontier)
    scan: list[Sequence[Any]] = [objects, list(extra)]
    exhausted = True
    for _ in range(max_depth):
        if not state.frontier:
            exhausted = False
            break
        for seq in scan:
            async for chunk in chunks(seq, slicer, CHUNK):
                big = [obj for obj in chunk if isinstance(obj, _BIG_TYPES) and len(obj) > BIG]
                if big:
                    chunk = [
                        obj for obj in chunk if not (isinstance(obj, _BIG_TYPES) and len(obj) > BIG)
                    ]
                    for obj in big:
                        state.visit(obj, await _big_hits(obj, state.frontier, slicer))
                    del big
                if state.frontier.keys().isdisjoint(map(id, gc.get_referents(*chunk))):
                    continue
                # A chunk that holds a frontier node is looked at object by object, which costs
                # several times the chunk-wide check: slice it finer.
                for i in range(0, len(chunk), FINE):
                    await slicer.checkpoint()
                    for obj in chunk[i : i + FINE]:
                        state.visit(obj, gc.get_referents(obj))
                del chunk
        state.next_level()
        if len(state.found) == len(samples):
            exhausted = False
            break
    return state.results(max_depth, exhausted)


class _Search:
    """Per-sample bookkeeping of the walk. Chains of different samples may share links
    (several samples in one list), so every map is keyed by (sample index, id(node))."""

    def __init__(self, samples: Sequence[Any], roots: Roots, max_frontier: int) -> None:
        self.samples = samples
        self.roots = roots
        self.max_frontier = max_frontier
        self.frontier: dict[int, list[int]] = {}
        for i, sample in enumerate(samples):
            self.frontier.setdefault(id(sample), []).append(i)
        self.seen: set[tuple[int, int]] = {(i, id(s)) for i, s in enumerate(samples)}
        self.child_of: dict[tuple[int, int], Any] = {}  # (sample, id(referrer)) -> node held
        self.found: dict[int, tuple[Root, Any]] = {}
        self.last: dict[int, Any] = dict(enumerate(samples))  # deepest node per sample
        self.skipped: set[int] = set()
        self.following: dict[int, list[int]] = {}

    def visit(self, obj: Any, referents: Iterable[Any]) -> None:
        """Record ``obj`` as a referrer of whichever frontier nodes are among ``referents``."""
        oid = id(obj)
        if oid in self.skipped:
            return
        for ref in referents:
            origins = self.frontier.get(id(ref))
            if origins is None:
                continue
            if self.roots.skip(obj):
                self.skipped.add(oid)
                return
            root: Root | None | bool = False  # False: not classified yet
            for origin in origins:
                if origin in self.found or (origin, oid) in self.seen:
                    continue
                self.seen.add((origin, oid))
                self.child_of[origin, oid] = ref
                if root is False:
                    root = self.roots.root(obj, ref)
                if root is not None:
                    self.found[origin] = (root, obj)
                elif oid in self.following or len(self.following) < self.max_frontier:
                    self.following.setdefault(oid, []).append(origin)
                    self.last[origin] = obj

    def next_level(self) -> None:
        self.frontier = {}
        for node, origins in self.following.items():
            alive = [origin for origin in origins if origin not in self.found]
            if alive:
                self.frontier[node] = alive
        self.following = {}

    def results(self, max_depth: int, exhausted: bool) -> list[Walked]:
        cut = {o for origins in self.frontier.values() for o in origins} if exhausted else set()
        out = []
        for i, sample in enumerate(self.samples):
            if i in self.found:
                root, top = self.found[i]
                out.append(Walked(self._path(i, top, sample), root))
            else:
                reason = (
                    f"no root within {max_depth} links"
                    if i in cut
                    else "no root: held only by a reference cycle the collector has not reached "
                    "yet, or by objects the census cannot see (untracked, or frozen by gc.freeze())"
                )
                out.append(Walked(self._path(i, self.last[i], sample), None, reason))
        return out

    def _path(self, origin: int, top: Any, sample: Any) -> list[Any]:
        path = [top]
        node = top
        while node is not sample and (origin, id(node)) in self.child_of:
            node = self.child_of[origin, id(node)]
            path.append(node)
        return path


async def _big_hits(container: Any, frontier: Mapping[int, Any], slicer: Slicer) -> list[Any]:
    """The items (and keys) of a huge builtin container that are frontier nodes, searched in
    pieces of ``PIECE`` with a checkpoint between them (one C call over millions would stall)."""
    found = []
    items = iter(container.items()) if isinstance(container, dict) else iter(container)
    try:
        while piece := list(islice(items, PIECE)):
            if isinstance(container, dict):
                piece = [x for pair in piece for x in pair]
            found += [x for x in piece if id(x) in frontier]
            del piece
            await slicer.checkpoint()
    except RuntimeError:  # resized while we yielded: what was found so far stands
        pass
    return found
