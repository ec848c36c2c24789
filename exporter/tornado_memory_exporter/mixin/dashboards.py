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
            "RSS against the bytes pymalloc's live blocks use and the bytes the allocators hold free "
            "(glibc malloc's free heap; pymalloc's free blocks and empty pools, from forked censuses). "
            "RSS climbing while the live heap is flat and free bytes climb is TornadoAllocatorRetention: "
            "fragmentation, not a leak of Python objects.",
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
            "Arenas pymalloc holds (1 MiB each) and its empty pools: many arenas with few used pools "
            "are pinned by a few live objects each (fragmentation); the explorer's malloc_trim action "
            "shows what glibc can give back.",
            "short",
            [
                Target(m("pymalloc_arenas", *f), f"arenas {WHO}"),
                Target(m("pymalloc_pools", *f), "pools {{state}} " + WHO),
            ],
        ),
    ]


def overview(cfg: MixinConfig) -> dict[str, Any]:
    m, f = cfg.metric, filters(cfg)
    rss, blocks = (
        floor_name(cfg, "process_resident_memory_bytes"),
        floor_name(cfg, "python_allocated_blocks"),
    )
    trend, floor = cfg.trend_window, cfg.floor_window
    horizon = seconds(cfg.near_limit_critical_horizon) + seconds(cfg.floor_window)
    items: list[Panel | Row] = [
        Row("Memory"),
        Panel(
            "Resident memory, its floor and the limit",
            f"RSS per process, its floor (minimum over {floor}: what the leak alerts trend) and the "
            "memory limit (cgroup, else host total). A sawtooth is the GC working; a rising floor is a leak.",
            "bytes",
            [
                Target(m("process_resident_memory_bytes", *f), f"RSS {WHO}"),
                Target(
                    f"min_over_time({m('process_resident_memory_bytes', *f)}[{floor}])",
                    f"floor {WHO}",
                ),
                Target(m("process_memory_limit_bytes", *f), f"limit {WHO}"),
            ],
        ),
        Panel(
            "RSS floor growth per hour",
            f"Slope of the RSS floor over {trend}, in bytes per hour: the signal of "
            "TornadoMemoryLeakSuspected. Flat around zero is healthy.",
            "bytes",
            [Target(f"deriv({rss}{{{', '.join(f)}}}[{trend}]) * 3600", WHO)],
        ),
        Panel(
            "Python heap: allocated blocks",
            "sys.getallocatedblocks() and its floor: Python's own heap. RSS growing while this stays flat "
            "is allocator retention, not leaking Python objects. Signal of TornadoPythonHeapGrowing.",
            "short",
            [
                Target(m("python_allocated_blocks", *f), f"blocks {WHO}"),
                Target(
                    f"min_over_time({m('python_allocated_blocks', *f)}[{floor}])", f"floor {WHO}"
                ),
            ],
        ),
        Panel(
            "Python heap floor growth per hour",
            f"Slope of the allocated-blocks floor over {trend}, in blocks per hour (TornadoPythonHeapGrowing).",
            "short",
            [Target(f"deriv({blocks}{{{', '.join(f)}}}[{trend}]) * 3600", WHO)],
        ),
        Panel(
            "RSS floor against the memory limit",
            f"RSS floor as a fraction of the memory limit, and where its {cfg.near_limit_window} trend puts it "
            f"{cfg.near_limit_critical_horizon} from now (plus the floor's {floor} lag): the signal of "
            "TornadoMemoryNearLimit (critical twin).",
            "percentunit",
            [
                Target(
                    f"{rss}{{{', '.join(f)}}} / {m('process_memory_limit_bytes', *f)}", f"now {WHO}"
                ),
                Target(
                    f"predict_linear({rss}{{{', '.join(f)}}}[{cfg.near_limit_window}], {horizon}) / "
                    f"{m('process_memory_limit_bytes', *f)}",
                    f"in {cfg.near_limit_critical_horizon} {WHO}",
                ),
            ],
        ),
        Panel(
            "Uptime",
            f"Seconds since the process started: drops to zero on a restart. Growth in the first "
            f"{cfg.warmup_window} is warm-up and never alerts; until the process is older than "
            f"{duration(seconds(cfg.floor_window) + seconds(cfg.trend_window))} the leak alerts judge only the last "
            f"{cfg.young_trend_window}.",
            "s",
            [Target(f"time() - {m('process_start_time_seconds', *f)}", WHO)],
        ),
        Panel(
            "Restarts",
            f"Restarts (changes of the start time) over {cfg.restart_window}, and the RSS peak "
            "before the last one as a fraction of the limit: TornadoMemoryRestartLoop fires at the second "
            f"restart above {_pct(cfg.restart_near_limit_ratio)}.",
            "short",
            [
                Target(
                    f"changes({m('process_start_time_seconds', *f)}[{cfg.restart_window}])",
                    f"restarts {WHO}",
                ),
                Target(
                    f"max_over_time({m('process_resident_memory_bytes', *f)}[{cfg.restart_window}]) / "
                    f"{m('process_memory_limit_bytes', *f)}",
                    f"peak / limit {WHO}",
                ),
            ],
        ),
        Panel(
            "RSS floor: now and a day earlier",
            f"The RSS floor and the floor at the same time "
            f"{cfg.day_window} earlier: a daily traffic cycle overlaps, a leak pulls away. Old processes "
            "must also beat yesterday's floor for TornadoMemoryLeakSuspected to fire.",
            "bytes",
            [
                Target(f"{rss}{{{', '.join(f)}}}", f"now {WHO}"),
                Target(
                    f"{rss}{{{', '.join(f)}}} offset {cfg.day_window}",
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
            [Target(f"rate({m('gc_collections_total', *f)}[{RATE}])", "gen {{generation}} " + WHO)],
        ),
        Panel(
            "GC pause p99",
            "99th percentile of collection pauses by generation (the IOLoop is "
            f"blocked meanwhile). Generation {cfg.gc_oldest_generation} is TornadoGCPauseHigh's signal.",
            "s",
            [
                Target(
                    f"histogram_quantile(0.99, sum by (le, generation, instance, worker) "
                    f"(rate({m('gc_pause_seconds_bucket', *f)}[{RATE}])))",
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
                Target(
                    f"sum without (generation) (increase({m('gc_uncollectable_objects_total', *f)}[{RATE}]))",
                    f"uncollectable {WHO}",
                ),
                Target(m("gc_garbage_objects", *f), f"gc.garbage {WHO}"),
            ],
        ),
        Row("Heap census"),
        Panel(
            "Top types by live objects",
            "The 10 types with the most live gc-tracked objects at the "
            'last census (type="other" is the rest).',
            "short",
            [Target(f"topk(10, {m('objects', *f)})", "{{type}} " + WHO, instant=True)],
            kind="bargauge",
        ),
        Panel(
            "Fastest-growing types",
            "The 10 types whose live count grew most over the dashboard's "
            "time range (TornadoObjectTypeGrowing; drill down in the leak-hunt dashboard).",
            "short",
            [
                Target(
                    f"topk(10, delta({m('objects', *f, NOT_OTHER)}[$__range]))",
                    "{{type}} " + WHO,
                    instant=True,
                )
            ],
            kind="bargauge",
            links=explorer_link(cfg),
        ),
        Panel(
            "Census health",
            "Wall time of the last census, its longest single IOLoop slice, and "
            f"the age of the last successful census (TornadoCensusStale above {cfg.census_stale_after}).",
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
            [Target(f"rate({m('exporter_errors_total', *f)}[{RATE}])", "{{collector}} " + WHO)],
        ),
        Row("Pools and event loop"),
        Panel(
            "Pool utilisation",
            "in_use / capacity per registered pool (TornadoPoolSaturated above "
            f"{cfg.pool_saturation_ratio:g}).",
            "percentunit",
            [Target(f"{m('pool_in_use', *f)} / {m('pool_capacity', *f)}", "{{pool}} " + WHO)],
        ),
        Panel(
            "Pool waiting and timeouts",
            "Acquirers waiting now, and acquisition timeouts per second "
            "(TornadoPoolExhausted when both).",
            "short",
            [
                Target(m("pool_waiting", *f), "waiting {{pool}} " + WHO),
                Target(
                    f"rate({m('pool_timeouts_total', *f)}[{RATE}])", "timeouts/s {{pool}} " + WHO
                ),
            ],
        ),
        Panel(
            "IOLoop lag p99",
            "99th percentile of how late the IOLoop probe ran: time the loop was "
            "blocked (TornadoIOLoopBlocked). Timers piling up: TornadoTimersGrowing.",
            "s",
            [
                Target(
                    f"histogram_quantile(0.99, sum by (le, instance, worker) "
                    f"(rate({m('ioloop_lag_seconds_bucket', *f)}[{RATE}])))",
                    WHO,
                )
            ],
        ),
        Panel(
            "asyncio tasks",
            "Live asyncio tasks on the IOLoop: a steady climb is a task leak.",
            "short",
            [Target(m("asyncio_tasks", *f), WHO)],
        ),
        *connection_panels(cfg),
        *fragmentation(cfg),
    ]
    return dashboard(
        cfg,
        uid=f"{cfg.dashboard_uid_prefix}-overview",
        title="Tornado memory / Overview",
        description="Memory, garbage collector, heap census, pools and IOLoop of Tornado processes.",
        variables=_variables(cfg),
        items=items,
    )


def leak_hunt(cfg: MixinConfig) -> dict[str, Any]:
    m, f = cfg.metric, filters(cfg)
    objects = floor_name(cfg, "objects")
    handlers = floor_name(cfg, "handlers_alive")
    typ = 'type=~"$type"'
    type_var = query_variable("type", f"label_values({m('objects', *filters(cfg))}, type)")
    items: list[Panel | Row] = [
        Row("Object types"),
        Panel(
            "Live objects of $type",
            f"Live gc-tracked objects of the selected types at each census, "
            f"and their floor over {cfg.floor_window}.",
            "short",
            [
                Target(m("objects", *f, typ), "{{type}} " + WHO),
                Target(
                    f"min_over_time({m('objects', *f, typ)}[{cfg.floor_window}])",
                    "floor {{type}} " + WHO,
                ),
            ],
        ),
        Panel(
            "Growth per hour of $type",
            f"Slope of each type's floor over {cfg.trend_window}, in objects "
            "per hour: the signal of TornadoObjectTypeGrowing.",
            "short",
            [
                Target(
                    f"deriv({objects}{{{', '.join((*f, typ))}}}[{cfg.trend_window}]) * 3600",
                    "{{type}} " + WHO,
                )
            ],
        ),
        Panel(
            "Fastest-growing types",
            "The 10 types whose live count grew most over the time range; "
            "click a bar for the leak explorer of its instance (reference chains, allocation sites).",
            "short",
            [
                Target(
                    f"topk(10, delta({m('objects', *f, NOT_OTHER)}[$__range]))",
                    "{{type}} " + WHO,
                    instant=True,
                )
            ],
            kind="bargauge",
            links=explorer_link(cfg),
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
        Row("Handlers and watched objects"),
        Panel(
            "Handlers alive by state",
            "Live RequestHandler instances by class and state; finished "
            "handlers (and closed WebSockets) that stay alive and grow are TornadoHandlersLeaking.",
            "short",
            [
                Target(m("handlers_alive", *f), "{{handler}} {{state}} " + WHO),
                Target(f"{handlers}{{{', '.join(f)}}}", "floor {{state}} {{handler}} " + WHO),
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
        Row("Pools"),
        Panel(
            "Pool objects leaked",
            "Pool objects garbage-collected while still checked out, per "
            "interval (TornadoPoolLeak); the exporter logs the acquisition site.",
            "short",
            [Target(f"increase({m('pool_leaked_total', *f)}[{RATE}])", "{{pool}} " + WHO)],
        ),
        Panel(
            "Oldest checkout",
            "Age of the longest-held pool object: a leak or a stuck request keeps climbing.",
            "s",
            [Target(m("pool_oldest_checkout_seconds", *f), "{{pool}} " + WHO)],
        ),
        *connection_panels(cfg),
        *fragmentation(cfg),
        Panel(
            "Top types by bytes",
            "The 10 types holding the most shallow bytes (sys.getsizeof) at the "
            "last forked census: every object counted, untracked ones (str, bytes, int...) included.",
            "bytes",
            [
                Target(
                    f"topk(10, {m('object_bytes', *f, NOT_OTHER)})", "{{type}} " + WHO, instant=True
                )
            ],
            kind="bargauge",
            links=explorer_link(cfg),
        ),
    ]
    return dashboard(
        cfg,
        uid=f"{cfg.dashboard_uid_prefix}-leak-hunt",
        title="Tornado memory / Leak hunt",
        description="Which object types, handlers, caches and pools grow.",
        variables=_variables(cfg, type_var),
        items=items,
    )


def build_dashboards(cfg: MixinConfig) -> dict[str, dict[str, Any]]:
    """File name -> dashboard JSON model (Grafana classic model, stable uids)."""
    return {OVERVIEW_FILE: overview(cfg), LEAK_HUNT_FILE: leak_hunt(cfg)}
