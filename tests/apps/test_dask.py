"""A real Dask scheduler (``LocalCluster``, dashboard on 127.0.0.1), installed as
docs/installing.md says: its own ``/metrics`` serves prometheus_client's global registry, so
``install(app, None)`` publishes through it; its pages stay its own."""

from __future__ import annotations

import asyncio
import gc
import logging
import time

import pytest
from prometheus_client import CollectorRegistry
from realapps import (
    Session,
    assert_healthy,
    assert_published_once,
    names,
    need,
    recipe,
    series,
    value,
)
from tornado.httpclient import AsyncHTTPClient, HTTPClientError

from tornado_memory_exporter import Config, install

distributed = need("distributed")
need("bokeh")  # the dashboard pages (/status...) exist only with bokeh

DASK_METRICS = "distributed.http.scheduler.prometheus.core.PrometheusHandler"
PAGES = ("/status", "/info/main/workers.html", "/health", "/metrics", "/individual-plots.json")


async def fetch(url: str) -> tuple[int, str, str]:
    try:
        response = await AsyncHTTPClient().fetch(url, raise_error=True, request_timeout=30)
    except HTTPClientError as error:
        return error.code, "", ""
    return response.code, response.headers.get("Content-Type", ""), response.body.decode()


def websockets(text: str) -> tuple[float, float]:
    """(open, closed) dashboard WebSocket handlers: Bokeh's WSHandler, or Panel's where
    importing panel replaced it."""
    counts = {"open": 0.0, "closed": 0.0, "unreachable": 0.0}  # unreachable: garbage, not counted
    for (name, labels), _ in series(text).items():
        fields = dict(labels)
        if name == "tornado_handlers_alive" and fields["handler"].endswith(".WSHandler"):
            counts[fields["state"]] += value(text, name, **fields) or 0.0
    return counts["open"], counts["closed"]


async def until(what: str, probe, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not await probe():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.1)


def run(scenario, **scheduler_kwargs: object) -> None:
    async def main() -> None:
        async with distributed.LocalCluster(
            n_workers=1,
            threads_per_worker=1,
            processes=False,
            asynchronous=True,
            dashboard_address="127.0.0.1:0",
            worker_dashboard_address="127.0.0.1:0",
            scheduler_kwargs=scheduler_kwargs,
        ) as cluster:
            async with distributed.Client(cluster, asynchronous=True) as client:
                assert await client.submit(sum, [1, 2, 3]) == 6  # the scheduler did some work
                scheduler = cluster.scheduler
                base = f"http://127.0.0.1:{scheduler.http_server.port}"
                await scenario(scheduler, base)

    asyncio.run(main())


async def pages(base: str) -> dict[str, tuple[int, str]]:
    return {path: (await fetch(base + path))[:2] for path in PAGES}


def test_the_preload_recipe_publishes_through_dasks_metrics_and_refuses_its_routes(tmp_path):
    preload = tmp_path / "tme_preload.py"
    preload.write_text(recipe("dask-preload"))

    async def scenario(scheduler, base: str) -> None:
        app = scheduler.http_application
        exporter = scheduler.tornado_memory_exporter  # installed by the preload
        try:
            before = await pages(base)
            assert before["/status"][0] == 200 and before["/metrics"][0] == 200
            with pytest.raises(
                ValueError,
                match=r"routes '/metrics' to distributed\.http\.scheduler\.prometheus\.core\."
                r"PrometheusHandler.*install\(app, None\) publishes ours through it",
            ):
                install(app, registry=CollectorRegistry())
            with pytest.raises(
                ValueError,
                # Bokeh's DocHandler, or Panel's where importing panel replaced it
                match=r"routes '/status' to (bokeh\.server\.views\.doc_handler|panel\.io\.server)"
                r"\.DocHandler",
            ):
                install(app, "/status", registry=CollectorRegistry())
            await exporter.census_now()
            assert await pages(base) == before  # no route replaced
            code, content_type, text = await fetch(base + "/metrics")
            assert code == 200
            assert names(text, "dask_scheduler_workers")  # Dask's own series, and ours
            assert_published_once(text)
            assert_healthy(text)
            # A real dashboard session (a Bokeh WebSocket on /status): open, then closed.
            # (The census counts the whole process: handlers of earlier tests are the baseline.)
            gc.collect()  # earlier tests' garbage freed now, not between two censuses
            opened, closed = websockets(text)
            session = await Session.open(base + "/status")
            try:
                await exporter.census_now()
                text = (await fetch(base + "/metrics"))[2]
                assert websockets(text) == (opened + 1, closed)
            finally:
                await session.close()

            async def settled() -> bool:
                await exporter.census_now()
                return websockets((await fetch(base + "/metrics"))[2])[0] == opened

            await until("the scheduler to see the session closed", settled)
        finally:
            exporter.stop()

    run(scenario, preload=[str(preload)])


def test_a_second_path_gets_a_registry_of_its_own_and_says_so(caplog: pytest.LogCaptureFixture):
    async def scenario(scheduler, base: str) -> None:
        app = scheduler.http_application
        with caplog.at_level(logging.WARNING, logger="tornado_memory_exporter"):
            exporter = install(app, "/tornado/metrics", config=Config(census_interval=0))
        try:
            logged = [r for r in caplog.records if r.name == "tornado_memory_exporter"]
            assert [(r.levelname, r.getMessage()) for r in logged] == [
                (
                    "WARNING",
                    f"the application already serves metrics at /metrics ({DASK_METRICS}): "
                    "/tornado/metrics serves a registry of its own so that no series is "
                    "published twice; to publish through the application's /metrics instead, "
                    "install(app, None)",
                )
            ]
            await exporter.census_now()
            _, _, dask = await fetch(base + "/metrics")
            _, _, ours = await fetch(base + "/tornado/metrics")
            assert names(dask, "tornado_") == set() and names(dask, "dask_scheduler_workers")
            assert names(ours, "dask_") == set() and names(ours, "process_") == set()
            assert_published_once(dask, ours)
            assert_healthy(ours)
        finally:
            exporter.stop()

    run(scenario)
