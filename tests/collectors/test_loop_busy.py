import asyncio
import logging
import os
import selectors
import time

import pytest
import tornado.web
from appserver import AppServer
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from tornado_memory_exporter.collectors.loop_busy import LoopBusyMeter

NAME = "tornado_ioloop_busy_seconds_total"


def meter_on(loop):
    meter = LoopBusyMeter("tornado", loop=loop)
    registry = CollectorRegistry()
    registry.register(meter)
    return meter, registry


async def half_busy(seconds: float, period: float) -> None:
    """Block the loop for ``period``, then let it wait ``period``, until ``seconds`` are over."""
    loop = asyncio.get_running_loop()
    done = loop.create_future()
    deadline = time.perf_counter() + seconds

    def work():
        time.sleep(period)  # a handler holding the loop
        if time.perf_counter() >= deadline:
            done.set_result(None)
        else:
            loop.call_later(period, work)

    loop.call_later(period, work)
    await done


def test_a_loop_kept_busy_half_of_the_time_reads_half_utilisation():
    async def scenario():
        meter, registry = meter_on(asyncio.get_running_loop())
        meter.start()
        try:
            await asyncio.sleep(0)
            busy0, wall0 = registry.get_sample_value(NAME), time.perf_counter()
            await half_busy(1.0, 0.01)
            busy1, wall1 = registry.get_sample_value(NAME), time.perf_counter()
        finally:
            meter.stop()
        return (busy1 - busy0) / (wall1 - wall0)

    assert 0.4 <= asyncio.run(scenario()) <= 0.6


def test_an_idle_loop_reads_near_zero_and_a_blocked_one_near_one():
    async def scenario():
        meter, registry = meter_on(asyncio.get_running_loop())
        meter.start()
        try:
            busy0, wall0 = registry.get_sample_value(NAME), time.perf_counter()
            await asyncio.sleep(0.3)
            busy1, wall1 = registry.get_sample_value(NAME), time.perf_counter()
            time.sleep(0.3)
            busy2, wall2 = registry.get_sample_value(NAME), time.perf_counter()
        finally:
            meter.stop()
        return (busy1 - busy0) / (wall1 - wall0), (busy2 - busy1) / (wall2 - wall1)

    idle, blocked = asyncio.run(scenario())
    assert idle < 0.1
    assert blocked > 0.95  # read while blocked: the open interval counts


def run_on_own_selector(scenario):
    """Run ``scenario(selector)`` on a loop built on a selector the test holds (public API)."""
    selector = selectors.DefaultSelector()
    with asyncio.Runner(loop_factory=lambda: asyncio.SelectorEventLoop(selector)) as runner:
        return runner.run(scenario(selector))


def test_stop_restores_the_selector_and_the_series_goes():
    async def scenario(selector):
        before = selector.select
        meter, registry = meter_on(asyncio.get_running_loop())
        meter.start()
        meter.start()  # idempotent: one wrapper
        wrapped = selector.select
        await asyncio.sleep(0.01)
        served = registry.get_sample_value(NAME)
        meter.stop()
        meter.stop()
        await asyncio.sleep(0.01)
        shadowed = "select" in vars(selector)
        return before, wrapped, selector.select, shadowed, served, registry.get_sample_value(NAME)

    before, wrapped, after, shadowed, served, after_stop = run_on_own_selector(scenario)
    assert wrapped != before
    assert after == before and not shadowed
    assert served > 0
    assert after_stop is None


def test_a_wrapper_added_after_ours_survives_stop_and_ours_only_passes_through():
    async def scenario(selector):
        meter, registry = meter_on(asyncio.get_running_loop())
        meter.start()
        ours = selector.select
        calls = []

        def theirs(timeout=None):
            calls.append(timeout)
            return ours(timeout)

        selector.select = theirs
        await asyncio.sleep(0.01)
        meter.stop()
        calls.clear()
        await asyncio.sleep(0.01)
        return selector.select is theirs, len(calls), registry.get_sample_value(NAME)

    still_theirs, calls, served = run_on_own_selector(scenario)
    assert still_theirs
    assert calls >= 1  # the loop still waits through their wrapper, and ours passes it on
    assert served is None


def test_a_selector_already_shadowed_gets_that_shadow_back():
    async def scenario(selector):
        inner = selector.select

        def earlier(timeout=None):
            return inner(timeout)

        selector.select = earlier
        meter, _ = meter_on(asyncio.get_running_loop())
        meter.start()
        await asyncio.sleep(0.01)
        meter.stop()
        return selector.select is earlier

    assert run_on_own_selector(scenario)


def test_a_loop_without_a_python_selector_has_no_series_and_says_why_once(caplog):
    try:
        import uvloop
    except ImportError:  # a test extra: missing is a failure in CI only
        if os.environ.get("CI") == "true":
            raise
        pytest.skip("uvloop is not installed (pip install -e .[test])")

    async def scenario():
        meter, registry = meter_on(asyncio.get_running_loop())
        meter.start()
        meter.stop()
        meter.start()
        await asyncio.sleep(0.01)
        value = registry.get_sample_value(NAME)
        meter.stop()
        return meter.unmeasured, value

    with caplog.at_level(logging.INFO, logger="tornado_memory_exporter"):
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            reason, value = runner.run(scenario())
    assert value is None
    assert reason == "the loop (uvloop.Loop) has no Python selector to time (uvloop, proactor)"
    logged = [r.getMessage() for r in caplog.records if "busy_seconds" in r.getMessage()]
    assert logged == [f"tornado_ioloop_busy_seconds is not served: {reason}"]


class Blocking(tornado.web.RequestHandler):
    def get(self):
        time.sleep(0.3)  # a handler holding the loop
        self.write("done")


def test_a_real_app_serves_the_busy_time_of_its_blocking_handler():
    with AppServer(tornado.web.Application([("/block", Blocking)])) as server:
        before = served(server.scrape())
        assert server.get("/block")[0] == 200
        after = served(server.scrape())
    assert 0.3 <= after - before < 1.0


def served(exposition: str) -> float:
    (value,) = [
        sample.value
        for family in text_string_to_metric_families(exposition)
        for sample in family.samples
        if sample.name == NAME
    ]
    return value
