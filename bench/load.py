"""Load and soak: does scraping hurt the app, and does the exporter keep memory it should not?

(1) Load: an app in a child process serves ``/`` (normal traffic, a small JSON page) with the
exporter installed (``Config()``), on its own route and on ``exporter.serve()``. A second
child runs 50 concurrent scrapers, each scraping once per ``--scrape-interval`` with the headers
Prometheus sends. This process sends open-loop app traffic at ``--rate`` requests/s and times
each request from its scheduled start (no coordinated omission). Windows rotate every few
seconds between no scrapers (baseline), scrapers on the app's route (default ``Config()``, and
with ``scrape_cache_seconds=1``), and scrapers on the separate port, so that machine noise
falls on all conditions alike; each gets ``--duration`` s.
Targets: no failed scrape; app p99 within 1.2x of the baseline p99.

(2) Soak: in this process, under tracemalloc, 10,000 scrapes over HTTP and 1,000 censuses
(``census_now()`` after every 10th scrape), after a warm-up. Target: retained memory (traced,
after a full collection) grows by < 1 MiB, in total and in the exporter's own frames.

    .venv/bin/python -m bench.load [--duration 30] [--scrapers 50] [--scrapes 10000]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import gzip
import http.client
import json
import multiprocessing
import socket
import sys
import threading
import time
import tracemalloc
from concurrent.futures import ThreadPoolExecutor
from multiprocessing.sharedctypes import Synchronized

import tornado.httpclient
import tornado.web
from prometheus_client import CollectorRegistry

from bench import PROMETHEUS_HEADERS, ChildServer, fmt_seconds, median, percentile
from tornado_memory_exporter import Config, MetricsHandler, install
from tornado_memory_exporter.web.metrics import Renderer

MiB = 2**20
BASELINE, ROUTE, CACHED, SEPARATE = 0, 1, 2, 3
CONDITIONS = {
    BASELINE: "no scrapers",
    ROUTE: "scrapers on app route",
    CACHED: "same, scrape_cache_seconds=1",
    SEPARATE: "scrapers on separate port",
}
SCRAPED = (ROUTE, CACHED, SEPARATE)
MARKER = b"tornado_process_resident_memory_bytes"


class PageHandler(tornado.web.RequestHandler):
    """Normal traffic: a little work and a small JSON body."""

    def get(self) -> None:
        items = [{"id": i, "name": f"item-{i}", "price": i * 1.5} for i in range(50)]
        self.write(json.dumps({"items": items, "total": sum(item["price"] for item in items)}))


async def load_app(metrics_port: int) -> tornado.web.Application:
    """The served app (runs in the child): the page, the exporter's route, a separate port."""
    app = tornado.web.Application([(r"/", PageHandler)])
    exporter = install(app, "/metrics", config=Config(), registry=CollectorRegistry())
    app.add_handlers(
        r".*",
        [
            (
                r"/metrics-cached",
                MetricsHandler,
                {"registry": exporter.served, "renderer": Renderer(cache_seconds=1.0)},
            )
        ],
    )
    app.settings["exporter"] = exporter
    exporter.serve(metrics_port)
    return app


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class _KeepAlive(threading.local):
    """One keep-alive connection per thread, reopened after an error (as Prometheus does)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.connection: http.client.HTTPConnection | None = None

    def get(self, path: str, headers: dict[str, str]) -> tuple[int, bytes]:
        if self.connection is None:
            self.connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            self.connection.request("GET", path, headers=headers)
            response = self.connection.getresponse()
            return response.status, response.read()
        except Exception:
            self.connection.close()
            self.connection = None
            raise


def _scrapers(
    urls: dict[int, tuple[int, str]],
    mode: Synchronized,
    stop,
    ok,
    failed,
    count: int,
    interval: float,
) -> None:
    """Child process: ``count`` scraper threads, each scraping ``urls[mode]`` once per ``interval``
    over keep-alive connections of its own, as ``count`` Prometheus servers would."""

    def scraper(index: int) -> None:
        connections = {condition: _KeepAlive(port) for condition, (port, _) in urls.items()}
        stop.wait(interval * index / count)  # spread over the interval, as targets are
        while not stop.is_set():
            current = mode.value
            started = time.monotonic()
            if current != BASELINE:
                try:
                    status, body = connections[current].get(urls[current][1], PROMETHEUS_HEADERS)
                    good = status == 200 and MARKER in gzip.decompress(body)
                except Exception:  # noqa: BLE001 - a failed scrape is what we count
                    good = False
                counter = (ok if good else failed)[current]
                with counter.get_lock():
                    counter.value += 1
            stop.wait(max(0.0, interval - (time.monotonic() - started)))

    threads = [threading.Thread(target=scraper, args=(i,), daemon=True) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def _traffic(
    port: int, mode: Synchronized, *, rate: float, window: float, duration: float
) -> dict[int, list[float]]:
    """Open-loop app traffic (keep-alive, 32 client threads) while the windows rotate;
    latency of each request from its scheduled start, by condition."""
    latencies: dict[int, list[float]] = {c: [] for c in CONDITIONS}
    errors: list[str] = []
    connection = _KeepAlive(port)

    def one(condition: int, scheduled: float, counted: bool) -> None:
        try:
            status, _ = connection.get("/", {})
        except Exception as error:  # noqa: BLE001 - reported below
            errors.append(repr(error))
            return
        if status != 200:
            errors.append(str(status))
        elif counted:
            latencies[condition].append(time.monotonic() - scheduled)

    with ThreadPoolExecutor(max_workers=32) as pool:
        for _ in range(max(1, round(duration / window))):
            for condition in CONDITIONS:
                mode.value = condition
                start = time.monotonic()
                sent = 0
                while (scheduled := start + sent / rate) < start + window:
                    time.sleep(max(0.0, scheduled - time.monotonic()))
                    # the first half second of a window lets scrapes of the previous one drain
                    pool.submit(one, condition, scheduled, scheduled - start >= 0.5)
                    sent += 1
        mode.value = BASELINE
    if errors:
        raise RuntimeError(f"{len(errors)} app requests failed, e.g. {errors[0]}")
    return latencies


def load(*, duration: float, scrapers: int, interval: float, rate: float, window: float) -> bool:
    metrics_port = _free_port()
    context = multiprocessing.get_context("spawn")
    mode = context.Value("i", BASELINE)
    stop = context.Event()
    ok = {c: context.Value("l", 0) for c in SCRAPED}
    failed = {c: context.Value("l", 0) for c in SCRAPED}
    with ChildServer("bench.load:load_app", metrics_port=metrics_port) as server:
        urls = {
            ROUTE: (server.port, "/metrics"),
            CACHED: (server.port, "/metrics-cached"),
            SEPARATE: (metrics_port, "/metrics"),
        }
        process = context.Process(
            target=_scrapers, args=(urls, mode, stop, ok, failed, scrapers, interval), daemon=True
        )
        process.start()
        try:
            latencies = _traffic(server.port, mode, rate=rate, window=window, duration=duration)
        finally:
            stop.set()
            process.join(30)
    base_p99 = percentile(latencies[BASELINE], 99)
    print(
        f"load: {scrapers} scrapers x 1 scrape/{interval:g}s beside {rate:g} app req/s, "
        f"{duration:g}s per condition in {window:g}s windows"
    )
    print(
        f"  {'condition':28} {'requests':>8} {'p50':>9} {'p90':>9} {'p99':>9} {'p99/base':>8} "
        f"{'scrapes':>8} {'failed':>6}"
    )
    passed = True
    for condition, name in CONDITIONS.items():
        values = latencies[condition]
        p99 = percentile(values, 99)
        done = ok[condition].value if condition in ok else 0
        bad = failed[condition].value if condition in failed else 0
        print(
            f"  {name:28} {len(values):8d} {fmt_seconds(median(values)):>9} "
            f"{fmt_seconds(percentile(values, 90)):>9} {fmt_seconds(p99):>9} "
            f"{p99 / base_p99:8.2f} {done:8d} {bad:6d}"
        )
        if condition != BASELINE:
            passed &= bad == 0 and done > 0 and p99 <= 1.2 * base_p99
    print(f"  target: no failed scrape, app p99 <= 1.2 x baseline: {'met' if passed else 'MISSED'}")
    return passed


async def _soak(scrapes: int, censuses: int) -> tuple[int, int, int, int]:
    """Bytes retained under tracemalloc: (total before, after, our frames before, after)."""
    app = tornado.web.Application([(r"/", PageHandler)])
    server = app.listen(0, address="127.0.0.1")
    port = next(iter(server._sockets.values())).getsockname()[1]
    exporter = install(
        app, "/metrics", config=Config(census_interval=0), registry=CollectorRegistry()
    )
    client = tornado.httpclient.AsyncHTTPClient()
    every = max(1, scrapes // censuses) if censuses else 0

    async def run(n: int, census_count: int) -> None:
        done_censuses = 0
        for i in range(1, n + 1):
            response = await client.fetch(
                f"http://127.0.0.1:{port}/metrics", headers=PROMETHEUS_HEADERS
            )
            assert response.code == 200 and MARKER in response.body
            if every and i % every == 0 and done_censuses < census_count:
                await exporter.census_now()
                done_censuses += 1
        while done_censuses < census_count:
            await exporter.census_now()
            done_censuses += 1

    def retained() -> tuple[int, int]:
        gc.collect()  # the bench, not the library: count what survives a full collection
        snapshot = tracemalloc.take_snapshot()
        ours = snapshot.filter_traces(
            [
                tracemalloc.Filter(True, "*tornado_memory_exporter*"),
                tracemalloc.Filter(True, "*prometheus_client*"),
            ]
        )
        return sum(s.size for s in snapshot.statistics("filename")), sum(
            s.size for s in ours.statistics("filename")
        )

    tracemalloc.start(1)
    await run(max(100, scrapes // 20), max(10, censuses // 20))  # warm-up: caches, lazy imports
    before, ours_before = retained()
    await run(scrapes, censuses)
    after, ours_after = retained()
    tracemalloc.stop()
    exporter.stop()
    server.stop()
    return before, after, ours_before, ours_after


def soak(*, scrapes: int, censuses: int) -> bool:
    started = time.monotonic()
    before, after, ours_before, ours_after = asyncio.run(_soak(scrapes, censuses))
    growth, ours = after - before, ours_after - ours_before
    print(f"soak: {scrapes} scrapes + {censuses} censuses in {time.monotonic() - started:.0f}s")
    print(
        f"  retained (traced, after gc): total {before / MiB:.2f} -> {after / MiB:.2f} MiB "
        f"({growth / 1024:+.1f} KiB); exporter+prometheus_client frames {ours / 1024:+.1f} KiB"
    )
    passed = growth < MiB and ours < MiB
    print(f"  target: retained growth < 1 MiB: {'met' if passed else 'MISSED'}")
    return passed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.load", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--duration", type=float, default=30.0, help="seconds per condition")
    parser.add_argument("--window", type=float, default=5.0, help="seconds per rotation window")
    parser.add_argument("--scrapers", type=int, default=50)
    parser.add_argument("--scrape-interval", type=float, default=1.0)
    parser.add_argument("--rate", type=float, default=100.0, help="app requests per second")
    parser.add_argument("--scrapes", type=int, default=10000)
    parser.add_argument("--censuses", type=int, default=1000)
    parser.add_argument("--skip-load", action="store_true")
    parser.add_argument("--skip-soak", action="store_true")
    args = parser.parse_args(argv)
    results = []
    if not args.skip_load:
        results.append(
            load(
                duration=args.duration,
                scrapers=args.scrapers,
                interval=args.scrape_interval,
                rate=args.rate,
                window=args.window,
            )
        )
    if not args.skip_soak:
        results.append(soak(scrapes=args.scrapes, censuses=args.censuses))
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
