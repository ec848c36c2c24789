"""Alerting rules, built from a ``MixinConfig`` on the recording rules of ``promql.py``.

Each alert is a short expression over the recorded clauses (``...:floor``, ``...:leaking``),
written as a ``string.Template``. Adding an alert is one entry in one of the families below
(and its scenario in ``scenarios/build.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from string import Template
from typing import Any

from .config import LIBRARY_MODULES, MixinConfig, duration, seconds
from .promql import (
    LEAKED_HANDLERS,
    RSS,
    TIMERS_GROW,
    age_name,
    floor_name,
    handler_windows,
    handlers_reachable_name,
    leaking_name,
    recording_rules,
    restart_peak_name,
    timers_windows,
)

__all__ = ["Alert", "alerts", "build_prometheus_rule", "build_rules", "floor_name"]

RULES_FILE = "tornado-memory.rules.yml"
PROMETHEUS_RULE_FILE = "tornado-memory.prometheusrule.yaml"
RECORDING_GROUP = "tornado-memory.rules"
ALERTING_GROUP = "tornado-memory.alerts"
# Labels Prometheus gives every target: a down target has no other labels to join on.
TARGET_LABELS = ("job", "instance")
# Alerts that name a cause, and those that only show its consequences (Alertmanager inhibits
# the second on the same process while the first fires; see alertmanager.py).
ROOT_CAUSES = (
    "TornadoHandlersLeaking",
    "TornadoWatchedObjectGrowing",
    "TornadoPoolLeak",
    # timers are callbacks: what they hold grows as float, method and Context objects
    "TornadoTimersGrowing",
    # RSS that slow consumers' queues or the allocators' free lists hold is not a second problem
    "TornadoWriteBuffersGrowing",
    "TornadoAllocatorRetention",
)
CONSEQUENCES = (
    "TornadoMemoryLeakSuspected",
    "TornadoPythonHeapGrowing",
    "TornadoObjectTypeGrowing",
)
APPLICATION = "application"
# TornadoObjectTypeGrowing raises one alert (the fastest-growing type) per process and origin.
OBJECT_TYPE_ALERTS_PER_ORIGIN = 1
WHO = "{{ $labels.instance }} (job {{ $labels.job }})"


@dataclass(frozen=True)
class Alert:
    """One alerting rule before serialisation (the builders and the promtool scenarios share it)."""

    name: str
    severity: str
    expr: str
    for_: str
    summary: str
    description: str
    labels: tuple[tuple[str, str], ...] = ()
    """Static labels besides ``severity`` (twins of one alert differ by them)."""

    def rule(self, cfg: MixinConfig) -> dict[str, Any]:
        return {
            "alert": self.name,
            "expr": self.expr,
            "for": self.for_,
            "labels": {"severity": self.severity, **dict(self.labels)},
            "annotations": {
                "summary": self.summary,
                "description": self.description,
                "runbook_url": cfg.runbook(self.name),
            },
        }


def _pct(ratio: float) -> str:
    return f"{ratio * 100:g}%"


def _mib(n: int) -> str:
    return f"{n / (1 << 20):g} MiB"


def _growth(cfg: MixinConfig) -> str:
    """How the leak clauses judge growth, in words (the descriptions of the leak alerts)."""
    young_until = duration(seconds(cfg.floor_window) + seconds(cfg.trend_window))
    return (
        f"faster than {_pct(cfg.leak_growth_per_hour)} per hour through both halves of the "
        f"last {cfg.trend_window} (in a process younger than {young_until}: "
        f"over {cfg.floor_window} at half of {_pct(cfg.young_growth_per_hour)} per hour and "
        f"still growing, after its {cfg.warmup_window} warm-up)"
    )


def _reachable(cfg: MixinConfig) -> str:
    """How reachable counts are judged, in words (object types and watched objects)."""
    return (
        f"or, with a census that tells garbage apart, rising through both halves of the last "
        f"{cfg.floor_window} past the {cfg.warmup_window} warm-up"
    )


def origin(expr: str) -> str:
    """``expr`` with an ``origin`` label computed from ``type``: builtin (no dot), library (a
    module of ``LIBRARY_MODULES``, or a private one such as ``_asyncio``/``_contextvars``:
    CPython's C internals) or application."""
    modules = "|".join(m.replace(".", "\\\\.") for m in LIBRARY_MODULES)
    libraries = f"({modules}|_[A-Za-z0-9_]*)"
    out = f'label_replace({expr}, "origin", "{APPLICATION}", "type", ".+")'
    out = f'label_replace({out}, "origin", "library", "type", "{libraries}\\\\..+")'
    return f'label_replace({out}, "origin", "builtin", "type", "[^.]+")'


def allocator_free(cfg: MixinConfig) -> str:
    """Bytes the allocators hold free, per process: glibc malloc's free heap plus pymalloc's
    free blocks and empty pools, or whichever of the two the exporter serves (pymalloc's come
    from forked censuses, malloc's from glibc only)."""
    by, free = f"sum by ({cfg.on})", 'state="free"'
    malloc = f"{by} ({cfg.metric('malloc_heap_bytes', free)})"
    pymalloc = f"{by} ({cfg.metric('pymalloc_bytes', free)})"
    return f"(({malloc} + {pymalloc}) or {malloc} or {pymalloc})"


LEAKING = Template("$series\nand $leaking\n")
NEAR_LIMIT_WARNING = Template(
    "$rss\n"
    "and $floor > $ratio * $limit\n"
    "and predict_linear($floor[$trend], $horizon) > $limit\n"
    "and $leaking\n"
)
NEAR_LIMIT_CRITICAL = Template(
    "$rss\n"
    "and $floor > $ratio * $limit\n"
    "and predict_linear($floor[$window], $horizon) > $limit\n"
    "and $floor - $floor offset $window > $min_growth * $limit\n"
    # past its warm-up (a cache filling after a start decelerates towards a plateau: the linear
    # trend of its first hours overshoots it)...
    "and on($on) $age >= $warmup\n"
    # ...and not slowing down: the floor's growth over the last window is at least three
    # quarters of its growth over the window before, which must exist (floors a whole floor
    # window apart see the leak whatever the GC sawtooth; a warm-up's tail grows less and less)
    "and $floor - $floor offset $window\n"
    "  >= $keep * ($floor offset $window - $floor offset $twice)\n"
)
# Growth in the last window below this fraction of the previous one: the trend decelerates.
DECELERATING = 0.75
RESTART_LOOP = Template(
    "changes($start[$window]) > 0\n"
    "and min_over_time($peak[$window]) > $ratio\n"
    "and (\n"
    "  changes($start[$window]) >= 2\n"
    "  or $rss / $limit > $ratio\n"
    ")\n"
)
ALLOCATOR_RETENTION = Template(
    "$rss\n"
    "and $rss_leaking\n"
    "and on($on) deriv($blocks[$trend]) * 3600 <= $growth * $blocks\n"
    # the free bytes' floor now, above their lowest in the trend window (a young process has
    # less history than the window: its lowest so far counts)
    "and on($on) (min_over_time($free[$floor:]) - min_over_time($free[$trend:])) > $bytes\n"
)


def memory_alerts(cfg: MixinConfig) -> list[Alert]:
    """RSS: the leak trend, the near-limit twins and the OOM restart loop."""
    m, rss = cfg.metric, floor_name(cfg, RSS)
    limit, lag = m("process_memory_limit_bytes"), seconds(cfg.floor_window)
    warning_ratio, critical_ratio = cfg.near_limit_warning_ratio, cfg.near_limit_critical_ratio
    return [
        Alert(
            "TornadoMemoryLeakSuspected",
            "warning",
            LEAKING.substitute(series=m(RSS), leaking=leaking_name(cfg, RSS)),
            cfg.leak_for,
            "Resident memory of a Tornado process has been growing steadily.",
            f"The RSS of {WHO} is {{{{ $value | humanize1024 }}}}B and its floor (minimum over "
            f"{cfg.floor_window}) grew {_growth(cfg)}. If the Python heap (allocated blocks) "
            "stays flat meanwhile, this is allocator retention, not leaking Python objects.",
        ),
        Alert(
            "TornadoMemoryNearLimit",
            "warning",
            NEAR_LIMIT_WARNING.substitute(
                rss=m(RSS),
                floor=rss,
                ratio=f"{warning_ratio:g}",
                limit=limit,
                trend=cfg.trend_window,
                horizon=seconds(cfg.near_limit_warning_horizon) + lag,
                leaking=leaking_name(cfg, RSS),
            ),
            cfg.near_limit_for,
            "A Tornado process is predicted to reach its memory limit.",
            f"The RSS of {WHO} is {{{{ $value | humanize1024 }}}}B; its floor grows like a leak, "
            f"is above {_pct(warning_ratio)} of the memory limit and its {cfg.trend_window} "
            f"trend reaches the limit within {cfg.near_limit_warning_horizon}.",
        ),
        Alert(
            "TornadoMemoryNearLimit",
            "critical",
            NEAR_LIMIT_CRITICAL.substitute(
                rss=m(RSS),
                floor=rss,
                ratio=f"{critical_ratio:g}",
                limit=limit,
                window=cfg.near_limit_window,
                # the floor lags RSS by up to the floor window: predict that much further
                horizon=seconds(cfg.near_limit_critical_horizon) + lag,
                min_growth=f"{cfg.near_limit_min_growth:g}",
                on=cfg.on,
                age=age_name(cfg),
                warmup=seconds(cfg.warmup_window),
                keep=f"{DECELERATING:g}",
                twice=duration(2 * seconds(cfg.near_limit_window)),
            ),
            cfg.near_limit_for,
            "A Tornado process is predicted to reach its memory limit soon.",
            f"The RSS of {WHO} is {{{{ $value | humanize1024 }}}}B; its floor is above "
            f"{_pct(critical_ratio)} of the memory limit, grew by more than "
            f"{_pct(cfg.near_limit_min_growth)} of it in {cfg.near_limit_window} and that trend "
            f"reaches the limit within {cfg.near_limit_critical_horizon} without slowing down "
            f"(past the {cfg.warmup_window} warm-up of the process).",
        ),
        restart_loop_alert(cfg),
    ]


def restart_loop_alert(cfg: MixinConfig) -> Alert:
    """TornadoMemoryRestartLoop: restarts with the memory at the limit just before each."""
    m, ratio = cfg.metric, cfg.restart_near_limit_ratio
    return Alert(
        "TornadoMemoryRestartLoop",
        "critical",
        RESTART_LOOP.substitute(
            start=m("process_start_time_seconds"),
            window=cfg.restart_window,
            peak=restart_peak_name(cfg),
            ratio=f"{ratio:g}",
            rss=m(RSS),
            limit=m("process_memory_limit_bytes"),
        ),
        cfg.restart_loop_for,
        "A Tornado process keeps restarting with its memory at the limit.",
        f"{WHO} restarted {{{{ $value }}}} time(s) in the last {cfg.restart_window}, each time "
        f"with its RSS above {_pct(ratio)} of the memory limit just before, and restarted "
        "again or is back there: an OOM restart loop (the leak trend alerts never see a process "
        "this old).",
    )


def allocator_retention_alert(cfg: MixinConfig) -> Alert:
    """TornadoAllocatorRetention: the RSS floor grows steadily (as for TornadoMemoryLeakSuspected)
    while the Python heap's floor does not, and the floor of the allocators' free bytes grew by
    ``allocator_free_growth_bytes`` over the trend window: memory Python freed, kept by malloc."""
    blocks, trend = floor_name(cfg, "python_allocated_blocks"), cfg.trend_window
    return Alert(
        "TornadoAllocatorRetention",
        "warning",
        ALLOCATOR_RETENTION.substitute(
            rss=cfg.metric(RSS),
            rss_leaking=leaking_name(cfg, RSS),
            on=cfg.on,
            blocks=blocks,
            trend=trend,
            growth=f"{cfg.leak_growth_per_hour:g}",
            free=allocator_free(cfg),
            floor=cfg.floor_window,
            bytes=cfg.allocator_free_growth_bytes,
        ),
        cfg.leak_for,
        "Resident memory grows while the Python heap is flat and the allocators keep freed memory.",
        f"The RSS of {WHO} is {{{{ $value | humanize1024 }}}}B and its floor grew for {trend} "
        "while Python's allocated blocks stayed flat, and the free bytes held by malloc and "
        f"pymalloc grew by more than {_mib(cfg.allocator_free_growth_bytes)}: fragmentation, "
        "not a leak of Python objects.",
    )


OBJECT_TYPE = Template("$objects\nand\ntopk by ($on, origin) ($per_origin,\n  $rates\n)\n")


def object_alerts(cfg: MixinConfig) -> list[Alert]:
    """Python heap, object types, finished handlers and watched objects that keep growing."""
    m, growth = cfg.metric, _growth(cfg)
    objects = floor_name(cfg, "objects")
    rates = origin(
        f"deriv({objects}[{cfg.trend_window}]) * 3600 and {leaking_name(cfg, 'objects')}"
    )
    return [
        Alert(
            "TornadoPythonHeapGrowing",
            "warning",
            LEAKING.substitute(
                series=m("python_allocated_blocks"),
                leaking=leaking_name(cfg, "python_allocated_blocks"),
            ),
            cfg.leak_for,
            "Python's own heap of a Tornado process has been growing steadily.",
            f"Python's allocated blocks of {WHO} are {{{{ $value | humanize }}}} and their floor "
            f"grew {growth}: live Python objects accumulate. The leak-hunt dashboard shows which "
            "types grow.",
        ),
        Alert(
            "TornadoObjectTypeGrowing",
            "warning",
            with_holder(
                cfg,
                OBJECT_TYPE.substitute(
                    objects=origin(m("objects", 'type!="other"')),
                    on=cfg.on,
                    per_origin=OBJECT_TYPE_ALERTS_PER_ORIGIN,
                    rates=rates,
                ),
                "type",
            ),
            cfg.leak_for,
            "Live objects of one type keep accumulating in a Tornado process.",
            f"{WHO} has {{{{ $value | humanize }}}} live {{{{ $labels.type }}}} objects, the "
            f"fastest-growing {{{{ $labels.origin }}}} type{KEPT_ALIVE_BY}: their floor grew "
            f"{growth}, by at least {cfg.leak_min_objects} ({_reachable(cfg)}). Builtin and "
            "library types that grow with it are "
            "consequences (inhibited in Alertmanager).",
        ),
        handlers_alert(cfg),
        Alert(
            "TornadoWatchedObjectGrowing",
            "warning",
            LEAKING.substitute(
                series=m("watched_object_items"),
                leaking=leaking_name(cfg, "watched_object_items"),
            ),
            cfg.leak_for,
            "A watched cache or registry of a Tornado process grows without bound.",
            f"Watched object {{{{ $labels.name }}}} of {WHO} holds {{{{ $value | humanize }}}} "
            f"items and their floor grew {growth}, by at least {cfg.watched_leak_min} "
            f"({_reachable(cfg)}).",
        ),
    ]


HANDLERS = Template("(\n  $handlers\n  and ($reachable_leaking or $leaking)\n)\n")
# The census's holder of a type (``<ns>_object_holder_info{type, holder} 1``), joined by type:
# one holder per type (topk), and the series unchanged where the census names none.
HOLDER = Template(
    "label_replace(\n"
    '  $expr, "type", "$$1", "$type_label", "(.+)"\n'
    ") * on($on, type) group_left(holder) topk by ($on, type) (1, $holders)\n"
    "or on($on, $type_label) "
)


def with_holder(cfg: MixinConfig, expr: str, type_label: str) -> str:
    """``expr`` with the census's ``holder`` label joined on ``type_label`` where it names one."""
    joined = HOLDER.substitute(
        expr=expr.strip(),
        type_label=type_label,
        on=cfg.on,
        holders=cfg.metric("object_holder_info"),
    )
    return joined + expr


KEPT_ALIVE_BY = "{{ if $labels.holder }}, kept alive by {{ $labels.holder }}{{ end }}"


def handlers_alert(cfg: MixinConfig) -> Alert:
    """TornadoHandlersLeaking: finished handlers kept alive. Where the census computed
    reachability (``<ns>_census_reachability`` 1) only reachable ones are counted, so a steady
    rise through a short window fires at any process age; the floors' rules apply everywhere
    (an in-loop census, and a leak too slow for the short window)."""
    m, short = cfg.metric, handler_windows(cfg)
    handlers = m("handlers_alive", LEAKED_HANDLERS)
    clause = HANDLERS.substitute(
        handlers=handlers,
        reachable_leaking=handlers_reachable_name(cfg),
        leaking=leaking_name(cfg, "handlers_alive"),
    )
    return Alert(
        "TornadoHandlersLeaking",
        "warning",
        with_holder(cfg, clause, "handler"),
        cfg.handlers_leak_for,
        "Finished Tornado request handlers are kept alive and accumulating.",
        f"{WHO} keeps {{{{ $value | humanize }}}} {{{{ $labels.state }}}} "
        f"{{{{ $labels.handler }}}} handlers alive{KEPT_ALIVE_BY}: counted reachable only, they "
        f"rose by at least {max(1, cfg.handlers_leak_min // 2)} in each half of the last "
        f"{short[2]}, or their floor grew {_growth(cfg)}, by at least {cfg.handlers_leak_min}. "
        "Something still references them after their request ended.",
    )


P99_ABOVE = Template("histogram_quantile(0.99, rate($buckets[$window]))\n> $threshold\n")


def runtime_alerts(cfg: MixinConfig) -> list[Alert]:
    """The garbage collector and the IOLoop."""
    m, gen = cfg.metric, cfg.gc_oldest_generation
    return [
        Alert(
            "TornadoGCUncollectable",
            "warning",
            f"sum without (generation) (increase({m('gc_uncollectable_objects_total')}"
            f"[{cfg.uncollectable_window}])) > 0\n",
            cfg.uncollectable_for,
            "The garbage collector found objects it cannot free.",
            f"The garbage collector of {WHO} found uncollectable objects in the last "
            f"{cfg.uncollectable_window}; they stay in gc.garbage and are never freed.",
        ),
        Alert(
            "TornadoGCPauseHigh",
            "warning",
            P99_ABOVE.substitute(
                buckets=m("gc_pause_seconds_bucket", f'generation="{gen}"'),
                window=cfg.gc_pause_window,
                threshold=f"{cfg.gc_pause_p99_seconds:g}",
            ),
            cfg.gc_pause_for,
            "Full garbage collections pause a Tornado process for long.",
            f"The p99 of full (generation {gen}) collection pauses of {WHO} over "
            f"{cfg.gc_pause_window} is {{{{ $value | humanizeDuration }}}}, above "
            f"{cfg.gc_pause_p99_seconds:g}s: the IOLoop serves nothing meanwhile.",
        ),
        Alert(
            "TornadoIOLoopBlocked",
            "warning",
            P99_ABOVE.substitute(
                buckets=m("ioloop_lag_seconds_bucket"),
                window=cfg.ioloop_lag_window,
                threshold=f"{cfg.ioloop_lag_p99_seconds:g}",
            ),
            cfg.ioloop_lag_for,
            "The IOLoop of a Tornado process is blocked.",
            f"The p99 lag of the IOLoop probe of {WHO} over {cfg.ioloop_lag_window} is "
            f"{{{{ $value | humanizeDuration }}}}, above {cfg.ioloop_lag_p99_seconds:g}s: "
            "something runs on the loop without yielding.",
        ),
    ]


def timers_alert(cfg: MixinConfig) -> Alert:
    """TornadoTimersGrowing: timers scheduled on the loop by one callback keep piling up (a
    handler that schedules a timeout it never cancels); a steady PeriodicCallback population
    and timers that come and go keep a flat floor."""
    floor, half, window = timers_windows(cfg)
    timers, minimum = floor_name(cfg, "ioloop_timers"), cfg.handlers_leak_min
    return Alert(
        "TornadoTimersGrowing",
        "warning",
        f"{cfg.metric('ioloop_timers')}\nand "
        + TIMERS_GROW.substitute(floor=timers, half=half, window=window, minimum=minimum),
        cfg.leak_for,
        "Timers scheduled by one callback keep accumulating on a Tornado IOLoop.",
        f"{WHO} has {{{{ $value | humanize }}}} timers of {{{{ $labels.callback }}}} scheduled "
        f"on its IOLoop; their floor (minimum over {floor}) rose by at least {minimum} in each "
        f"half of the last {window}: timeouts scheduled and never cancelled.",
    )


def pool_alerts(cfg: MixinConfig) -> list[Alert]:
    """Object pools: saturated, exhausted (acquirers time out), leaked checkouts."""
    m, window, pool = cfg.metric, cfg.pool_window, "{{ $labels.pool }}"
    return [
        Alert(
            "TornadoPoolSaturated",
            "warning",
            f"{m('pool_in_use')} / {m('pool_capacity')} >= {cfg.pool_saturation_ratio:g}\n"
            f"and {m('pool_capacity')} > 0\n",
            cfg.pool_saturated_for,
            "An object pool of a Tornado process is nearly fully in use.",
            f"Pool {pool} of {WHO} has {{{{ $value | humanizePercentage }}}} of its capacity in "
            f"use, at least {_pct(cfg.pool_saturation_ratio)} for {cfg.pool_saturated_for}.",
        ),
        Alert(
            "TornadoPoolExhausted",
            "critical",
            f"max_over_time({m('pool_waiting')}[{window}]) > 0\n"
            f"and increase({m('pool_timeouts_total')}[{window}]) > 0\n",
            cfg.pool_exhausted_for,
            "Acquirers wait for an exhausted object pool and time out.",
            f"Up to {{{{ $value }}}} acquirers waited for pool {pool} of {WHO} in the last "
            f"{window}, and acquisitions timed out.",
        ),
        Alert(
            "TornadoPoolLeak",
            "critical",
            f"increase({m('pool_leaked_total')}[{window}]) > 0\n",
            cfg.pool_leak_for,
            "Pool objects were garbage-collected while still checked out.",
            f"Objects of pool {pool} of {WHO} were garbage-collected while checked out in the "
            f"last {window}: code acquires without giving back; the exporter logs the "
            "acquisition site.",
        ),
    ]


CENSUS_STALE = Template("time() - $last_success > $after\nunless $census_off\n")
# A census that never succeeded (no timestamp at all) while the exporter counts census errors;
# a disabled census (interval 0) counts none.
CENSUS_NEVER = Template(
    "sum without (collector) (increase($errors[$after])) > 0\n"
    "and on($on) $errors\n"
    "unless on($on) $last_success\n"
    "unless $census_off\n"
)


def exporter_alerts(cfg: MixinConfig) -> list[Alert]:
    """The exporter itself: a stale or never-successful census, a target that is down."""
    m, after = cfg.metric, cfg.census_stale_after
    clauses = {
        "last_success": m("census_last_success_timestamp_seconds"),
        "census_off": f"on({cfg.on}) ({m('census_interval_seconds')} == 0)",
        "errors": m("exporter_errors_total", 'collector="census"'),
        "on": cfg.on,
    }
    summary = "The heap census of a Tornado process is not refreshed."
    return [
        Alert(
            "TornadoCensusStale",
            "warning",
            CENSUS_STALE.substitute(clauses, after=seconds(after)),
            cfg.census_stale_for,
            summary,
            f"The last successful heap census of {WHO} finished "
            f"{{{{ $value | humanizeDuration }}}} ago (limit {after}): object-type alerts and "
            "panels are blind.",
        ),
        Alert(
            "TornadoCensusStale",
            "warning",
            CENSUS_NEVER.substitute(clauses, after=after),
            cfg.census_stale_for,
            summary,
            f"The heap census of {WHO} has never succeeded: it failed {{{{ $value }}}} times in "
            f"the last {after}, so object-type alerts and panels are blind.",
            labels=(("census", "never_succeeded"),),
        ),
        Alert(
            "TornadoMemoryExporterDown",
            "warning",
            f"{cfg.raw('up')} == 0\n"
            f"and on({', '.join(TARGET_LABELS)}) "
            f"last_over_time({m('exporter_info')}[{cfg.exporter_down_lookback}])\n",
            cfg.exporter_down_for,
            "Prometheus cannot scrape a Tornado memory exporter.",
            f"Prometheus has failed to scrape {WHO} for {cfg.exporter_down_for}: memory alerts "
            "for it are blind.",
        ),
    ]


WRITE_BUFFERS = Template(
    "$queued > $high\nor\n$queued and ($queued - $queued offset $window > $growth)\n"
)


def write_buffers_alert(cfg: MixinConfig) -> Alert:
    """TornadoWriteBuffersGrowing: slow consumers. Instant comparisons only (no range window
    whose left edge Prometheus 2 and 3 treat differently); ``for:`` makes them sustained."""
    window, high, growth = (
        cfg.write_buffers_window,
        cfg.write_buffers_high_bytes,
        cfg.write_buffers_growth_bytes,
    )
    return Alert(
        "TornadoWriteBuffersGrowing",
        "warning",
        WRITE_BUFFERS.substitute(
            queued=cfg.metric("iostream_write_buffer_bytes"),
            high=high,
            window=window,
            growth=growth,
        ),
        cfg.write_buffers_for,
        "Data queued to slow clients keeps growing in a Tornado process.",
        f"{WHO} holds {{{{ $value | humanize1024 }}}}B queued in its IOStream write buffers, "
        f"above {_mib(high)} or {_mib(growth)} more than {window} earlier, for "
        f"{cfg.write_buffers_for}: clients that stop reading while the server keeps writing.",
    )


def alerts(cfg: MixinConfig) -> list[Alert]:
    """Every alert of docs/design.md, in runbook order."""
    return [
        *memory_alerts(cfg),
        *object_alerts(cfg),
        *runtime_alerts(cfg),
        timers_alert(cfg),
        *pool_alerts(cfg),
        *exporter_alerts(cfg),
        write_buffers_alert(cfg),
        allocator_retention_alert(cfg),
    ]


def _group(name: str, rules: list[dict[str, Any]], cfg: MixinConfig) -> dict[str, Any]:
    group: dict[str, Any] = {"name": name}
    if cfg.rule_interval:
        group["interval"] = cfg.rule_interval
    group["rules"] = rules
    return group


def build_rules(cfg: MixinConfig) -> dict[str, Any]:
    """The Prometheus rule file (``rule_files:``) as a dict: recording rules, then alerts."""
    return {
        "groups": [
            _group(RECORDING_GROUP, recording_rules(cfg), cfg),
            _group(ALERTING_GROUP, [alert.rule(cfg) for alert in alerts(cfg)], cfg),
        ]
    }


def build_prometheus_rule(
    cfg: MixinConfig, *, name: str = "tornado-memory", labels: dict[str, str] | None = None
) -> dict[str, Any]:
    """The same rules as a prometheus-operator ``PrometheusRule`` (Kubernetes CRD)."""
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {
            "name": name,
            "labels": labels
            if labels is not None
            else {"app.kubernetes.io/name": "tornado-memory-exporter"},
        },
        "spec": build_rules(cfg),
    }
