"""(a) ``/metrics`` latency of the default configuration, against prometheus_client's own defaults.

One Tornado app in a child process serves both, through the same ``MetricsHandler``:

- ``/metrics``: ``install()`` with ``Config()`` on a fresh ``CollectorRegistry``;
- ``/peer``: a fresh registry holding prometheus_client's default collectors
  (``ProcessCollector``, ``PlatformCollector``, ``GCCollector``).

The bench process scrapes them alternately over one keep-alive connection with the headers
Prometheus sends (OpenMetrics, gzip), timing each request to the last body byte. Then, in this
process, it times ``generate_latest()`` (text format) of the same two registries, interleaved:
the part of a scrape that is ours rather than HTTP's.

    .venv/bin/python -m bench.scrape [--scrapes 2000] [--warmup 100]
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import http.client
import sys
from dataclasses import dataclass
from time import perf_counter

import tornado.web
from prometheus_client import (
    CollectorRegistry,
    GCCollector,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)

from bench import PROMETHEUS_HEADERS, ChildServer, fmt_seconds, median, percentile
from tornado_memory_exporter import Config, MetricsHandler, install

PATHS = {"ours": "/metrics", "peer": "/peer"}
# A line each body must carry, checked on every scrape so that a 200 with the wrong body fails.
MARKERS = {
    "ours": b"tornado_process_resident_memory_bytes ",
    "peer": b"process_resident_memory_bytes ",
}


def peer_registry() -> CollectorRegistry:
    """A fresh registry with prometheus_client's default collectors, as its global one has."""
    registry = CollectorRegistry()
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    return registry


async def scrape_app() -> tornado.web.Application:
    """The served app: our exporter on ``/metrics``, the peer on ``/peer`` (runs in the child)."""
    app = tornado.web.Application([(PATHS["peer"], MetricsHandler, {"registry": peer_registry()})])
    app.settings["exporter"] = install(
        app, PATHS["ours"], config=Config(), registry=CollectorRegistry()
    )
    return app


@dataclass
class Timings:
    """Per-request seconds of each side, and one body of each (decompressed) for its size."""

    seconds: dict[str, list[float]]
    body_bytes: dict[str, int]
    wire_bytes: dict[str, int]


def scrape_http(port: int, *, scrapes: int, warmup: int) -> Timings:
    """Scrape both paths ``scrapes`` times each (after ``warmup``), alternating which goes first."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    seconds: dict[str, list[float]] = {name: [] for name in PATHS}
    bodies: dict[str, bytes] = {}
    for i in range(warmup + scrapes):
        for name in ("ours", "peer") if i % 2 == 0 else ("peer", "ours"):
            start = perf_counter()
            conn.request("GET", PATHS[name], headers=PROMETHEUS_HEADERS)
            response = conn.getresponse()
            body = response.read()
            elapsed = perf_counter() - start
            if response.status != 200 or response.getheader("Content-Encoding") != "gzip":
                raise RuntimeError(f"GET {PATHS[name]}: {response.status} {response.headers}")
            bodies[name] = body
            if i >= warmup:
                seconds[name].append(elapsed)
    conn.close()
    plain = {name: gzip.decompress(body) for name, body in bodies.items()}
    for name, text in plain.items():
        if MARKERS[name] not in text:
            raise RuntimeError(f"{PATHS[name]} lacks {MARKERS[name]!r}")
    return Timings(
        seconds, {n: len(b) for n, b in plain.items()}, {n: len(b) for n, b in bodies.items()}
    )


def generate_in_process(*, rounds: int) -> dict[str, list[float]]:
    """Seconds of ``generate_latest()`` of each registry in this process, interleaved."""

    async def run() -> dict[str, list[float]]:
        ours = CollectorRegistry()
        exporter = install(None, None, config=Config(), registry=ours)
        registries = {"ours": ours, "peer": peer_registry()}
        seconds: dict[str, list[float]] = {name: [] for name in registries}
        try:
            for i in range(rounds):
                for name in ("ours", "peer") if i % 2 == 0 else ("peer", "ours"):
                    start = perf_counter()
                    generate_latest(registries[name])
                    seconds[name].append(perf_counter() - start)
        finally:
            exporter.stop()
        return seconds

    return asyncio.run(run())


def run(*, scrapes: int = 2000, warmup: int = 100) -> dict[str, float]:
    """Measure and print; returns the ratios (ours / peer) for callers that check them."""
    with ChildServer("bench.scrape:scrape_app") as server:
        http_t = scrape_http(server.port, scrapes=scrapes, warmup=warmup)
    local = generate_in_process(rounds=scrapes)

    print(f"(a) /metrics latency: {scrapes} scrapes of each side, interleaved, over one keep-alive")
    print("    HTTP connection to one Tornado app on 127.0.0.1 (child process), Prometheus 2.42's")
    print("    Accept headers (-> OpenMetrics, gzip); time = request sent to last body byte.")
    print(
        "    ours = install(app, config=Config()) on a fresh registry; peer = prometheus_client's"
    )
    print(
        "    ProcessCollector + PlatformCollector + GCCollector on a fresh registry, same handler."
    )
    print(f"    {'':28}{'median':>10}{'p99':>10}{'body':>10}{'gzipped':>10}")
    for name, label in (
        ("ours", "tornado_memory_exporter"),
        ("peer", "prometheus_client defaults"),
    ):
        s = http_t.seconds[name]
        print(
            f"    {label:28}{fmt_seconds(median(s)):>10}{fmt_seconds(percentile(s, 99)):>10}"
            f"{http_t.body_bytes[name]:>9}B{http_t.wire_bytes[name]:>9}B"
        )
    ratios = {
        "http_median": median(http_t.seconds["ours"]) / median(http_t.seconds["peer"]),
        "http_p99": percentile(http_t.seconds["ours"], 99) / percentile(http_t.seconds["peer"], 99),
        "generate_median": median(local["ours"]) / median(local["peer"]),
    }
    print(f"    {'ratio ours/peer':28}{ratios['http_median']:>9.2f}x{ratios['http_p99']:>9.2f}x")
    print(
        f"    in-process generate_latest() (text format), {scrapes} rounds, median: ours "
        f"{fmt_seconds(median(local['ours']))}, peer {fmt_seconds(median(local['peer']))}, "
        f"ratio {ratios['generate_median']:.2f}x"
    )
    return ratios


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.scrape", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--scrapes", type=int, default=2000, help="timed scrapes of each side")
    parser.add_argument(
        "--warmup", type=int, default=100, help="untimed scrapes of each side first"
    )
    args = parser.parse_args(argv)
    run(scrapes=args.scrapes, warmup=args.warmup)
    return 0


if __name__ == "__main__":
    sys.exit(main())
