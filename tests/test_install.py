"""install(): the route, the registry, the timers, and stop() undoing all of it."""

import asyncio
import gc

import pytest
import tornado.web
from appserver import AppServer
from prometheus_client import CollectorRegistry

from tornado_memory_exporter import Config, install


class CatchAll(tornado.web.RequestHandler):
    def get(self, _path):
        self.write("app page")


def catch_all_app():
    return tornado.web.Application([(r"/(.*)", CatchAll)])


def test_a_catch_all_added_earlier_through_add_handlers_is_refused_by_name_leaving_nothing():
    # Tornado has no public way to put a rule ahead of one add_handlers() added before ours.
    app = catch_all_app()
    app.add_handlers(r".*$", [(r"/(.*)", CatchAll)])
    rules = list(app.default_router.rules)
    registry = CollectorRegistry()

    async def attempt() -> None:
        with pytest.raises(ValueError, match=r"routes '/metrics' to test_install\.CatchAll ahead"):
            install(app, config=Config(census_interval=0), registry=registry)

    asyncio.run(attempt())
    assert app.default_router.rules == rules
    assert list(registry.collect()) == []


def test_route_goes_ahead_of_catch_all_routes_and_stop_removes_it():
    with AppServer(catch_all_app()) as server:
        text = server.scrape()
        assert "tornado_process_resident_memory_bytes" in text
        server.call(_stop(server))
        status, _, body = server.get("/metrics")
        assert (status, body) == (200, b"app page")
        assert list(server.registry.collect()) == []
        server.call(_reinstall(server))  # install() works again after stop()
        assert "tornado_gc_collections_total" in server.scrape()


def test_paths_that_only_begin_like_the_metrics_path_still_reach_the_app():
    # Our rule lets a request in by path prefix; the nested route must still match exactly.
    with AppServer(catch_all_app()) as server:
        for path in ("/", "/metricsx", "/metrics/x", "/other"):
            assert server.get(path)[::2] == (200, b"app page"), path
        assert "tornado_process_resident_memory_bytes" in server.scrape()


def _stop(server):
    async def stop():
        server.exporter.stop()
        server.exporter.stop()  # idempotent

    return stop


def _reinstall(server):
    async def reinstall():
        server.exporter = install(server.app, config=server.config, registry=server.registry)

    return reinstall


def test_every_foundation_metric_is_served_with_its_type():
    with AppServer() as server:
        text = server.scrape()
    types = dict(line.split()[2:4] for line in text.splitlines() if line.startswith("# TYPE "))
    expected = {
        "tornado_process_resident_memory_bytes": "gauge",
        "tornado_process_virtual_memory_bytes": "gauge",
        "tornado_process_resident_memory_peak_bytes": "gauge",
        "tornado_process_memory_limit_bytes": "gauge",
        "tornado_process_open_fds": "gauge",
        "tornado_process_threads": "gauge",
        "tornado_process_start_time_seconds": "gauge",
        "tornado_python_allocated_blocks": "gauge",
        "tornado_gc_generation_objects": "gauge",
        "tornado_gc_threshold": "gauge",
        "tornado_gc_collections_total": "counter",
        "tornado_gc_collected_objects_total": "counter",
        "tornado_gc_uncollectable_objects_total": "counter",
        "tornado_gc_pause_seconds": "histogram",
        "tornado_gc_garbage_objects": "gauge",
        "tornado_gc_frozen_objects": "gauge",
        "tornado_ioloop_lag_seconds": "histogram",
        "tornado_asyncio_tasks": "gauge",
        "tornado_exporter_info": "gauge",
        "tornado_exporter_errors_total": "counter",
    }
    missing = {name: kind for name, kind in expected.items() if types.get(name) != kind}
    assert missing == {}


def test_full_memory_and_namespace_options_reach_the_output():
    with AppServer(
        config=Config(namespace="shop", process_full_memory=True, census_interval=0)
    ) as s:
        text = s.scrape()
    assert "shop_process_unique_memory_bytes" in text
    assert "shop_process_swap_bytes" in text
    assert "tornado_" not in text


def test_second_install_on_the_same_registry_is_refused():
    with AppServer() as server:

        async def again():
            install(tornado.web.Application(), registry=server.registry)

        with pytest.raises(RuntimeError, match="already installed on this registry"):
            server.call(again)
        assert server.scrape().count("# TYPE tornado_process_threads gauge") == 1


def test_gc_pauses_are_recorded_once_installed():
    with AppServer() as server:
        gc.collect(1)  # tests may collect; the library never does
        registry = server.registry
        assert registry.get_sample_value("tornado_gc_pause_seconds_count", {"generation": "1"}) >= 1


def test_install_outside_a_running_loop_says_how_to_fix_it():
    with pytest.raises(RuntimeError, match="inside the running IOLoop"):
        install(tornado.web.Application(), registry=CollectorRegistry())


def test_bad_arguments_raise_value_error():
    async def bad(path, app):
        install(app, path, registry=CollectorRegistry())

    with pytest.raises(ValueError, match="path='metrics'"):
        asyncio.run(bad("metrics", tornado.web.Application()))
    with pytest.raises(ValueError, match="app=None"):
        asyncio.run(bad("/metrics", None))


def test_path_none_installs_collectors_without_a_route():
    async def scenario():
        registry = CollectorRegistry()
        exporter = install(None, None, registry=registry)
        try:
            return registry.get_sample_value("tornado_process_threads")
        finally:
            exporter.stop()

    assert asyncio.run(scenario()) >= 1


def test_global_registry_coexists_with_prometheus_client_defaults():
    from prometheus_client import REGISTRY, generate_latest

    async def scenario():
        exporter = install(tornado.web.Application())
        try:
            return generate_latest(REGISTRY).decode()
        finally:
            exporter.stop()

    text = asyncio.run(scenario())
    assert "python_gc_collections_total" in text  # prometheus_client's own
    assert "tornado_gc_collections_total" in text  # ours
