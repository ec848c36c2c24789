"""Census cost with many open WebSocket connections: ``python -m bench.websockets``.

This process serves a Tornado ``WebSocketHandler`` on 127.0.0.1 with the exporter installed; a
child process opens ``--connections`` real ``tornado.websocket`` clients to it and holds them.
With the connections open, ``--rounds`` censuses run (``exporter.census_now()``, default slice
budget) and each one's wall time and longest IOLoop slice are recorded, next to the floor that
cannot be sliced, one bare ``gc.get_objects()``. The clients then leave, and the same number of
gc-tracked objects is rebuilt from plain lists: the same heap size without connections, censused
the same way. The ratio with/without is the price of looking into handlers and streams (and of
a heap scattered by real connections: ``gc.get_objects()`` itself walks it several times slower
than freshly allocated lists). The longest slice of the counting pass alone, looking into
handlers and streams or not, shows the slices stay within the budget.

    .venv/bin/python -m bench.websockets [--connections 10000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import resource
import sys
import time

import tornado.web
import tornado.websocket
from prometheus_client import CollectorRegistry

from bench import fmt_seconds, median
from tornado_memory_exporter import Config, install
from tornado_memory_exporter.census.heap import Kinds, count_by_type
from tornado_memory_exporter.census.slicer import SLICE_BUDGET, Slicer
from tornado_memory_exporter.census.snapshot import CensusSnapshot

CLIENTS = """
import asyncio, resource, sys
import tornado.websocket

async def main(url: str, n: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    gate, clients = asyncio.Semaphore(100), []

    async def one() -> None:
        async with gate:
            clients.append(await tornado.websocket.websocket_connect(url))

    await asyncio.gather(*(one() for _ in range(n)))
    print("connected", len(clients), flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    for client in clients:
        client.close()

asyncio.run(main(sys.argv[1], int(sys.argv[2])))
"""


class Socket(tornado.websocket.WebSocketHandler):
    """Holds its connection open and says nothing."""


NAME = f"{__name__}.Socket"


def raise_fd_limit(needed: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < needed:
        raise SystemExit(f"needs {needed} file descriptors, the hard limit is {hard} (ulimit -Hn)")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, needed), hard))


async def counting_slices(budget: float) -> tuple[float, float]:
    """Longest slice of the sliced counting pass alone (the enumeration before it excluded),
    looking into handlers and streams, then not looking (``Kinds()``), on the same list."""
    objects = gc.get_objects()
    longest = []
    for kinds in (Kinds.alive(), Kinds()):
        slicer = Slicer(budget, clock=time.perf_counter, pause=asyncio.sleep)
        await count_by_type(objects, slicer, kinds=kinds)
        slicer.end_slice()
        longest.append(slicer.max_stall)
    objects.clear()
    return longest[0], longest[1]


async def censuses(
    exporter: object, rounds: int, budget: float
) -> tuple[list[CensusSnapshot], list[float], list[tuple[float, float]]]:
    snapshots, floors, slices = [], [], []
    for _ in range(rounds):
        snapshots.append(await exporter.census_now())  # type: ignore[attr-defined]
        started = time.perf_counter()
        objects = gc.get_objects()
        floors.append(time.perf_counter() - started)
        del objects
        await asyncio.sleep(0.2)
        slices.append(await counting_slices(budget))
    return snapshots, floors, slices


def row(
    label: str,
    snapshots: list[CensusSnapshot],
    floors: list[float],
    slices: list[tuple[float, float]],
) -> tuple[str, float, float]:
    wall = median([s.duration for s in snapshots])
    stall = median([s.max_stall for s in snapshots])
    looking, blind = median([a for a, _ in slices]), median([b for _, b in slices])
    line = (
        f"{label:<28}{snapshots[-1].tracked:>11,}{fmt_seconds(wall):>12}{fmt_seconds(stall):>14}"
        f"{fmt_seconds(median(floors)):>16}{fmt_seconds(looking):>12}{fmt_seconds(blind):>12}"
    )
    return line, wall, stall


async def run(connections: int, rounds: int) -> int:
    raise_fd_limit(connections + 1000)
    app = tornado.web.Application([("/ws", Socket)])
    server = app.listen(0, address="127.0.0.1")
    port = next(iter(server._sockets.values())).getsockname()[1]
    config = Config(census_interval=0)
    exporter = install(app, config=config, registry=CollectorRegistry())
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        CLIENTS,
        f"ws://127.0.0.1:{port}/ws",
        str(connections),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert child.stdout is not None and child.stdin is not None
        started = time.perf_counter()
        line = (await asyncio.wait_for(child.stdout.readline(), 300)).decode()
        if line.split() != ["connected", str(connections)]:
            raise RuntimeError(f"the clients said {line!r}")
        connect_seconds = time.perf_counter() - started
        await asyncio.sleep(0.5)  # the last upgrades complete on this side
        with_ws, with_floors, with_slices = await censuses(exporter, rounds, SLICE_BUDGET)
        last = with_ws[-1]
        if last.handlers.get((NAME, "open")) != connections or last.streams.open < connections:
            raise RuntimeError(
                f"counted {last.handlers} and {last.streams}, expected {connections} open"
            )
        target = last.tracked
        child.stdin.close()  # the clients leave
        await asyncio.wait_for(child.wait(), 120)
        while (await exporter.census_now()).handlers.get((NAME, "open")):
            await asyncio.sleep(0.2)
        gc.collect()  # bench code (never the library): drop the closed connections' cycles
        filler = [[i] for i in range(max(0, target - len(gc.get_objects())))]
        without, without_floors, without_slices = await censuses(exporter, rounds, SLICE_BUDGET)
        del filler
    finally:
        if child.returncode is None:
            child.kill()
            await child.wait()
        exporter.stop()
        server.stop()
    print(
        f"{connections:,} WebSocket connections opened in {connect_seconds:.1f} s; "
        f"slice budget {fmt_seconds(SLICE_BUDGET)}; medians of {rounds} censuses"
    )
    print(
        "longest slice: of the whole census, the unsliceable gc.get_objects() included; "
        "counting: longest"
    )
    print("slice of the sliced counting pass alone, looking into handlers/streams and not looking")
    print(
        f"{'heap':<28}{'tracked':>11}{'census wall':>12}{'longest slice':>14}{'get_objects()':>16}"
        f"{'counting':>12}{'not looking':>12}"
    )
    line_with, wall_with, stall_with = row(
        f"{connections:,} open connections", with_ws, with_floors, with_slices
    )
    line_without, wall_without, stall_without = row(
        "same size, no connections", without, without_floors, without_slices
    )
    print(line_with)
    print(line_without)
    print(
        f"{'ratio with/without':<28}{'':>11}{wall_with / wall_without:>11.2f}x"
        f"{stall_with / stall_without:>13.2f}x"
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.websockets")
    parser.add_argument("--connections", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    return asyncio.run(run(args.connections, args.rounds))


if __name__ == "__main__":
    raise SystemExit(main())
