"""Recording and alerting rules, built from a ``MixinConfig``.

Leak rules never look at a level, and never at a raw derivative (a GC sawtooth flips its sign and
resets ``for:``). They trend the *floor*, ``min_over_time`` over a window longer than the
sawtooth, and require that it grows (``growing``):

- in a process older than floor + trend windows: faster than a fraction of itself per hour over
  the trend window and in both of its halves (a traffic ramp that returns, a one-time step or a
  warm-up that plateaus fails one half), and, once the process is older than a day, above the
  floor of the same time a day earlier (a daily traffic cycle is not a leak);
- in a younger process past its warm-up window (a deploy that leaks from its start): faster
  than a stricter fraction per hour in both halves of a short window.

Series of an instance continue under the same labels after a restart, so every window that could
reach into the previous process is guarded by the process age. Adding an alert is one entry in
``alerts()`` (and its scenario in ``scenarios/build.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .config import LIBRARY_MODULES, MixinConfig, duration, seconds

RULES_FILE = "tornado-memory.rules.yml"
PROMETHEUS_RULE_FILE = "tornado-memory.prometheusrule.yaml"


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


RSS = "process_resident_memory_bytes"
# Labels Prometheus gives every target: a down target has no other labels to join on.
TARGET_LABELS = ("job", "instance")
# Alerts that name a cause, and those that only show its consequences (Alertmanager inhibits
# the second on the same process while the first fires; see alertmanager.py).
ROOT_CAUSES = (
    "TornadoHandlersLeaking",
    "TornadoWatchedObjectGrowing",
    "TornadoPoolLeak",
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


def floor_name(cfg: MixinConfig, metric: str) -> str:
    """Name of the recording rule holding the floor of ``<ns>_<metric>``."""
    return f"instance:{cfg.namespace}_{metric}:floor"


# Handlers alive after their work ended: finished HTTP handlers and closed WebSockets (an open
# WebSocket is a live connection, finished by Tornado at the upgrade: never a leak).
LEAKED_HANDLERS = 'state=~"finished|closed"'


def restart_peak_name(cfg: MixinConfig) -> str:
    """Recording rule: RSS / limit peak around a restart, present only just after one."""
    return f"instance:{cfg.namespace}_process_restarts:peak_memory_ratio"


# metric -> extra matchers restricting what is floored (the census's "other" bucket is no type).
FLOORED = {
    "process_resident_memory_bytes": (),
    "python_allocated_blocks": (),
    "objects": ('type!="other"',),
    "handlers_alive": (LEAKED_HANDLERS,),
    "watched_object_items": (),
}


def recording_rules(cfg: MixinConfig) -> list[dict[str, str]]:
    m, lookback = cfg.metric, cfg.restart_lookback
    return [
        {
            "record": floor_name(cfg, metric),
            "expr": f"min_over_time({m(metric, *matchers)}[{cfg.floor_window}])",
        }
        for metric, matchers in FLOORED.items()
    ] + [
        {
            "record": restart_peak_name(cfg),
            "expr": (
                f"max_over_time({m(RSS)}[{lookback}]) / max_over_time({m('process_memory_limit_bytes')}[{lookback}])\n"
                f"  and changes({m('process_start_time_seconds')}[{lookback}]) > 0\n"
            ),
        }
    ]


def _age(cfg: MixinConfig, op: str, older_than: int) -> str:
    return f"on({cfg.on}) (time() - {cfg.metric('process_start_time_seconds')} {op} {older_than})"


def growing(cfg: MixinConfig, floor: str, *, minimum: int = 0) -> str:
    """PromQL that keeps the series of ``floor`` that grow like a leak (see the module docstring)."""
    f, g = floor, cfg.leak_growth_per_hour
    floor_s, trend_s = seconds(cfg.floor_window), seconds(cfg.trend_window)
    half, trend = duration(trend_s // 2), cfg.trend_window
    half_min = (
        f"{g * trend_s / 2 / 3600 / 2:.6g} * {f}"  # each half grows at half the rate at least
    )
    day_s = seconds(cfg.day_window)
    old = [
        f"deriv({f}[{trend}]) * 3600 > {g:g} * {f}",
        f"{f} - {f} offset {half} > {half_min}",
        f"{f} offset {half} - {f} offset {trend} > {half_min}",
        *([f"{f} - {f} offset {trend} >= {minimum}"] if minimum else []),
        # a daily cycle: compare with the same time a day earlier, once there is one
        f"(\n      {f} - {f} offset {cfg.day_window} > {g * day_s / 3600:.6g} * {f}\n"
        f"      or ({f} unless {f} offset {cfg.day_window})\n"
        f"      or ({f} and {_age(cfg, '<=', day_s + floor_s)})\n    )",
        _age(cfg, ">", floor_s + trend_s),
    ]
    young_s = seconds(cfg.young_trend_window)
    yh, y, gy = duration(young_s // 2), cfg.young_trend_window, cfg.young_growth_per_hour
    young_min = f"{gy * young_s / 2 / 3600 / 2:.6g} * {f}"
    young = [
        f"deriv({f}[{y}]) * 3600 > {gy:g} * {f}",
        f"{f} - {f} offset {yh} > {young_min}",
        f"{f} offset {yh} - {f} offset {y} > {young_min}",
        *([f"{f} - {f} offset {y} >= {minimum}"] if minimum else []),
        _age(cfg, ">", seconds(cfg.warmup_window) + floor_s),
        _age(cfg, "<=", floor_s + trend_s),
    ]
    return (
        "(\n  (\n    "
        + "\n    and ".join(old)
        + "\n  )\n  or\n  (\n    "
        + "\n    and ".join(young)
        + "\n  )\n  )"
    )


def allocator_free(cfg: MixinConfig) -> str:
    """Bytes the allocators hold free, per process: glibc malloc's free heap plus pymalloc's
    free blocks and empty pools, or whichever of the two the exporter serves (pymalloc's come
    from forked censuses, malloc's from glibc only)."""
    by, free = f"sum by ({cfg.on})", 'state="free"'
    malloc = f"{by} ({cfg.metric('malloc_heap_bytes', free)})"
    pymalloc = f"{by} ({cfg.metric('pymalloc_bytes', free)})"
    return f"(({malloc} + {pymalloc}) or {malloc} or {pymalloc})"


def allocator_retention(cfg: MixinConfig) -> Alert:
    """TornadoAllocatorRetention: the RSS floor grows steadily (as for TornadoMemoryLeakSuspected)
    while the Python heap's floor does not, and the floor of the allocators' free bytes grew by
    ``allocator_free_growth_bytes`` over the trend window: memory Python freed, kept by malloc."""
    rss, blocks = (
        floor_name(cfg, "process_resident_memory_bytes"),
        floor_name(cfg, "python_allocated_blocks"),
    )
    free = allocator_free(cfg)
    floor, trend = cfg.floor_window, cfg.trend_window
    who = "{{ $labels.instance }} (job {{ $labels.job }})"
    return Alert(
        "TornadoAllocatorRetention",
        "warning",
        _all(
            cfg.metric(RSS),
            growing(cfg, rss),
            f"on({cfg.on}) deriv({blocks}[{trend}]) * 3600 <= {cfg.leak_growth_per_hour:g} * {blocks}",
            # the free bytes' floor now, above their lowest in the trend window (a young process
            # has less history than the window: its lowest so far counts)
            f"on({cfg.on}) (min_over_time({free}[{floor}:]) - min_over_time({free}[{trend}:]))"
            f" > {cfg.allocator_free_growth_bytes}",
        ),
        cfg.leak_for,
        "Resident memory grows while the Python heap is flat and the allocators keep freed memory.",
        f"The RSS of {who} is {{{{ $value | humanize1024 }}}}B and its floor grew for {trend} while "
        "Python's allocated blocks stayed flat, and the free bytes held by malloc and pymalloc grew "
        f"by more than {cfg.allocator_free_growth_bytes // (1024 * 1024)} MiB: fragmentation, not a "
        "leak of Python objects.",
    )


def _all(*clauses: str) -> str:
    return "\n  and ".join(clauses) + "\n"


def _pct(ratio: float) -> str:
    return f"{ratio * 100:g}%"


def origin(cfg: MixinConfig, expr: str) -> str:
    """``expr`` with an ``origin`` label computed from ``type``: builtin (no dot), library (a
    module of ``library_modules``, or a private one such as ``_asyncio``/``_contextvars``:
    CPython's C internals) or application."""
    modules = "|".join(m.replace(".", "\\\\.") for m in LIBRARY_MODULES)
    libraries = f"({modules}|_[A-Za-z0-9_]*)" if modules else "(_[A-Za-z0-9_]*)"
    out = f'label_replace({expr}, "origin", "{APPLICATION}", "type", ".+")'
    out = f'label_replace({out}, "origin", "library", "type", "{libraries}\\\\..+")'
    return f'label_replace({out}, "origin", "builtin", "type", "[^.]+")'


def alerts(cfg: MixinConfig) -> list[Alert]:
    """Every alert of docs/design.md, in runbook order."""
    m = cfg.metric
    rss, blocks = floor_name(cfg, RSS), floor_name(cfg, "python_allocated_blocks")
    objects, handlers = floor_name(cfg, "objects"), floor_name(cfg, "handlers_alive")
    watched = floor_name(cfg, "watched_object_items")
    limit = m("process_memory_limit_bytes")
    start = m("process_start_time_seconds")
    oldest = f'generation="{cfg.gc_oldest_generation}"'
    growth = (
        f"faster than {_pct(cfg.leak_growth_per_hour)} per hour through both halves of the last "
        f"{cfg.trend_window} (in a process younger than {duration(seconds(cfg.floor_window) + seconds(cfg.trend_window))}: "
        f"{_pct(cfg.young_growth_per_hour)} per hour through the last {cfg.young_trend_window}, after its "
        f"{cfg.warmup_window} warm-up)"
    )
    who = "{{ $labels.instance }} (job {{ $labels.job }})"
    lag = seconds(cfg.floor_window)
    finished = m("handlers_alive", LEAKED_HANDLERS)
    census = m("exporter_errors_total", 'collector="census"')
    census_off = f"on({cfg.on}) ({m('census_interval_seconds')} == 0)"
    out = [
        Alert(
            "TornadoMemoryLeakSuspected",
            "warning",
            f"{m(RSS)}\n  and\n  {growing(cfg, rss)}\n",
            cfg.leak_for,
            "Resident memory of a Tornado process has been growing steadily.",
            f"The RSS of {who} is {{{{ $value | humanize1024 }}}}B and its floor (minimum over "
            f"{cfg.floor_window}) grew {growth}. If the Python heap (allocated blocks) stays flat meanwhile, "
            "this is allocator retention, not leaking Python objects.",
        ),
        Alert(
            "TornadoMemoryNearLimit",
            "warning",
            _all(
                m(RSS),
                f"{rss} > {cfg.near_limit_warning_ratio:g} * {limit}",
                f"predict_linear({rss}[{cfg.trend_window}], {seconds(cfg.near_limit_warning_horizon) + lag}) > {limit}",
                growing(cfg, rss),
            ),
            cfg.near_limit_for,
            "A Tornado process is predicted to reach its memory limit.",
            f"The RSS of {who} is {{{{ $value | humanize1024 }}}}B; its floor grows like a leak, is above "
            f"{_pct(cfg.near_limit_warning_ratio)} of the memory limit and its {cfg.trend_window} trend "
            f"reaches the limit within {cfg.near_limit_warning_horizon}.",
        ),
        Alert(
            "TornadoMemoryNearLimit",
            "critical",
            _all(
                m(RSS),
                f"{rss} > {cfg.near_limit_critical_ratio:g} * {limit}",
                # the floor lags RSS by up to the floor window: predict that much further
                f"predict_linear({rss}[{cfg.near_limit_window}], {seconds(cfg.near_limit_critical_horizon) + lag}) > {limit}",
                f"{rss} - {rss} offset {cfg.near_limit_window} > {cfg.near_limit_min_growth:g} * {limit}",
            ),
            cfg.near_limit_for,
            "A Tornado process is predicted to reach its memory limit soon.",
            f"The RSS of {who} is {{{{ $value | humanize1024 }}}}B; its floor is above "
            f"{_pct(cfg.near_limit_critical_ratio)} of the memory limit, grew by more than "
            f"{_pct(cfg.near_limit_min_growth)} of it in {cfg.near_limit_window} and that trend reaches "
            f"the limit within {cfg.near_limit_critical_horizon}, whatever the process age.",
        ),
        Alert(
            "TornadoMemoryRestartLoop",
            "critical",
            _all(
                f"changes({start}[{cfg.restart_window}]) > 0",
                f"min_over_time({restart_peak_name(cfg)}[{cfg.restart_window}]) > {cfg.restart_near_limit_ratio:g}",
                f"(\n    changes({start}[{cfg.restart_window}]) >= 2\n"
                f"    or {m(RSS)} / {limit} > {cfg.restart_near_limit_ratio:g}\n  )",
            ),
            cfg.restart_loop_for,
            "A Tornado process keeps restarting with its memory at the limit.",
            f"{who} restarted {{{{ $value }}}} time(s) in the last {cfg.restart_window}, each time with its RSS "
            f"above {_pct(cfg.restart_near_limit_ratio)} of the memory limit just before, and restarted "
            "again or is back there: an OOM restart loop (the leak trend alerts never see a process this old).",
        ),
        Alert(
            "TornadoPythonHeapGrowing",
            "warning",
            f"{m('python_allocated_blocks')}\n  and\n  {growing(cfg, blocks)}\n",
            cfg.leak_for,
            "Python's own heap of a Tornado process has been growing steadily.",
            f"Python's allocated blocks of {who} are {{{{ $value | humanize }}}} and their floor grew "
            f"{growth}: live Python objects accumulate. The leak-hunt dashboard shows which types grow.",
        ),
        Alert(
            "TornadoObjectTypeGrowing",
            "warning",
            origin(cfg, m("objects", 'type!="other"')) + "\n  and\n"
            f"  topk by ({cfg.on}, origin) ({OBJECT_TYPE_ALERTS_PER_ORIGIN},\n    "
            + origin(
                cfg,
                f"\n    deriv({objects}[{cfg.trend_window}]) * 3600\n  and\n  "
                f"{growing(cfg, objects, minimum=cfg.leak_min_objects)}\n  ",
            )
            + "\n  )\n",
            cfg.leak_for,
            "Live objects of one type keep accumulating in a Tornado process.",
            f"{who} has {{{{ $value | humanize }}}} live {{{{ $labels.type }}}} objects, the fastest-growing "
            f"{{{{ $labels.origin }}}} type: their floor grew {growth}, by at least {cfg.leak_min_objects}. "
            "Builtin and library types that grow with it are consequences (inhibited in Alertmanager).",
        ),
        Alert(
            "TornadoHandlersLeaking",
            "warning",
            f"{finished}\n  and\n  {growing(cfg, handlers, minimum=cfg.handlers_leak_min)}\n",
            cfg.leak_for,
            "Finished Tornado request handlers are kept alive and accumulating.",
            f"{who} keeps {{{{ $value | humanize }}}} {{{{ $labels.state }}}} {{{{ $labels.handler }}}} handlers "
            f"alive and their floor grew {growth}, by at least {cfg.handlers_leak_min}: "
            "something still references them after their request ended.",
        ),
        Alert(
            "TornadoWatchedObjectGrowing",
            "warning",
            f"{m('watched_object_items')}\n  and\n  {growing(cfg, watched, minimum=cfg.watched_leak_min)}\n",
            cfg.leak_for,
            "A watched cache or registry of a Tornado process grows without bound.",
            f"Watched object {{{{ $labels.name }}}} of {who} holds {{{{ $value | humanize }}}} items "
            f"and their floor grew {growth}, by at least {cfg.watched_leak_min}.",
        ),
        Alert(
            "TornadoGCUncollectable",
            "warning",
            f"sum without (generation) (increase({m('gc_uncollectable_objects_total')}[{cfg.uncollectable_window}])) > 0\n",
            cfg.uncollectable_for,
            "The garbage collector found objects it cannot free.",
            f"The garbage collector of {who} found uncollectable objects in the last "
            f"{cfg.uncollectable_window}; they stay in gc.garbage and are never freed.",
        ),
        Alert(
            "TornadoGCPauseHigh",
            "warning",
            f"histogram_quantile(0.99, rate({m('gc_pause_seconds_bucket', oldest)}[{cfg.gc_pause_window}]))\n"
            f"  > {cfg.gc_pause_p99_seconds:g}\n",
            cfg.gc_pause_for,
            "Full garbage collections pause a Tornado process for long.",
            f"The p99 of full (generation {cfg.gc_oldest_generation}) collection pauses of {who} over "
            f"{cfg.gc_pause_window} is {{{{ $value | humanizeDuration }}}}, above "
            f"{cfg.gc_pause_p99_seconds:g}s: the IOLoop serves nothing meanwhile.",
        ),
        Alert(
            "TornadoIOLoopBlocked",
            "warning",
            f"histogram_quantile(0.99, rate({m('ioloop_lag_seconds_bucket')}[{cfg.ioloop_lag_window}]))\n"
            f"  > {cfg.ioloop_lag_p99_seconds:g}\n",
            cfg.ioloop_lag_for,
            "The IOLoop of a Tornado process is blocked.",
            f"The p99 lag of the IOLoop probe of {who} over {cfg.ioloop_lag_window} is "
            f"{{{{ $value | humanizeDuration }}}}, above {cfg.ioloop_lag_p99_seconds:g}s: "
            "something runs on the loop without yielding.",
        ),
        Alert(
            "TornadoPoolSaturated",
            "warning",
            _all(
                f"{m('pool_in_use')} / {m('pool_capacity')} >= {cfg.pool_saturation_ratio:g}",
                f"{m('pool_capacity')} > 0",
            ),
            cfg.pool_saturated_for,
            "An object pool of a Tornado process is nearly fully in use.",
            f"Pool {{{{ $labels.pool }}}} of {who} has {{{{ $value | humanizePercentage }}}} of its "
            f"capacity in use, at least {_pct(cfg.pool_saturation_ratio)} for {cfg.pool_saturated_for}.",
        ),
        Alert(
            "TornadoPoolExhausted",
            "critical",
            _all(
                f"max_over_time({m('pool_waiting')}[{cfg.pool_window}]) > 0",
                f"increase({m('pool_timeouts_total')}[{cfg.pool_window}]) > 0",
            ),
            cfg.pool_exhausted_for,
            "Acquirers wait for an exhausted object pool and time out.",
            f"Up to {{{{ $value }}}} acquirers waited for pool {{{{ $labels.pool }}}} of {who} in the "
            f"last {cfg.pool_window}, and acquisitions timed out.",
        ),
        Alert(
            "TornadoPoolLeak",
            "critical",
            f"increase({m('pool_leaked_total')}[{cfg.pool_window}]) > 0\n",
            cfg.pool_leak_for,
            "Pool objects were garbage-collected while still checked out.",
            f"Objects of pool {{{{ $labels.pool }}}} of {who} were garbage-collected while checked "
            f"out in the last {cfg.pool_window}: code acquires without giving back; the exporter "
            "logs the acquisition site.",
        ),
        Alert(
            "TornadoCensusStale",
            "warning",
            f"time() - {m('census_last_success_timestamp_seconds')} > {seconds(cfg.census_stale_after)}\n"
            f"  unless {census_off}\n",
            cfg.census_stale_for,
            "The heap census of a Tornado process is not refreshed.",
            f"The last successful heap census of {who} finished {{{{ $value | humanizeDuration }}}} ago "
            f"(limit {cfg.census_stale_after}): object-type alerts and panels are blind.",
        ),
        # Its twin for a census that never succeeded (no timestamp at all) while the exporter is
        # scraped and counts census errors; a disabled census (interval 0) counts none.
        Alert(
            "TornadoCensusStale",
            "warning",
            f"sum without (collector) (increase({census}[{cfg.census_stale_after}])) > 0\n"
            f"  and on({cfg.on}) {census}\n"
            f"  unless on({cfg.on}) {m('census_last_success_timestamp_seconds')}\n"
            f"  unless {census_off}\n",
            cfg.census_stale_for,
            "The heap census of a Tornado process is not refreshed.",
            f"The heap census of {who} has never succeeded: it failed {{{{ $value }}}} times in the last "
            f"{cfg.census_stale_after}, so object-type alerts and panels are blind.",
            labels=(("census", "never_succeeded"),),
        ),
        Alert(
            "TornadoMemoryExporterDown",
            "warning",
            _all(
                f"{cfg.raw('up')} == 0",
                f"on({', '.join(TARGET_LABELS)}) last_over_time({m('exporter_info')}[{cfg.exporter_down_lookback}])",
            ),
            cfg.exporter_down_for,
            "Prometheus cannot scrape a Tornado memory exporter.",
            f"Prometheus has failed to scrape {who} for {cfg.exporter_down_for}: memory alerts "
            "for it are blind.",
        ),
    ]
    out.append(write_buffers_alert(cfg))
    out.append(allocator_retention(cfg))
    return out


def _mib(n: int) -> str:
    return f"{n / (1 << 20):g} MiB"


def write_buffers_alert(cfg: MixinConfig) -> Alert:
    """TornadoWriteBuffersGrowing: slow consumers. Instant comparisons only (no range window
    whose left edge Prometheus 2 and 3 treat differently); ``for:`` makes them sustained."""
    queued = cfg.metric("iostream_write_buffer_bytes")
    window = cfg.write_buffers_window
    return Alert(
        "TornadoWriteBuffersGrowing",
        "warning",
        f"{queued} > {cfg.write_buffers_high_bytes}\n"
        f"  or\n{queued} and ({queued} - {queued} offset {window} > {cfg.write_buffers_growth_bytes})\n",
        cfg.write_buffers_for,
        "Data queued to slow clients keeps growing in a Tornado process.",
        f"{{{{ $labels.instance }}}} (job {{{{ $labels.job }}}}) holds {{{{ $value | humanize1024 }}}}B queued in its "
        f"IOStream write buffers, above {_mib(cfg.write_buffers_high_bytes)} or "
        f"{_mib(cfg.write_buffers_growth_bytes)} more than {window} earlier, for {cfg.write_buffers_for}: "
        "clients that stop reading while the server keeps writing.",
    )


def _group(name: str, rules: list[dict[str, Any]], cfg: MixinConfig) -> dict[str, Any]:
    group: dict[str, Any] = {"name": name}
    if cfg.rule_interval:
        group["interval"] = cfg.rule_interval
    group["rules"] = rules
    return group


RECORDING_GROUP = "tornado-memory.rules"
ALERTING_GROUP = "tornado-memory.alerts"


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
