"""web/routes.py: the application itself is asked where a path goes (fall-through applications,
host rules, catch-alls), and an app that serves metrics of its own gets a registry of ours.
The real Dask, Flower and Bokeh are in tests/apps (the ``apps`` leg)."""

from __future__ import annotations

import logging

import pytest
import tornado.web
from prometheus_client import REGISTRY, CollectorRegistry

from tornado_memory_exporter.web.metrics import MetricsHandler
from tornado_memory_exporter.web.routes import (
    metrics_route,
    registry_for,
    route_owner,
    takeover_error,
)


class Page(tornado.web.RequestHandler):
    def get(self, *_args: str) -> None:
        self.write("page")


class AppMetrics(tornado.web.RequestHandler):
    """Stands for Dask's or Flower's own /metrics (prometheus_client's global registry)."""

    def get(self) -> None:
        self.write("app_series 1\n")


class FallThrough(tornado.web.Application):
    """Dask's RoutingApplication, in small: what its rules miss goes to ``applications``."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        self.applications: list[tornado.web.Application] = []
        super().__init__(*args, **kwargs)

    def find_handler(self, request, **kwargs):  # type: ignore[no-untyped-def]
        handler = super().find_handler(request, **kwargs)
        if not issubclass(handler.handler_class, tornado.web.ErrorHandler):
            return handler
        for app in self.applications:
            found = app.find_handler(request, **kwargs)
            if not issubclass(found.handler_class, tornado.web.ErrorHandler):
                return found
        return handler


def test_a_page_reached_only_through_the_applications_own_find_handler_is_routed():
    app = FallThrough([(r"/metrics", AppMetrics)])
    app.applications.append(tornado.web.Application([(r"/status", Page)]))
    assert route_owner(app, "/status") == "test_routes.Page"
    assert route_owner(app, "/metrics") == "test_routes.AppMetrics"
    assert route_owner(app, "/tornado/metrics") is None


def test_hosts_nested_routers_and_catch_alls():
    app = tornado.web.Application([(r"/", Page), (r"/static/(.*)", Page), (r"(.*)", Page)])
    app.add_handlers(r"admin\.example\.com$", [(r"/admin/metrics", AppMetrics)])
    assert route_owner(app, "/admin/metrics") == "test_routes.AppMetrics"  # another host's
    assert route_owner(app, "/static/metrics") == "test_routes.Page"
    assert route_owner(app, "/metrics") is None  # only the catch-all takes it
    nested = tornado.web.Application([(r"/api/.*", [(r"/api/metrics", AppMetrics)])])
    assert route_owner(nested, "/api/metrics") == "test_routes.AppMetrics"
    assert route_owner(nested, "/api/other") is None
    default = tornado.web.Application([], default_handler_class=Page)
    assert route_owner(default, "/metrics") is None  # every path reaches it: a 404 page


def test_the_apps_own_metrics_route_is_found_and_ours_is_not_counted():
    assert metrics_route(tornado.web.Application([(r"/", Page)])) is None
    app = tornado.web.Application([(r"/metrics", AppMetrics)])
    assert metrics_route(app) == ("/metrics", "test_routes.AppMetrics")
    under = tornado.web.Application([(r"/hub/metrics", AppMetrics)], base_url="/hub/")
    assert metrics_route(under) == ("/hub/metrics", "test_routes.AppMetrics")
    ours = tornado.web.Application([(r"/metrics", MetricsHandler, {"registry": REGISTRY})])
    assert metrics_route(ours) is None


def test_registry_for_keeps_the_global_one_unless_the_app_serves_it_itself(
    caplog: pytest.LogCaptureFixture,
):
    plain = tornado.web.Application([(r"/", Page)])
    assert registry_for(plain, "/metrics", None) is REGISTRY
    served = tornado.web.Application([(r"/metrics", AppMetrics)])
    assert registry_for(served, None, None) is REGISTRY  # install(app, None): through the app's
    given = CollectorRegistry()
    assert registry_for(served, "/other", given) is given
    with caplog.at_level(logging.WARNING, logger="tornado_memory_exporter"):
        own = registry_for(served, "/other", None)
        again = registry_for(served, "/other2", None)
    assert own is again and own is not REGISTRY  # a second install() finds it taken
    assert [r.getMessage() for r in caplog.records] == [
        "the application already serves metrics at /metrics (test_routes.AppMetrics): /other "
        "serves a registry of its own so that no series is published twice; to publish "
        "through the application's /metrics instead, install(app, None)"
    ]


def test_the_refusal_of_a_metrics_path_names_install_app_none():
    error = takeover_error("path", "/metrics", "shop.Metrics")
    assert str(error) == (
        "path: the application already routes '/metrics' to shop.Metrics; install() will not "
        "shadow it: choose another path, or pass replace=True to serve ours there; if that "
        "endpoint serves prometheus_client's global registry (Dask, Flower and Jupyter do), "
        "install(app, None) publishes ours through it"
    )
    assert "install(app, None)" not in str(takeover_error("path", "/status", "shop.Page"))
