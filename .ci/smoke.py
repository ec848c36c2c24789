"""Smoke run of the installed exporter on whatever interpreter and dependency versions run it.

Installs the exporter on a Tornado app on 127.0.0.1, scrapes ``/metrics`` in both formats, runs a
census, and checks that the GC, census and process families are there with real values. Writes
the last text exposition to ``argv[1]`` so that ``.ci/legs.py`` can run ``promtool check metrics``
on it (promtool may not exist where this runs). Prints the versions it ran against.

    python .ci/smoke.py build/smoke.prom
"""

from __future__ import annotations

import asyncio
import gc
import sys
from importlib.metadata import version
from pathlib import Path

import tornado.web
from prometheus_client.parser import text_string_to_metric_families
from tornado.httpclient import AsyncHTTPClient
from tornado.httpserver import HTTPServer
from tornado.testing import bind_unused_port

from tornado_memory_exporter import Config, install

TEXT = "text/plain; version=0.0.4; charset=utf-8"
OPENMETRICS = "application/openmetrics-text"


class Hello(tornado.web.RequestHandler):
    def get(self) -> None:
        self.write("hello")


async def fetch(url: str, accept: str) -> tuple[str, str]:
    response = await AsyncHTTPClient().fetch(url, headers={"Accept": accept})
    return response.headers["Content-Type"], response.body.decode()


async def main(out: Path) -> None:
    app = tornado.web.Application([(r"/", Hello)])
    sock, port = bind_unused_port()
    server = HTTPServer(app)
    server.add_sockets([sock])
    exporter = install(app, config=Config(census_interval=0))
    base = f"http://127.0.0.1:{port}"
    await AsyncHTTPClient().fetch(base + "/")
    gc.collect()  # the smoke run, not the library: give the pause histogram a full collection
    await exporter.census_now()
    content_type, text = await fetch(base + "/metrics", "text/plain")
    assert content_type.startswith("text/plain") and "version=0.0.4" in content_type, content_type
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    names = {name for name, _ in samples}
    for needed in (
        "tornado_process_resident_memory_bytes",
        "tornado_gc_collections_total",
        "tornado_gc_pause_seconds_bucket",
        "tornado_objects",
        "tornado_census_objects_scanned",
    ):
        assert needed in names, f"{needed} missing from the scrape"
    generations = len(gc.get_stats())
    full = samples[("tornado_gc_pause_seconds_count", (("generation", str(generations - 1)),))]
    assert full >= 1, f"the full collection was not timed: {full}"
    assert samples[("tornado_census_objects_scanned", ())] > 1000
    om_type, om_text = await fetch(base + "/metrics", OPENMETRICS)
    assert om_type.startswith(OPENMETRICS) and om_text.rstrip().endswith("# EOF"), om_type
    exporter.stop()
    server.stop()
    out.write_text(text)
    print(
        f"smoke ok: Python {sys.version.split()[0]}, tornado {version('tornado')}, "
        f"prometheus_client {version('prometheus-client')}, {len(samples)} samples, "
        f"{generations} GC generations"
    )


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1])))
