import asyncio
import logging
import os

import pytest
from appserver import AppServer
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from tornado_memory_exporter.collectors.ready_queue import ReadyCallbacks

NAME = "tornado_ioloop_ready_callbacks"


def registered(loop):
    source = ReadyCallbacks("tornado", loop=loop)
    registry = CollectorRegistry()
    registry.register(source)
    return source, registry


def test_callbacks_queued_to_run_now_are_counted_exactly():
    async def scenario():
        loop = asyncio.get_running_loop()
        _, registry = registered(loop)
        await asyncio.sleep(0)  # whatever was queued before has run
        empty = registry.get_sample_value(NAME)
        ran = []
        for n in range(500):
            loop.call_soon(ran.append, n)
        queued = registry.get_sample_value(NAME)
        later = loop.call_later(60, ran.append, -1)  # a timer is not ready: not counted
        still = registry.get_sample_value(NAME)
        await asyncio.sleep(0)  # this task's next step queues behind the 500, which run first
        later.cancel()
        return empty, queued, still, registry.get_sample_value(NAME), len(ran)

    assert asyncio.run(scenario()) == (0, 500, 500, 0, 500)


def test_a_loop_without_a_ready_queue_has_no_series_and_says_why_once(caplog):
    try:
        import uvloop
    except ImportError:  # a test extra: missing is a failure in CI only
        if os.environ.get("CI") == "true":
            raise
        pytest.skip("uvloop is not installed (pip install -e .[test])")

    async def scenario():
        source, registry = registered(asyncio.get_running_loop())
        values = [registry.get_sample_value(NAME) for _ in range(3)]
        return source.unmeasured, values

    with caplog.at_level(logging.INFO, logger="tornado_memory_exporter"):
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            reason, values = runner.run(scenario())
    assert values == [None, None, None]
    assert reason == "the loop (uvloop.Loop) has no ready queue to read (uvloop)"
    logged = [r.getMessage() for r in caplog.records if NAME in r.getMessage()]
    assert logged == [f"{NAME} is not served: {reason}"]


def test_a_real_app_serves_its_ready_queue():
    with AppServer() as server:
        families = {f.name: f for f in text_string_to_metric_families(server.scrape())}
    (sample,) = families[NAME].samples
    assert families[NAME].type == "gauge" and sample.value >= 0
