"""The short version of bench/load.py: concurrent scrapers beside app traffic and censuses never
fail, and thousands of scrapes plus censuses leave no retained memory behind. Latency targets
live in the bench (``python -m bench.load``), not here."""

from __future__ import annotations

import gc
import http.client
import threading
import tracemalloc

import tornado.web
from appserver import AppServer
from prometheus_client import Gauge
from realbin import wait_for

from tornado_memory_exporter import Config

MiB = 2**20
MARKER = b"tornado_process_resident_memory_bytes"
OPENMETRICS = "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"


class PageHandler(tornado.web.RequestHandler):
    def get(self) -> None:
        self.write({"items": [{"id": i} for i in range(20)]})


def _app() -> tornado.web.Application:
    return tornado.web.Application([(r"/", PageHandler)])


def _get(
    connection: http.client.HTTPConnection, path: str, headers: dict | None = None
) -> tuple[int, bytes]:
    connection.request("GET", path, headers=headers or {})
    response = connection.getresponse()
    return response.status, response.read()


def test_concurrent_scrapers_beside_app_traffic_and_censuses_never_fail():
    results: dict[str, list[int]] = {"scrape": [], "app": [], "bad": []}
    stop = threading.Event()

    def scraper(port: int, accept: str) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        while not stop.is_set():
            status, body = _get(connection, "/metrics", {"Accept": accept})
            results["scrape"].append(status)
            if status != 200 or MARKER not in body:
                results["bad"].append(status)

    def traffic(port: int) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        while not stop.is_set():
            status, _ = _get(connection, "/")
            results["app"].append(status)

    with AppServer(_app(), config=Config(census_interval=0)) as server:
        threads = [
            threading.Thread(target=scraper, args=(server.port, OPENMETRICS if i % 2 else "*/*"))
            for i in range(10)
        ]
        threads.append(threading.Thread(target=traffic, args=(server.port,)))
        for thread in threads:
            thread.start()
        try:
            for _ in range(5):  # censuses interleaved with the scrapes, as on a schedule
                server.call(lambda: server.exporter.census_now())
            wait_for(
                "200 scrapes", lambda: len(results["scrape"]) >= 200, timeout=60, interval=0.05
            )
        finally:
            stop.set()
            for thread in threads:
                thread.join(timeout=20)
    assert results["bad"] == []
    assert set(results["scrape"]) == {200} and set(results["app"]) == {200}
    assert len(results["app"]) > 0


def _retained() -> int:
    gc.collect()  # the test, not the library: count only what survives a full collection
    return tracemalloc.get_traced_memory()[0]


def test_hundreds_of_scrapes_and_censuses_retain_less_than_a_mebibyte():
    # Under tracemalloc a scrape takes tens of ms and a census of the pytest heap about a second:
    # the bench does 10,000 and 1,000. A leak of 4 KiB per scrape fails this already.
    with AppServer(_app(), config=Config(census_interval=0)) as server:
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)

        def run(scrapes: int, censuses: int) -> None:
            for i in range(scrapes):
                status, _ = _get(
                    connection, "/metrics", {"Accept": OPENMETRICS, "Accept-Encoding": "gzip"}
                )
                assert status == 200
                if i % (scrapes // censuses) == 0:
                    server.call(lambda: server.exporter.census_now())

        tracemalloc.start(1)
        try:
            run(50, 2)  # warm-up: lazy imports, type-name caches, connection buffers
            before = _retained()
            run(250, 5)
            after = _retained()
        finally:
            tracemalloc.stop()
    assert after - before < MiB, (
        f"retained {after - before} bytes more after 250 scrapes + 5 censuses"
    )


def test_scrape_cache_serves_one_render_to_scrapes_within_its_window():
    with AppServer(_app(), config=Config(census_interval=0, scrape_cache_seconds=2.0)) as server:
        probe = Gauge("probe_value", "Set by the test.", registry=server.registry)
        probe.set(1)
        assert "probe_value 1.0" in server.scrape()
        probe.set(2)
        assert "probe_value 1.0" in server.scrape()  # within the window: the same body
        status, _, body = server.get("/metrics?name[]=probe_value")
        assert status == 200 and b"probe_value 2.0" in body  # filtered scrapes are never cached
        wait_for(
            "the window to pass",
            lambda: "probe_value 2.0" in server.scrape(),
            timeout=10,
            interval=0.1,
        )


def test_without_the_scrape_cache_every_scrape_renders():
    with AppServer(_app(), config=Config(census_interval=0)) as server:
        probe = Gauge("probe_value", "Set by the test.", registry=server.registry)
        for value in (1, 2, 3):
            probe.set(value)
            assert f"probe_value {value:.1f}" in server.scrape()
