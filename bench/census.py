"""Heap census against the tools operators attach by hand: objgraph, pympler, guppy3.

For each heap size (live gc-tracked objects of a realistic mix: instances with ``__dict__`` and
with ``__slots__``, dicts, lists, tuples, nested containers, built in two phases with a random
half freed in between so the heap is scattered), every subject runs in a fresh interpreter that
builds the same seeded heap, on an asyncio loop next to an independent probe coroutine that
records the longest gap between its own turns (the longest loop stall):

- ours: ``HeapCensus`` in the loop (default slice budget) and forked (``census_mode="fork"``:
  the probe sees the fork and the publication; the child's wall time and its private memory at
  the end of its count, as a share of the parent's RSS, come from the snapshot), interleaved in
  one process with the floors ``gc.get_objects()`` and ``Counter(map(type, gc.get_objects()))``,
  so the ratios that matter are measured side by side; plus, under tracemalloc in a separate
  pass, the in-loop census's transient and retained memory (retained = what the census keeps:
  snapshot, baseline, type-name cache);
- peers, each in its own process, capped at ``--cap`` seconds ("> 120 s"): ``objgraph.typestats()``,
  ``objgraph.growth()``, pympler ``summary.summarize(muppy.get_objects())``, pympler
  ``SummaryTracker().diff()``, guppy3 ``hpy().heap()``.

Then (unless ``--wrk-seconds 0``) three hello-world Tornado apps holding a 1M-object heap each
run side by side: two without the exporter (the second is the A/A control, the noise floor of
the ratio) and one with the exporter censusing every ``--wrk-interval`` seconds in
``--wrk-mode`` (default: forked, every 15 s). ``wrk`` on 127.0.0.1 loads them in rotating
rounds, so the noise of a shared machine falls on all alike; p50, p99, p99.9 and max come
from each app's merged latency histogram.

    .venv/bin/python -m bench.census [--sizes 100000 1000000 3000000] [--wrk-seconds 90]
    .venv/bin/python -m bench.census --sizes --wrk-seconds 90 --wrk-round 15   # the wrk part only

Peers come from the ``bench`` extra: ``pip install -e '.[bench]'``.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import random
import subprocess
import sys
import tempfile
import time
import tracemalloc
import urllib.request
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from bench import ChildServer, fmt_seconds, median

PEERS = (
    "objgraph.typestats",
    "objgraph.growth",
    "pympler.summarize",
    "pympler.tracker_diff",
    "guppy3.heap",
)
MIB = 1024 * 1024


# ---------------------------------------------------------------------------------------- heap
class Session:
    """An instance with a ``__dict__``."""

    def __init__(self, i: int) -> None:
        self.id = i
        self.user = f"user{i}"
        self.items = [i, Point(i)]
        self.attrs = {"n": i, "seen": [i]}


class Point:
    """An instance with ``__slots__``."""

    __slots__ = ("x", "y", "ref")

    def __init__(self, x: int, ref: object = None) -> None:
        self.x = x
        self.y = [x]
        self.ref = ref


def _make(kind: int, i: int) -> object:
    if kind == 0:
        return Session(i)
    if kind == 1:
        return Point(i, Point(i + 1))
    if kind == 2:
        return {"a": [i, str(i)], "b": {"c": [i]}}
    if kind == 3:
        return (Point(i), [i], {"k": (i, [i])})
    return [[i, {"v": i}], (str(i), [i])]


def build_heap(size: int, seed: int = 1) -> list[object]:
    """Roots of about ``size`` live gc-tracked objects (plus the interpreter's own)."""
    rng = random.Random(seed)
    roots: list[object] = []
    target = size + len(gc.get_objects())

    per_root = 6.0  # measured as it goes; starting high only undershoots

    def fill(until: int) -> None:
        # Batches sized from the measured objects per root: few (costly) counts, little overshoot.
        nonlocal per_root
        have = len(gc.get_objects())
        while have < until:
            batch = max(100, int(0.9 * (until - have) / per_root))
            for i in range(batch):
                roots.append(_make(rng.randrange(5), i))
            now = len(gc.get_objects())
            per_root, have = max(1.0, (now - have) / batch), now

    fill(size * 6 // 10 + target - size)
    rng.shuffle(roots)
    del roots[: len(roots) // 2]  # scatter: the second phase fills the holes
    fill(target)
    gc.collect()  # the bench (never the library) settles the heap before measuring
    return roots


# ------------------------------------------------------------------------------- measurement
async def _timed(fn: Callable[[], object]) -> tuple[float, float]:
    """(wall seconds, longest loop stall seen by an independent probe) of ``await fn()``
    (or ``fn()`` for a synchronous subject)."""
    done = False
    worst = 0.0

    async def probe() -> None:
        nonlocal worst
        last = time.perf_counter()
        while not done:
            await asyncio.sleep(0)
            now = time.perf_counter()
            worst = max(worst, now - last)
            last = now

    probe_task = asyncio.ensure_future(probe())
    await asyncio.sleep(0)
    started = time.perf_counter()
    result = fn()
    if asyncio.iscoroutine(result) or isinstance(result, asyncio.Future):
        await result
    wall = time.perf_counter() - started
    del result
    done = True
    await probe_task
    return wall, worst


def _census_factory(mode: str = "inloop") -> Callable[[], object]:
    from tornado_memory_exporter.census.fork import Forker
    from tornado_memory_exporter.census.heap import HeapCensus
    from tornado_memory_exporter.census.selection import TypeSelector
    from tornado_memory_exporter.census.slicer import SLICE_BUDGET
    from tornado_memory_exporter.config import Config
    from tornado_memory_exporter.exporter import GROWTH_N, HOLD_SECONDS
    from tornado_memory_exporter.faults import Faults

    config = Config()
    forker = None
    if mode == "fork":
        forker = Forker(
            loop=asyncio.get_running_loop(),
            mode="fork",
            deadline=600,
            headroom=0,
            available=lambda: 0,
            rss=lambda: 0,
        )
    census = HeapCensus(
        loop=asyncio.get_running_loop(),
        selector=TypeSelector(top_n=config.census_top_n, growth_n=GROWTH_N, hold=HOLD_SECONDS),
        faults=Faults(),
        interval=0,
        slice_budget=SLICE_BUDGET,
        forker=forker,
    )
    return census.run_now


def _plain_child() -> Callable[[], object]:
    """Today's child before reachability (``reachability=False``: every object counted as
    live), the same fork and the same answer otherwise: the peer of the forked census."""
    from tornado_memory_exporter.census import child
    from tornado_memory_exporter.census.fork import Forker
    from tornado_memory_exporter.census.heap import Kinds, count_by_type

    loop = asyncio.get_running_loop()
    forker = Forker(
        loop=loop, mode="fork", deadline=600, headroom=0, available=lambda: 0, rss=lambda: 0
    )

    async def run() -> object:
        kinds = Kinds.alive(loop)

        def work() -> tuple[object, ...]:
            return tuple(child.census(count_by_type=count_by_type, kinds=kinds, reachability=False))

        value, _ = await forker.run(work)
        return child.ChildCensus.from_wire(value)

    return run


async def child_core(size: int, rounds: int) -> dict:
    roots = build_heap(size)
    tracked = len(gc.get_objects())
    census = _census_factory()
    forked = _census_factory("fork")
    forked_snapshots = []

    async def fork_census() -> None:
        forked_snapshots.append(await forked())

    plain_answers = []
    plain = _plain_child()

    async def fork_plain() -> None:
        plain_answers.append(await plain())

    subjects = {
        "census": census,
        "fork": fork_census,
        "fork_plain": fork_plain,
        "gc.get_objects": gc.get_objects,
        "Counter": lambda: Counter(map(type, gc.get_objects())),
    }
    runs: dict[str, list[tuple[float, float]]] = {name: [] for name in subjects}
    for _ in range(rounds):
        for name, fn in subjects.items():
            gc.collect()
            runs[name].append(await _timed(fn))
    # Memory, in a pass of its own (tracemalloc slows allocation down): a fresh census object.
    from pympler.asizeof import asizeof

    census = _census_factory()
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    snapshot = await census()
    current, peak = tracemalloc.get_traced_memory()
    await census()  # a second census: what steady state keeps on top of the first
    current2 = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    import psutil

    rss = psutil.Process().memory_info().rss
    result = {name: _summary(r) for name, r in runs.items()}
    assert all(snap.mode == "fork" for snap in forked_snapshots), "a forked census fell back"
    result["fork"].update(
        child_seconds=median([snap.child_seconds for snap in forked_snapshots]),
        child_private=median([snap.child_private_bytes for snap in forked_snapshots]),
        parent_rss=rss,
        counted=forked_snapshots[-1].scanned,
        untracked=forked_snapshots[-1].untracked,
    )
    result["fork_plain"].update(
        child_seconds=median([answer.seconds for answer in plain_answers]),
        child_private=median([answer.private_bytes for answer in plain_answers]),
    )
    result["fork"].update(
        unreachable=sum((forked_snapshots[-1].unreachable or {}).values()),
        reachability=forked_snapshots[-1].reachability,
    )
    result["census"].update(
        transient=peak - before,
        retained=current - before,
        snapshot=asizeof(snapshot),
        second=current2 - current,
    )
    del roots
    return {"tracked": tracked, "subjects": result}


async def child_peer(size: int, peer: str, cap: float) -> dict:
    roots = build_heap(size)
    tracked = len(gc.get_objects())
    fn = _peer(peer)
    runs = []
    started = time.perf_counter()
    for _ in range(3):
        gc.collect()
        runs.append(await _timed(fn))
        if time.perf_counter() - started > cap / 4:  # one slow run is enough to rank it
            break
    del roots
    return {"tracked": tracked, "subjects": {peer: _summary(runs)}}


def _peer(peer: str) -> Callable[[], object]:
    if peer == "objgraph.typestats":
        import objgraph

        return objgraph.typestats
    if peer == "objgraph.growth":
        import objgraph

        objgraph.growth(limit=10)  # its first call only sets the baseline
        return lambda: objgraph.growth(limit=10)
    if peer == "pympler.summarize":
        from pympler import muppy, summary

        return lambda: summary.summarize(muppy.get_objects())
    if peer == "pympler.tracker_diff":
        from pympler.tracker import SummaryTracker

        tracker = SummaryTracker()
        return tracker.diff
    if peer == "guppy3.heap":
        from guppy import hpy

        h = hpy()
        return h.heap
    raise ValueError(f"peer={peer!r} is unknown; known: {', '.join(PEERS)}")


def _summary(runs: list[tuple[float, float]]) -> dict:
    return {
        "wall": median([w for w, _ in runs]),
        "stall": median([s for _, s in runs]),
        "runs": len(runs),
    }


# ------------------------------------------------------------------------------- orchestration
def _run_child(args: list[str], cap: float) -> dict | None:
    try:
        out = subprocess.run(
            [sys.executable, "-m", "bench.census", "--child", *args],
            capture_output=True,
            text=True,
            timeout=cap,
            check=True,
        ).stdout
    except subprocess.TimeoutExpired:
        return None
    except subprocess.CalledProcessError as error:
        sys.stderr.write(error.stderr[-2000:])
        raise
    return json.loads(out.strip().splitlines()[-1])


def bench_size(size: int, *, rounds: int, cap: float, peers: tuple[str, ...] = PEERS) -> dict:
    core = _run_child(["core", str(size), str(rounds)], cap=max(cap, 600))
    assert core is not None
    subjects = dict(core["subjects"])
    for peer in peers:
        result = _run_child(["peer", str(size), peer, str(cap)], cap=cap + 60)
        subjects[peer] = result["subjects"][peer] if result is not None else None
    return {"size": size, "tracked": core["tracked"], "subjects": subjects}


def report(result: dict) -> list[str]:
    subjects = result["subjects"]
    ours = subjects["census"]
    lines = [
        f"heap {result['size']:,} (gc-tracked at start: {result['tracked']:,})",
        f"  {'subject':<34}{'wall':>10}{'stall':>10}{'wall/ours':>11}{'stall/ours':>12}",
    ]
    names = {
        "census": "ours: census (5 ms slices)",
        "fork": "ours: census (fork)",
        "fork_plain": "ours: fork, no reachability",
        "gc.get_objects": "bare gc.get_objects()",
        "Counter": "bare Counter(map(type, ...))",
        "objgraph.typestats": "objgraph.typestats()",
        "objgraph.growth": "objgraph.growth()",
        "pympler.summarize": "pympler summarize(muppy)",
        "pympler.tracker_diff": "pympler SummaryTracker.diff()",
        "guppy3.heap": "guppy3 hpy().heap()",
    }
    for key, label in names.items():
        s = subjects.get(key)
        if s is None:
            lines.append(f"  {label:<34}{'> cap':>10}{'> cap':>10}")
            continue
        lines.append(
            f"  {label:<34}{fmt_seconds(s['wall']):>10}{fmt_seconds(s['stall']):>10}"
            f"{s['wall'] / ours['wall']:>10.2f}x{s['stall'] / ours['stall']:>11.2f}x"
        )
    fork = subjects["fork"]
    lines.append(
        f"  fork: child wall {fmt_seconds(fork['child_seconds'])}, counted "
        f"{fork['counted']:,} objects ({fork['untracked']:,} untracked), child private memory "
        f"{fork['child_private'] / MIB:.0f} MiB = {fork['child_private'] / fork['parent_rss']:.2f}"
        f" x parent RSS ({fork['parent_rss'] / MIB:.0f} MiB)"
    )
    plain = subjects.get("fork_plain")
    if plain is not None:
        lines.append(
            f"  reachability: child wall {fmt_seconds(fork['child_seconds'])} vs "
            f"{fmt_seconds(plain['child_seconds'])} without "
            f"({fork['child_seconds'] / plain['child_seconds']:.2f}x), child private memory "
            f"{fork['child_private'] / MIB:.0f} vs {plain['child_private'] / MIB:.0f} MiB "
            f"({fork['child_private'] / plain['child_private']:.2f}x; "
            f"{plain['child_private'] / fork['parent_rss']:.2f} -> "
            f"{fork['child_private'] / fork['parent_rss']:.2f} x parent RSS), fork stall "
            f"{fmt_seconds(fork['stall'])} vs {fmt_seconds(plain['stall'])}, "
            f"{fork['unreachable']:,} unreachable"
        )
    lines.append(
        f"  census memory: transient {ours['transient'] / MIB:.1f} MiB, retained after first "
        f"census {ours['retained'] / 1024:.0f} KiB (published snapshot "
        f"{ours['snapshot'] / 1024:.0f} KiB), "
        f"a second census adds {ours['second'] / 1024:.0f} KiB"
    )
    return lines


def targets(result: dict) -> list[str]:
    s = result["subjects"]
    ours = s["census"]

    def check(label: str, value: float, limit: float) -> str:
        verdict = "ok" if value <= limit else "MISSED"
        return f"  {label}: {value:.3f} (target <= {limit}) {verdict}"

    lines = [
        f"targets at {result['size']:,}:",
        check("stall / bare gc.get_objects()", ours["stall"] / s["gc.get_objects"]["stall"], 1.15),
        check("wall / bare Counter", ours["wall"] / s["Counter"]["wall"], 1.5),
    ]
    for peer, limit in (("objgraph.typestats", 0.4), ("pympler.summarize", 0.05)):
        if s.get(peer) is not None:
            lines.append(check(f"stall / {peer} stall", ours["stall"] / s[peer]["stall"], limit))
        else:
            lines.append(f"  stall / {peer}: peer exceeded the cap (ok)")
    beyond = (ours["retained"] - ours["snapshot"]) / MIB
    lines.append(check("retained MiB beyond the snapshot", beyond, 1.0))
    fork = s["fork"]
    lines.append(
        check(
            "fork stall / bare gc.get_objects() stall",
            fork["stall"] / s["gc.get_objects"]["stall"],
            0.2,
        )
    )
    if s.get("fork_plain") is not None:
        plain = s["fork_plain"]
        lines.append(
            check(
                "reachability child wall / without",
                fork["child_seconds"] / plain["child_seconds"],
                2.0,
            )
        )
    if s.get("guppy3.heap") is not None:
        lines.append(
            check(
                "fork stall / guppy3 heap() stall", fork["stall"] / s["guppy3.heap"]["stall"], 0.02
            )
        )
    else:
        lines.append("  fork stall / guppy3 heap(): peer exceeded the cap (ok)")
    return lines


# --------------------------------------------------------------------------------------- wrk
class _Hello:
    pass


async def wrk_app(*, census: bool, size: int, mode: str = "fork", interval: float = 15.0) -> object:
    """A hello-world app holding a ``size``-object heap; with ``census`` the exporter is
    installed censusing in ``mode`` every ``interval`` seconds (jittered)."""
    import tornado.web

    from tornado_memory_exporter import install

    class HelloHandler(tornado.web.RequestHandler):
        def get(self) -> None:
            self.write("hello")

    _Hello.roots = build_heap(size)  # type: ignore[attr-defined]
    app = tornado.web.Application([("/", HelloHandler)])
    if census:
        from prometheus_client import CollectorRegistry

        from tornado_memory_exporter import Config

        config = Config(census_mode=mode, census_interval=interval)
        install(app, "/metrics", registry=CollectorRegistry(), config=config)
    return app


_LUA = """
done = function(summary, latency, requests)
  io.write(string.format("R %d\\n", summary.requests))
  for i = 1, #latency do
    local value, count = latency(i)
    io.write(string.format("H %d %d\\n", value, count))
  end
end
"""


def _wrk_round(url: str, seconds: int, script: str) -> tuple[Counter[int], int]:
    """Latency histogram (microseconds -> count) and request count of one wrk run."""
    out = subprocess.run(
        ["wrk", "-t1", "-c8", f"-d{seconds}s", "-s", script, url],
        capture_output=True,
        text=True,
        check=True,
        timeout=seconds + 60,
    ).stdout
    histogram: Counter[int] = Counter()
    requests = 0
    for line in out.splitlines():
        parts = line.split()
        if parts[:1] == ["H"]:
            histogram[int(parts[1])] += int(parts[2])
        elif parts[:1] == ["R"]:
            requests = int(parts[1])
    return histogram, requests


def _percentile(histogram: Counter[int], q: float) -> float:
    """Nearest-rank percentile, in seconds, of a merged latency histogram."""
    total = sum(histogram.values())
    rank = max(1, -(-q * total // 100))
    seen = 0
    for value in sorted(histogram):
        seen += histogram[value]
        if seen >= rank:
            return value / 1e6
    raise ValueError("empty histogram")


def bench_wrk(
    seconds: int, size: int, round_seconds: int = 30, mode: str = "fork", interval: float = 15.0
) -> list[str]:
    """Three apps run for the whole bench: no census, the same again (the A/A control: how far
    two identical apps land apart on this machine), and the exporter with its default census.
    wrk loads them in rotating rounds, so the load other processes put on the machine falls on
    all alike; latencies of all the rounds of an app are merged before taking percentiles."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(_LUA)
    ours_name = f"census ({mode}, {interval:g} s)"
    variants = ("no census", "no census (A/A)", ours_name)
    histograms: dict[str, Counter[int]] = {v: Counter() for v in variants}
    requests = dict.fromkeys(variants, 0)
    rounds = max(1, seconds // round_seconds)
    with (
        ChildServer("bench.census:wrk_app", census=False, size=size) as plain,
        ChildServer("bench.census:wrk_app", census=False, size=size) as control,
        ChildServer(
            "bench.census:wrk_app", census=True, size=size, mode=mode, interval=interval
        ) as censused,
    ):
        servers = dict(zip(variants, (plain, control, censused), strict=True))
        for i in range(rounds):
            for variant in variants[i % 3 :] + variants[: i % 3]:
                histogram, count = _wrk_round(
                    servers[variant].url + "/", round_seconds, script.name
                )
                histograms[variant].update(histogram)
                requests[variant] += count
        with urllib.request.urlopen(censused.url + "/metrics", timeout=10) as response:
            text = response.read().decode()
    Path(script.name).unlink()
    census_metrics = {
        line.split()[0]: float(line.split()[1])
        for line in text.splitlines()
        if line.startswith(
            (
                "tornado_census_max_stall",
                "tornado_census_duration",
                "tornado_census_objects_scanned",
                "tornado_census_fallbacks_total",
                "tornado_census_mode",
                "tornado_census_child_memory",
            )
        )
    }
    quantiles = ("50", "99", "99.9", "100")
    stats = {v: {q: _percentile(h, float(q)) for q in quantiles} for v, h in histograms.items()}
    base = stats["no census"]
    lines = [
        f"wrk -t1 -c8, {rounds} rotating rounds of {round_seconds} s per app "
        f"(hello world holding a {size:,}-object heap):",
        f"  {'':<18}{'p50':>10}{'p99':>10}{'p99.9':>10}{'max':>10}{'requests':>10}",
    ]
    for variant in variants:
        lines.append(
            f"  {variant:<18}"
            + "".join(f"{fmt_seconds(stats[variant][q]):>10}" for q in quantiles)
            + f"{requests[variant]:>10}"
        )
    for variant in variants[1:]:
        lines.append(
            f"  {variant + ' ratio':<18}"
            + "".join(f"{stats[variant][q] / base[q]:>10.2f}" for q in quantiles)
        )
    ours, control = stats[ours_name], stats["no census (A/A)"]
    for q, label in (("99", "p99"), ("99.9", "p99.9"), ("100", "max")):
        ratio, aa = ours[q] / base[q], control[q] / base[q]
        lines.append(
            f"  {label} ratio {ratio:.2f} (target <= 1.5: {'ok' if ratio <= 1.5 else 'MISSED'}; "
            f"A/A control {aa:.2f})"
        )
    lines.append(f"  the last census: {census_metrics}")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.census", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--sizes",
        type=int,
        nargs="*",
        default=[100_000, 1_000_000, 3_000_000],
        help="heap sizes of the table; none: only the wrk part",
    )
    parser.add_argument(
        "--rounds", type=int, default=5, help="interleaved rounds of ours vs the floors"
    )
    parser.add_argument("--cap", type=float, default=120.0, help="seconds per peer before '> cap'")
    parser.add_argument(
        "--peers", nargs="*", choices=PEERS, default=list(PEERS), help="peers to run (none: ours)"
    )
    parser.add_argument("--wrk-seconds", type=int, default=90, help="per app; 0 skips the wrk part")
    parser.add_argument("--wrk-round", type=int, default=30, help="seconds of one wrk round")
    parser.add_argument("--wrk-size", type=int, default=1_000_000)
    parser.add_argument("--wrk-mode", choices=("fork", "inloop"), default="fork")
    parser.add_argument("--wrk-interval", type=float, default=15.0, help="seconds between censuses")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        kind, size, *rest = args.child
        coro = (
            child_core(int(size), int(rest[0]))
            if kind == "core"
            else child_peer(int(size), rest[0], float(rest[1]))
        )
        print(json.dumps(asyncio.run(coro)))
        return 0
    for size in args.sizes:
        result = bench_size(size, rounds=args.rounds, cap=args.cap, peers=tuple(args.peers))
        print("\n".join(report(result) + targets(result)), flush=True)
        print(json.dumps(result), file=sys.stderr, flush=True)
    if args.wrk_seconds:
        lines = bench_wrk(
            args.wrk_seconds, args.wrk_size, args.wrk_round, args.wrk_mode, args.wrk_interval
        )
        print("\n".join(lines), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
