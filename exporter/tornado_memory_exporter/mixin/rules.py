"""Recording and alerting rules, built from a ``MixinConfig``.

Leak rules never look at a level, and never at a raw derivative (a GC sawtooth flips its sign and
resets ``for:``). They trend the *floor*, ``min_over_time`` over a window longer than the
sawtooth, and require all of: the floor grows faster than a fraction of itself per hour, it grew
in both halves of the trend window (a traffic ramp that returns, or a warm-up that plateaus,
fails one half), and the process is older than floor + trend windows (a restart resets it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .config import MixinConfig, duration, seconds

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

    def rule(self, cfg: MixinConfig) -> dict[str, Any]:
        return {
            "alert": self.name,
            "expr": self.expr,
            "for": self.for_,
            "labels": {"severity": self.severity},
            "annotations": {
                "summary": self.summary,
                "description": self.description,
                "runbook_url": cfg.runbook(self.name),
            },
        }


RSS = "process_resident_memory_bytes"
# Labels Prometheus gives every target: a down target has no other labels to join on.
TARGET_LABELS = ("job", "instance")


def floor_name(cfg: MixinConfig, metric: str) -> str:
    """Name of the recording rule holding the floor of ``<ns>_<metric>``."""
    return f"instance:{cfg.namespace}_{metric}:floor"


# Handlers alive after their work ended: finished HTTP handlers and closed WebSockets (an open
# WebSocket is a live connection, finished by Tornado at the upgrade: never a leak).
LEAKED_HANDLERS = 'state=~"finished|closed"'

# metric -> extra matchers restricting what is floored (the census's "other" bucket is no type).
FLOORED = {
    "process_resident_memory_bytes": (),
    "python_allocated_blocks": (),
    "objects": ('type!="other"',),
    "handlers_alive": (LEAKED_HANDLERS,),
    "watched_object_items": (),
}


def recording_rules(cfg: MixinConfig) -> list[dict[str, str]]:
    return [
        {
            "record": floor_name(cfg, metric),
            "expr": f"min_over_time({cfg.metric(metric, *matchers)}[{cfg.floor_window}])",
        }
        for metric, matchers in FLOORED.items()
    ]


def _age_guard(cfg: MixinConfig) -> str:
    """True for processes older than floor + trend windows: every sample the trend reads
    comes from the current process, so a restart and its warm-up are never a trend."""
    older_than = seconds(cfg.floor_window) + seconds(cfg.trend_window)
    return f"on({cfg.on}) (time() - {cfg.metric('process_start_time_seconds')} > {older_than})"


def _sustained(cfg: MixinConfig, floor: str, *, minimum: int | None = None, relative: bool = True) -> list[str]:
    """Clauses (to be joined with ``and``) saying that ``floor`` grows steadily."""
    half = duration(seconds(cfg.trend_window) // 2)
    trend = cfg.trend_window
    clauses = []
    if relative:
        clauses.append(f"deriv({floor}[{trend}]) * 3600 > {cfg.leak_growth_per_hour:g} * {floor}")
    clauses += [
        f"{floor} - {floor} offset {half} > 0",
        f"{floor} offset {half} - {floor} offset {trend} > 0",
    ]
    if minimum:
        clauses.append(f"{floor} - {floor} offset {trend} >= {minimum}")
    clauses.append(_age_guard(cfg))
    return clauses


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
    rss, blocks = floor_name(cfg, "process_resident_memory_bytes"), floor_name(cfg, "python_allocated_blocks")
    free = allocator_free(cfg)
    floor, trend = cfg.floor_window, cfg.trend_window
    who = "{{ $labels.instance }} (job {{ $labels.job }})"
    return Alert(
        "TornadoAllocatorRetention", "warning",
        _all(
            cfg.metric(RSS),
            *_sustained(cfg, rss),
            f"on({cfg.on}) deriv({blocks}[{trend}]) * 3600 <= {cfg.leak_growth_per_hour:g} * {blocks}",
            f"on({cfg.on}) (min_over_time({free}[{floor}:]) - min_over_time({free}[{floor}:] offset {trend}))"
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


def alerts(cfg: MixinConfig) -> list[Alert]:
    """Every alert of docs/design.md, in runbook order."""
    m = cfg.metric
    rss, blocks = floor_name(cfg, "process_resident_memory_bytes"), floor_name(cfg, "python_allocated_blocks")
    objects, handlers = floor_name(cfg, "objects"), floor_name(cfg, "handlers_alive")
    watched = floor_name(cfg, "watched_object_items")
    limit = m("process_memory_limit_bytes")
    oldest = f'generation="{cfg.gc_oldest_generation}"'
    growth = f"faster than {_pct(cfg.leak_growth_per_hour)} per hour through both halves of the last {cfg.trend_window}"
    who = "{{ $labels.instance }} (job {{ $labels.job }})"
    out = [
        Alert(
            "TornadoMemoryLeakSuspected", "warning", _all(m(RSS), *_sustained(cfg, rss)), cfg.leak_for,
            "Resident memory of a Tornado process has been growing steadily.",
            f"The RSS of {who} is {{{{ $value | humanize1024 }}}}B and its floor (minimum over "
            f"{cfg.floor_window}) grew {growth}. If the Python heap (allocated blocks) stays flat meanwhile, "
            "this is allocator retention, not leaking Python objects.",
        ),
    ]
    for severity, ratio, horizon in (
        ("warning", cfg.near_limit_warning_ratio, cfg.near_limit_warning_horizon),
        ("critical", cfg.near_limit_critical_ratio, cfg.near_limit_critical_horizon),
    ):
        out.append(Alert(
            "TornadoMemoryNearLimit", severity,
            _all(
                m(RSS),
                f"{rss} > {ratio:g} * {limit}",
                f"predict_linear({rss}[{cfg.trend_window}], {seconds(horizon)}) > {limit}",
                *_sustained(cfg, rss, relative=False),
            ),
            cfg.near_limit_for,
            "A Tornado process is predicted to reach its memory limit.",
            f"The RSS of {who} is {{{{ $value | humanize1024 }}}}B; its floor is above {_pct(ratio)} "
            f"of the memory limit and its {cfg.trend_window} trend reaches the limit within {horizon}.",
        ))
    out += [
        Alert(
            "TornadoPythonHeapGrowing", "warning", _all(m("python_allocated_blocks"), *_sustained(cfg, blocks)), cfg.leak_for,
            "Python's own heap of a Tornado process has been growing steadily.",
            f"Python's allocated blocks of {who} are {{{{ $value | humanize }}}} and their floor grew "
            f"{growth}: live Python objects accumulate. The leak-hunt dashboard shows which types grow.",
        ),
        Alert(
            "TornadoObjectTypeGrowing", "warning",
            _all(m("objects", 'type!="other"'), *_sustained(cfg, objects, minimum=cfg.leak_min_objects)), cfg.leak_for,
            "Live objects of one type keep accumulating in a Tornado process.",
            f"{who} has {{{{ $value | humanize }}}} live {{{{ $labels.type }}}} objects and their "
            f"floor grew {growth}, by at least {cfg.leak_min_objects}.",
        ),
        Alert(
            "TornadoHandlersLeaking", "warning",
            _all(m("handlers_alive", LEAKED_HANDLERS), *_sustained(cfg, handlers, minimum=cfg.handlers_leak_min)), cfg.leak_for,
            "Finished Tornado request handlers are kept alive and accumulating.",
            f"{who} keeps {{{{ $value | humanize }}}} {{{{ $labels.state }}}} {{{{ $labels.handler }}}} handlers "
            f"alive and their floor grew {growth}, by at least {cfg.handlers_leak_min}: "
            "something still references them after their request ended.",
        ),
        Alert(
            "TornadoWatchedObjectGrowing", "warning",
            _all(m("watched_object_items"), *_sustained(cfg, watched, minimum=cfg.leak_min_objects)), cfg.leak_for,
            "A watched cache or registry of a Tornado process grows without bound.",
            f"Watched object {{{{ $labels.name }}}} of {who} holds {{{{ $value | humanize }}}} items "
            f"and their floor grew {growth}, by at least {cfg.leak_min_objects}.",
        ),
        Alert(
            "TornadoGCUncollectable", "warning",
            f"sum without (generation) (increase({m('gc_uncollectable_objects_total')}[{cfg.uncollectable_window}])) > 0\n",
            cfg.uncollectable_for,
            "The garbage collector found objects it cannot free.",
            f"The garbage collector of {who} found uncollectable objects in the last "
            f"{cfg.uncollectable_window}; they stay in gc.garbage and are never freed.",
        ),
        Alert(
            "TornadoGCPauseHigh", "warning",
            f"histogram_quantile(0.99, rate({m('gc_pause_seconds_bucket', oldest)}[{cfg.gc_pause_window}]))\n"
            f"  > {cfg.gc_pause_p99_seconds:g}\n",
            cfg.gc_pause_for,
            "Full garbage collections pause a Tornado process for long.",
            f"The p99 of full (generation {cfg.gc_oldest_generation}) collection pauses of {who} over "
            f"{cfg.gc_pause_window} is {{{{ $value | humanizeDuration }}}}, above "
            f"{cfg.gc_pause_p99_seconds:g}s: the IOLoop serves nothing meanwhile.",
        ),
        Alert(
            "TornadoIOLoopBlocked", "warning",
            f"histogram_quantile(0.99, rate({m('ioloop_lag_seconds_bucket')}[{cfg.ioloop_lag_window}]))\n"
            f"  > {cfg.ioloop_lag_p99_seconds:g}\n",
            cfg.ioloop_lag_for,
            "The IOLoop of a Tornado process is blocked.",
            f"The p99 lag of the IOLoop probe of {who} over {cfg.ioloop_lag_window} is "
            f"{{{{ $value | humanizeDuration }}}}, above {cfg.ioloop_lag_p99_seconds:g}s: "
            "something runs on the loop without yielding.",
        ),
        Alert(
            "TornadoPoolSaturated", "warning",
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
            "TornadoPoolExhausted", "critical",
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
            "TornadoPoolLeak", "critical",
            f"increase({m('pool_leaked_total')}[{cfg.pool_window}]) > 0\n",
            cfg.pool_leak_for,
            "Pool objects were garbage-collected while still checked out.",
            f"Objects of pool {{{{ $labels.pool }}}} of {who} were garbage-collected while checked "
            f"out in the last {cfg.pool_window}: code acquires without giving back; the exporter "
            "logs the acquisition site.",
        ),
        Alert(
            "TornadoCensusStale", "warning",
            f"time() - {m('census_last_success_timestamp_seconds')} > {seconds(cfg.census_stale_after)}\n",
            cfg.census_stale_for,
            "The heap census of a Tornado process is not refreshed.",
            f"The last successful heap census of {who} finished {{{{ $value | humanizeDuration }}}} ago "
            f"(limit {cfg.census_stale_after}): object-type alerts and panels are blind.",
        ),
        Alert(
            "TornadoMemoryExporterDown", "warning",
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
        "TornadoWriteBuffersGrowing", "warning",
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
    return {"groups": [
        _group(RECORDING_GROUP, recording_rules(cfg), cfg),
        _group(ALERTING_GROUP, [alert.rule(cfg) for alert in alerts(cfg)], cfg),
    ]}


def build_prometheus_rule(cfg: MixinConfig, *, name: str = "tornado-memory", labels: dict[str, str] | None = None) -> dict[str, Any]:
    """The same rules as a prometheus-operator ``PrometheusRule`` (Kubernetes CRD)."""
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {
            "name": name,
            "labels": labels if labels is not None else {"app.kubernetes.io/name": "tornado-memory-exporter"},
        },
        "spec": build_rules(cfg),
    }
