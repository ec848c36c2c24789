"""The parent's side of a forked census: when to fork, the fork, the answer, the reaping.

``Forker.run(work)`` forks, runs ``work()`` in the child (``child.main``) and returns what it
returned, read from a pipe by the event loop (``add_reader``, non-blocking) so the loop is
held only for the ``os.fork()`` itself. Every way it can go wrong is a :class:`Fallback` with a
reason, which the census counts and answers by counting in the loop instead:

* ``unsupported``: no ``os.fork`` (or, in ``auto`` mode, not Linux: elsewhere there is no
  death signal, no ``/proc`` and, on macOS, forking a threaded process is unsafe);
* ``headroom``: the memory left under the cgroup limit (else the host's available memory)
  is below ``headroom`` x the parent's RSS, room for the child's copy-on-write growth;
* ``fork_error``: ``os.fork()`` failed (``EAGAIN``, ``ENOMEM``);
* ``deadline``: the child did not answer within ``deadline`` seconds and was killed;
* ``child_error``: the child reported a failure, died, or wrote something unreadable.

No zombie is left: the child is reaped by polling ``waitpid(WNOHANG)`` from loop callbacks
that outlive a cancelled census, killed first when it overstays, and reaped synchronously by
:meth:`Forker.close`.

The fork-with-threads ``DeprecationWarning`` of Python 3.12+ ("This process is
multi-threaded, use of fork() may lead to deadlocks in the child"): the child here is built
for exactly that situation (it takes no lock it did not create), so the warning is filtered
once, at import, for calls from this module only (a ``module=`` filter: no
``catch_warnings`` around the fork, which would race with other threads' warnings). Python
ignores ``DeprecationWarning`` outside ``__main__`` by default anyway; the filter keeps it out
of ``-W default`` and development-mode runs too.
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import re
import signal
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from . import child, wire

MODES = ("auto", "fork", "inloop")
REASONS = ("unsupported", "headroom", "fork_error", "deadline", "child_error")
FORK_HEADROOM = 1.25
"""Fork only when the memory left (cgroup, else host) is at least this many times the
parent's RSS. Measured (``python -m bench.census``, docs/performance.md): the child's private
memory with reachability peaked at 0.68 / 0.91 / 0.94 x RSS at 100k / 1M / 3M objects,
1.19-1.26x what the child needed without it; real apps measured 0.77-0.82 x for that child, so about
1.0 x with reachability. 1.25 leaves a quarter of the parent's RSS for what the application
allocates while the child runs."""
MAX_ANSWER = 256 * 1024 * 1024
"""A longer answer is a broken child, not a census."""
READ_SIZE = 1 << 20
REAP_FIRST = 0.001
REAP_LONGEST = 0.05
"""Seconds between two ``waitpid(WNOHANG)`` looks: from 1 ms, doubling up to 50 ms."""

warnings.filterwarnings(
    "ignore",
    message=r"This process \(pid=\d+\) is multi-threaded, use of fork\(\) may lead to deadlocks",
    category=DeprecationWarning,
    module=re.escape(__name__) + "$",
)


class Fallback(Exception):
    """The census could not run in a child; ``reason`` is one of :data:`REASONS`."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


@dataclass
class Forked:
    """What one child cost the parent."""

    pid: int
    fork_seconds: float
    """How long ``os.fork()`` held the loop."""
    wall_seconds: float = 0.0
    """From the fork to the last byte of the answer."""


def _load_prctl() -> Callable[..., int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    prctl.restype = ctypes.c_int
    return prctl


class Forker:
    """Runs functions in forked children for one event loop (its thread forks).

    ``available()`` returns the bytes the system can still give (cgroup headroom, else host
    available memory), ``rss()`` the parent's resident size; both are only read before a fork.
    """

    def __init__(
        self,
        *,
        loop: asyncio.AbstractEventLoop,
        mode: str,
        deadline: float,
        headroom: float,
        available: Callable[[], int],
        rss: Callable[[], int],
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"mode={mode!r} must be one of {', '.join(MODES)}")
        self.loop = loop
        self.mode = mode
        self.deadline = deadline
        self.headroom = headroom
        self._available = available
        self._rss = rss
        self._clock = clock
        self._prctl = _load_prctl()  # resolved here: dlsym in the child could meet a held lock
        self.children: set[int] = set()
        """Children forked and not reaped yet."""

    def refusal(self) -> str | None:
        """Why the next census cannot fork (a reason of :data:`REASONS`), or ``None``."""
        if self.mode == "inloop" or not hasattr(os, "fork"):
            return "unsupported"
        if self.mode == "auto" and not sys.platform.startswith("linux"):
            return "unsupported"
        if self.headroom > 0 and self._available() < self.headroom * self._rss():
            return "headroom"
        return None

    async def run(self, work: Callable[[], Any]) -> tuple[Any, Forked]:
        """``work()`` run in a child; raises :class:`Fallback` when that fails."""
        read_fd, write_fd = os.pipe()
        parent = os.getpid()
        started = self._clock()
        try:
            pid = os.fork()
        except OSError as error:
            os.close(read_fd)
            os.close(write_fd)
            raise Fallback("fork_error", str(error)) from None
        if pid == 0:  # the child: never returns
            try:
                child.main(write_fd, work, parent=parent, prctl=self._prctl)
            finally:
                os._exit(4)
        forked = Forked(pid, self._clock() - started)
        os.close(write_fd)
        self.children.add(pid)
        try:
            data = await self._read(read_fd, pid)
        except BaseException:
            self._kill(pid)
            raise
        finally:
            os.close(read_fd)
            self._reap_later(pid)
        forked.wall_seconds = self._clock() - started
        try:
            kind, value = wire.decode(data)
        except ValueError as error:
            raise Fallback("child_error", str(error)) from None
        if kind != wire.OK:
            raise Fallback("child_error", str(value))
        return value, forked

    async def _read(self, fd: int, pid: int) -> bytes:
        """The child's whole answer, read whenever the pipe is readable, until EOF or the
        deadline (then the child is killed)."""
        os.set_blocking(fd, False)
        loop = self.loop
        done: asyncio.Future[None] = loop.create_future()
        parts: list[bytes] = []
        size = 0

        def finish(error: BaseException | None = None) -> None:
            loop.remove_reader(fd)
            if not done.done():
                if error is None:
                    done.set_result(None)
                else:
                    done.set_exception(error)

        def readable() -> None:
            nonlocal size
            try:
                chunk = os.read(fd, READ_SIZE)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as error:
                finish(Fallback("child_error", f"reading the answer: {error}"))
                return
            if not chunk:
                finish()
                return
            parts.append(chunk)
            size += len(chunk)
            if size > MAX_ANSWER:
                finish(Fallback("child_error", f"answer over {MAX_ANSWER} bytes"))

        def overdue() -> None:
            self._kill(pid)
            finish(Fallback("deadline", f"no answer within {self.deadline:g} s; killed"))

        timer = loop.call_later(self.deadline, overdue)
        loop.add_reader(fd, readable)
        try:
            await done
        finally:
            timer.cancel()
            loop.remove_reader(fd)
        return b"".join(parts)

    def _kill(self, pid: int) -> None:
        if pid in self.children:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def _reaped(self, pid: int) -> bool:
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:  # reaped by someone else (a waitpid(-1) child watcher)
            done = pid
        if done:
            self.children.discard(pid)
        return bool(done)

    def _reap_later(self, pid: int, delay: float = REAP_FIRST, waited: float = 0.0) -> None:
        """Poll until ``pid`` is reaped; a child still there after the deadline is killed.
        Plain loop callbacks: a cancelled census does not stop them."""
        if pid not in self.children or self._reaped(pid):
            return
        if waited > self.deadline:
            self._kill(pid)
        try:
            self.loop.call_later(
                delay, self._reap_later, pid, min(REAP_LONGEST, delay * 2), waited + delay
            )
        except RuntimeError:  # the loop is closed: reap now
            self._kill(pid)
            self._reap_now(pid)

    def _reap_now(self, pid: int) -> None:
        try:
            os.waitpid(pid, 0)
        except ChildProcessError:
            pass
        self.children.discard(pid)

    def close(self) -> None:
        """Kill and reap every child still running (``HeapCensus.stop``)."""
        for pid in list(self.children):
            self._kill(pid)
            self._reap_now(pid)
