"""The census in a forked child: what it counts, and each safety property, with real children.

Every test here forks for real (``os.fork`` from the loop's thread) and watches the child from
outside through ``/proc``: its OOM score, its state after it ends (never a zombie), whether it
outlives a killed parent, and whether a signal sent to it reaches the parent's handlers.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import urllib.request
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import tornado.web
from appserver import AppServer
from exposition_samples import samples
from realbin import wait_for

from tornado_memory_exporter import Config
from tornado_memory_exporter import exporter as exporter_module
from tornado_memory_exporter.census import child
from tornado_memory_exporter.census.fork import Fallback, Forker
from tornado_memory_exporter.census.heap import HeapCensus, count_by_type
from tornado_memory_exporter.census.selection import OTHER, TypeSelector
from tornado_memory_exporter.faults import Faults

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="fork mode needs Linux"
)

ROOT = Path(__file__).resolve().parents[2]


class Leaky:
    """Instances leak: the handler below keeps each one in LEAKED."""


LEAKED: list[Leaky] = []
LEAKY = f"{__name__}.Leaky"


class LeakHandler(tornado.web.RequestHandler):
    def get(self) -> None:
        LEAKED.append(Leaky())
        self.write("ok")


def by_type(text: str, name: str) -> dict[str, float]:
    return {dict(labels)["type"]: v for labels, v in samples(text, name).items()}


def forker(loop: asyncio.AbstractEventLoop, **kwargs) -> Forker:
    kwargs.setdefault("deadline", 30.0)
    return Forker(
        loop=loop,
        mode=kwargs.pop("mode", "fork"),
        headroom=kwargs.pop("headroom", 0.0),
        available=kwargs.pop("available", lambda: 1 << 40),
        rss=lambda: 1 << 20,
        **kwargs,
    )


def proc_state(pid: int) -> str | None:
    """The kernel's state letter of ``pid`` (``Z`` for a zombie), ``None`` once it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return None
    return stat.rsplit(")", 1)[1].split()[0]


def sleeper(seconds: float):
    def work() -> str:
        time.sleep(seconds)
        return "slept"

    return work


async def started_child(f: Forker, work) -> tuple[asyncio.Task, int]:
    task = asyncio.ensure_future(f.run(work))
    for _ in range(1000):
        await asyncio.sleep(0.005)
        if f.children:
            return task, next(iter(f.children))
    raise AssertionError("no child forked")


# ------------------------------------------------------------------------- what it counts
def test_forked_census_counts_a_leak_exactly_with_bytes_and_untracked_objects():
    LEAKED.clear()
    app = tornado.web.Application([("/leak", LeakHandler)])
    config = Config(census_interval=0, census_allowlist=(LEAKY, "str"), census_mode="fork")
    with AppServer(app, config=config) as server:
        server.call(server.exporter.census_now)
        for _ in range(7):
            with urllib.request.urlopen(server.url + "/leak", timeout=10) as response:
                assert response.read() == b"ok"
        snapshot = server.call(server.exporter.census_now)
        text = server.scrape()
    objects, sizes = by_type(text, "tornado_objects"), by_type(text, "tornado_object_bytes")
    assert snapshot.mode == "fork"
    assert objects[LEAKY] == 7
    assert sizes[LEAKY] == 7 * sys.getsizeof(Leaky())
    assert objects.keys() == sizes.keys()  # one bounded label set for both
    assert sum(objects.values()) == snapshot.scanned
    unreachable = sum(snapshot.unreachable.values())
    total = snapshot.scanned + unreachable + snapshot.own
    assert total == snapshot.tracked + snapshot.untracked
    assert objects["str"] > 10_000 and sizes["str"] > 10 * objects["str"]  # untracked, counted
    assert sizes[OTHER] >= 0 and sum(sizes.values()) > 10 * sum(objects.values())
    assert samples(text, "tornado_census_mode") == {
        (("mode", "fork"),): 1.0,
        (("mode", "inloop"),): 0.0,
    }
    assert samples(text, "tornado_census_fallbacks_total")[(("reason", "deadline"),)] == 0
    assert samples(text, "tornado_pymalloc_arenas")[()] > 0
    pools = by_state(text, "tornado_pymalloc_pools")
    assert pools["used"] > 0 and pools["empty"] >= 0
    held = by_state(text, "tornado_pymalloc_bytes")
    assert sum(held.values()) == snapshot.pymalloc["total_bytes"]
    assert held["allocated"] == snapshot.pymalloc["allocated_bytes"]
    assert 0 < samples(text, "tornado_census_child_memory_bytes")[()]
    heap = by_state(text, "tornado_malloc_heap_bytes")
    assert heap["in_use"] > 0 and heap["free"] >= 0
    # The parent was held for the fork and the publication only.
    assert snapshot.max_stall < snapshot.duration
    LEAKED.clear()


def by_state(text: str, name: str) -> dict[str, float]:
    return {dict(labels)["state"]: v for labels, v in samples(text, name).items()}


def test_types_large_by_bytes_are_exported_even_when_few(monkeypatch):
    monkeypatch.setattr(exporter_module, "GROWTH_N", 0)
    blobs = [bytes(1_000_000) for _ in range(3)]  # few objects, most bytes
    config = Config(census_interval=0, census_top_n=3, census_mode="fork")
    with AppServer(config=config) as server:
        server.call(server.exporter.census_now)
        text = server.scrape()
    sizes = by_type(text, "tornado_object_bytes")
    assert sizes["bytes"] >= 3_000_000
    assert len(sizes) <= 2 * 3 + 1  # top by count, top by bytes, other
    del blobs


def test_ten_thousand_classes_stay_within_the_bound_in_fork_mode():
    config = Config(census_interval=0, census_top_n=20, census_mode="fork")
    with AppServer(config=config) as server:
        server.call(server.exporter.census_now)
        classes = [type(f"Generated{i}", (), {}) for i in range(10_000)]
        instances = [[cls() for _ in range(1 + i % 3)] for i, cls in enumerate(classes)]
        snapshot = server.call(server.exporter.census_now)
        text = server.scrape()
    objects = by_type(text, "tornado_objects")
    assert len(objects) <= 2 * 20 + 10 + 1
    assert snapshot.distinct_types >= 10_000
    assert sum(objects.values()) == snapshot.scanned
    assert sum(by_type(text, "tornado_object_bytes").values()) > 0
    del instances, classes


def test_the_child_runs_the_shared_classification_for_handler_states():
    config = Config(census_interval=0, census_mode="fork")

    class Kept(tornado.web.RequestHandler):
        def get(self) -> None:
            KEPT.append(self)
            self.write("ok")

    app = tornado.web.Application([("/kept", Kept)])
    with AppServer(app, config=config) as server:
        for _ in range(3):
            assert server.get("/kept")[0] == 200
        snapshot = server.call(server.exporter.census_now)
    name = (
        f"{__name__}.test_the_child_runs_the_shared_classification_for_handler_states.<locals>.Kept"
    )
    assert snapshot.mode == "fork"
    assert snapshot.handlers[(name, "finished")] == 3
    KEPT.clear()


KEPT: list = []


def test_sizes_never_run_a_python_sizeof():
    class Lying:
        def __sizeof__(self) -> int:
            raise AssertionError("application code ran in the census child")

    assert not child.builtin_sizeof(Lying) and child.builtin_sizeof(dict)
    objects = [Lying(), Lying(), {}]
    sizes = child.bytes_by_type(objects, {Lying, dict})
    assert sizes[Lying] == 2 * (object.__sizeof__(objects[0]) + child._GC_HEAD)
    assert sizes[dict] == sys.getsizeof({})


def test_pymalloc_stats_parse_the_real_output():
    out = subprocess.run(
        [sys.executable, "-c", "import sys; sys._debugmallocstats()"],
        capture_output=True,
        text=True,
        check=True,
    ).stderr
    stats = child.parse_pymalloc(out)
    assert stats is not None and stats["arenas"] > 0
    parts = (
        "allocated_bytes",
        "available_bytes",
        "pools_empty_bytes",
        "pool_headers_bytes",
        "quantization_bytes",
        "alignment_bytes",
    )
    assert (
        sum(stats[p] for p in parts)
        == stats["total_bytes"]
        == stats["arenas"] * stats["arena_size"]
    )
    assert child.parse_pymalloc("garbage\n") is None


# ------------------------------------------------------------------------------- safety
def test_the_child_scores_1000_for_the_oom_killer_and_is_reaped():
    async def run() -> tuple[str, int, object]:
        f = forker(asyncio.get_running_loop())
        task, pid = await started_child(f, sleeper(1.0))
        score = wait_for(
            "the child's oom_score_adj",
            lambda: (
                Path(f"/proc/{pid}/oom_score_adj").read_text().strip()
                if Path(f"/proc/{pid}/oom_score_adj").read_text().strip() == "1000"
                else None
            ),
            timeout=5,
            interval=0.01,
        )
        value, _ = await task
        for _ in range(200):  # the reaper polls from loop callbacks
            if pid not in f.children:
                break
            await asyncio.sleep(0.01)
        return score, pid, value

    score, pid, value = asyncio.run(run())
    assert score == "1000" and value == "slept"
    assert proc_state(pid) is None  # reaped: no zombie
    with pytest.raises(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def test_a_child_past_its_deadline_is_killed_reaped_and_the_census_counted_and_run_in_the_loop():
    async def run() -> tuple[HeapCensus, object, list[int]]:
        loop = asyncio.get_running_loop()
        f = forker(loop, deadline=0.001)  # no real census answers within 1 ms
        forked: list[int] = []
        original = f.run

        async def spy(work):
            task = asyncio.ensure_future(original(work))
            await asyncio.sleep(0)
            forked.extend(f.children)
            return await task

        f.run = spy
        faults = Faults()
        census = HeapCensus(
            loop=loop,
            selector=TypeSelector(top_n=5, growth_n=0, hold=0),
            faults=faults,
            interval=0,
            slice_budget=0.005,
            forker=f,
        )
        snapshot = await census.run_now()
        for _ in range(300):
            if not f.children:
                break
            await asyncio.sleep(0.01)
        return census, snapshot, forked

    census, snapshot, forked = asyncio.run(run())
    assert census.fallbacks["deadline"] == 1
    assert census._faults.counts["census_fork"] == 1
    assert snapshot.mode == "inloop" and snapshot.scanned > 0  # the census still happened
    assert forked and all(proc_state(pid) is None for pid in forked)


def test_a_deadline_kill_is_a_fallback_with_its_reason():
    async def run() -> tuple[Fallback, int]:
        f = forker(asyncio.get_running_loop(), deadline=0.3)
        task, pid = await started_child(f, sleeper(30))
        with pytest.raises(Fallback) as raised:
            await task
        for _ in range(300):
            if pid not in f.children:
                break
            await asyncio.sleep(0.01)
        return raised.value, pid

    fallback, pid = asyncio.run(run())
    assert fallback.reason == "deadline"
    assert proc_state(pid) is None


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT, signal.SIGUSR1])
def test_a_signal_sent_to_the_child_never_reaches_the_parents_handlers(signum):
    hits: list[str] = []

    async def run() -> Fallback:
        loop = asyncio.get_running_loop()
        # asyncio's handler (the wakeup fd the child shares) and a plain Python one.
        loop.add_signal_handler(signal.SIGTERM, hits.append, "asyncio SIGTERM")
        loop.add_signal_handler(signal.SIGUSR1, hits.append, "asyncio SIGUSR1")
        previous = signal.signal(signal.SIGINT, lambda *a: hits.append("python SIGINT"))
        try:
            f = forker(loop)
            task, pid = await started_child(f, sleeper(30))
            await asyncio.sleep(0.2)  # the child has isolated itself by now
            os.kill(pid, signum)
            with pytest.raises(Fallback) as raised:
                await asyncio.wait_for(task, 10)
            await asyncio.sleep(0.3)  # a handler woken through the wakeup fd would run now
            return raised.value
        finally:
            loop.remove_signal_handler(signal.SIGTERM)
            loop.remove_signal_handler(signal.SIGUSR1)
            signal.signal(signal.SIGINT, previous)

    fallback = asyncio.run(run())
    assert fallback.reason == "child_error"  # the signal's default action ended the child
    assert hits == []


def test_the_child_never_runs_atexit_nor_flushes_inherited_buffers_and_dies_with_its_parent(
    tmp_path,
):
    script = textwrap.dedent(
        """
        import asyncio, atexit, os, sys, time
        from tornado_memory_exporter.census.fork import Forker

        atexit.register(lambda: sys.stdout.write("ATEXIT\\n"))
        sys.stdout.write("PENDING\\n")  # buffered: stdout is a pipe

        def slow():
            time.sleep(60)

        async def main():
            loop = asyncio.get_running_loop()
            f = Forker(loop=loop, mode="fork", deadline=30, headroom=0,
                       available=lambda: 0, rss=lambda: 0)
            print((await f.run(lambda: 42))[0])
            asyncio.ensure_future(f.run(slow))
            await asyncio.sleep(0.5)
            (pid,) = f.children
            sys.stderr.write(f"{pid}\\n")
            sys.stderr.flush()
            sys.stdout.flush()
            os.kill(os.getpid(), 9)  # the parent dies without a word

        asyncio.run(main())
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        check=False,
    )
    assert done.returncode == -9
    assert done.stdout.splitlines() == ["PENDING", "42"]  # once each; no child's ATEXIT
    orphan = int(done.stderr.split()[-1])
    wait_for("the orphaned child to die", lambda: proc_state(orphan) in (None, "Z"), timeout=5)


def test_forking_while_other_threads_hold_the_logging_lock_and_a_pool_is_busy_never_deadlocks(
    monkeypatch,
):
    stop, held = threading.Event(), threading.Event()
    handler = logging.StreamHandler(open(os.devnull, "w"))  # noqa: SIM115
    log = logging.getLogger("test_fork.busy")
    log.addHandler(handler)
    log.propagate = False

    def hold_logging_locks() -> None:
        # A handler's lock held for the whole test, as by a thread stuck writing a log line to
        # a slow stream; the module lock taken and dropped in a tight loop (getLogger). The
        # parent's os.fork() itself takes the module lock (logging's at-fork hook) so that the
        # child never inherits it held: a fork waits for it, for as long as another thread
        # holds it (microseconds in getLogger).
        handler.acquire()
        try:
            held.set()
            i = 0
            while not stop.is_set():
                logging.getLogger(f"test_fork.churn.{i % 50}")
                i += 1
        finally:
            handler.release()

    def busy() -> int:
        n = 0
        while not stop.is_set():
            junk = [{"n": i, "s": str(i)} for i in range(200)]  # malloc and the GIL, churning
            n += len(junk)
        log.info("busy done %d", n)
        return n

    monkeypatch.setattr(exporter_module, "FORK_DEADLINE", 30.0)
    config = Config(census_interval=0, census_mode="fork")
    holder = threading.Thread(target=hold_logging_locks, daemon=True)
    try:
        with ThreadPoolExecutor(4) as pool, AppServer(config=config) as server:
            for _ in range(4):
                pool.submit(busy)
            holder.start()
            assert held.wait(10)
            snapshots = [server.call(server.exporter.census_now) for _ in range(5)]
            fallbacks = fallbacks_counted(server)
            stop.set()
    finally:
        stop.set()
        holder.join(10)
        log.removeHandler(handler)
        handler.close()
    assert [s.mode for s in snapshots] == ["fork"] * 5
    assert sum(fallbacks.values()) == 0


def fallbacks_counted(server: AppServer) -> dict[str, float]:
    """``tornado_census_fallbacks_total`` by reason, as scraped."""
    found = samples(server.scrape(), "tornado_census_fallbacks_total")
    return {dict(labels)["reason"]: value for labels, value in found.items()}


def test_the_census_of_a_loop_in_another_thread_forks_and_resets_signals_there():
    # AppServer's loop runs in a non-main thread: the child, whose only thread is that one,
    # must still reset the handlers and the wakeup fd (or it reports an error and we fall back).
    with AppServer(config=Config(census_interval=0, census_mode="fork")) as server:
        snapshot = server.call(server.exporter.census_now)
        assert snapshot.mode == "fork"
        assert sum(fallbacks_counted(server).values()) == 0


def test_without_headroom_the_census_runs_in_the_loop_and_counts_why():
    faults = Faults()

    async def run() -> tuple[HeapCensus, object]:
        loop = asyncio.get_running_loop()
        f = forker(loop, headroom=0.6, available=lambda: 0)
        census = HeapCensus(
            loop=loop,
            selector=TypeSelector(top_n=5, growth_n=0, hold=0),
            faults=faults,
            interval=0,
            slice_budget=0.005,
            forker=f,
        )
        return census, await census.run_now()

    census, snapshot = asyncio.run(run())
    assert snapshot.mode == "inloop" and snapshot.sizes is None
    assert census.fallbacks["headroom"] == 1 and faults.counts["census_fork"] == 0


def test_auto_forks_on_linux_and_inloop_never_does():
    async def refusals() -> tuple[str | None, str | None]:
        loop = asyncio.get_running_loop()
        return forker(loop, mode="auto").refusal(), forker(loop, mode="inloop").refusal()

    assert asyncio.run(refusals()) == (None, "unsupported")
    with AppServer(config=Config(census_interval=0)) as server:  # the default is "auto"
        assert server.call(server.exporter.census_now).mode == "fork"
    with AppServer(config=Config(census_interval=0, census_mode="inloop")) as server:
        assert server.call(server.exporter.census_now).mode == "inloop"


def test_census_mode_is_validated_naming_the_value():
    with pytest.raises(ValueError, match="census_mode='sometimes'"):
        Config(census_mode="sometimes")
    with pytest.raises(TypeError, match="census_mode=3"):
        Config(census_mode=3)


def test_the_fork_warning_is_filtered_for_our_fork_only():
    # Python 3.12+ warns on fork() with threads; the filter matches our module and that message
    # only, so -W default (or error) still shows the same warning raised anywhere else.
    script = textwrap.dedent(
        """
        import warnings
        import tornado_memory_exporter.census.fork as ours
        message = (
            "This process (pid=1) is multi-threaded, use of fork() may lead to deadlocks in the "
            "child."
        )
        warnings.warn_explicit(message, DeprecationWarning, ours.__file__, 1, module=ours.__name__)
        warnings.warn_explicit(message, DeprecationWarning, "app.py", 1, module="app")
        """
    )
    done = subprocess.run(
        [sys.executable, "-W", "default", "-c", script],
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stderr.count("multi-threaded") == 1 and "app.py" in done.stderr


@pytest.mark.skipif(sys.version_info < (3, 12), reason="Python 3.12+ warns on fork with threads")
def test_a_threaded_fork_census_shows_no_warning_even_with_warnings_as_errors():
    script = textwrap.dedent(
        """
        import asyncio, threading
        from tornado_memory_exporter.census.fork import Forker
        threading.Thread(target=threading.Event().wait, daemon=True).start()
        async def main():
            f = Forker(loop=asyncio.get_running_loop(), mode="fork", deadline=30, headroom=0,
                       available=lambda: 0, rss=lambda: 0)
            print((await f.run(lambda: 1))[0])
        asyncio.run(main())
        """
    )
    done = subprocess.run(
        [sys.executable, "-W", "error::DeprecationWarning", "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0 and done.stdout.strip() == "1", done.stderr


def test_counting_matches_the_loops_count_for_tracked_objects():
    # The same classification in both modes: a tracked-only child count equals count_by_type's.
    objects = [Leaky() for _ in range(100)] + [{} for _ in range(50)]
    counts = child.run_sync(count_by_type(objects, child.unpaced())).types
    assert counts[Leaky] == 100 and counts[dict] == 50
    untracked = child.reachable_untracked([("a", "b", 1.5), ["xyz" * 50]])
    kinds = Counter(map(type, untracked))
    assert kinds[str] == 3 and kinds[float] == 1


def test_stop_kills_and_reaps_a_child_still_running():
    async def run() -> tuple[int, set[int]]:
        f = forker(asyncio.get_running_loop())
        task, pid = await started_child(f, sleeper(30))
        f.close()  # what HeapCensus.stop() calls
        with pytest.raises(Fallback):
            await asyncio.wait_for(task, 10)
        return pid, set(f.children)

    pid, left = asyncio.run(run())
    assert left == set() and proc_state(pid) is None
