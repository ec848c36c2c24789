"""``Exporter``: the sources of one registry, built from one list, started and stopped together."""

from __future__ import annotations

import asyncio
import concurrent.futures
import weakref
from collections.abc import Callable, Generator
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, runtime_checkable

import psutil
import tornado.web
from prometheus_client import CollectorRegistry
from prometheus_client.registry import Collector
from tornado.httputil import HTTPHeaders, HTTPServerRequest, RequestStartLine

from . import validate
from .buckets import GC_PAUSE_BUCKETS, LOOP_LAG_BUCKETS
from .census.fork import FORK_HEADROOM, Forker
from .census.heap import HeapCensus
from .census.selection import TypeSelector
from .census.slicer import SLICE_BUDGET
from .census.snapshot import CensusSnapshot
from .census.watchlist import Watchlist
from .collectors.allocator import AllocatorCollector
from .collectors.census import CensusCollector
from .collectors.gc_pauses import GCPauseRecorder
from .collectors.gc_stats import GCStatsCollector
from .collectors.handlers import HandlersCollector
from .collectors.info import InfoCollector
from .collectors.iostreams import IOStreamsCollector
from .collectors.live_heap import LiveHeapRecorder
from .collectors.loop_busy import LoopBusyMeter
from .collectors.loop_lag import IOLoopProbe
from .collectors.memory_limit import MemoryLimit
from .collectors.process import ProcessCollector
from .collectors.ready_queue import ReadyCallbacks
from .collectors.watch import WatchCollector
from .config import Config
from .faults import Faults, FaultsCollector, GuardedCollector
from .pools.registry import PoolRegistry
from .web.credentials import Credentials
from .web.exposure import require_safe_exposure
from .web.metrics import MetricsHandler, literal, render_thread
from .web.server import MetricsServer
from .workers import SnapshotWriter, WorkerView, worker_id

if TYPE_CHECKING:
    from .explorer import Explorer

T = TypeVar("T")

# Tuning knobs, measured; not options (see docs/design.md for the measurements).
# Seconds between IOLoop lag probes: two per second resolve the 0.1 s lag the alert uses and
# cost one timer callback each (~10 us).
PROBE_INTERVAL = 0.5
# Types exported because they grew most since the baseline, beside Config.census_top_n by count.
GROWTH_N = 10
# Seconds a type stays exported after it last qualified, so its series does not flap at the cut.
HOLD_SECONDS = 600.0
# A forked census still running after this long is killed and counted as reason="deadline"
# (a 3M-object heap takes ~6 s in the child here; 120 s means a stuck child, not a slow one).
FORK_DEADLINE = 120.0

# One exporter per registry: a second would publish every series twice.
_installed: weakref.WeakKeyDictionary[Collector, Exporter] = weakref.WeakKeyDictionary()


class CensusRun:
    """A census asked for by ``census_now()``: await it on the loop's thread, or wait for it
    with ``result(timeout)`` from any other."""

    def __init__(self, run: asyncio.Future[CensusSnapshot] | concurrent.futures.Future) -> None:
        self._run = run

    def __await__(self) -> Generator[Any, None, CensusSnapshot]:
        run = self._run
        if isinstance(run, concurrent.futures.Future):
            run = asyncio.wrap_future(run)
        return run.__await__()

    def result(self, timeout: float | None = None) -> CensusSnapshot:
        """The snapshot, waiting ``timeout`` seconds at most (``TimeoutError`` after)."""
        if not isinstance(self._run, concurrent.futures.Future):
            raise RuntimeError("on the loop's thread, await the census instead of blocking it")
        return self._run.result(timeout)


@runtime_checkable
class Running(Protocol):
    """A part that hooks something while the exporter runs (a timer, a gc callback...)."""

    def start(self) -> None: ...
    def stop(self) -> None: ...


class Exporter:
    """The running sources of one registry: what ``install()`` and ``start_in_thread()`` return.

    ``stop()`` stops the timers, unhooks the gc callback, unregisters every collector, removes
    the route and closes the ports it serves; ``install()`` may then be called again. From
    another thread than the loop's (``start_in_thread()``), ``watch()``, ``unwatch()`` and
    ``census_now()`` hand their work to the loop.
    """

    def __init__(
        self, *, config: Config, registry: CollectorRegistry, loop: asyncio.AbstractEventLoop
    ) -> None:
        self.config = config
        self.registry = registry
        self.loop = loop
        self.faults = Faults()
        self._watchlist = Watchlist(self.faults)
        self._census = _heap_census(config, loop, self.faults, self._watchlist)
        self.pools = PoolRegistry(config.namespace, self.faults)
        """Pools exported as ``<ns>_pool_*{pool}``: ``exporter.pools.register("db", pool)``."""
        self.explorer: Explorer | None = None
        """The leak explorer (``Config.explorer_enabled``), served beside the metrics."""
        if config.explorer_enabled:
            from .explorer import Explorer  # off by default: not imported with the package

            self.explorer = Explorer(
                config=config,
                loop=loop,
                faults=self.faults,
                census=self._census,
                watchlist=self._watchlist,
                pools=self.pools,
            )
        sources = self._sources()
        self._collectors = [
            GuardedCollector(name, source, self.faults) for name, source in sources.items()
        ]
        self._collectors.append(FaultsCollector(config.namespace, self.faults))
        self.served: Collector = registry
        """What the routes serve: the registry, or with ``worker_label`` its worker view."""
        writer = None
        if config.worker_label:
            self.served = WorkerView(
                registry,
                worker=worker_id(),
                faults=self.faults,
                directory=config.worker_dir,
                stale_after=3 * config.worker_interval,
            )
            if config.worker_dir is not None:
                writer = SnapshotWriter(
                    self.served, interval=config.worker_interval, faults=self.faults
                )
        parts = (*sources.values(), self._census, self.explorer, writer)
        self._parts: list[Running] = [part for part in parts if isinstance(part, Running)]
        self._credentials = Credentials.of(config)
        self._renderer = render_thread(config.scrape_cache_seconds)
        self._routes: list[tuple[tornado.web.Application, Any]] = []
        self._servers: list[MetricsServer] = []
        self._on_stop: list[Callable[[], object]] = []
        self._running = False

    def _sources(self) -> dict[str, Collector]:
        """Every source of metrics, by the name its failures are counted under
        (``<ns>_exporter_errors_total{collector}``). A new source is one line here."""
        ns, faults, census = self.config.namespace, self.faults, self._census

        def latest() -> CensusSnapshot | None:
            return census.snapshot

        def pymalloc() -> Any:
            snapshot = census.snapshot
            return snapshot.pymalloc if snapshot is not None else None

        return {
            "process": ProcessCollector(ns, faults, full_memory=self.config.process_full_memory),
            "gc": GCStatsCollector(ns),
            "gc_pauses": GCPauseRecorder(ns, faults, buckets=GC_PAUSE_BUCKETS),
            "ioloop": IOLoopProbe(
                ns, loop=self.loop, interval=PROBE_INTERVAL, buckets=LOOP_LAG_BUCKETS
            ),
            "info": InfoCollector(ns),
            "pools": self.pools,
            "census": CensusCollector(
                ns, latest, lambda: census.fallbacks, interval=self.config.census_interval
            ),
            "allocator": AllocatorCollector(ns, faults, pymalloc),
            "handlers": HandlersCollector(ns, latest),
            "iostreams": IOStreamsCollector(ns, latest),
            "watch": WatchCollector(ns, self._watchlist),
            "ioloop_busy": LoopBusyMeter(ns, loop=self.loop),
            "ioloop_ready": ReadyCallbacks(ns, loop=self.loop),
            "live_heap": LiveHeapRecorder(ns, faults),
        }

    @property
    def running(self) -> bool:
        """Whether the exporter runs (between ``install()`` and ``stop()``)."""
        return self._running

    def start(self) -> None:
        """Register every collector and start every part; on any failure, undo it all."""
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
            for part in self._parts:
                part.start()
        except BaseException:
            self.stop()  # stopping a part that never started is safe
            raise

    def census_now(self) -> CensusRun:
        """Run one heap census now (after the one in progress, if any); its snapshot comes back
        once it is published::

            snapshot = await exporter.census_now()            # on the loop's thread
            snapshot = exporter.census_now().result(timeout=60)  # from any other thread

        With ``Config(census_interval=0)`` this is the only way censuses (and ``watch()``
        measurements) run.
        """
        if not self._running:
            raise RuntimeError("census_now() on a stopped exporter")
        if self._on_loop_thread():
            return CensusRun(self._census.run_now())
        return CensusRun(asyncio.run_coroutine_threadsafe(self._census_awaited(), self.loop))

    async def _census_awaited(self) -> CensusSnapshot:
        return await self._census.run_now()

    def watch(self, name: str, obj: object) -> None:
        """Export ``len(obj)`` and its deep size as ``<ns>_watched_object_items{name}`` and
        ``<ns>_watched_object_bytes{name}``, measured at each census. Held by weak reference
        where the type allows it::

            exporter.watch("sessions", app.sessions)
        """
        self._call_on_loop(self._watch, name, obj)

    def _watch(self, name: str, obj: object) -> None:
        self._watchlist.watch(name, obj)
        if self.explorer is not None:  # a named app object ends the explorer's chains too
            self.explorer.add_root(f"watched {name}", obj)

    def unwatch(self, name: str) -> None:
        """Stop exporting the object watched as ``name``."""
        self._call_on_loop(self._unwatch, name)

    def _unwatch(self, name: str) -> None:
        self._watchlist.unwatch(name)
        if self.explorer is not None:
            self.explorer.remove_root(f"watched {name}")

    def serve(self, port: int = 9464, address: str = "127.0.0.1", *, path: str = "/metrics") -> str:
        """Serve ``/metrics`` (and the explorer, when enabled) on a port of its own, from a
        thread of its own, until ``stop()``; returns the base URL (``port=0`` picks a free port).

        Binds to 127.0.0.1 unless told otherwise: pass ``address="0.0.0.0"`` (with credentials
        in ``Config``) to let other hosts scrape. A port apart from the application's loop
        still answers, and the lag histogram still tells the story, while that loop is blocked.
        """
        validate.port("port", port)
        validate.url_path("path", path)
        if self.explorer is not None:
            require_safe_exposure(self._credentials, address)
        server = MetricsServer(port=port, address=address, routes=self._handlers(path))
        self._servers.append(server)
        return server.url

    def route(
        self,
        app: tornado.web.Application,
        path: str = "/metrics",
        *,
        handler: type[MetricsHandler] = MetricsHandler,
    ) -> None:
        """Serve ``/metrics`` (and the explorer) on ``app`` itself through
        ``app.add_handlers()``, Tornado's way for add-ons; ``install()`` calls it."""
        if self.explorer is not None:
            self.explorer.add_root("application", app)
        handlers = self._handlers(path, handler)
        default_host_rules = list(app.wildcard_router.rules)
        app.add_handlers(r".*$", handlers)
        # add_handlers() inserts our host rule just before the app's own handlers (and, with a
        # default_host, appends to them): remembered to be removed on stop(), as Tornado has no
        # API that removes a rule.
        added = [app.default_router.rules[-2]]
        added += [r for r in app.wildcard_router.rules if r not in default_host_rules]
        self._routes += [(app, rule) for rule in added]
        # A rule added earlier through add_handlers() with a catch-all path would still shadow
        # ours, and Tornado has no public way to insert a rule first: ask the app which handler
        # each of our paths reaches, and refuse rather than serve nothing.
        ours = {spec[1] for spec in handlers}
        for probe in self._probes(path):
            reached = reached_handler(app, probe)
            if reached not in ours:
                self._remove_routes()
                raise ValueError(
                    f"the application routes {probe!r} to {_name(reached)} ahead of routes added "
                    "later: call install() before adding that route, or serve on a port of our "
                    "own with install(app, None).serve(port)"
                )

    def _handlers(self, path: str, handler: type[MetricsHandler] = MetricsHandler) -> list[Any]:
        metrics = {
            "registry": self.served,
            "credentials": self._credentials,
            "renderer": self._renderer,
        }
        routes: list[Any] = [(literal(path), handler, metrics)]
        if self.explorer is not None:
            from .explorer import explorer_routes

            routes += explorer_routes(self.explorer, self._credentials)
        return routes

    def _probes(self, path: str) -> list[str]:
        """Request paths our routes must answer: the metrics path and the explorer's."""
        if self.explorer is None:
            return [path]
        return [path, self.config.explorer_path + "/", self.config.explorer_path + "/api/summary"]

    @property
    def url(self) -> str | None:
        """Base URL of the first port ``serve()`` opened (``url + "/metrics"`` is scraped)."""
        return self._servers[0].url if self._servers else None

    def on_stop(self, callback: Callable[[], object]) -> None:
        """Call ``callback()`` once ``stop()`` has undone everything, in the caller's thread."""
        self._on_stop.append(callback)

    def stop(self) -> None:
        """Undo everything: timers, gc hook, collectors, routes and ports (safe to call twice,
        from any thread)."""
        if not self._running:
            return
        self._call_on_loop(self._stop)
        callbacks, self._on_stop = self._on_stop, []
        for callback in callbacks:
            callback()

    def _stop(self) -> None:
        if not self._running:
            return
        self._running = False
        for server in self._servers:
            server.stop()
        self._servers.clear()
        for part in reversed(self._parts):
            part.stop()
        self.pools.clear()  # adapters unhook from the executors / engines they wrap
        for collector in self._collectors:
            self.registry.unregister(collector)
        if _installed.get(self.registry) is self:
            del _installed[self.registry]
        self._remove_routes()
        self._renderer.close()

    def _remove_routes(self) -> None:
        for app, rule in self._routes:
            for router in (app.default_router, app.wildcard_router):
                if rule in router.rules:
                    router.rules.remove(rule)
        self._routes.clear()

    def _on_loop_thread(self) -> bool:
        try:
            return asyncio.get_running_loop() is self.loop
        except RuntimeError:
            return False

    def _call_on_loop(self, function: Callable[..., T], *args: Any) -> T:
        """``function(*args)`` on the loop's thread: the census reads what it changes there."""
        if self._on_loop_thread() or not self.loop.is_running():
            return function(*args)
        done: concurrent.futures.Future[T] = concurrent.futures.Future()

        def call() -> None:
            try:
                done.set_result(function(*args))
            except BaseException as error:  # noqa: BLE001 - raised in the caller's thread
                done.set_exception(error)

        self.loop.call_soon_threadsafe(call)
        return done.result(timeout=_CALL_TIMEOUT)


# A call handed to the loop from another thread waits at most this long (a blocked loop).
_CALL_TIMEOUT = 30.0


def _name(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def reached_handler(app: tornado.web.Application, path: str) -> type:
    """The handler class a GET of ``path`` on ``app`` reaches, asked of the application itself
    (``Application.find_handler``, so that subclasses that route their own way are honoured)."""
    line = RequestStartLine("GET", path, "HTTP/1.1")
    request = HTTPServerRequest(start_line=line, headers=HTTPHeaders({"Host": "localhost"}))
    return app.find_handler(request).handler_class


def _heap_census(
    config: Config, loop: asyncio.AbstractEventLoop, faults: Faults, watchlist: Watchlist
) -> HeapCensus:
    forker = None
    if config.census_mode != "inloop":
        process = psutil.Process()
        forker = Forker(
            loop=loop,
            mode=config.census_mode,
            deadline=FORK_DEADLINE,
            headroom=FORK_HEADROOM,
            available=MemoryLimit().available,
            rss=lambda: process.memory_info().rss,
        )
    selector = TypeSelector(
        top_n=config.census_top_n,
        growth_n=GROWTH_N,
        allowlist=config.census_allowlist,
        hold=HOLD_SECONDS,
    )
    return HeapCensus(
        loop=loop,
        selector=selector,
        faults=faults,
        interval=config.census_interval,
        slice_budget=SLICE_BUDGET,
        watchlist=watchlist,
        forker=forker,
    )
