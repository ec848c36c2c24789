"""promtool unit tests of the generated rules, with their input series generated here.

Every alert gets a scenario whose condition starts holding at a known evaluation (``onset``):
the test asserts silence one step before ``onset + for`` and the exact labels and annotations at
``onset + for``. The traps (``traps.py``: GC sawtooth of several periods and amplitudes, a restart
followed by a warm-up that plateaus, short bursts, growth that follows traffic and returns) must
never fire anything; a slow leak under a long sawtooth must. Times scale with the configured
windows, so the same scenarios test the default and the fast profile.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

from ..config import MixinConfig, duration, seconds
from ..rules import ALERTING_GROUP, RECORDING_GROUP, RULES_FILE, Alert
from .plan import STALE, MiB, Plan, Values, compress, find_alert, group, timed
from .traps import noise_groups

# Two files, each with its own evaluation interval: the leak scenarios span many hours and need
# only the leak windows' resolution; the other alerts need a step dividing every `for:`.
LEAK_TEST_FILE = "tornado-memory.leaks.test.yml"
TEST_FILE = "tornado-memory.rules.test.yml"
_LEAK_DURATIONS = ("floor_window", "leak_for", "near_limit_for")


# --- growth alerts: a clean linear leak from process start; the age guard is the last
# --- condition to become true, so the onset is the first evaluation after `plan.age`.

def _leak_rate(plan: Plan, base: float, minimum: int = 0) -> float:
    """Growth per step that beats the relative threshold (with margin) and ``minimum``."""
    per_hour = 3 * plan.cfg.leak_growth_per_hour * base
    rate = math.ceil(per_hour * plan.step / 3600)
    over_trend = plan.trend // plan.step
    rate = max(rate, math.ceil(2 * minimum / over_trend), 1)
    end = plan.n(plan.age + seconds(plan.cfg.leak_for)) + 2
    if rate * 3600 / plan.step <= 1.5 * plan.cfg.leak_growth_per_hour * (base + rate * end):
        raise ValueError(
            f"leak_growth_per_hour={plan.cfg.leak_growth_per_hour!r} is too high to test with "
            f"trend_window={plan.cfg.trend_window!r}"
        )
    return rate


def _growth_group(plan: Plan, title: str, alert_name: str, metric: str, base: float,
                  labels: dict[str, str], others: list[tuple[dict[str, str], bool]],
                  minimum: int = 0, silent: Iterable[str] = (), extra: list[dict[str, str]] = ()) -> dict[str, Any]:
    cfg = plan.cfg
    alert = find_alert(cfg, alert_name)
    onset = plan.age + plan.step
    end = onset + seconds(alert.for_) + plan.step
    rate = _leak_rate(plan, base, minimum)
    series = [plan.series("process_start_time_seconds", plan.const(0, end)),
              plan.series(metric, plan.ramp(base, rate, end), **labels)]
    for other_labels, grows in others:  # decoys the rule must leave alone
        series.append(plan.series(metric, plan.ramp(base, rate if grows else 0, end), **other_labels))
    value = base + rate * plan.n(onset + seconds(alert.for_))
    tests = timed(plan, alert_name, onset, [(alert, {**plan.labels, **labels}, value)], silent)
    return group(plan, title, series + list(extra), tests)


def _allocator_groups(plan: Plan) -> list[dict[str, Any]]:
    """TornadoAllocatorRetention fires when the RSS floor grows, the Python heap is flat and
    the allocators' free bytes grow (glibc's here, pymalloc's absent, as in inloop mode); with
    the same RSS and heap but flat free bytes it stays silent (TornadoMemoryLeakSuspected
    alone fires: a native leak, not retention)."""
    cfg = plan.cfg
    end = plan.age + plan.step + seconds(cfg.leak_for) + plan.step
    # Free bytes grow by twice the threshold over one trend window.
    per_step = math.ceil(2 * cfg.allocator_free_growth_bytes * plan.step / plan.trend)
    blocks = plan.series("python_allocated_blocks", plan.const(2_000_000, end))
    growing_free = plan.series("malloc_heap_bytes", plan.ramp(8 * MiB, per_step, end), state="free")
    flat_free = plan.series("malloc_heap_bytes", plan.const(8 * MiB, end), state="free")
    in_use = plan.series("malloc_heap_bytes", plan.const(64 * MiB, end), state="in_use")
    retention = _growth_group(
        plan, "allocator retention: RSS grows, Python heap flat, malloc's free bytes grow",
        "TornadoAllocatorRetention", "process_resident_memory_bytes", 256 * MiB, {}, [],
        silent=["TornadoPythonHeapGrowing"], extra=[blocks, growing_free, in_use],
    )
    native = _growth_group(
        plan, "native leak: RSS grows, Python heap and free bytes flat (no allocator retention)",
        "TornadoMemoryLeakSuspected", "process_resident_memory_bytes", 256 * MiB, {}, [],
        silent=["TornadoAllocatorRetention", "TornadoPythonHeapGrowing"], extra=[blocks, flat_free, in_use],
    )
    return [retention, native]


def _limit_groups(plan: Plan) -> list[dict[str, Any]]:
    cfg = plan.cfg
    limit = 4096 * MiB
    onset = plan.age + plan.step
    fire_at = onset + seconds(cfg.near_limit_for)
    groups = []
    for title, floor_ratio, horizon, severities in (
        ("near limit: warning twin only",
         (cfg.near_limit_warning_ratio + cfg.near_limit_critical_ratio) / 2,
         seconds(cfg.near_limit_warning_horizon), ["warning"]),
        ("near limit: both twins", (cfg.near_limit_critical_ratio + 1) / 2,
         seconds(cfg.near_limit_critical_horizon), ["warning", "critical"]),
    ):
        # Reach the limit within two thirds of the horizon from the onset's floor.
        per_second = (1 - floor_ratio) * limit / (horizon * 2 / 3)
        rate = math.ceil(per_second * plan.step)
        floor_at_onset = floor_ratio * limit
        base = math.floor(floor_at_onset - rate * plan.n(onset - plan.floor))
        end = fire_at + plan.step
        values = plan.ramp(base, rate, end)
        if base <= 0 or max(values) >= limit * min(1.0, floor_ratio + 0.09):
            raise ValueError(f"near_limit windows of {cfg!r} leave no room for a test scenario")
        series = [
            plan.series("process_start_time_seconds", plan.const(0, end)),
            plan.series("process_memory_limit_bytes", plan.const(limit, end)),
            plan.series("process_resident_memory_bytes", values),
        ]
        value = base + rate * plan.n(fire_at)
        fires = [(find_alert(cfg, "TornadoMemoryNearLimit", s), plan.labels, value) for s in severities]
        groups.append(group(plan, title, series, timed(plan, "TornadoMemoryNearLimit", onset, fires)))
    return groups


# --- the other alerts: a step change at `onset` --------------------------------------------

def _step_groups(plan: Plan) -> list[dict[str, Any]]:
    cfg, p = plan.cfg, plan
    groups = []

    def at(onset: int, alert: Alert, end_extra: int = 0) -> tuple[int, Callable[[float, float], Values]]:
        end = onset + seconds(alert.for_) + p.step + end_extra

        def switch(before: float, after: float, per_step: float = 0) -> Values:
            return [before if i < p.n(onset) else after + per_step * (i - p.n(onset)) for i in range(p.n(end) + 1)]
        return end, switch  # type: ignore[return-value]

    onset = 4 * p.step
    a = find_alert(cfg, "TornadoGCUncollectable")
    end, switch = at(onset, a)
    series = [p.series("gc_uncollectable_objects_total", switch(0, 0), generation=g) for g in ("0", "1")]
    series.append(p.series("gc_uncollectable_objects_total", switch(0, 3), generation="2"))
    groups.append(group(p, "gc uncollectable", series, timed(p, a.name, onset, [(a, p.labels, 0)])))

    for title, alert_name, metric, threshold, extra in (
        ("gc pause", "TornadoGCPauseHigh", "gc_pause_seconds_bucket", cfg.gc_pause_p99_seconds,
         {"generation": cfg.gc_oldest_generation}),
        ("ioloop lag", "TornadoIOLoopBlocked", "ioloop_lag_seconds_bucket", cfg.ioloop_lag_p99_seconds, {}),
    ):
        a = find_alert(cfg, alert_name)
        end, switch = at(onset, a)
        # Every observation from the onset falls between `threshold` and 10x it.
        buckets = {f"{threshold:g}": 0, f"{10 * threshold:g}": 2, "+Inf": 2}
        series = [p.series(metric, switch(0, per_step, per_step), le=le, **extra) for le, per_step in buckets.items()]
        p99 = threshold + 9 * threshold * 0.99
        if alert_name == "TornadoGCPauseHigh":  # a younger generation's long pauses are not full ones
            series.append(p.series(metric, switch(0, 2, 2), le="+Inf", generation="0"))
            series.append(p.series(metric, switch(0, 0, 0), le=f"{threshold:g}", generation="0"))
        groups.append(group(p, title, series, timed(p, alert_name, onset, [(a, {**p.labels, **extra}, p99)])))

    pool = {"pool": "db"}
    a = find_alert(cfg, "TornadoPoolSaturated")
    end, switch = at(onset, a)
    series = [p.series("pool_capacity", switch(10, 10), **pool), p.series("pool_in_use", switch(2, 10), **pool),
              p.series("pool_capacity", switch(0, 0), pool="empty"), p.series("pool_in_use", switch(0, 0), pool="empty")]
    groups.append(group(p, "pool saturated", series, timed(p, a.name, onset, [(a, {**p.labels, **pool}, 1.0)])))

    a = find_alert(cfg, "TornadoPoolExhausted")
    end, switch = at(onset, a)
    series = [p.series("pool_waiting", switch(0, 3), **pool), p.series("pool_timeouts_total", switch(0, 1, 1), **pool),
              p.series("pool_waiting", switch(0, 2), pool="busy"),  # waiting but never timing out
              p.series("pool_timeouts_total", switch(0, 0), pool="busy")]
    groups.append(group(p, "pool exhausted", series, timed(p, a.name, onset, [(a, {**p.labels, **pool}, 3)])))

    a = find_alert(cfg, "TornadoPoolLeak")
    end, switch = at(onset, a)
    series = [p.series("pool_leaked_total", switch(0, 1), **pool), p.series("pool_leaked_total", switch(2, 2), pool="old")]
    groups.append(group(p, "pool leak", series, timed(p, a.name, onset, [(a, {**p.labels, **pool}, 0)])))

    a = find_alert(cfg, "TornadoCensusStale")
    stale_after = seconds(cfg.census_stale_after)
    frozen = 4 * p.step  # the census stops refreshing here
    onset = frozen + stale_after + p.step
    end = onset + seconds(a.for_) + p.step
    stamps = [min(i * p.step, frozen) for i in range(p.n(end) + 1)]
    series = [p.series("census_last_success_timestamp_seconds", stamps)]
    fire_at = onset + seconds(a.for_)
    groups.append(group(p, "census stale", series, timed(p, a.name, onset, [(a, p.labels, fire_at - frozen)])))

    a = find_alert(cfg, "TornadoMemoryExporterDown")
    onset = 4 * p.step
    end = onset + seconds(a.for_) + p.step
    up = [1 if i < p.n(onset) else 0 for i in range(p.n(end) + 1)]
    # the failed scrape writes a staleness marker, as in Prometheus; then no samples at all
    info = [1 if i < p.n(onset) else STALE if i == p.n(onset) else None for i in range(p.n(end) + 1)]
    series = [
        p.series("up", up),
        {"series": 'up{job="unrelated",instance="db:5432"}', "values": compress([0] * len(up))},
        p.series("exporter_info", info, version="1.0.0", python="3.11.2", tornado="6.4"),
    ]
    groups.append(group(p, "exporter down (an unrelated down target stays silent)", series,
                         timed(p, a.name, onset, [(a, p.labels, 0)])))
    return groups


# --- slow consumers: queued bytes above the threshold, or a queue that never drains --------

def _write_buffer_groups(plan: Plan) -> list[dict[str, Any]]:
    cfg, p = plan.cfg, plan
    a = find_alert(cfg, "TornadoWriteBuffersGrowing")
    metric, high, growth = "iostream_write_buffer_bytes", cfg.write_buffers_high_bytes, cfg.write_buffers_growth_bytes
    window, hold = seconds(cfg.write_buffers_window), seconds(a.for_)
    onset = 4 * p.step
    end = onset + hold + p.step
    above = [0 if i < p.n(onset) else 2 * high for i in range(p.n(end) + 1)]
    # Broadcast bursts above the threshold that drain before `for:` ends, on another instance.
    burst = max(1, p.n(hold) // 2)
    bursts = [0 if i % (burst + 1) == burst else 2 * high for i in range(p.n(end) + 1)]
    groups = [group(p, "slow consumer above the threshold (bursts that drain stay silent)",
                    [p.series(metric, above), p.series(metric, bursts, instance="app:8889")],
                    timed(p, a.name, onset, [(a, p.labels, 2 * high)]))]
    # Below the threshold, growing by 1.5x the growth margin per window from the start: the
    # comparison with `window` earlier exists from `window` on (nothing before the first sample).
    rate = math.ceil(1.5 * growth / p.n(window))
    end = window + hold + p.step
    fire_value = rate * p.n(window + hold)
    if fire_value >= high:
        raise ValueError(f"write_buffers_growth_bytes={growth!r} is too close to write_buffers_high_bytes={high!r} "
                         "to test the growth branch alone")
    groups.append(group(p, "a queue below the threshold that never drains",
                        [p.series(metric, p.ramp(0, rate, end))],
                        timed(p, a.name, window, [(a, p.labels, fire_value)])))
    return groups


def _file(plan: Plan, rules_file: str, groups: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "rule_files": [rules_file],
        "evaluation_interval": duration(plan.step),
        "group_eval_order": [RECORDING_GROUP, ALERTING_GROUP],
        "tests": groups,
    }


def build_rule_tests(cfg: MixinConfig, rules_file: str = RULES_FILE) -> dict[str, dict[str, Any]]:
    """File name -> promtool test file (``promtool test rules``) of ``build_rules(cfg)`` saved
    as ``rules_file`` next to it. ``ValueError`` when the config leaves no room for a scenario."""
    plan = Plan.of(cfg, _LEAK_DURATIONS)
    leaks = [
        _growth_group(plan, "RSS leak with a flat Python heap: allocator retention or native leak",
                      "TornadoMemoryLeakSuspected", "process_resident_memory_bytes", 256 * MiB, {}, [],
                      silent=["TornadoPythonHeapGrowing", "TornadoMemoryNearLimit"],
                      extra=[plan.series("python_allocated_blocks", plan.const(2_000_000, plan.age * 2))]),
        _growth_group(plan, "Python heap leak", "TornadoPythonHeapGrowing", "python_allocated_blocks",
                      2_000_000, {}, []),
        _growth_group(plan, "object type leak (type=other and flat types stay silent)",
                      "TornadoObjectTypeGrowing", "objects", 20_000, {"type": "myapp.Session"},
                      [({"type": "other"}, True), ({"type": "dict"}, False)], minimum=cfg.leak_min_objects),
        _growth_group(plan, "finished handlers kept alive (active ones may grow)", "TornadoHandlersLeaking",
                      "handlers_alive", 10, {"handler": "myapp.ChatHandler", "state": "finished"},
                      [({"handler": "myapp.ChatHandler", "state": "active"}, True)], minimum=cfg.handlers_leak_min),
        _growth_group(plan, "closed WebSockets kept alive (open ones growing as steadily stay silent)",
                      "TornadoHandlersLeaking", "handlers_alive", 10, {"handler": "myapp.ChatSocket", "state": "closed"},
                      [({"handler": "myapp.ChatSocket", "state": "open"}, True)], minimum=cfg.handlers_leak_min),
        _growth_group(plan, "watched cache grows without bound", "TornadoWatchedObjectGrowing",
                      "watched_object_items", 5_000, {"name": "sessions"}, [({"name": "config"}, False)],
                      minimum=cfg.leak_min_objects),
        *_limit_groups(plan),
        *noise_groups(plan),
        *_allocator_groups(plan),
    ]
    others = Plan.of(cfg)
    return {
        LEAK_TEST_FILE: _file(plan, rules_file, leaks),
        TEST_FILE: _file(others, rules_file, _step_groups(others) + _write_buffer_groups(others)),
    }
