"""How ``ObjectPool``'s acquirers wait at capacity: a waiter per acquirer (a future for a
coroutine, a held lock for a thread), woken without blocking, and the error of a wait that
ran out."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from .. import validate


class PoolTimeout(TimeoutError):
    """No object became free in time; ``pool`` is the pool's name."""

    def __init__(self, pool: str, timeout: float, max_size: int, waiting: int) -> None:
        super().__init__(
            f"pool {pool!r}: no object became free within {timeout:g}s "
            f"(all {max_size} in use, {waiting} other acquirers waiting)"
        )
        self.pool = pool


class Waiter:
    """One queued acquirer: ``grant`` is None until it is given an object (or a slot)."""

    __slots__ = ("fut", "grant", "lock", "loop")

    def __init__(self, loop: asyncio.AbstractEventLoop | None) -> None:
        self.loop = loop
        self.fut = loop.create_future() if loop is not None else None
        self.lock: threading.Lock | None = None
        if loop is None:
            self.lock = threading.Lock()
            self.lock.acquire()  # released by notify(): the thread waits to acquire it again
        self.grant: Any = None

    def notify(self) -> bool:
        """Wake this granted waiter (never blocks: safe under the pool's lock); False if its
        loop is closed, so that the grant goes to the next waiter."""
        if self.lock is not None:
            self.lock.release()
            return True
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:  # released from a thread: no loop runs here
            running = None
        try:
            if running is self.loop:
                _resolve(self.fut)
            else:
                self.loop.call_soon_threadsafe(_resolve, self.fut)
        except RuntimeError:
            return False
        return True


def _resolve(fut: asyncio.Future) -> None:
    if not fut.done():
        fut.set_result(None)


def check_timeout(name: str, value: object) -> None:
    """A wait of ``value`` seconds: a number > 0, ``math.inf`` for no limit."""
    validate.number(name, value, minimum=0.0, above=True, infinite=True)
