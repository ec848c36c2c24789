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
from dataclasses import replace
from typing import Any

from ..config import MixinConfig, duration, seconds
from ..rules import ALERTING_GROUP, RECORDING_GROUP, RULES_FILE, Alert
from .plan import (
    STALE,
    MiB,
    Plan,
    Values,
    compress,
    expected,
    find_alert,
    group,
    timed,
)
from .reachable import reachable_handlers_groups, reachable_objects_groups, slow_reachable_groups
from .traps import long_groups, never_fires, noise_groups, sawtooth

# Two files, each with its own evaluation interval: the leak scenarios span many hours and need
# only the leak windows' resolution; the other alerts need a step dividing every `for:`.
LEAK_TEST_FILE = "tornado-memory.leaks.test.yml"
TEST_FILE = "tornado-memory.rules.test.yml"
TRAPS_TEST_FILE = "tornado-memory.traps.test.yml"  # the shapes that must stay silent
# Scenarios of days (daily traffic, a staircase), evaluated at a third of the leak resolution.
LONG_TEST_FILE = "tornado-memory.days.test.yml"
_LEAK_DURATIONS = (
    "floor_window",
    "leak_for",
    "near_limit_for",
    "young_trend_window",
    "warmup_window",
    "near_limit_window",
    "restart_loop_for",
    "restart_lookback",
)


# --- growth alerts: a linear leak from process start (a bad deploy) at 10% of its starting
# --- value per hour; the warm-up guard is the last condition to become true, so the onset is
# --- the first evaluation after `warmup + floor` windows.


def _leak_rate(plan: Plan, base: float, minimum: int = 0) -> float:
    """Growth per step of a leak from process start: 10% of ``base`` per (profile) hour, or more
    when the config's young-process threshold needs it (half again its rate at the onset), and
    at least twice ``minimum`` per young window; ``ValueError`` when no rate can be detected."""
    cfg = plan.cfg
    young = seconds(cfg.young_trend_window)
    margin, gy = 1.5, cfg.young_growth_per_hour
    denominator = 1 - margin * gy * (_young_onset(plan) - plan.floor) / 3600
    if denominator <= 0.1 or _young_onset(plan) > plan.age:
        raise ValueError(
            f"leak_growth_per_hour={cfg.leak_growth_per_hour!r} or "
            f"warmup_window={cfg.warmup_window!r} leave a leak from process "
            f"start undetected before trend_window={cfg.trend_window!r} takes over"
        )
    per_hour = max(0.1 * base * 3600 / plan.hour, margin * gy * base / denominator)
    return max(
        math.ceil(per_hour * plan.step / 3600), math.ceil(2 * minimum * plan.step / young), 1
    )


def _young_onset(plan: Plan) -> int:
    """First evaluation at which a process started at 0 is past its warm-up guard."""
    guard = seconds(plan.cfg.warmup_window) + plan.floor
    return -(-guard // plan.step) * plan.step


def _growth_group(
    plan: Plan,
    title: str,
    alert_name: str,
    metric: str,
    base: float,
    labels: dict[str, str],
    others: list[tuple[dict[str, str], bool]],
    minimum: int = 0,
    silent: Iterable[str] = (),
    extra: Iterable[dict[str, str]] = (),
    fired: dict[str, str] | None = None,
    start_labels: Iterable[dict[str, str]] = ({},),
) -> dict[str, Any]:
    cfg = plan.cfg
    alert = find_alert(cfg, alert_name)
    onset = _young_onset(plan)
    end = onset + seconds(alert.for_) + plan.step
    rate = _leak_rate(plan, base, minimum)
    series = [
        plan.series("process_start_time_seconds", plan.const(0, end), **sl) for sl in start_labels
    ]
    series.append(plan.series(metric, plan.ramp(base, rate, end), **labels))
    for other_labels, grows in others:  # decoys the rule must leave alone
        series.append(
            plan.series(metric, plan.ramp(base, rate if grows else 0, end), **other_labels)
        )
    value = base + rate * plan.n(onset + seconds(alert.for_))
    shown = {**plan.labels, **labels, **(fired or {})}
    tests = timed(plan, alert_name, onset, [(alert, shown, value)], silent)
    return group(plan, title, series + list(extra), tests)


# GC sawtooth periods of the bad-deploy scenarios, in minutes of a one-hour floor window.
SAWTOOTH_MINUTES = (5, 10, 20, 30, 45, 60)


def _sawtooth_deploy_groups(plan: Plan) -> list[dict[str, Any]]:
    """A bad deploy leaking 10% of its starting RSS and heap per hour from process start under a
    GC sawtooth (a fifth of the base, a third of a period out of phase) fires both trend alerts
    by warm-up + floor + ``for:``, whatever the period up to the floor window."""
    cfg = plan.cfg
    onset = _young_onset(plan)
    groups = []
    for minutes in SAWTOOTH_MINUTES:
        period = max(2, plan.n(plan.floor * minutes // 60))
        tests, series = [], [plan.series("process_start_time_seconds", plan.const(0, plan.age))]
        for name, metric, base in (
            ("TornadoMemoryLeakSuspected", "process_resident_memory_bytes", 256 * MiB),
            ("TornadoPythonHeapGrowing", "python_allocated_blocks", 2_000_000),
        ):
            alert = find_alert(cfg, name)
            end = onset + seconds(alert.for_) + plan.step
            rate, rise = _leak_rate(plan, base), base // 5 // period
            values = [
                base + rate * i + rise * ((i + period // 3) % period)
                for i in range(plan.n(end) + 1)
            ]
            series.append(plan.series(metric, values))
            fire_at = onset + seconds(alert.for_)
            tests += timed(plan, name, onset, [(alert, plan.labels, values[plan.n(fire_at)])])
        title = (
            f"bad deploy leaking 10%/h from process start under a "
            f"{duration(period * plan.step)} GC sawtooth"
        )
        groups.append(group(plan, title, series, tests))
    return groups


def _allocator_groups(plan: Plan) -> list[dict[str, Any]]:
    """TornadoAllocatorRetention fires when the RSS floor grows, the Python heap is flat and
    the allocators' free bytes grow (glibc's here, pymalloc's absent, as in inloop mode); with
    the same RSS and heap but flat free bytes it stays silent (TornadoMemoryLeakSuspected
    alone fires: a native leak, not retention)."""
    cfg = plan.cfg
    end = plan.age + plan.step + seconds(cfg.leak_for) + plan.step
    # Free bytes grow by four times the threshold over one trend window: a young process is
    # judged before a whole window has passed, on its floor (which lags by the floor window).
    per_step = math.ceil(4 * cfg.allocator_free_growth_bytes * plan.step / plan.trend)
    blocks = plan.series("python_allocated_blocks", plan.const(2_000_000, end))
    growing_free = plan.series("malloc_heap_bytes", plan.ramp(8 * MiB, per_step, end), state="free")
    flat_free = plan.series("malloc_heap_bytes", plan.const(8 * MiB, end), state="free")
    in_use = plan.series("malloc_heap_bytes", plan.const(64 * MiB, end), state="in_use")
    retention = _growth_group(
        plan,
        "allocator retention: RSS grows, Python heap flat, malloc's free bytes grow",
        "TornadoAllocatorRetention",
        "process_resident_memory_bytes",
        256 * MiB,
        {},
        [],
        silent=["TornadoPythonHeapGrowing"],
        extra=[blocks, growing_free, in_use],
    )
    native = _growth_group(
        plan,
        "native leak: RSS grows, Python heap and free bytes flat (no allocator retention)",
        "TornadoMemoryLeakSuspected",
        "process_resident_memory_bytes",
        256 * MiB,
        {},
        [],
        silent=["TornadoAllocatorRetention", "TornadoPythonHeapGrowing"],
        extra=[blocks, flat_free, in_use],
    )
    return [retention, native]


def _worker_group(plan: Plan) -> dict[str, Any]:
    """Three workers of one instance, one leaking: only that worker's alert fires."""
    workers = [{"worker": w} for w in ("0", "1", "2")]
    return _growth_group(
        plan,
        "a leak in worker 1 of three alerts on worker 1 only",
        "TornadoMemoryLeakSuspected",
        "process_resident_memory_bytes",
        256 * MiB,
        workers[1],
        [(workers[0], False), (workers[2], False)],
        start_labels=workers,
    )


def _limit_groups(plan: Plan) -> list[dict[str, Any]]:
    """The critical twin on a leak from process start (fires at least an hour before the limit,
    whatever the age); the warning twin on a slower leak far from its limit."""
    cfg = plan.cfg
    critical = find_alert(cfg, "TornadoMemoryNearLimit", "critical")
    warning = find_alert(cfg, "TornadoMemoryNearLimit", "warning")
    groups = []
    # A bad deploy: 200 MiB leaking towards 1 GiB, reaching it after 1.375 times the critical
    # horizon + floor + fit windows (150 MiB/h with the defaults: the limit after 5.5 h).
    limit, base = 1024 * MiB, 200 * MiB
    span = seconds(cfg.near_limit_critical_horizon) + plan.floor + seconds(cfg.near_limit_window)
    rate = math.ceil((limit - base) / (1.375 * span) * plan.step)
    # an hour before the limit (or what the horizon leaves after `for:` in a shorter profile)
    hour = min(
        3600, seconds(cfg.near_limit_critical_horizon) - seconds(critical.for_) - 2 * plan.step
    )
    for title, leak_from in (("from process start", 0), ("in a process aged 8h", 8 * plan.hour)):
        reach = leak_from + (limit - base) / rate * plan.step  # seconds to the limit
        fire_by = int(reach - hour) // plan.step * plan.step
        end = int(reach) + plan.step
        values = plan.ramp(base, rate, end, start=leak_from)
        series = [
            plan.series("process_start_time_seconds", plan.const(0, end)),
            plan.series("process_memory_limit_bytes", plan.const(limit, end)),
            plan.series("process_resident_memory_bytes", values),
        ]
        early = max(plan.step, fire_by - hour)  # an hour earlier still: nothing predicted yet
        tests = [
            {"eval_time": duration(early), "alertname": critical.name, "exp_alerts": []},
            {
                "eval_time": duration(fire_by),
                "alertname": critical.name,
                "exp_alerts": [expected(cfg, critical, plan.labels, values[plan.n(fire_by)])],
            },
        ]
        name = (
            f"near limit: a leak {title} reaching its limit at {duration(int(reach))} pages an "
            "hour before"
        )
        groups.append(group(plan, name, series, tests))
    groups.append(_warmup_near_limit_group(plan))
    # The warning twin: a leak from start like the growth scenarios, far below a limit it would
    # reach within the warning horizon.
    base = 256 * MiB
    rate = _leak_rate(plan, base)
    onset = _young_onset(plan)
    fire_at = onset + seconds(warning.for_)
    end = fire_at + plan.step
    values = plan.ramp(base, rate, end)
    floor_at_onset = base + rate * plan.n(onset - plan.floor)
    limit = math.floor(
        floor_at_onset / (cfg.near_limit_warning_ratio + 0.05)
    )  # beyond the critical horizon
    series = [
        plan.series("process_start_time_seconds", plan.const(0, end)),
        plan.series("process_memory_limit_bytes", plan.const(limit, end)),
        plan.series("process_resident_memory_bytes", values),
    ]
    tests = timed(plan, warning.name, onset, [(warning, plan.labels, values[plan.n(fire_at)])])
    groups.append(
        group(plan, "near limit: warning twin only, on a leak far from its limit", series, tests)
    )
    return groups


def _warmup_near_limit_group(plan: Plan) -> dict[str, Any]:
    """Warm-ups that decelerate to 70% of the limit within the warm-up window and plateau
    there (an exponential and an ease-out, under a GC sawtooth) raise nothing, critical
    included: their linear trend overshoots the plateau, their growth slows down."""
    cfg = plan.cfg
    warmup = seconds(cfg.warmup_window)
    end = 2 * warmup + plan.floor + seconds(cfg.leak_for)
    n, limit = plan.n(end) + 1, 1024 * MiB
    tooth = sawtooth(plan, 0, limit // 20, plan.floor * 13 // 60, end)

    def exponential(t: float) -> float:  # 95% of the way after the warm-up window
        return (1 - math.exp(-3 * t)) / (1 - math.exp(-3))

    def ease_out(t: float) -> float:  # a slope falling linearly to zero at the window's end
        return 1 - (1 - t) ** 2

    series = []
    for instance, shape in (("warmup-exponential", exponential), ("warmup-ease-out", ease_out)):
        rss = [
            int(limit * (0.05 + 0.65 * shape(min(1.0, i * plan.step / warmup)))) + tooth[i]
            for i in range(n)
        ]
        labels = {"instance": instance}
        series += [
            plan.series("process_start_time_seconds", [0] * n, **labels),
            plan.series("process_memory_limit_bytes", [limit] * n, **labels),
            plan.series("process_resident_memory_bytes", rss, **labels),
        ]
    return group(
        plan,
        f"silent: warm-ups decelerating to 70% of the limit in {cfg.warmup_window} "
        "(no critical TornadoMemoryNearLimit)",
        series,
        [],
        [never_fires(0, end)],
    )


def _restart_loop_group(plan: Plan) -> dict[str, Any]:
    """Grows to 95% of its limit, is OOM-killed and restarts, grows again: fires before (by)
    the second restart, as soon as memory is back near the limit."""
    cfg = plan.cfg
    alert = find_alert(cfg, "TornadoMemoryRestartLoop")
    limit, base = 1024 * MiB, 200 * MiB
    period = max(
        plan.n(min(seconds(cfg.restart_window) // 3, plan.trend)),
        plan.n(20 * seconds(alert.for_)),
        20,
    )
    rate = math.ceil((0.99 * limit - base) / (period - 1))
    n_total = 3 * period
    rss = [base + rate * (i % period) for i in range(n_total)]
    start = [(i // period) * period * plan.step for i in range(n_total)]
    threshold = cfg.restart_near_limit_ratio * limit
    first = period
    onset_i = next(i for i in range(first, n_total) if rss[i] > threshold)
    onset = onset_i * plan.step
    fire_at = onset + seconds(alert.for_)
    if fire_at >= 2 * period * plan.step:
        raise ValueError(
            f"restart_loop_for={cfg.restart_loop_for!r} is too long to test before the second "
            "restart"
        )
    series = [
        plan.series("process_start_time_seconds", start),
        plan.series("process_memory_limit_bytes", [limit] * n_total),
        plan.series("process_resident_memory_bytes", rss),
    ]
    tests = timed(plan, alert.name, onset, [(alert, plan.labels, 1)])
    # after the second restart it keeps firing: two near-limit restarts in the window
    tests.append(
        {
            "eval_time": duration((2 * period + 2) * plan.step),
            "alertname": alert.name,
            "exp_alerts": [expected(cfg, alert, plan.labels, 2)],
        }
    )
    return group(
        plan,
        f"OOM restart loop: killed at its limit at {duration(period * plan.step)} and "
        f"{duration(2 * period * plan.step)}, fires before the second restart",
        series,
        tests,
    )


def _staircase_group(plan: Plan) -> dict[str, Any]:
    """Steps every quarter of the trend window that never come back, in an old process."""
    cfg = plan.cfg
    alert = find_alert(cfg, "TornadoMemoryLeakSuspected")
    base = 256 * MiB
    every = max(2, plan.n(plan.trend // 4))
    step_size = math.ceil(3 * cfg.leak_growth_per_hour * base * every * plan.step / 3600)
    check = 2 * plan.age
    n = plan.n(check) + 1
    tooth = max(2, plan.n(plan.floor * 13 // 60))
    rss = [base + step_size * (i // every) + (base // 20 // tooth) * (i % tooth) for i in range(n)]
    series = [
        plan.series("process_start_time_seconds", [0] * n),
        plan.series("process_resident_memory_bytes", rss),
    ]
    tests = [
        {
            "eval_time": duration(check),
            "alertname": alert.name,
            "exp_alerts": [expected(cfg, alert, plan.labels, rss[-1])],
        }
    ]
    return group(plan, "staircase leak: steps that never come back", series, tests)


def _timers_group(plan: Plan) -> dict[str, Any]:
    """Timers of one callback scheduled and never cancelled fire TornadoTimersGrowing within
    two floor windows of the leak's start; a steady PeriodicCallback population and timers
    that come and go (a sawtooth of short timeouts) stay silent."""
    cfg = plan.cfg
    alert = find_alert(cfg, "TornadoTimersGrowing")
    per_step = max(1, math.ceil(4 * cfg.handlers_leak_min * plan.step / plan.floor))
    check = 2 * plan.floor + seconds(alert.for_)
    end = check + plan.step
    leak = {"callback": "myapp.SessionHandler.expire"}
    values = plan.ramp(5, per_step, end)
    series = [
        plan.series("ioloop_timers", values, **leak),
        plan.series("ioloop_timers", plan.const(12, end), callback="other"),
        plan.series(
            "ioloop_timers", sawtooth(plan, 0, 200, plan.floor // 7, end), callback="myapp.poll"
        ),
    ]
    tests = [
        {"eval_time": duration(plan.floor // 2), "alertname": alert.name, "exp_alerts": []},
        {
            "eval_time": duration(check),
            "alertname": alert.name,
            "exp_alerts": [expected(cfg, alert, {**plan.labels, **leak}, values[plan.n(check)])],
        },
    ]
    return group(plan, "timers of one callback never cancelled (steady ones silent)", series, tests)


def _object_types_group(plan: Plan) -> dict[str, Any]:
    """Many types grow with one leak: one alert per origin (the fastest-growing type of each),
    labelled application, library or builtin."""
    cfg = plan.cfg
    alert = find_alert(cfg, "TornadoObjectTypeGrowing")
    onset = _young_onset(plan)
    fire_at = onset + seconds(alert.for_)
    end = fire_at + plan.step
    base = 20_000
    rate = _leak_rate(plan, base, cfg.leak_min_objects)
    types = {  # type -> (origin, growth factor)
        "myapp.Session": ("application", 3),
        "myapp.Cart": ("application", 2),
        "tornado.httputil.HTTPHeaders": ("library", 2),
        "asyncio.Future": ("library", 1),
        "dict": ("builtin", 3),
        "list": ("builtin", 2),
        "function": ("builtin", 1),
    }
    # the census names what keeps the sessions alive: the page says so
    holder = {"type": "myapp.Session", "holder": "myapp.sessions.CACHE"}
    series = [
        plan.series("process_start_time_seconds", plan.const(0, end)),
        plan.series("object_holder_info", plan.const(1, end), **holder),
    ]
    fires = []
    for name, (kind, factor) in types.items():
        values = plan.ramp(base, rate * factor, end)
        series.append(plan.series("objects", values, type=name))
        if factor == max(f for k, f in types.values() if k == kind):
            labels = {**plan.labels, "type": name, "origin": kind}
            if name == holder["type"]:
                labels.update(holder)
            fires.append((alert, labels, values[plan.n(fire_at)]))
    fires.sort(key=lambda fire: sorted(fire[1].items()))
    return group(
        plan,
        "many growing types: one alert per origin, the fastest-growing (with its holder)",
        series,
        timed(plan, alert.name, onset, fires),
    )


def _census_never_group(plan: Plan) -> dict[str, Any]:
    """A census that never succeeds (no timestamp) while its errors count up fires; a disabled
    census (interval 0) that counts errors from manual runs stays silent."""
    cfg = plan.cfg
    alert = find_alert(cfg, "TornadoCensusStale", census="never_succeeded")
    onset = 4 * plan.step
    end = onset + seconds(alert.for_) + plan.step
    errors = [max(0, i - plan.n(onset) + 1) for i in range(plan.n(end) + 1)]
    off = {"instance": "disabled:8888"}
    series = [
        plan.series("exporter_errors_total", errors, collector="census"),
        plan.series("exporter_errors_total", [0] * len(errors), collector="process"),
        plan.series("census_interval_seconds", [60] * len(errors)),
        plan.series("exporter_errors_total", errors, collector="census", **off),
        plan.series("census_interval_seconds", [0] * len(errors), **off),
    ]
    fire_at = onset + seconds(alert.for_)
    return group(
        plan,
        "census never succeeded (a disabled one stays silent)",
        series,
        timed(plan, alert.name, onset, [(alert, plan.labels, errors[plan.n(fire_at)])]),
    )


# --- the other alerts: a step change at `onset` --------------------------------------------


def _step_groups(plan: Plan) -> list[dict[str, Any]]:
    cfg, p = plan.cfg, plan
    groups = []

    def at(
        onset: int, alert: Alert, end_extra: int = 0
    ) -> tuple[int, Callable[[float, float], Values]]:
        end = onset + seconds(alert.for_) + p.step + end_extra

        def switch(before: float, after: float, per_step: float = 0) -> Values:
            return [
                before if i < p.n(onset) else after + per_step * (i - p.n(onset))
                for i in range(p.n(end) + 1)
            ]

        return end, switch  # type: ignore[return-value]

    onset = 4 * p.step
    a = find_alert(cfg, "TornadoGCUncollectable")
    end, switch = at(onset, a)
    series = [
        p.series("gc_uncollectable_objects_total", switch(0, 0), generation=g) for g in ("0", "1")
    ]
    series.append(p.series("gc_uncollectable_objects_total", switch(0, 3), generation="2"))
    groups.append(group(p, "gc uncollectable", series, timed(p, a.name, onset, [(a, p.labels, 0)])))

    for title, alert_name, metric, threshold, extra in (
        (
            "gc pause",
            "TornadoGCPauseHigh",
            "gc_pause_seconds_bucket",
            cfg.gc_pause_p99_seconds,
            {"generation": cfg.gc_oldest_generation},
        ),
        (
            "ioloop lag",
            "TornadoIOLoopBlocked",
            "ioloop_lag_seconds_bucket",
            cfg.ioloop_lag_p99_seconds,
            {},
        ),
    ):
        a = find_alert(cfg, alert_name)
        end, switch = at(onset, a)
        # Every observation from the onset falls between `threshold` and 10x it.
        buckets = {f"{threshold:g}": 0, f"{10 * threshold:g}": 2, "+Inf": 2}
        series = [
            p.series(metric, switch(0, per_step, per_step), le=le, **extra)
            for le, per_step in buckets.items()
        ]
        p99 = threshold + 9 * threshold * 0.99
        if (
            alert_name == "TornadoGCPauseHigh"
        ):  # a younger generation's long pauses are not full ones
            series.append(p.series(metric, switch(0, 2, 2), le="+Inf", generation="0"))
            series.append(p.series(metric, switch(0, 0, 0), le=f"{threshold:g}", generation="0"))
        groups.append(
            group(p, title, series, timed(p, alert_name, onset, [(a, {**p.labels, **extra}, p99)]))
        )

    pool = {"pool": "db"}
    a = find_alert(cfg, "TornadoPoolSaturated")
    end, switch = at(onset, a)
    series = [
        p.series("pool_capacity", switch(10, 10), **pool),
        p.series("pool_in_use", switch(2, 10), **pool),
        p.series("pool_capacity", switch(0, 0), pool="empty"),
        p.series("pool_in_use", switch(0, 0), pool="empty"),
    ]
    groups.append(
        group(
            p, "pool saturated", series, timed(p, a.name, onset, [(a, {**p.labels, **pool}, 1.0)])
        )
    )

    a = find_alert(cfg, "TornadoPoolExhausted")
    end, switch = at(onset, a)
    series = [
        p.series("pool_waiting", switch(0, 3), **pool),
        p.series("pool_timeouts_total", switch(0, 1, 1), **pool),
        p.series("pool_waiting", switch(0, 2), pool="busy"),  # waiting but never timing out
        p.series("pool_timeouts_total", switch(0, 0), pool="busy"),
    ]
    groups.append(
        group(p, "pool exhausted", series, timed(p, a.name, onset, [(a, {**p.labels, **pool}, 3)]))
    )

    a = find_alert(cfg, "TornadoPoolLeak")
    end, switch = at(onset, a)
    series = [
        p.series("pool_leaked_total", switch(0, 1), **pool),
        p.series("pool_leaked_total", switch(2, 2), pool="old"),
    ]
    groups.append(
        group(p, "pool leak", series, timed(p, a.name, onset, [(a, {**p.labels, **pool}, 0)]))
    )

    a = find_alert(cfg, "TornadoCensusStale")  # the twin without the `census` label
    stale_after = seconds(cfg.census_stale_after)
    frozen = 4 * p.step  # the census stops refreshing here
    onset = frozen + stale_after + p.step
    end = onset + seconds(a.for_) + p.step
    stamps = [min(i * p.step, frozen) for i in range(p.n(end) + 1)]
    series = [p.series("census_last_success_timestamp_seconds", stamps)]
    fire_at = onset + seconds(a.for_)
    groups.append(
        group(p, "census stale", series, timed(p, a.name, onset, [(a, p.labels, fire_at - frozen)]))
    )
    groups.append(_census_never_group(p))

    a = find_alert(cfg, "TornadoMemoryExporterDown")
    onset = 4 * p.step
    end = onset + seconds(a.for_) + p.step
    up = [1 if i < p.n(onset) else 0 for i in range(p.n(end) + 1)]
    # the failed scrape writes a staleness marker, as in Prometheus; then no samples at all
    info = [
        1 if i < p.n(onset) else STALE if i == p.n(onset) else None for i in range(p.n(end) + 1)
    ]
    series = [
        p.series("up", up),
        {"series": 'up{job="unrelated",instance="db:5432"}', "values": compress([0] * len(up))},
        p.series("exporter_info", info, version="1.0.0", python="3.11.2", tornado="6.4"),
    ]
    groups.append(
        group(
            p,
            "exporter down (an unrelated down target stays silent)",
            series,
            timed(p, a.name, onset, [(a, p.labels, 0)]),
        )
    )
    return groups


# --- slow consumers: queued bytes above the threshold, or a queue that never drains --------


def _write_buffer_groups(plan: Plan) -> list[dict[str, Any]]:
    cfg, p = plan.cfg, plan
    a = find_alert(cfg, "TornadoWriteBuffersGrowing")
    metric, high, growth = (
        "iostream_write_buffer_bytes",
        cfg.write_buffers_high_bytes,
        cfg.write_buffers_growth_bytes,
    )
    window, hold = seconds(cfg.write_buffers_window), seconds(a.for_)
    onset = 4 * p.step
    end = onset + hold + p.step
    above = [0 if i < p.n(onset) else 2 * high for i in range(p.n(end) + 1)]
    # Broadcast bursts above the threshold that drain before `for:` ends, on another instance.
    burst = max(1, p.n(hold) // 2)
    bursts = [0 if i % (burst + 1) == burst else 2 * high for i in range(p.n(end) + 1)]
    groups = [
        group(
            p,
            "slow consumer above the threshold (bursts that drain stay silent)",
            [p.series(metric, above), p.series(metric, bursts, instance="app:8889")],
            timed(p, a.name, onset, [(a, p.labels, 2 * high)]),
        )
    ]
    # Below the threshold, growing by 1.5x the growth margin per window from the start: the
    # comparison with `window` earlier exists from `window` on (nothing before the first sample).
    rate = math.ceil(1.5 * growth / p.n(window))
    end = window + hold + p.step
    fire_value = rate * p.n(window + hold)
    if fire_value >= high:
        raise ValueError(
            f"write_buffers_growth_bytes={growth!r} is too close to "
            f"write_buffers_high_bytes={high!r} "
            "to test the growth branch alone"
        )
    groups.append(
        group(
            p,
            "a queue below the threshold that never drains",
            [p.series(metric, p.ramp(0, rate, end))],
            timed(p, a.name, window, [(a, p.labels, fire_value)]),
        )
    )
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
        _growth_group(
            plan,
            "RSS leak from process start, flat Python heap: allocator retention or native leak",
            "TornadoMemoryLeakSuspected",
            "process_resident_memory_bytes",
            256 * MiB,
            {},
            [],
            silent=["TornadoPythonHeapGrowing", "TornadoMemoryNearLimit"],
            extra=[plan.series("python_allocated_blocks", plan.const(2_000_000, plan.age * 2))],
        ),
        _growth_group(
            plan,
            "Python heap leak",
            "TornadoPythonHeapGrowing",
            "python_allocated_blocks",
            2_000_000,
            {},
            [],
        ),
        _growth_group(
            plan,
            "object type leak (type=other and flat types stay silent)",
            "TornadoObjectTypeGrowing",
            "objects",
            20_000,
            {"type": "myapp.Session"},
            [({"type": "other"}, True), ({"type": "dict"}, False)],
            minimum=cfg.leak_min_objects,
            fired={"origin": "application"},
        ),
        _growth_group(
            plan,
            "finished handlers kept alive (active ones may grow)",
            "TornadoHandlersLeaking",
            "handlers_alive",
            10,
            {"handler": "myapp.ChatHandler", "state": "finished"},
            [({"handler": "myapp.ChatHandler", "state": "active"}, True)],
            minimum=cfg.handlers_leak_min,
        ),
        _growth_group(
            plan,
            "closed WebSockets kept alive (open ones growing as steadily stay silent)",
            "TornadoHandlersLeaking",
            "handlers_alive",
            10,
            {"handler": "myapp.ChatSocket", "state": "closed"},
            [({"handler": "myapp.ChatSocket", "state": "open"}, True)],
            minimum=cfg.handlers_leak_min,
        ),
        _growth_group(
            plan,
            "watched cache grows without bound",
            "TornadoWatchedObjectGrowing",
            "watched_object_items",
            5_000,
            {"name": "sessions"},
            [({"name": "config"}, False)],
            minimum=cfg.watched_leak_min,
        ),
        *_sawtooth_deploy_groups(plan),
        _worker_group(plan),
        _object_types_group(plan),
        *reachable_handlers_groups(plan),
        *reachable_objects_groups(plan),
        *slow_reachable_groups(plan),
        _timers_group(plan),
        *_limit_groups(plan),
        _restart_loop_group(plan),
        *_allocator_groups(plan),
    ]
    coarse = replace(plan, step=3 * plan.step)
    days = [_staircase_group(coarse), *long_groups(coarse)]
    others = Plan.of(cfg)
    return {
        LEAK_TEST_FILE: _file(plan, rules_file, leaks),
        TRAPS_TEST_FILE: _file(plan, rules_file, noise_groups(plan)),
        LONG_TEST_FILE: _file(coarse, rules_file, days),
        TEST_FILE: _file(others, rules_file, _step_groups(others) + _write_buffer_groups(others)),
    }


# Scenario name prefix -> target, for the scenarios whose target is not "from process start".
_TARGETS = {
    "reachable finished handlers": "within 1h of the leak's start",
    "reachable object type": "within 2h of the leak's start",
    "reachable watched cache": "within 2h of the leak's start",
    "timers of one callback": "within 2 floor windows + for:",
    "near limit: a leak": "1h before its limit",
    "OOM restart loop": "before the second restart",
    "a slow leak under a long GC sawtooth": "once old enough to judge",
    "a slow leak of reachable": "once old enough to judge",
    "staircase leak": "once old enough to judge",
}
_FROM_START = {
    "TornadoMemoryLeakSuspected",
    "TornadoPythonHeapGrowing",
    "TornadoObjectTypeGrowing",
    "TornadoHandlersLeaking",
    "TornadoWatchedObjectGrowing",
    "TornadoMemoryNearLimit",
    "TornadoAllocatorRetention",
}


def target(cfg: MixinConfig, scenario: str, alert: str) -> str:
    """The target time of a firing scenario (the issue's, in words or as a duration)."""
    for prefix, text in _TARGETS.items():
        if scenario.startswith(prefix):
            return text
    if alert in _FROM_START:  # a leak from process start: warm-up, floor, for:
        budget = seconds(cfg.warmup_window) + seconds(cfg.floor_window) + seconds(cfg.leak_for)
        return f"by {duration(budget)}"
    return "onset + for:"


def time_to_fire(cfg: MixinConfig) -> list[tuple[str, str, str]]:
    """(scenario, alerts, when) of every generated scenario: the first evaluation at which it
    asserts firing alerts (time from the start of its series), or how long a trap stays silent."""
    rows = []
    for tests in build_rule_tests(cfg).values():
        for scenario in tests["tests"]:
            firing = [c for c in scenario.get("alert_rule_test", []) if c["exp_alerts"]]
            if firing:
                first = min(firing, key=lambda c: seconds(c["eval_time"]))
                names = sorted(
                    {c["alertname"] for c in firing if c["eval_time"] == first["eval_time"]}
                )
                severities = sorted(
                    {
                        a["exp_labels"]["severity"]
                        for c in firing
                        for a in c["exp_alerts"]
                        if c["eval_time"] == first["eval_time"]
                    }
                )
                rows.append(
                    (
                        scenario["name"],
                        ", ".join(names) + f" ({'/'.join(severities)})",
                        target(cfg, scenario["name"], names[0]),
                        f"firing at {first['eval_time']}",
                    )
                )
            else:
                (check,) = [c for c in scenario["promql_expr_test"] if "ALERTS" in c["expr"]]
                window = check["expr"].rsplit("[", 1)[1].split("]")[0]
                until = f"silent for {window} (until {check['eval_time']})"
                rows.append((scenario["name"], "none", "silent", until))
    return rows


def time_to_fire_table(cfg: MixinConfig) -> str:
    """The time-to-fire table of ``cfg``'s scenarios as a Markdown page (``TIME-TO-FIRE.md``)."""
    rows = "".join(f"| {' | '.join(row)} |\n" for row in time_to_fire(cfg))
    return (
        "<!-- Generated by `python -m tornado_memory_exporter generate`: do not edit. -->\n"
        "# When each alert fires\n\n"
        "Every scenario below is generated by the mixin with its series (`*.test.yml` next to\n"
        "this file, run by `promtool test rules`), so it follows your windows when you\n"
        "regenerate; times are from the start of each scenario's series (a trap is silent\n"
        'through its whole run; the naive `deriv(rss[1h]) > 0` and "20% in 2h" rules fire on\n'
        "every trap, which the suite checks).\n\n"
        "| scenario | alerts | target | time |\n|---|---|---|---|\n" + rows
    )
