"""``exporter.watch(name, obj)``: ``len()`` and deep size of application objects (caches,
registries), measured by the heap census in time-budgeted slices and read by scrapes.

Accuracy of ``<ns>_watched_object_bytes``: the size is pympler's ``asizeof`` (the object, plus
everything it references, each object counted once). A container (anything with ``len()``
that iterates) is measured as its own ``sys.getsizeof`` plus its items (keys and values of a
mapping), in batches of ``BATCH`` items that yield to the loop between them. When all the
items are measured within ``MAX_SLICES`` slices the figure is exact; otherwise the items
measured so far (the first ones in iteration order: oldest-inserted for dicts) are scaled to
the container's length, so the estimate is off by as much as those items differ in mean size
from the rest (within a few percent for a cache of homogeneous entries, unbounded for a
container whose first items are unrepresentative). Objects that merely hold a big container
are measured in one step: watch the container itself.
"""

from __future__ import annotations

import re
import sys
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from itertools import chain, islice
from typing import Any

from .. import validate
from ..faults import Faults
from .slicer import Slicer, paced

MAX_WATCHES = 100
"""More watched objects than this is a label-cardinality bug, refused with ``ValueError``."""
BATCH = 128
"""Items measured between two looks at the clock."""
MAX_SLICES = 20
"""Slices one watched object may use per census before its size is extrapolated."""
_NAME = re.compile(r"^[A-Za-z0-9_.:/-]{1,100}$")


@dataclass
class Reading:
    """Latest measurement of one watched object."""

    items: int | None = None
    bytes: int | None = None
    exact: bool = True


class _Watch:
    def __init__(self, obj: object) -> None:
        try:
            self._ref: Callable[[], object] = weakref.ref(obj)
        except TypeError:  # dict, list, set...: not weakly referenceable, so held strongly
            self._ref = lambda: obj
        self.reading = Reading()

    def get(self) -> object:
        return self._ref()


class Watchlist:
    """Registered objects by name; ``measure()`` runs inside the census."""

    def __init__(self, faults: Faults) -> None:
        self._faults = faults
        self._watches: dict[str, _Watch] = {}
        faults.declare("watch")

    def watch(self, name: str, obj: object) -> None:
        """Export ``len(obj)`` and the deep size of ``obj`` as ``{name=...}``.

        Held by weak reference when the type allows it (so watching never keeps it alive; its
        series disappear once it is freed); builtin ``dict``/``list``/``set`` cannot be weakly
        referenced and are held strongly until :meth:`unwatch`. Watching a name again
        replaces the object.
        """
        validate.label_value("name", name)
        if name not in self._watches and len(self._watches) >= MAX_WATCHES:
            raise ValueError(f"name={name!r}: already watching {MAX_WATCHES} objects, the maximum")
        if obj is None:
            raise ValueError("obj=None cannot be watched")
        self._watches[name] = _Watch(obj)

    def unwatch(self, name: str) -> None:
        """Stop watching ``name`` (no error if it is not watched)."""
        self._watches.pop(name, None)

    def readings(self) -> dict[str, Reading]:
        """Latest readings of the objects still alive, by name."""
        return {name: w.reading for name, w in self._watches.items() if w.get() is not None}

    async def measure(self, slicer: Slicer) -> None:
        """Measure every live watched object, dropping the ones that were freed."""
        for name, watch in list(self._watches.items()):
            if watch.get() is None:
                if self._watches.get(name) is watch:
                    del self._watches[name]
                continue
            await slicer.checkpoint()
            try:
                watch.reading = await _measure(watch, slicer)
            except Exception as error:  # noqa: BLE001 - one bad object costs only its own reading
                self._faults.record("watch", error)


async def _measure(watch: _Watch, slicer: Slicer) -> Reading:
    # Imported on first use: pympler.asizeof imports numpy where it is installed (+12 MiB RSS,
    # ~40 ms, numpy types in the census) in apps that never use numpy nor watch().
    from pympler.asizeof import Asizer

    obj = watch.get()
    try:
        items = len(obj)  # type: ignore[arg-type]
    except TypeError:
        return Reading(items=None, bytes=Asizer().asizeof(obj))
    del obj  # never held across a yield: it may be freed meanwhile
    sizer = Asizer()
    shell = 0
    measured = total = 0
    exact = False
    last_slice = slicer.slices + MAX_SLICES - 1

    def more() -> bool:  # read before every step: the last batch sets `exact`
        return not exact and slicer.slices <= last_slice

    async for step in paced(slicer, BATCH, more):
        obj = watch.get()
        if obj is None:
            return watch.reading
        shell = sys.getsizeof(obj)
        taken, batch = _items(obj, measured, step)
        del obj
        if batch:
            total += sizer.asizeof(*batch)
            measured += taken
        del batch
        exact = taken < step
    if not exact and measured:
        total = total * items // measured
    return Reading(items=items, bytes=shell + total, exact=exact)


def _items(obj: Any, start: int, count: int) -> tuple[int, list[Any]]:
    """(how many, objects of) items ``start .. start+count`` in iteration order, taken without
    holding an iterator across a yield (the container may change size meanwhile). A mapping's
    keys and values are returned flat: the ``(key, value)`` tuples ``items()`` makes are not
    part of the mapping."""
    if isinstance(obj, Mapping):
        pairs = list(islice(iter(obj.items()), start, start + count))
        return len(pairs), list(chain.from_iterable(pairs))
    batch = list(islice(iter(obj), start, start + count))
    return len(batch), batch
