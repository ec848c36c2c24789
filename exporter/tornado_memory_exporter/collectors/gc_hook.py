"""A function hooked into ``gc.callbacks``, and the failures it counted there."""

from __future__ import annotations

import gc
from collections.abc import Callable
from typing import Any

from ..faults import Faults


class GCHook:
    """Hooks ``on_gc(phase, info)`` into ``gc.callbacks`` between ``start()`` and ``stop()``.

    A gc callback runs inside whatever allocation triggered the collection, in any thread: it
    must not raise, lock, log or create metric objects (prometheus/client_python#322). So
    ``on_gc`` catches its own failures and only adds them to ``failures``, a plain int, and
    ``report()`` (called at scrape time) hands the new ones to ``faults`` under ``source``.
    ``on_gc`` is hooked itself, not wrapped: a wrapper's call would cost every collection
    about 70 ns more (``python -m bench.gc_hook``).
    """

    def __init__(
        self,
        source: str,
        faults: Faults,
        on_gc: Callable[[str, dict[str, Any]], None],
        callbacks: list | None = None,
    ) -> None:
        self._source = source
        self._faults = faults
        self._on_gc = on_gc
        self._callbacks = callbacks if callbacks is not None else gc.callbacks
        self.failures = 0
        """Failures ``on_gc`` caught so far (it adds them)."""
        self._reported = 0
        faults.declare(source)

    def start(self) -> None:
        """Hook into the collector (idempotent)."""
        if self._on_gc not in self._callbacks:
            self._callbacks.append(self._on_gc)

    def stop(self) -> None:
        """Unhook (safe to call twice)."""
        while self._on_gc in self._callbacks:
            self._callbacks.remove(self._on_gc)

    def report(self) -> None:
        """Count the failures since the last report in ``faults`` (outside the callback)."""
        new = self.failures - self._reported
        if new:
            self._reported += new
            self._faults.record(self._source, RuntimeError("gc callback failed"), count=new)
