"""The three ways to start: ``install()`` on an app's running loop, ``start_in_thread()`` for
code that has no loop to hand out, and ``start_metrics_server()`` for a bare registry."""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading

import tornado.httpserver
import tornado.web
from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.registry import Collector

from . import validate
from .config import Config
from .exporter import Exporter
from .web.credentials import Credentials
from .web.exposure import require_safe_exposure
from .web.metrics import MetricsHandler, literal, render_thread
from .web.routes import registry_for, route_owner, takeover_error
from .web.server import MetricsServer


def install(
    app: tornado.web.Application | None,
    path: str | None = "/metrics",
    *,
    config: Config | None = None,
    registry: CollectorRegistry | None = None,
    replace: bool = False,
    handler: type[MetricsHandler] = MetricsHandler,
) -> Exporter:
    """Start the exporter on the running IOLoop and serve it on ``app`` at ``path``.

    Call it from inside the loop, for example in your ``async def main()`` after building
    the application::

        exporter = install(app)            # GET /metrics now answers
        ...
        exporter.stop()

    ``registry`` defaults to prometheus_client's global one (our names never clash with its
    default ``process_*``/``python_gc_*`` collectors). ``path=None`` adds no route: the series
    are published through a registry the app already serves, or by ``exporter.serve(port)``.

    ``path`` is literal (any URL path character: ``/user/alice@example.com/metrics``). A path
    the app already routes is refused (``ValueError`` naming its handler) unless
    ``replace=True``. ``handler`` serves the route: a ``MetricsHandler`` subclass, for example
    one behind the app's own login. Any failure leaves nothing installed, so a corrected call
    works.
    """
    if isinstance(app, tornado.httpserver.HTTPServer):
        raise TypeError(
            "app is an HTTPServer: pass the tornado.web.Application it serves, "
            "install(app) with app = tornado.web.Application([...])"
        )
    validate.instance("app", app, tornado.web.Application, "a tornado.web.Application or None")
    config = _config(config)
    registry = _registry(registry)
    validate.flag("replace", replace)
    if not (isinstance(handler, type) and issubclass(handler, MetricsHandler)):
        raise TypeError(f"handler={handler!r} must be MetricsHandler or a subclass of it")
    if path is not None:
        validate.url_path("path", path)
        if app is None:
            raise ValueError("app=None needs path=None (no route to add)")
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        raise RuntimeError(
            "install() must be called from inside the running IOLoop, e.g. in `async def main()` "
            "run by asyncio.run(main()); without access to the loop, use start_in_thread()"
        ) from None
    if app is not None and path is not None:
        if config.explorer_enabled:  # the app's addresses are not known here
            require_safe_exposure(Credentials.of(config), None)
        if not replace:
            _refuse_takeover(app, path, config)
    registry = registry_for(app, path, registry)  # not the global one if the app serves it
    exporter = Exporter(config=config, registry=registry, loop=loop)
    exporter.start()
    if app is not None and path is not None:
        try:
            exporter.route(app, path, handler=handler)
        except BaseException:
            exporter.stop()
            raise
    return exporter


def start_in_thread(
    port: int | None = 9464,
    address: str = "127.0.0.1",
    *,
    config: Config | None = None,
    registry: CollectorRegistry | None = None,
    path: str = "/metrics",
) -> Exporter:
    """The exporter for code that holds no running loop it can hand out (Streamlit, WSGI apps,
    scripts, ``celery flower``): a daemon thread runs it on an event loop of its own and serves
    it on ``http://address:port/metrics``. Call it from plain synchronous code, once a process::

        exporter = start_in_thread(port=9464, config=Config(census_interval=30))
        exporter.watch("cache", cache)     # watch(), pools, census_now() work from any thread
        ...
        exporter.stop()                    # also ends the thread

    ``port=None`` serves nothing (an app that already serves the registry publishes the
    series). Errors (a bad option, a taken port) are raised here, with nothing left running.
    The loop lag metrics then describe the exporter's own loop, not the application's.
    """
    if port is not None:
        validate.port("port", port)
    validate.url_path("path", path)
    config, registry = _config(config), _registry(registry)
    ready: concurrent.futures.Future[Exporter] = concurrent.futures.Future()
    loop = asyncio.new_event_loop()

    async def start() -> Exporter:
        exporter = install(None, None, config=config, registry=registry)
        if port is not None:
            try:
                exporter.serve(port, address, path=path)
            except BaseException:
                exporter.stop()
                raise
        return exporter

    def run() -> None:
        asyncio.set_event_loop(loop)
        try:
            exporter = loop.run_until_complete(start())
        except BaseException as error:  # noqa: BLE001 - handed to the caller
            ready.set_exception(error)
            loop.close()
            return
        ready.set_result(exporter)
        try:
            loop.run_forever()
        finally:
            loop.close()

    thread = threading.Thread(target=run, name="tornado-memory-exporter", daemon=True)
    thread.start()
    exporter = ready.result()

    def end_thread() -> None:
        loop.call_soon_threadsafe(loop.stop)
        if threading.current_thread() is not thread:
            thread.join(_JOIN_TIMEOUT)

    exporter.on_stop(end_thread)
    return exporter


# stop() waits this long for the thread of start_in_thread() to end (its loop stops at once).
_JOIN_TIMEOUT = 5.0


def start_metrics_server(
    port: int = 9464,
    address: str = "127.0.0.1",
    registry: Collector | None = None,
    config: Config | None = None,
    *,
    path: str = "/metrics",
) -> MetricsServer:
    """Serve a registry (by default prometheus_client's global one) on
    ``http://address:port/metrics`` from a thread of its own, with ``config``'s credentials.
    For an exporter, ``exporter.serve(port)`` also serves its explorer and worker view."""
    validate.port("port", port)
    validate.url_path("path", path)
    config = _config(config)
    renderer = render_thread(config.scrape_cache_seconds)
    handler = {
        "registry": registry if registry is not None else REGISTRY,
        "credentials": Credentials.of(config),
        "renderer": renderer,
    }
    try:
        return MetricsServer(
            port=port,
            address=address,
            routes=[(literal(path), MetricsHandler, handler)],
            on_stop=renderer.close,
        )
    except BaseException:
        renderer.close()
        raise


def _config(config: Config | None) -> Config:
    if config is None:
        return Config()
    hint = "config=Config(**{...})" if isinstance(config, dict) else "config=Config(...)"
    return validate.instance("config", config, Config, f"a Config: pass {hint}")


def _registry(registry: CollectorRegistry | None) -> CollectorRegistry | None:
    if registry is None:
        return None  # install() picks: the global one, or its own beside an app's /metrics
    return validate.instance(
        "registry", registry, CollectorRegistry, "a prometheus_client CollectorRegistry"
    )


def _refuse_takeover(app: tornado.web.Application, path: str, config: Config) -> None:
    probes = [("path", path)]
    if config.explorer_enabled:
        explorer = config.explorer_path
        probes += [("explorer_path", explorer + suffix) for suffix in ("/", "/api/summary")]
    for option, probe in probes:
        owner = route_owner(app, probe)
        if owner is not None:
            raise takeover_error(option, probe, owner)
