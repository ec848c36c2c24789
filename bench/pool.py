"""ObjectPool round trips against the pools people write by hand, side by side in one run.

Uncontended (one coroutine on a running loop; short batches interleaved across subjects, timed
in the thread's CPU time so that other processes on the shared cores do not count; medians):

- ``list pool``: the hand-rolled pool the issue describes, a class-level list with
  ``acquire()`` = ``pop()`` (or create) and ``release()`` = ``append()``, used in try/finally;
  the baseline of the target (async ``ObjectPool`` <= 3x per round trip);
- ``list inline``: the same pop/append written inline, no call at all (the floor);
- ``list pool async with``: the list pool behind the smallest ``async with`` context manager,
  the shape of ``ObjectPool``'s API: what the syntax alone costs;
- ``SimpleQueue``: ``queue.SimpleQueue`` ``get_nowait()``/``put()``;
- ``ObjectPool async``: ``async with pool.acquire(timeout=1.0)``;
- ``ObjectPool sync``: ``with pool.acquire_sync(timeout=1.0)``;
- ``ObjectPool get/put``: ``await pool.get(timeout=1.0)`` / ``put()`` (leak tracking on).

Contended (``--threads`` threads sharing 2 objects; the bounded blocking pools people use
across threads): ``ObjectPool.acquire_sync`` vs a prefilled ``queue.Queue`` ``get()``/``put()``.

``--baseline REF`` adds ``ObjectPool`` as of the git commit ``REF`` (the package extracted with
``git archive`` and imported under another name) to the uncontended and contended subjects,
interleaved with today's, and prints today's / REF's ratio: how a change moved the fast path,
in one run.

    .venv/bin/python -m bench.pool [--batch 5000] [--reps 31] [--threads 4] [--baseline REF]
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import functools
import importlib
import io
import queue
import shutil
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, ClassVar

from bench import median
from tornado_memory_exporter import ObjectPool


class Conn:
    """A pooled object (weakly referenceable, like most connection classes)."""


class ListPool:
    """The hand-rolled pool: unbounded, not thread-safe, invisible, leaks silently."""

    items: ClassVar[list[Conn]] = []

    @classmethod
    def acquire(cls) -> Conn:
        return cls.items.pop() if cls.items else Conn()

    @classmethod
    def release(cls, obj: Conn) -> None:
        cls.items.append(obj)


class ListLease:
    """The list pool as an async context manager, and nothing more."""

    __slots__ = ("obj",)

    async def __aenter__(self) -> Conn:
        self.obj = ListPool.acquire()
        return self.obj

    async def __aexit__(self, exc_type: object, exc: object, tb: object) -> None:
        ListPool.release(self.obj)


@functools.cache
def baseline_pool(ref: str) -> type[Any]:
    """``ObjectPool`` as of git ``ref``: its package extracted to a temporary folder and
    imported as ``tme_baseline``, beside today's."""
    repo = Path(__file__).resolve().parent.parent
    archive = subprocess.run(
        ["git", "archive", ref, "exporter/tornado_memory_exporter"],
        cwd=repo,
        capture_output=True,
        check=True,
    ).stdout
    root = Path(tempfile.mkdtemp(prefix="pool-baseline-"))
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(root, filter="data")
    (root / "exporter" / "tornado_memory_exporter").rename(root / "tme_baseline")
    sys.path.insert(0, str(root))
    return importlib.import_module("tme_baseline").ObjectPool


def subjects(batch: int, baseline: str | None = None) -> dict[str, Callable[[], Awaitable[None]]]:
    """name -> a coroutine function doing ``batch`` round trips."""
    pool = ObjectPool(Conn, 4, name="bench")
    simple: queue.SimpleQueue[Conn] = queue.SimpleQueue()
    simple.put(Conn())
    inline: list[Conn] = [Conn()]
    loop_range = range(batch)

    async def list_pool() -> None:
        for _ in loop_range:
            obj = ListPool.acquire()
            try:
                pass
            finally:
                ListPool.release(obj)

    async def list_async_with() -> None:
        for _ in loop_range:
            async with ListLease() as obj:  # noqa: F841
                pass

    async def list_inline() -> None:
        for _ in loop_range:
            obj = inline.pop() if inline else Conn()
            inline.append(obj)

    async def simple_queue() -> None:
        for _ in loop_range:
            obj = simple.get_nowait()
            simple.put(obj)

    async def pool_async() -> None:
        for _ in loop_range:
            async with pool.acquire(timeout=1.0) as obj:  # noqa: F841 - the round trip is the point
                pass

    async def pool_sync() -> None:
        for _ in loop_range:
            with pool.acquire_sync(timeout=1.0) as obj:  # noqa: F841
                pass

    async def pool_get_put() -> None:
        for _ in loop_range:
            obj = await pool.get(timeout=1.0)
            pool.put(obj)

    runs = {
        "list pool": list_pool,
        "list inline": list_inline,
        "list pool async with": list_async_with,
        "SimpleQueue": simple_queue,
        "ObjectPool async": pool_async,
        "ObjectPool sync": pool_sync,
        "ObjectPool get/put": pool_get_put,
    }
    if baseline is not None:
        old = baseline_pool(baseline)(Conn, 4, name="baseline")

        async def old_async() -> None:
            for _ in loop_range:
                async with old.acquire(timeout=1.0) as obj:  # noqa: F841
                    pass

        async def old_sync() -> None:
            for _ in loop_range:
                with old.acquire_sync(timeout=1.0) as obj:  # noqa: F841
                    pass

        async def old_get_put() -> None:
            for _ in loop_range:
                obj = await old.get(timeout=1.0)
                old.put(obj)

        runs[f"ObjectPool async @{baseline}"] = old_async
        runs[f"ObjectPool sync @{baseline}"] = old_sync
        runs[f"ObjectPool get/put @{baseline}"] = old_get_put
    return runs


async def uncontended(batch: int, reps: int, baseline: str | None = None) -> dict[str, float]:
    """Median seconds per round trip of each subject, batches interleaved."""
    runs = subjects(batch, baseline)
    times: dict[str, list[float]] = {name: [] for name in runs}
    for run in runs.values():  # warm-up
        await run()
    for _ in range(reps):
        for name, run in runs.items():
            started = time.thread_time()
            await run()
            times[name].append((time.thread_time() - started) / batch)
    return {name: median(values) for name, values in times.items()}


def contended(
    threads: int, per_thread: int, reps: int, baseline: str | None = None
) -> dict[str, float]:
    """Median seconds per round trip with ``threads`` threads sharing two objects."""
    pools = {"ObjectPool sync": ObjectPool(Conn, 2, name="contended")}
    if baseline is not None:
        pools[f"ObjectPool sync @{baseline}"] = baseline_pool(baseline)(Conn, 2, name="old")
    blocking: queue.Queue[Conn] = queue.Queue()
    for _ in range(2):
        blocking.put(Conn())

    def with_pool(pool: Any) -> Callable[[], None]:
        def body() -> None:
            for _ in range(per_thread):
                with pool.acquire_sync(timeout=10) as obj:  # noqa: F841
                    pass

        return body

    def with_queue() -> None:
        for _ in range(per_thread):
            obj = blocking.get(timeout=10)
            blocking.put(obj)

    bodies = {name: with_pool(pool) for name, pool in pools.items()}
    bodies["queue.Queue"] = with_queue
    times: dict[str, list[float]] = {name: [] for name in bodies}
    for _ in range(reps):
        for name, body in bodies.items():
            workers = [threading.Thread(target=body) for _ in range(threads)]
            started = time.perf_counter()
            for worker in workers:
                worker.start()
            for worker in workers:
                worker.join()
            times[name].append((time.perf_counter() - started) / (threads * per_thread))
    return {name: median(values) for name, values in times.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.pool", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--batch", type=int, default=5000, help="round trips per timed batch")
    parser.add_argument("--reps", type=int, default=31, help="interleaved batches per subject")
    parser.add_argument("--threads", type=int, default=4, help="threads in the contended run")
    parser.add_argument("--baseline", metavar="REF", help="also time ObjectPool as of git REF")
    args = parser.parse_args(argv)

    print(f"uncontended: {args.reps} interleaved batches of {args.batch} round trips, medians")
    result = asyncio.run(uncontended(args.batch, args.reps, args.baseline))
    base, floor = result["list pool"], result["list inline"]
    shaped = result["list pool async with"]
    print(
        f"  {'subject':<22} {'ns/round trip':>14} {'x list pool':>12} {'x list inline':>14}"
        f" {'x list async with':>18}"
    )
    for name, seconds in result.items():
        print(
            f"  {name:<22} {seconds * 1e9:>14.0f} {seconds / base:>12.2f}"
            f" {seconds / floor:>14.2f} {seconds / shaped:>18.2f}"
        )
    ratio = result["ObjectPool async"] / base
    verdict = "met" if ratio <= 3 else "MISSED"
    print(f"target: ObjectPool async <= 3.00 x list pool: {ratio:.2f} x ({verdict})")
    if args.baseline is not None:
        for way in ("async", "sync", "get/put"):
            now, then = result[f"ObjectPool {way}"], result[f"ObjectPool {way} @{args.baseline}"]
            print(f"ObjectPool {way}: today / @{args.baseline} = {now / then:.3f}")

    per_thread = max(1, args.batch // args.threads)
    print(
        f"contended: {args.threads} threads x {per_thread} round trips on 2 objects, "
        f"{max(3, args.reps // 3)} interleaved runs, medians"
    )
    shared = contended(args.threads, per_thread, max(3, args.reps // 3), args.baseline)
    peer = shared["queue.Queue"]
    for name, seconds in shared.items():
        print(f"  {name:<22} {seconds * 1e9:>14.0f} ns {seconds / peer:>8.2f} x queue.Queue")
    return 0


if __name__ == "__main__":
    sys.exit(main())
