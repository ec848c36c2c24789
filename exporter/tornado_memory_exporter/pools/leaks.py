"""Leak bookkeeping for ``ObjectPool``: checkout records that notice a dropped object, the
acquiring line, and a warning logged at most once per pool per interval."""

from __future__ import annotations

import logging
import os
import sys
import weakref
from collections import deque
from collections.abc import Callable

log = logging.getLogger("tornado_memory_exporter")

# The pool's own frames (get, lease, acquire's context managers) stand between the checkout and
# the caller; everything else, the exporter's demo included, is the caller's.
_POOLS_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep


class Tracked(weakref.ref):
    """A checkout record of ``get()``/``lease()``: a weak reference to what the caller holds,
    whose callback fires when the caller drops it without giving it back."""

    __slots__ = ("key", "since", "site")


def call_site() -> tuple[str, int] | None:
    """(file, line) of the first caller outside the pools folder.

    Two attribute reads per frame and no string formatting: cheap enough for every checkout
    that can leak; it is formatted only if the object does leak.
    """
    frame = sys._getframe(2)
    while frame is not None and frame.f_code.co_filename.startswith(_POOLS_DIR):
        frame = frame.f_back
    return (frame.f_code.co_filename, frame.f_lineno) if frame is not None else None


class LeakLog:
    """Collects the sites of leaked checkouts and logs them, at most once per ``interval``."""

    MAX_SITES = 20  # the warning names a few sites; the leaked count itself is exact

    def __init__(self, pool: str, interval: float, clock: Callable[[], float]) -> None:
        self.pool = pool
        self.interval = interval
        self._clock = clock
        self.sites: list[tuple[str, int] | None] = []
        """Sites not logged yet (emptied by ``flush``)."""
        self.recent: deque[tuple[str, int] | None] = deque(maxlen=self.MAX_SITES)
        """The last leaks' sites, kept for the explorer after they were logged."""
        self._last: float | None = None

    def add(self, site: tuple[str, int] | None) -> None:
        """Record one leak (called under the pool's lock: no logging here)."""
        self.recent.append(site)
        if len(self.sites) < self.MAX_SITES:
            self.sites.append(site)

    def flush(self, leaked_total: int) -> None:
        """Log what was recorded, unless a warning went out within the interval."""
        sites, self.sites = self.sites, []
        now = self._clock()
        if not sites or (self._last is not None and now - self._last < self.interval):
            return
        self._last = now
        where = ", ".join(dict.fromkeys(f"{f}:{n}" for f, n in filter(None, sites)))
        log.warning(
            "pool %r: %d object(s) garbage-collected without being returned (%d leaked in total; "
            "slots reclaimed; logged at most every %gs); acquired at %s",
            self.pool,
            len(sites),
            leaked_total,
            self.interval,
            where or "unknown",
        )
