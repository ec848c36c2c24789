"""``install()``: wire every source into a registry and a route, and undo it with ``stop()``."""

from __future__ import annotations

import asyncio
import weakref
from typing import Any

import psutil
import tornado.httpserver
import tornado.web
from prometheus_client import CollectorRegistry
from prometheus_client.registry import Collector
from tornado.httputil import HTTPServerRequest
from tornado.routing import Matcher, Rule

from . import validate
from .census.fork import Forker
from .census.heap import HeapCensus
from .census.selection import TypeSelector
from .census.snapshot import CensusSnapshot
from .census.watchlist import Watchlist
from .collectors.allocator import AllocatorCollector
from .collectors.census import CensusCollector
from .collectors.gc_pauses import GCPauseRecorder
from .collectors.gc_stats import GCStatsCollector
from .collectors.handlers import HandlersCollector
from .collectors.info import InfoCollector
from .collectors.iostreams import IOStreamsCollector
from .collectors.loop_lag import IOLoopProbe
from .collectors.memory_limit import MemoryLimit
from .collectors.process import ProcessCollector
from .collectors.watch import WatchCollector
from .config import Config
from .explorer import Explorer, explorer_routes
from .faults import Faults, FaultsCollector, GuardedCollector
from .pools.registry import PoolRegistry
from .web.credentials import Credentials
from .web.exposure import require_safe_exposure
from .web.metrics import MetricsHandler, Renderer, literal, render_thread
from .web.routes import registry_for, route_owner, takeover_error
from .workers import SnapshotWriter, WorkerView, worker_id

# One exporter per registry: a second would publish every series twice.
_installed: weakref.WeakKeyDictionary[CollectorRegistry, Exporter] = weakref.WeakKeyDictionary()


class Exporter:
    """What ``install()`` returns: the running collectors of one registry.

    ``stop()`` stops the timers, unhooks the gc callback, unregisters every collector and
    removes the route; ``install()`` may then be called again.
    """

    def __init__(
        self,
        *,
        config: Config,
        registry: CollectorRegistry,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self.config = config
        self.registry = registry
        self.loop = loop
        self.faults = Faults(log_interval=config.error_log_interval)
        ns = config.namespace
        self._gc_pauses = GCPauseRecorder(ns, self.faults, buckets=config.gc_pause_buckets)
        self._ioloop = IOLoopProbe(
            ns, loop=loop, interval=config.ioloop_probe_interval, buckets=config.ioloop_lag_buckets
        )
        sources: dict[str, Collector] = {
            "process": ProcessCollector(ns, self.faults, full_memory=config.process_full_memory),
            "gc": GCStatsCollector(ns),
            "gc_pauses": self._gc_pauses,
            "ioloop": self._ioloop,
            "info": InfoCollector(ns),
        }
        self.pools = PoolRegistry(
            ns, self.faults, limit=config.pool_limit, snapshot_timeout=config.pool_snapshot_timeout
        )
        """Pools exported as ``<ns>_pool_*{pool}``: ``exporter.pools.register("db", pool)``."""
        sources["pools"] = self.pools
        self._watchlist = Watchlist(self.faults)
        forker = None
        if config.census_mode != "inloop":
            process = psutil.Process()
            forker = Forker(
                loop=loop,
                mode=config.census_mode,
                deadline=config.census_fork_deadline,
                headroom=config.census_fork_headroom,
                available=MemoryLimit().available,
                rss=lambda: process.memory_info().rss,
            )
        self._census = HeapCensus(
            loop=loop,
            selector=TypeSelector(
                top_n=config.census_top_n,
                growth_n=config.census_growth_n,
                allowlist=config.census_allowlist,
                hold=config.census_hold,
            ),
            faults=self.faults,
            interval=config.census_interval,
            slice_budget=config.census_slice_budget,
            watchlist=self._watchlist,
            forker=forker,
        )
        latest = lambda: self._census.snapshot  # noqa: E731
        sources["census"] = CensusCollector(
            ns, latest, lambda: self._census.fallbacks, interval=config.census_interval
        )
        sources["allocator"] = AllocatorCollector(
            ns,
            self.faults,
            lambda: s.pymalloc if (s := self._census.snapshot) is not None else None,
        )
        sources["handlers"] = HandlersCollector(ns, latest)
        sources["iostreams"] = IOStreamsCollector(ns, latest)
        sources["watch"] = WatchCollector(ns, self._watchlist)
        self._collectors: list[Collector] = [
            GuardedCollector(name, source, self.faults) for name, source in sources.items()
        ]
        self._collectors.append(FaultsCollector(ns, self.faults))
        self._writer: SnapshotWriter | None = None
        self.served: Collector = registry
        """What the route serves: the registry, or with ``worker_label`` its worker view (pass it
        to ``start_metrics_server(registry=...)`` too)."""
        if config.worker_label:
            view = WorkerView(
                registry,
                worker=worker_id(),
                faults=self.faults,
                directory=config.worker_dir,
                stale_after=3 * config.worker_interval,
            )
            self.served = view
            if config.worker_dir is not None:
                self._writer = SnapshotWriter(
                    view, interval=config.worker_interval, faults=self.faults
                )
        self.explorer: Explorer | None = None
        """The leak explorer (``Config.explorer_enabled``), served beside the metrics route;
        pass it to ``start_metrics_server(explorer=...)`` to serve it there instead."""
        if config.explorer_enabled:
            self.explorer = Explorer(
                config=config,
                loop=loop,
                faults=self.faults,
                census=self._census,
                watchlist=self._watchlist,
                pools=self.pools,
            )
        self._app: tornado.web.Application | None = None
        self._route: Rule | None = None
        self._renderer: Renderer | None = None
        self._running = False

    @property
    def running(self) -> bool:
        """Whether the exporter is installed (between ``start`` and ``stop``)."""
        return self._running

    def _start(self) -> None:
        if self.registry in _installed:
            raise RuntimeError(
                "an Exporter is already installed on this registry; call its stop() first "
                "or pass registry=CollectorRegistry()"
            )
        registered: list[Collector] = []
        try:
            for collector in self._collectors:
                self.registry.register(collector)
                registered.append(collector)
        except ValueError:
            for collector in registered:
                self.registry.unregister(collector)
            raise
        _installed[self.registry] = self
        self._running = True
        try:
            self._gc_pauses.start()
            self._ioloop.start()
            self._census.start()
            if self.explorer is not None:
                self.explorer.start()
            if self._writer is not None:
                self._writer.start()
        except BaseException:
            self.stop()  # every stop() is safe on a part that never started
            raise

    def census_now(self) -> asyncio.Task[CensusSnapshot]:
        """Run one heap census now (after the one in progress, if any); awaiting the result
        returns its snapshot once it is published::

            await exporter.census_now()

        Call it on the IOLoop's thread. With ``Config(census_interval=0)`` this is the only way
        censuses (and ``watch()`` measurements) run.
        """
        if not self._running:
            raise RuntimeError("census_now() on a stopped exporter")
        return self._census.run_now()

    def watch(self, name: str, obj: object) -> None:
        """Export ``len(obj)`` and its deep size as ``<ns>_watched_object_items{name}`` and
        ``<ns>_watched_object_bytes{name}``, measured at each census (see ``watch.py`` for the
        accuracy). Held by weak reference where the type allows it."""
        self._watchlist.watch(name, obj)
        if self.explorer is not None:  # a named app object ends the explorer's chains too
            self.explorer.add_root(f"watched {name}", obj)

    def unwatch(self, name: str) -> None:
        """Stop exporting the object watched as ``name``."""
        self._watchlist.unwatch(name)
        if self.explorer is not None:
            self.explorer.remove_root(f"watched {name}")

    def _add_route(
        self, app: tornado.web.Application, path: str, handler_class: type[MetricsHandler]
    ) -> None:
        credentials = Credentials.of(self.config)
        self._renderer = render_thread(self.config.scrape_cache_seconds)
        handler = (
            literal(path),
            handler_class,
            {"registry": self.served, "credentials": credentials, "renderer": self._renderer},
        )
        rules = app.default_router.rules
        before = set(map(id, rules))
        explorer: list = []
        if self.explorer is not None:
            explorer = explorer_routes(self.explorer, credentials)
            self.explorer.add_root("application", app)
        app.add_handlers(r".*$", [handler, *explorer])
        # add_handlers puts the new host rule just before the app's own handlers but after any
        # rule added earlier; move it first so that no earlier catch-all route shadows it.
        (rule,) = [r for r in rules if id(r) not in before]
        rules.remove(rule)
        rules.insert(0, rule)
        rule.matcher = _PathPrefixes((path, self.config.explorer_path) if explorer else (path,))
        self._app, self._route = app, rule

    def stop(self) -> None:
        """Undo ``install()``: timers, gc hook, collectors and route (safe to call twice)."""
        if not self._running:
            return
        self._running = False
        if self._writer is not None:
            self._writer.stop()
        self._census.stop()
        if self.explorer is not None:
            self.explorer.stop()
        self._ioloop.stop()
        self._gc_pauses.stop()
        self.pools.clear()  # adapters unhook from the executors / engines they wrap
        for collector in self._collectors:
            self.registry.unregister(collector)
        if _installed.get(self.registry) is self:
            del _installed[self.registry]
        if self._app is not None and self._route in self._app.default_router.rules:
            self._app.default_router.rules.remove(self._route)
        self._app = self._route = None
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None


class _PathPrefixes(Matcher):
    """Lets a request into our routes only when its path starts with one of ``prefixes``.

    Our rule comes first, so every request of the app passes it. Matching any host and then
    asking the nested router cost each app request ~7 us (``Application.find_handler`` of a
    hello-world app, median: 9.8 us against 3.0 us bare, a few % of a small request); one
    ``str.startswith`` costs ~0.25 us.
    """

    def __init__(self, prefixes: tuple[str, ...]) -> None:
        self.prefixes = prefixes

    def match(self, request: HTTPServerRequest) -> dict[str, Any] | None:
        return {} if request.path.startswith(self.prefixes) else None


def _check_arguments(
    app: object, path: object, config: object, registry: object, handler: object, replace: object
) -> None:
    if isinstance(app, tornado.httpserver.HTTPServer):
        raise TypeError(
            "app is an HTTPServer: pass the tornado.web.Application it serves, "
            "install(app) with app = tornado.web.Application([...])"
        )
    if app is not None and not isinstance(app, tornado.web.Application):
        raise TypeError(f"app={app!r} must be a tornado.web.Application (or None with path=None)")
    if config is not None and not isinstance(config, Config):
        hint = "Config(**{...})" if isinstance(config, dict) else "Config(...)"
        raise TypeError(f"config={config!r} must be a Config: pass config={hint}")
    if registry is not None and not isinstance(registry, CollectorRegistry):
        raise TypeError(f"registry={registry!r} must be a prometheus_client CollectorRegistry")
    if not (isinstance(handler, type) and issubclass(handler, MetricsHandler)):
        raise TypeError(f"handler={handler!r} must be MetricsHandler or a subclass of it")
    validate.flag("replace", replace)
    if path is not None:
        validate.url_path("path", path)
        if app is None:
            raise ValueError("app=None needs path=None (no route to add)")


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
    default ``process_*``/``python_gc_*`` collectors). Pass ``path=None`` to add no route, for
    example when serving from ``start_metrics_server()`` instead.

    ``path`` is literal (any URL path character: ``/user/alice@example.com/metrics``). A path
    the app already routes is refused (``ValueError`` naming its handler) unless
    ``replace=True``. ``handler`` serves the route: a ``MetricsHandler`` subclass, for example
    one behind the app's own login. Any failure leaves nothing installed, so a corrected call
    works.
    """
    _check_arguments(app, path, config, registry, handler, replace)
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        raise RuntimeError(
            "install() must be called from inside the running IOLoop, e.g. in `async def main()` "
            "run by asyncio.run(main()); without access to the loop, use start_in_thread()"
        ) from None
    config = config if config is not None else Config()
    if path is not None and app is not None:
        if config.explorer_enabled:  # the app's addresses are not known here
            require_safe_exposure(Credentials.of(config), None)
        if not replace:
            _refuse_takeover(app, path, config)
    registry = registry_for(app, path, registry)  # not the global one if the app serves it
    if registry in _installed:
        raise RuntimeError(
            "an Exporter is already installed on this registry; call its stop() first "
            "or pass registry=CollectorRegistry()"
        )
    exporter = Exporter(config=config, registry=registry, loop=loop)
    exporter._start()
    if path is not None and app is not None:
        try:
            exporter._add_route(app, path, handler)
        except BaseException:
            exporter.stop()
            raise
    return exporter


def _refuse_takeover(app: tornado.web.Application, path: str, config: Config) -> None:
    probes = [("path", path)]
    if config.explorer_enabled:
        probes += [
            ("explorer_path", config.explorer_path + suffix) for suffix in ("/", "/api/summary")
        ]
    for option, probe in probes:
        owner = route_owner(app, probe)
        if owner is not None:
            raise takeover_error(option, probe, owner)
