"""A real Flower (Celery's monitor, on an in-memory broker): embedded and as ``celery flower``
with the ``--conf`` file of docs/installing.md. Flower serves prometheus_client's global registry
at ``/metrics``: ours is published through it, once, and its pages stay its own."""

from __future__ import annotations

import asyncio
import sys

import pytest
from prometheus_client import CollectorRegistry
from realapps import assert_healthy, assert_published_once, get, names, need, recipe, value
from realbin import Daemon, free_port, wait_for
from tornado.httpclient import AsyncHTTPClient, HTTPClientError
from tornado.ioloop import IOLoop

from tornado_memory_exporter import Config, install, start_in_thread

celery = need("celery")
need("flower")
import flower.options  # noqa: E402,F401 - defines Flower's options before they are set
import flower.urls  # noqa: E402
from flower.app import Flower  # noqa: E402
from tornado.options import options  # noqa: E402

FLOWER_METRICS = "flower.views.monitor.Metrics"
FLOWER_FAMILY = "# TYPE flower_events_total counter"  # labelled: no sample before an event
PAGES = ("/", "/workers", "/tasks", "/healthcheck", "/api/workers", "/nothing-here")


async def fetch(url: str) -> tuple[int, str]:
    try:
        response = await AsyncHTTPClient().fetch(url, request_timeout=30)
    except HTTPClientError as error:
        return error.code, ""
    return response.code, response.body.decode()


def test_embedded_flower_publishes_ours_through_its_metrics_and_keeps_its_routes():
    async def main() -> None:
        options.port, options.address = 0, "127.0.0.1"
        app = Flower(
            capp=celery.Celery("shop", broker="memory://"),
            options=options,
            io_loop=IOLoop.current(),
            **flower.urls.settings,
        )
        base = f"http://127.0.0.1:{app.start_http_server()}"
        try:
            before = {path: (await fetch(base + path))[0] for path in PAGES}
            with pytest.raises(
                ValueError,
                match=rf"routes '/metrics' to {FLOWER_METRICS}.*install\(app, None\) publishes",
            ):
                install(app, registry=CollectorRegistry())
            exporter = install(app, None, config=Config(census_interval=0))  # the recipe
            try:
                await exporter.census_now()
                assert {path: (await fetch(base + path))[0] for path in PAGES} == before
                code, text = await fetch(base + "/metrics")
                assert code == 200 and FLOWER_FAMILY in text and names(text, "tornado_")
                assert_published_once(text)
                assert_healthy(text)
            finally:
                exporter.stop()
            # Flower's catch-all 404 route is no conflict: a path of ours beside it (on a
            # registry of its own, as Flower serves the global one).
            assert (await fetch(base + "/tornado/metrics"))[0] == 404
            exporter = install(app, "/tornado/metrics", config=Config(census_interval=0))
            try:
                await exporter.census_now()
                ours = (await fetch(base + "/tornado/metrics"))[1]
                assert_published_once(ours, (await fetch(base + "/metrics"))[1])
                assert_healthy(ours)
            finally:
                exporter.stop()
            # start_in_thread() inside such an app, as documented: a registry of its own.
            thread = start_in_thread(port=0, registry=CollectorRegistry())
            try:
                ours = await _scrape_when_censused(thread.url + "/metrics")
                flowers = (await fetch(base + "/metrics"))[1]
                assert names(flowers, "tornado_") == set() and FLOWER_FAMILY in flowers
                assert "flower_" not in ours
                assert_published_once(flowers, ours)
                assert_healthy(ours)
            finally:
                thread.stop()
        finally:
            app.stop()

    asyncio.run(main())


async def _scrape_when_censused(url: str) -> str:
    async def censused() -> str | None:
        text = (await fetch(url))[1]
        done = value(text, "tornado_census_last_success_timestamp_seconds") or 0
        return text if done > 0 else None

    deadline = asyncio.get_running_loop().time() + 30  # the first census comes after 2 s
    while (text := await censused()) is None:
        assert asyncio.get_running_loop().time() < deadline, "no census within 30 s"
        await asyncio.sleep(0.2)
    return text


def test_celery_flower_with_the_conf_recipe_publishes_ours_through_its_metrics():
    port = free_port()
    with Daemon("flower") as daemon:
        conf = daemon.dir / "flowerconfig.py"
        conf.write_text(recipe("flower-conf").replace("census_interval=30", "census_interval=1"))
        daemon.spawn(
            [
                sys.executable,
                "-m",
                "celery",
                "--broker=memory://",
                "flower",
                "--address=127.0.0.1",
                f"--port={port}",
                f"--conf={conf}",
            ]
        )
        base = f"http://127.0.0.1:{port}"

        def censused() -> str | None:
            assert daemon.process.poll() is None, daemon.log_tail()
            code, text = get(base + "/metrics")
            done = value(text, "tornado_census_last_success_timestamp_seconds") or 0
            return text if code == 200 and done > 0 else None

        text = wait_for("Flower to publish a census", censused, timeout=60)
        assert FLOWER_FAMILY in text and names(text, "tornado_objects")
        assert get(base + "/workers")[0] == 200 and get(base + "/healthcheck") == (200, "OK")
        assert_published_once(text)
        assert_healthy(text)
