"""install() in an app it did not write: no route takeover, atomic failures, literal paths."""

from __future__ import annotations

import asyncio
import urllib.error
import urllib.request

import pytest
import tornado.httpserver
import tornado.web
from appserver import AppServer
from prometheus_client import REGISTRY, CollectorRegistry

from tornado_memory_exporter import Config, install, start_metrics_server
from tornado_memory_exporter.web.routes import route_owner

ODD_PATH = "/user/alice@example.com/a+b(1)/metrics"  # +, (, ) and @ are plain path characters


class Forbidden(tornado.web.RequestHandler):
    """Stands for a login-protected endpoint of the app (Jupyter's own /metrics answers 403)."""

    def get(self, *_args: str) -> None:
        raise tornado.web.HTTPError(403)


class Page(tornado.web.RequestHandler):
    def get(self, *_args: str) -> None:
        self.write("app page")


def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def test_a_path_the_app_routes_is_refused_naming_its_handler_and_keeps_its_protection():
    with AppServer(tornado.web.Application([(r"/metrics", Forbidden)]), path="/exporter") as server:

        async def takeover() -> None:
            install(server.app, registry=CollectorRegistry())

        with pytest.raises(
            ValueError, match=r"routes '/metrics' to test_install_safety\.Forbidden.*replace=True"
        ):
            server.call(takeover)
        assert server.get("/metrics")[0] == 403  # still the app's
        assert "tornado_process_threads" in server.scrape()  # the failed call left ours running


def test_replace_true_serves_ours_in_place_of_the_apps_route():
    with AppServer(tornado.web.Application([(r"/metrics", Forbidden)]), path="/exporter") as server:

        async def replace() -> None:
            server.exporter.stop()
            server.exporter = install(server.app, registry=server.registry, replace=True)

        server.call(replace)
        server.path = "/metrics"
        assert "tornado_process_threads" in server.scrape()


def test_a_route_of_another_host_or_a_nested_router_counts_as_routed():
    app = tornado.web.Application([(r"/", Page)])
    app.add_handlers(r"admin\.example\.com$", [(r"/metrics", Forbidden)])
    assert route_owner(app, "/metrics") == "test_install_safety.Forbidden"
    assert route_owner(app, "/other") is None
    nested = tornado.web.Application([(r"/api/.*", [(r"/api/metrics", Forbidden)])])
    assert route_owner(nested, "/api/metrics") == "test_install_safety.Forbidden"
    assert route_owner(nested, "/api/other") is None


def test_catch_all_routes_and_404_pages_do_not_count_as_routing_the_path():
    app = tornado.web.Application([(r"/static/(.*)", Page), (r"(.*)", Forbidden)])
    assert route_owner(app, "/metrics") is None
    assert route_owner(app, "/static/metrics") == "test_install_safety.Page"


def test_a_failed_install_leaves_nothing_behind_and_the_corrected_call_works():
    # The default registry, as a new user has it: every failure must leave it free for the retry.
    app = tornado.web.Application([(r"/metrics", Forbidden)])
    server = tornado.httpserver.HTTPServer(app)
    before = set(map(id, app.default_router.rules))

    async def attempts() -> tuple[int, int]:
        with pytest.raises(TypeError, match="HTTPServer: pass the tornado.web.Application"):
            install(server, "/exporter")  # type: ignore[arg-type]
        with pytest.raises(
            TypeError, match=r"must be a Config: pass config=Config\(\*\*\{\.\.\.\}\)"
        ):
            install(app, "/exporter", config={"census_interval": 0})  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="already routes '/metrics'"):
            install(app, config=Config(census_interval=0))
        with pytest.raises(ValueError, match="explorer_enabled=True on the application's server"):
            install(app, "/exporter", config=Config(census_interval=0, explorer_enabled=True))
        with pytest.raises(ValueError, match="path='exporter' must start with '/'"):
            install(app, "exporter")
        assert set(map(id, app.default_router.rules)) == before
        exporter = install(app, "/exporter", config=Config(census_interval=0))
        try:
            with pytest.raises(RuntimeError, match="already installed on this registry"):
                install(app, "/exporter2", config=Config(census_interval=0))
            routes = len(app.default_router.rules) - len(before)
            return routes, len(list(REGISTRY.collect()))
        finally:
            exporter.stop()

    routes, families = asyncio.run(attempts())
    assert routes == 1 and families > 0
    assert set(map(id, app.default_router.rules)) == before  # stop() took the route back


def test_bad_types_say_what_to_pass():
    async def call(**kwargs: object) -> None:
        install(tornado.web.Application(), **kwargs)  # type: ignore[arg-type]

    for kwargs, message in [
        ({"registry": object()}, "registry=.* must be a prometheus_client CollectorRegistry"),
        ({"replace": "yes"}, "replace='yes' must be True or False"),
        ({"handler": Page}, "handler=.* must be MetricsHandler or a subclass"),
        ({"path": 5}, "path=5 must start with '/'.*pass a string"),
    ]:
        with pytest.raises(TypeError, match=message):
            asyncio.run(call(**{"registry": CollectorRegistry(), **kwargs}))


@pytest.mark.parametrize("path", ["/a b", "/a?b", "/a#b", "/a%4", "/é"])
def test_a_path_no_request_can_carry_unencoded_is_refused(path: str):
    with pytest.raises(ValueError, match="RFC 3986 path characters"):
        start_metrics_server(port=0, path=path)


def test_install_path_is_literal_on_a_real_server():
    app = tornado.web.Application([(r"/(.*)", Page)])
    config = Config(
        census_interval=0,
        explorer_enabled=True,
        auth_token="t0k",
        explorer_path="/user/alice@example.com/debug/memory",
    )
    with AppServer(app, path=ODD_PATH, config=config) as server:
        assert (
            "tornado_process_threads"
            in server.get(ODD_PATH, {"Authorization": "Bearer t0k"})[2].decode()
        )
        # As a regex the path would match these; as a literal it does not: the app answers.
        for other in (
            "/user/alice@example.com/aab1/metrics",
            "/user/alice@example.com/a+b1/metrics",
        ):
            assert server.get(other)[::2] == (200, b"app page"), other
        status, _, page = server.get("/user/alice@example.com/debug/memory/")
        assert status == 200 and b"static/app.js" in page
        auth = {"Authorization": "Bearer t0k"}
        assert server.get("/user/alice@example.com/debug/memory/api/summary", auth)[0] == 200


def test_start_metrics_server_path_is_literal():
    registry = CollectorRegistry()
    server = start_metrics_server(port=0, registry=registry, path="/a+b/(x)@y/metrics")
    try:
        assert get(server.url + "/a+b/(x)@y/metrics")[0] == 200
        assert get(server.url + "/aab/x@y/metrics")[0] == 404
        assert get(server.url + "/a+b/%28x%29@y/metrics")[0] == 404  # matched as sent, not decoded
    finally:
        server.stop()


def test_explorer_path_accepts_every_path_character():
    Config(explorer_path="/user/alice@example.com/a+b(1);v=2/debug/memory")
    Config(explorer_path="/user/alice%40example.com/debug")
    for bad in ("/debug/", "/", "debug", "/a b", "/a//b"):
        with pytest.raises(
            ValueError, match=f"explorer_path={bad!r} must start with '/', not end with '/'"
        ):
            Config(explorer_path=bad)
