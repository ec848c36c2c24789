"""The two dashboards: an overview per instance, and a leak-hunt drill-down by object type.

Every alert's signal has a panel here (the panel description names the alert), so the runbook
can say "confirm it on panel X".
"""

from __future__ import annotations

from typing import Any

from .config import MixinConfig, duration, seconds
from .panels import Panel, Row, Target, dashboard, datasource_variable, filters, query_variable
from .rules import floor_name

OVERVIEW_FILE = "tornado-memory-overview.json"
LEAK_HUNT_FILE = "tornado-memory-leak-hunt.json"
RATE = "$__rate_interval"
WHO = "{{instance}} {{worker}}"
NOT_OTHER = 'type!="other"'


# --- PromQL templates shared by the panels ----------------------------------------------------


def _rate(selector: str) -> str:
    return f"rate({selector}[{RATE}])"


def _quantile(q: float, buckets: str, by: str) -> str:
    """``q``-quantile of a histogram, its ``_bucket`` series summed by ``by`` (plus ``le``)."""
    return f"histogram_quantile({q:g}, sum by (le, {by}) ({_rate(buckets)}))"


def _over(function: str, selector: str, window: str) -> str:
    """``function(selector[window])``, e.g. ``min_over_time`` for a floor."""
    return f"{function}({selector}[{window}])"


def _floor(cfg: MixinConfig, metric: str, *matchers: str) -> str:
    """The recorded floor of ``<ns>_<metric>``, filtered by the dashboard variables."""
    return f"{floor_name(cfg, metric)}{{{', '.join(filters(cfg, *matchers))}}}"


def _per_hour(cfg: MixinConfig, metric: str, window: str, *matchers: str) -> str:
    """Slope of a recorded floor over ``window``, per hour."""
    return f"{_over('deriv', _floor(cfg, metric, *matchers), window)} * 3600"


def _if_reachability(cfg: MixinConfig, expr: str) -> str:
    """``expr`` only for processes whose last census told live objects from garbage (forked
    censuses): an in-loop census cannot, and a zero there would read as "no garbage"."""
    reachability = cfg.metric("census_reachability", *filters(cfg))
    return f"{expr} and on (instance, worker) {reachability} == 1"


def _variables(cfg: MixinConfig, *extra: dict[str, Any]) -> list[dict[str, Any]]:
    info = "exporter_info"
    return [
        datasource_variable(),
        query_variable("job", f"label_values({cfg.metric(info)}, job)"),
        query_variable("instance", f"label_values({cfg.metric(info, _re('job'))}, instance)"),
        # Empty unless the exporter runs with worker_label=True; ".*" also matches no label.
        query_variable(
            "worker",
            f"label_values({cfg.metric(info, _re('job'), _re('instance'))}, worker)",
            all_value=".*",
        ),
        *extra,
    ]


def explorer_link(cfg: MixinConfig) -> list[dict[str, Any]]:
    """A data link from a type's bar to the leak explorer of its instance, type preselected."""
    return [
        {
            "title": "Leak explorer: what holds ${__field.labels.type} and where it is allocated",
            "url": cfg.explorer_url + "#type=${__field.labels.type:percentencode}",
            "targetBlank": True,
        }
    ]


def _pct(ratio: float) -> str:
    return f"{ratio * 100:g}%"


def _re(label: str) -> str:
    return f'{label}=~"${label}"'


# Shared wording: what a forked census counts, and why an in-loop one cannot.
REACHABLE_ONLY = (
    "A forked census counts reachable objects only (census_reachability 1); an in-loop census "
    "(census_reachability 0) cannot tell live objects from garbage waiting for the collector "
    "and counts both."
)
GARBAGE = (
    "Objects in reference cycles nothing reachable refers to: garbage the next collection of "
    "their generation frees (e.g. Tornado's exception-info cycles, one per failed request). "
    "Growing garbage costs GC time and RSS peaks, not a leak; it pages nobody. Forked censuses "
    "only: empty for processes whose census ran in the loop (census_reachability 0), which "
    "cannot tell garbage from live objects and count it as live."
)


# --- rows on both dashboards ------------------------------------------------------------------


def connection_panels(cfg: MixinConfig) -> list[Panel | Row]:
    """WebSockets and IOStreams, on both dashboards: open connections are load, closed ones kept
    alive and bytes queued to slow clients are leaks."""
    m, f = cfg.metric, filters(cfg)
    queued, high = m("iostream_write_buffer_bytes", *f), cfg.write_buffers_high_bytes
    return [
        Row("WebSockets and IOStreams"),
        Panel(
            "Open WebSockets by handler",
            "Live WebSocket connections by handler class at the last census "
            '(handlers_alive, state="open"): load, never a leak.',
            "short",
            [Target(m("handlers_alive", *f, 'state="open"'), "{{handler}} " + WHO)],
        ),
        Panel(
            "Closed WebSockets kept alive",
            "WebSocket handlers whose connection closed but that are "
            'still referenced (state="closed"), e.g. a set of clients on_close() forgets to leave: '
            "growing, they are TornadoHandlersLeaking.",
            "short",
            [Target(m("handlers_alive", *f, 'state="closed"'), "{{handler}} " + WHO)],
        ),
        Panel(
            "Write buffers: bytes queued to clients",
            "Bytes queued in the write buffers of open IOStreams, "
            "summed per process, and the largest single queue: slow consumers "
            f"(TornadoWriteBuffersGrowing above {high / (1 << 20):g} MiB, or growing).",
            "bytes",
            [
                Target(queued, f"total {WHO}"),
                Target(m("iostream_write_buffer_max_bytes", *f), f"largest {WHO}"),
            ],
        ),
        Panel(
            "Open IOStreams and read buffers",
            "Open IOStreams (client and server connections) and the "
            "bytes read from them that the application has not consumed yet.",
            "short",
            [
                Target(m("iostreams_open", *f), f"open streams {WHO}"),
                Target(m("iostream_read_buffer_bytes", *f), f"read-buffer bytes {WHO}"),
            ],
        ),
    ]


def fragmentation(cfg: MixinConfig) -> list[Panel | Row]:
    """The allocator-fragmentation row, on both dashboards: RSS against what Python uses and what
    the allocators hold free (TornadoAllocatorRetention), and where pymalloc's arenas go."""
    m, f = cfg.metric, filters(cfg)
    return [
        Row("Allocator fragmentation"),
        Panel(
            "RSS, live Python heap and allocator free bytes",
            "RSS against the bytes pymalloc's live blocks use and the bytes the allocators hold "
            "free (glibc malloc's free heap; pymalloc's free blocks and empty pools, from forked "
            "censuses). RSS climbing while the live heap is flat and free bytes climb is "
            "TornadoAllocatorRetention: fragmentation, not a leak of Python objects.",
            "bytes",
            [
                Target(m("process_resident_memory_bytes", *f), f"RSS {WHO}"),
                Target(m("pymalloc_bytes", *f, 'state="allocated"'), f"pymalloc live {WHO}"),
                Target(m("pymalloc_bytes", *f, 'state="free"'), f"pymalloc free {WHO}"),
                Target(m("malloc_heap_bytes", *f, 'state="in_use"'), f"malloc in use {WHO}"),
                Target(m("malloc_heap_bytes", *f, 'state="free"'), f"malloc free {WHO}"),
            ],
        ),
        Panel(
            "pymalloc arenas and pools",
            "Arenas pymalloc holds (1 MiB each) and its empty pools: many arenas with few used "
            "pools are pinned by a few live objects each (fragmentation); the explorer's "
            "malloc_trim action shows what glibc can give back.",
            "short",
            [
                Target(m("pymalloc_arenas", *f), f"arenas {WHO}"),
                Target(m("pymalloc_pools", *f), "pools {{state}} " + WHO),
            ],
        ),
    ]


def pool_hold_time(cfg: MixinConfig, width: int) -> Panel:
    """How long checkouts are held (HikariCP's usage histogram), on both dashboards."""
    buckets = cfg.metric("pool_hold_seconds_bucket", *filters(cfg))
    return Panel(
        "Pool hold time p50 and p99",
        "How long each checkout was held before it came back, by pool: a p99 far above the p50 "
        "is a handler keeping a pooled connection across an await (or a slow query). Adapters "
        "that cannot tell when an object is returned publish no hold time.",
        "s",
        [
            Target(
                _quantile(q, buckets, "pool, instance, worker"), f"p{q * 100:g} {{{{pool}}}} {WHO}"
            )
            for q in (0.5, 0.99)
        ],
        width=width,
    )


# --- the overview -----------------------------------------------------------------------------


def memory_row(cfg: MixinConfig) -> list[Panel | Row]:
    """RSS, the Python heap, their floors and slopes, the limit, restarts: the trend alerts."""
    m, f = cfg.metric, filters(cfg)
    rss = "process_resident_memory_bytes"
    trend, floor = cfg.trend_window, cfg.floor_window
    limit = m("process_memory_limit_bytes", *f)
    horizon = seconds(cfg.near_limit_critical_horizon) + seconds(cfg.floor_window)
    judged = duration(seconds(cfg.floor_window) + seconds(cfg.trend_window))
    return [
        Row("Memory"),
        Panel(
            "Resident memory, its floor and the limit",
            f"RSS per process, its floor (minimum over {floor}: what the leak alerts trend) and "
            "the memory limit (cgroup, else host total). A sawtooth is the GC working; a rising "
            "floor is a leak.",
            "bytes",
            [
                Target(m(rss, *f), f"RSS {WHO}"),
                Target(_over("min_over_time", m(rss, *f), floor), f"floor {WHO}"),
                Target(limit, f"limit {WHO}"),
            ],
        ),
        Panel(
            "RSS floor growth per hour",
            f"Slope of the RSS floor over {trend}, in bytes per hour: the signal of "
            "TornadoMemoryLeakSuspected. Flat around zero is healthy.",
            "bytes",
            [Target(_per_hour(cfg, rss, trend), WHO)],
        ),
        Panel(
            "Python heap: allocated blocks",
            "sys.getallocatedblocks() (a sawtooth: garbage accumulates between collections), its "
            f"floor over {floor}, and the blocks left right after the last collection of the "
            "oldest generation: the live heap without garbage (the JVM's used-after-GC, Go's "
            "live heap). "
            "RSS growing while this stays flat is allocator retention, not leaking Python objects. "
            "Signal of TornadoPythonHeapGrowing.",
            "short",
            [
                Target(m("python_allocated_blocks", *f), f"blocks {WHO}"),
                Target(m("python_allocated_blocks_after_gc", *f), f"after full GC {WHO}"),
                Target(
                    _over("min_over_time", m("python_allocated_blocks", *f), floor),
                    f"floor {WHO}",
                ),
            ],
        ),
        Panel(
            "Python heap floor growth per hour",
            f"Slope of the allocated-blocks floor over {trend}, in blocks per hour "
            "(TornadoPythonHeapGrowing).",
            "short",
            [Target(_per_hour(cfg, "python_allocated_blocks", trend), WHO)],
        ),
        Panel(
            "RSS floor against the memory limit",
            f"RSS floor as a fraction of the memory limit, and where its {cfg.near_limit_window} "
            f"trend puts it {cfg.near_limit_critical_horizon} from now (plus the floor's {floor} "
            "lag): the signal of TornadoMemoryNearLimit (critical twin).",
            "percentunit",
            [
                Target(f"{_floor(cfg, rss)} / {limit}", f"now {WHO}"),
                Target(
                    f"predict_linear({_floor(cfg, rss)}[{cfg.near_limit_window}], {horizon}) / "
                    f"{limit}",
                    f"in {cfg.near_limit_critical_horizon} {WHO}",
                ),
            ],
        ),
        Panel(
            "Uptime",
            f"Seconds since the process started: drops to zero on a restart. Growth in the first "
            f"{cfg.warmup_window} is warm-up and never alerts; until the process is older than "
            f"{judged} the leak alerts judge only the last {cfg.young_trend_window}.",
            "s",
            [Target(f"time() - {m('process_start_time_seconds', *f)}", WHO)],
        ),
        Panel(
            "Restarts",
            f"Restarts (changes of the start time) over {cfg.restart_window}, and the RSS peak "
            "before the last one as a fraction of the limit: TornadoMemoryRestartLoop fires at the "
            f"second restart above {_pct(cfg.restart_near_limit_ratio)}.",
            "short",
            [
                Target(
                    _over("changes", m("process_start_time_seconds", *f), cfg.restart_window),
                    f"restarts {WHO}",
                ),
                Target(
                    f"{_over('max_over_time', m(rss, *f), cfg.restart_window)} / {limit}",
                    f"peak / limit {WHO}",
                ),
            ],
        ),
        Panel(
            "RSS floor: now and a day earlier",
            f"The RSS floor and the floor at the same time "
            f"{cfg.day_window} earlier: a daily traffic cycle overlaps, a leak pulls away. Old "
            "processes must also beat yesterday's floor for TornadoMemoryLeakSuspected to fire.",
            "bytes",
            [
                Target(_floor(cfg, rss), f"now {WHO}"),
                Target(
                    f"{_floor(cfg, rss)} offset {cfg.day_window}",
                    f"{cfg.day_window} earlier {WHO}",
                ),
            ],
        ),
        Panel(
            "Scrape health",
            "1 while Prometheus scrapes the exporter, 0 while it cannot "
            "(TornadoMemoryExporterDown).",
            "short",
            [Target(cfg.raw("up", *filters(cfg, worker=False)), "{{instance}}")],
        ),
    ]


def gc_row(cfg: MixinConfig) -> list[Panel | Row]:
    """Collections, pauses and uncollectable objects."""
    m, f = cfg.metric, filters(cfg)
    uncollectable = _over("increase", m("gc_uncollectable_objects_total", *f), RATE)
    return [
        Row("Garbage collector"),
        Panel(
            "GC generation counts",
            "gc.get_count() per generation: allocations since the last "
            "collection (generation 0) or collections of the younger generation.",
            "short",
            [Target(m("gc_generation_objects", *f), "gen {{generation}} " + WHO)],
        ),
        Panel(
            "Collections per second",
            "Garbage collections per second, by generation.",
            "ops",
            [Target(_rate(m("gc_collections_total", *f)), "gen {{generation}} " + WHO)],
        ),
        Panel(
            "GC pause p99",
            "99th percentile of collection pauses by generation (the IOLoop is blocked "
            f"meanwhile). Generation {cfg.gc_oldest_generation} is TornadoGCPauseHigh's signal.",
            "s",
            [
                Target(
                    _quantile(
                        0.99, m("gc_pause_seconds_bucket", *f), "generation, instance, worker"
                    ),
                    "gen {{generation}} " + WHO,
                )
            ],
        ),
        Panel(
            "Uncollectable objects",
            "Objects the collector found uncollectable per interval, and "
            "the size of gc.garbage (TornadoGCUncollectable).",
            "short",
            [
                Target(f"sum without (generation) ({uncollectable})", f"uncollectable {WHO}"),
                Target(m("gc_garbage_objects", *f), f"gc.garbage {WHO}"),
            ],
        ),
        Panel(
            "Time since the last full collection",
            f"Seconds since the collector last finished generation {cfg.gc_oldest_generation} "
            "(the oldest): the age of the after-GC live heap on the Python heap panel. Hours "
            "mean garbage in old objects waits that long to be freed.",
            "s",
            [Target(f"time() - {m('gc_last_full_collection_timestamp_seconds', *f)}", WHO)],
        ),
    ]


def census_row(cfg: MixinConfig) -> list[Panel | Row]:
    """What the heap census counts, what grows, and the census's own health."""
    m, f = cfg.metric, filters(cfg)
    return [
        Row("Heap census"),
        Panel(
            "Top types by live objects",
            "The 10 types with the most live objects at the last census "
            f'(type="other" is the rest). {REACHABLE_ONLY}',
            "short",
            [Target(f"topk(10, {m('objects', *f)})", "{{type}} " + WHO, instant=True)],
            kind="bargauge",
        ),
        Panel(
            "Garbage waiting for the collector by type",
            f"The 10 types with the most unreachable objects at the last census. {GARBAGE}",
            "short",
            [
                Target(
                    _if_reachability(cfg, f"topk(10, {m('unreachable_objects', *f)})"),
                    "{{type}} " + WHO,
                    instant=True,
                )
            ],
            kind="bargauge",
        ),
        Panel(
            "Fastest-growing types",
            "The 10 types whose live count grew most over the dashboard's "
            "time range (TornadoObjectTypeGrowing; drill down in the leak-hunt dashboard).",
            "short",
            [
                Target(
                    f"topk(10, {_over('delta', m('objects', *f, NOT_OTHER), '$__range')})",
                    "{{type}} " + WHO,
                    instant=True,
                )
            ],
            kind="bargauge",
            links=explorer_link(cfg),
        ),
        Panel(
            "Census health",
            "Wall time of the last census, its longest single IOLoop slice, and the age of the "
            f"last successful census (TornadoCensusStale above {cfg.census_stale_after}).",
            "s",
            [
                Target(m("census_duration_seconds", *f), f"duration {WHO}"),
                Target(m("census_max_stall_seconds", *f), f"longest slice {WHO}"),
                Target(f"time() - {m('census_last_success_timestamp_seconds', *f)}", f"age {WHO}"),
            ],
        ),
        Panel(
            "Exporter errors",
            "Failures per second of each metrics source; its other metrics are still served.",
            "ops",
            [Target(_rate(m("exporter_errors_total", *f)), "{{collector}} " + WHO)],
        ),
    ]


def pools_row(cfg: MixinConfig) -> list[Panel | Row]:
    """Utilisation, waiting and hold time of the registered pools."""
    m, f = cfg.metric, filters(cfg)
    return [
        Row("Pools"),
        Panel(
            "Pool utilisation",
            "in_use / capacity per registered pool (TornadoPoolSaturated above "
            f"{cfg.pool_saturation_ratio:g}).",
            "percentunit",
            [Target(f"{m('pool_in_use', *f)} / {m('pool_capacity', *f)}", "{{pool}} " + WHO)],
            width=8,
        ),
        Panel(
            "Pool waiting and timeouts",
            "Acquirers waiting now, and acquisition timeouts per second "
            "(TornadoPoolExhausted when both).",
            "short",
            [
                Target(m("pool_waiting", *f), "waiting {{pool}} " + WHO),
                Target(_rate(m("pool_timeouts_total", *f)), "timeouts/s {{pool}} " + WHO),
            ],
            width=8,
        ),
        pool_hold_time(cfg, width=8),
    ]


def loop_row(cfg: MixinConfig) -> list[Panel | Row]:
    """How busy the IOLoop is, how late it runs, and what is queued and scheduled on it."""
    m, f = cfg.metric, filters(cfg)
    return [
        Row("Loop"),
        Panel(
            "Loop utilisation",
            "Share of wall time the IOLoop spent running callbacks rather than waiting for I/O "
            "(0-1, Node's event-loop utilisation). Near 1 with a high lag: CPU-bound, scale out; "
            "low with a high lag p99: idle but blocked now and then by one long callback. Absent "
            "where the loop cannot be measured (uvloop, a loop the app does not own).",
            "percentunit",
            [Target(_rate(m("ioloop_busy_seconds_total", *f)), WHO)],
            width=8,
        ),
        Panel(
            "IOLoop lag p99",
            "99th percentile of how late the IOLoop probe ran: time the loop was "
            "blocked (TornadoIOLoopBlocked). Timers piling up: TornadoTimersGrowing.",
            "s",
            [Target(_quantile(0.99, m("ioloop_lag_seconds_bucket", *f), "instance, worker"), WHO)],
            width=8,
        ),
        Panel(
            "Ready callbacks",
            "Callbacks queued to run now on the IOLoop, at the scrape: a queue that stays long "
            "means the loop cannot keep up (or callbacks pile up faster than they run).",
            "short",
            [Target(m("ioloop_ready_callbacks", *f), WHO)],
            width=8,
        ),
        Panel(
            "Scheduled timers by callback",
            "Timer handles scheduled on the IOLoop (call_later, add_timeout, PeriodicCallback) "
            "by the qualified name of their callback, counted at each census, the 10 largest "
            '(callback="other" is the rest). A steady PeriodicCallback population is flat; one '
            "callback climbing is a timer never cancelled: TornadoTimersGrowing.",
            "short",
            [Target(f"topk(10, {m('ioloop_timers', *f)})", "{{callback}} " + WHO)],
        ),
        Panel(
            "asyncio tasks",
            "Live asyncio tasks on the IOLoop: a steady climb is a task leak.",
            "short",
            [Target(m("asyncio_tasks", *f), WHO)],
        ),
    ]


def overview(cfg: MixinConfig) -> dict[str, Any]:
    return dashboard(
        cfg,
        uid=f"{cfg.dashboard_uid_prefix}-overview",
        title="Tornado memory / Overview",
        description="Memory, garbage collector, heap census, pools and IOLoop of Tornado "
        "processes.",
        variables=_variables(cfg),
        items=[
            *memory_row(cfg),
            *gc_row(cfg),
            *census_row(cfg),
            *pools_row(cfg),
            *loop_row(cfg),
            *connection_panels(cfg),
            *fragmentation(cfg),
        ],
    )


# --- the leak hunt ----------------------------------------------------------------------------


TYPE = 'type=~"$type"'


def object_types_row(cfg: MixinConfig) -> list[Panel | Row]:
    """The selected types live and as garbage, what grows, what holds it, what weighs most."""
    m, f, typ = cfg.metric, filters(cfg), TYPE
    return [
        Row("Object types"),
        Panel(
            "Live objects of $type",
            f"Live objects of the selected types at each census, and their floor over "
            f"{cfg.floor_window}. {REACHABLE_ONLY}",
            "short",
            [
                Target(m("objects", *f, typ), "{{type}} " + WHO),
                Target(
                    _over("min_over_time", m("objects", *f, typ), cfg.floor_window),
                    "floor {{type}} " + WHO,
                ),
            ],
        ),
        Panel(
            "Garbage of $type waiting for the collector",
            f"Unreachable objects of the selected types at each census, next to the live ones. "
            f"{GARBAGE}",
            "short",
            [Target(_if_reachability(cfg, m("unreachable_objects", *f, typ)), "{{type}} " + WHO)],
        ),
        Panel(
            "Growth per hour of $type",
            f"Slope of each type's floor over {cfg.trend_window}, in objects "
            "per hour: the signal of TornadoObjectTypeGrowing.",
            "short",
            [Target(_per_hour(cfg, "objects", cfg.trend_window, typ), "{{type}} " + WHO)],
        ),
        Panel(
            "Fastest-growing types",
            "The 10 types whose live count grew most over the time range; click a bar for the "
            "leak explorer of its instance (reference chains, allocation sites).",
            "short",
            [
                Target(
                    f"topk(10, {_over('delta', m('objects', *f, NOT_OTHER), '$__range')})",
                    "{{type}} " + WHO,
                    instant=True,
                )
            ],
            kind="bargauge",
            links=explorer_link(cfg),
        ),
        Panel(
            "What holds each growing type",
            "For each type in the census's growth selection (and each handler class with "
            "reachable finished or closed instances), the shortest chain that keeps a sample "
            "instance alive, named by code: a module global, a class attribute, a container "
            "kind, a closure cell, a suspended coroutine's function. Never dict keys or values. "
            "Forked censuses only; the explorer shows the same words.",
            "short",
            [Target(m("object_holder_info", *f), "{{type}}: {{holder}}", instant=True, table=True)],
            kind="table",
            width=24,
            columns=("type", "holder", "instance", "worker"),
        ),
        Panel(
            "Top types by bytes",
            "The 10 types holding the most shallow bytes (sys.getsizeof) at the last forked "
            "census: every object counted, untracked ones (str, bytes, int...) included.",
            "bytes",
            [
                Target(
                    f"topk(10, {m('object_bytes', *f, NOT_OTHER)})", "{{type}} " + WHO, instant=True
                )
            ],
            kind="bargauge",
            links=explorer_link(cfg),
        ),
        Panel(
            "Top types by garbage bytes",
            "The 10 types holding the most shallow bytes in unreachable objects at the last "
            f"forked census. {GARBAGE}",
            "bytes",
            [
                Target(
                    _if_reachability(
                        cfg, f"topk(10, {m('unreachable_object_bytes', *f, NOT_OTHER)})"
                    ),
                    "{{type}} " + WHO,
                    instant=True,
                )
            ],
            kind="bargauge",
        ),
        Panel(
            "Tracked objects",
            "All gc-tracked objects and what the last census scanned: a type's "
            "growth should show here too.",
            "short",
            [
                Target(m("gc_tracked_objects", *f), f"tracked {WHO}"),
                Target(m("census_objects_scanned", *f), f"scanned {WHO}"),
            ],
        ),
    ]


def handlers_row(cfg: MixinConfig) -> list[Panel | Row]:
    """Handlers by state and the objects the app registered with ``exporter.watch()``."""
    m, f = cfg.metric, filters(cfg)
    return [
        Row("Handlers and watched objects"),
        Panel(
            "Handlers alive by state",
            "RequestHandler instances by class and state; finished handlers (and closed "
            "WebSockets) that stay reachable and grow are TornadoHandlersLeaking. "
            'state="unreachable" (forked censuses) are finished handlers in reference cycles '
            "waiting for the collector: garbage, never counted as a leak.",
            "short",
            [
                Target(m("handlers_alive", *f), "{{handler}} {{state}} " + WHO),
                Target(_floor(cfg, "handlers_alive"), "floor {{state}} {{handler}} " + WHO),
            ],
        ),
        Panel(
            "Watched objects: items",
            "len() of each object registered with exporter.watch() (TornadoWatchedObjectGrowing).",
            "short",
            [Target(m("watched_object_items", *f), "{{name}} " + WHO)],
        ),
        Panel(
            "Watched objects: deep size",
            "Deep size (pympler asizeof, time-budgeted) of each watched object.",
            "bytes",
            [Target(m("watched_object_bytes", *f), "{{name}} " + WHO)],
        ),
    ]


def pool_leaks_row(cfg: MixinConfig) -> list[Panel | Row]:
    """Pool objects lost while checked out, and how long checkouts last."""
    m, f = cfg.metric, filters(cfg)
    return [
        Row("Pools"),
        Panel(
            "Pool objects leaked",
            "Pool objects garbage-collected while still checked out, per "
            "interval (TornadoPoolLeak); the exporter logs the acquisition site.",
            "short",
            [Target(_over("increase", m("pool_leaked_total", *f), RATE), "{{pool}} " + WHO)],
            width=8,
        ),
        Panel(
            "Oldest checkout",
            "Age of the longest-held pool object: a leak or a stuck request keeps climbing.",
            "s",
            [Target(m("pool_oldest_checkout_seconds", *f), "{{pool}} " + WHO)],
            width=8,
        ),
        pool_hold_time(cfg, width=8),
    ]


def leak_hunt(cfg: MixinConfig) -> dict[str, Any]:
    type_var = query_variable("type", f"label_values({cfg.metric('objects', *filters(cfg))}, type)")
    return dashboard(
        cfg,
        uid=f"{cfg.dashboard_uid_prefix}-leak-hunt",
        title="Tornado memory / Leak hunt",
        description="Which object types, handlers, caches and pools grow.",
        variables=_variables(cfg, type_var),
        items=[
            *object_types_row(cfg),
            *handlers_row(cfg),
            *pool_leaks_row(cfg),
            *connection_panels(cfg),
            *fragmentation(cfg),
        ],
    )


def build_dashboards(cfg: MixinConfig) -> dict[str, dict[str, Any]]:
    """File name -> dashboard JSON model (Grafana classic model, stable uids)."""
    return {OVERVIEW_FILE: overview(cfg), LEAK_HUNT_FILE: leak_hunt(cfg)}
