"""What the loop-utilisation meter (``<ns>_ioloop_busy_seconds_total``) costs the loop.

The meter times each ``select()`` of the loop's selector, so its cost is per loop iteration. Two
workloads, each on a fresh asyncio selector loop per round:

- ``yield``: one task doing ``await asyncio.sleep(0)`` ``--iterations`` times: one callback per
  iteration, the most iterations per unit of work any app can have (the worst case);
- ``echo``: ``--iterations`` / 10 round trips of 64 bytes over a loopback socket pair with
  asyncio streams: every iteration waits for readiness, so every one is timed (the worst
  case of the timed path: tiny messages, nothing else done);
- ``http``: ``--iterations`` / 100 sequential GETs of a hello-world Tornado app served on
  127.0.0.1 by the same loop (server and client): what a web app's iterations look like.

Variants, interleaved in a shuffled order (seeded) in every round: ``none`` (no meter),
``none again`` (the same, timed apart: the A/A noise floor), ``meter`` (``LoopBusyMeter``
started as ``install()`` starts it). Rounds are timed in thread CPU time; the ratio printed is
the median of per-round ratios to ``none``.

    .venv/bin/python -m bench.loop_busy [--rounds 101] [--iterations 20000]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import socket
import sys
from collections.abc import Awaitable, Callable
from time import thread_time

import tornado.httpclient
import tornado.httpserver
import tornado.netutil
import tornado.web

from bench import median
from tornado_memory_exporter.collectors.loop_busy import LoopBusyMeter

VARIANTS = ("none", "none again", "meter")
WORKLOADS = ("yield", "echo", "http")


class Hello(tornado.web.RequestHandler):
    def get(self) -> None:
        self.write("hello")


async def yield_loop(iterations: int) -> None:
    """One loop iteration (and one ``select(0)``) per ``sleep(0)``."""
    for _ in range(iterations):
        await asyncio.sleep(0)


async def echo_loop(iterations: int) -> None:
    """``iterations // 10`` request/reply round trips over a loopback socket pair."""
    left, right = socket.socketpair()
    client = await asyncio.open_connection(sock=left)
    server = await asyncio.open_connection(sock=right)
    (c_reader, c_writer), (s_reader, s_writer) = client, server
    message = b"x" * 64
    try:
        for _ in range(iterations // 10):
            c_writer.write(message)
            s_writer.write(await s_reader.readexactly(64))
            await c_reader.readexactly(64)
    finally:
        c_writer.close()
        s_writer.close()


async def http_loop(iterations: int) -> None:
    """``iterations // 100`` GETs of a Tornado app, one after the other, on this loop."""
    server = tornado.httpserver.HTTPServer(tornado.web.Application([("/", Hello)]))
    sock, *_ = tornado.netutil.bind_sockets(0, "127.0.0.1")
    server.add_sockets([sock])
    client = tornado.httpclient.AsyncHTTPClient(force_instance=True)
    url = f"http://127.0.0.1:{sock.getsockname()[1]}/"
    try:
        for _ in range(iterations // 100):
            response = await client.fetch(url)
            if response.body != b"hello":
                raise RuntimeError(f"unexpected body {response.body!r}")
    finally:
        client.close()
        server.stop()
        await server.close_all_connections()


WORK: dict[str, Callable[[int], Awaitable[None]]] = {
    "yield": yield_loop,
    "echo": echo_loop,
    "http": http_loop,
}


def time_once(workload: str, variant: str, iterations: int) -> float:
    """CPU seconds of one run of ``workload`` on a fresh loop, metered or not."""

    async def timed() -> float:
        meter = None
        if variant == "meter":
            meter = LoopBusyMeter("bench", loop=asyncio.get_running_loop())
            meter.start()
            if meter.unmeasured:
                raise RuntimeError(f"the meter did not start: {meter.unmeasured}")
        try:
            await asyncio.sleep(0)
            start = thread_time()
            await WORK[workload](iterations)
            return thread_time() - start
        finally:
            if meter is not None:
                busy = list(meter.collect())[0].samples[0].value
                meter.stop()
                if busy <= 0:
                    raise RuntimeError("the meter measured no busy time")

    with asyncio.Runner(loop_factory=asyncio.SelectorEventLoop) as runner:
        return runner.run(timed())


def run(*, rounds: int = 101, iterations: int = 20000) -> dict[str, float]:
    """Measure and print; returns the meter's ratio to ``none`` per workload."""
    seconds = {(w, v): [] for w in WORKLOADS for v in VARIANTS}
    shuffle = random.Random(3).shuffle
    order = [(w, v) for w in WORKLOADS for v in VARIANTS]
    for r in range(rounds + 1):  # round 0 warms up and is dropped
        shuffle(order)
        for workload, variant in order:
            elapsed = time_once(workload, variant, iterations)
            if r:
                seconds[workload, variant].append(elapsed)
    print(f"Loop utilisation meter overhead: {rounds} rounds, variants interleaved in shuffled")
    print(f"    order, thread CPU time; {iterations} loop iterations per 'yield' round.")
    ratios = {}
    for workload in WORKLOADS:
        base = seconds[workload, "none"]
        for variant in VARIANTS:
            times = seconds[workload, variant]
            line = f"    {workload:5} {variant:10} median {median(times) * 1e3:7.2f} ms"
            if variant != "none":
                ratio = median([t / b for t, b in zip(times, base, strict=True)])
                line += f"   ratio to none {ratio:.3f}"
                if variant == "meter":
                    ratios[workload] = ratio
                else:
                    line += "   <- noise floor (A/A)"
            print(line)
    pairs = zip(seconds["yield", "meter"], seconds["yield", "none"], strict=True)
    per_iteration = median([(m - b) / iterations for m, b in pairs])
    print(f"    meter cost per loop iteration ('yield', median): {per_iteration * 1e9:.0f} ns")
    return ratios


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.loop_busy", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--rounds", type=int, default=101, help="timed rounds per variant")
    parser.add_argument("--iterations", type=int, default=20000, help="loop iterations per round")
    args = parser.parse_args(argv)
    run(rounds=args.rounds, iterations=args.iterations)
    return 0


if __name__ == "__main__":
    sys.exit(main())
