"""Which gc-tracked objects are alive and which are cyclic garbage, decided as CPython's collector
decides it, without collecting anything (run in the forked child, on its copy of the heap).

The collector's own test (``Modules/gcmodule.c``: ``update_refs``, ``subtract_refs``,
``move_unreachable``), in Python over ``gc.get_objects()``:

1. every object's reference count, minus the references other tracked objects hold to it
   (``gc.get_referents`` calls the same ``tp_traverse`` the collector calls): what is left is
   held from outside the tracked heap (a thread's stack, a C global, a C extension's own
   state, an object ``gc.freeze()`` moved out of reach). Those objects are the *roots*;
2. everything the roots reach through ``tp_traverse`` is reachable, level by level (the levels
   are kept: a shortest path from a root to any reachable object is found from them);
3. the rest is garbage the next full collection frees (reference cycles, and what only they hold).

Nothing here calls ``gc.collect()``, a finalizer or any other application code:
``sys.getrefcount``, ``gc.get_referents``, ``gc.is_tracked``, ``id`` and the C iteration of
built-in containers only.

The census's own objects (its task, coroutines, closures, the previous snapshot: ``own``) are
taken out by identity: they are not roots, and what only they hold is neither alive for the
application nor garbage, it is the census's (``Reach.own``). What the child's own frames hold
is held from a stack (a root) in the parent too, except the census's own objects, which
``own`` names; the child's lists are created after ``gc.get_objects()`` and so not in it.
"""

from __future__ import annotations

import gc
import sys
from bisect import bisect_right
from collections import Counter
from collections.abc import Iterable, Sequence
from itertools import compress, repeat
from operator import rshift, sub
from typing import Any, NamedTuple

CHUNK = 4096
"""Objects whose referents one ``gc.get_referents`` call returns."""
_ALIGNMENT = repeat(4)
"""Objects are 16-byte aligned: ``id() >> 4`` spreads keys over a set's first probes (plain
ids, all multiples of 16, made the sets here 1.5-2x slower)."""


def keys(objects: Iterable[Any]) -> Iterable[int]:
    """Identity keys of ``objects`` (``id`` shifted), computed in C."""
    return map(rshift, map(id, objects), _ALIGNMENT)


class Reach(NamedTuple):
    """The tracked objects of one heap, partitioned."""

    reachable: list[Any]
    """Reachable objects, in breadth-first order from the roots."""
    levels: list[int]
    """Where each breadth-first level starts in ``reachable`` (level 0: the roots)."""
    unreachable: list[Any]
    """Cyclic garbage: what the next full collection would free."""
    own: list[Any]
    """The census's own objects and what only they hold."""


def _list_offset() -> int:
    """References ``sys.getrefcount`` sees on an element of a list it is mapped over, beyond the
    element's own: the list's and the iteration's (measured, not assumed per version)."""
    probe: list[Any] = []
    return next(map(sys.getrefcount, [probe])) - 1


def _mark(frontier: list[Any], unseen: set[int], into: list[Any], levels: list[int] | None) -> None:
    """Add to ``into`` everything ``frontier`` reaches among ``unseen`` (removed from it as it
    is reached), breadth first; ``levels`` gets the start of each new level."""
    get_referents = gc.get_referents
    is_tracked = gc.is_tracked
    while frontier:
        fresh: list[Any] = []
        for start in range(0, len(frontier), CHUNK):
            refs = list(filter(is_tracked, get_referents(*frontier[start : start + CHUNK])))
            by_id = dict(zip(keys(refs), refs, strict=True))
            del refs
            new = unseen.intersection(by_id)
            if new:
                unseen.difference_update(new)
                fresh += map(by_id.__getitem__, new)
        if fresh and levels is not None:
            levels.append(len(into))
        into += fresh
        frontier = fresh


def partition(objects: Sequence[Any], own: Iterable[Any] = ()) -> Reach:
    """Partition ``objects`` (``gc.get_objects()``, every tracked object) into reachable,
    unreachable and the census's own (``own`` and what only it holds)."""
    offset = _list_offset()
    counts = list(map(sys.getrefcount, objects))
    held_inside: Counter[int] = Counter()
    get_referents = gc.get_referents
    is_tracked = gc.is_tracked
    for start in range(0, len(objects), CHUNK):
        held_inside.update(keys(filter(is_tracked, get_referents(*objects[start : start + CHUNK]))))
    object_keys = list(keys(objects))  # computed once: three passes use them
    outside = map(sub, counts, map(held_inside.get, object_keys, repeat(0)))
    rooted = list(compress(objects, map(offset.__lt__, outside)))
    del counts, held_inside, outside
    unseen = set(object_keys)
    own_by_key = dict(zip(keys(own), own, strict=True))  # once each, however often listed
    own_start = [own_by_key[key] for key in unseen.intersection(own_by_key)]
    unseen.difference_update(own_by_key)
    roots = list(compress(rooted, map(unseen.__contains__, keys(rooted))))
    del rooted
    unseen.difference_update(keys(roots))
    reachable = roots
    levels = [0]
    _mark(list(roots), unseen, reachable, levels)
    ours = own_start
    _mark(list(own_start), unseen, ours, None)
    unreachable = list(compress(objects, map(unseen.__contains__, object_keys)))
    return Reach(reachable, levels, unreachable, ours)


def shortest_paths(reach: Reach, positions: Sequence[int], budget: int) -> list[list[Any] | None]:
    """For each of ``positions`` (indexes into ``reach.reachable``), a shortest path
    ``[root, ..., target]`` from a root; ``None`` where finding it would mean looking at more
    than ``budget`` objects.

    Each level above a target is scanned once for all the targets below it: a chunk's joint
    referents first (one C call), then its objects one by one only where a wanted object is
    among them. Identity only (``id``): no ``__eq__`` runs."""
    reachable = reach.reachable
    bounds = [*reach.levels, len(reachable)]
    wanted: dict[int, dict[int, Any]] = {}
    for position in positions:
        depth = bisect_right(reach.levels, position) - 1
        if depth > 0:
            target = reachable[position]
            wanted.setdefault(depth, {})[id(target)] = target
    parent: dict[int, Any] = {}
    looked = 0
    for depth in range(max(wanted, default=0), 0, -1):
        pending = wanted.get(depth)
        if not pending:
            continue
        above = reachable[bounds[depth - 1] : bounds[depth]]
        looked += len(above)
        if looked > budget:
            break
        for start in range(0, len(above), CHUNK):
            chunk = above[start : start + CHUNK]
            if pending.keys().isdisjoint(map(id, gc.get_referents(*chunk))):
                continue
            for holder in chunk:
                for key in pending.keys() & set(map(id, gc.get_referents(holder))):
                    parent[key] = holder
                    del pending[key]
                    if depth > 1:
                        wanted.setdefault(depth - 1, {})[id(holder)] = holder
                if not pending:
                    break
            if not pending:
                break
    paths: list[list[Any] | None] = []
    for position in positions:
        path = [reachable[position]]
        while id(path[-1]) in parent:
            path.append(parent[id(path[-1])])
        depth = bisect_right(reach.levels, position) - 1
        paths.append(path[::-1] if len(path) == depth + 1 else None)
    return paths
