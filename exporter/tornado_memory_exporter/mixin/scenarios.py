"""promtool unit tests of the generated rules, with their input series generated here.

Every alert gets a scenario whose condition starts holding at a known evaluation (``onset``):
the test asserts silence one step before ``onset + for`` and the exact labels and annotations at
``onset + for``. The traps (GC sawtooth of several periods and amplitudes, a restart followed by
a warm-up that plateaus, short bursts, growth that follows traffic and returns) must never fire
anything; a slow leak under a long sawtooth must. Times scale with the configured windows, so
the same scenarios test the default and the fast profile.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from .config import MixinConfig, duration, seconds
from .rules import ALERTING_GROUP, RECORDING_GROUP, RULES_FILE, Alert, alerts
from .templating import render

# Two files, each with its own evaluation interval: the leak scenarios span many hours and need
# only the leak windows' resolution; the other alerts need a step dividing every `for:`.
LEAK_TEST_FILE = "tornado-memory.leaks.test.yml"
TEST_FILE = "tornado-memory.rules.test.yml"
_LEAK_DURATIONS = ("floor_window", "leak_for", "near_limit_for")
INSTANCE = "app:8888"
MiB = 1 << 20
_EQ = re.compile(r'\s*([a-zA-Z_]\w*)\s*(=~|=)\s*"((?:[^"\\]|\\.)*)"\s*')

Values = list[float | None]


def target_labels(cfg: MixinConfig) -> dict[str, str]:
    """Labels of the test series: ``job``/``instance``, plus what an equality selector demands."""
    labels = {"job": "tornado", "instance": INSTANCE}
    for part in filter(str.strip, cfg.selector.split(",")) if cfg.selector else ():
        match = _EQ.fullmatch(part)
        literal = match and (match.group(2) == "=" or re.fullmatch(r"[\w:.\-]+(\|[\w:.\-]+)*", match.group(3)))
        if not literal:
            raise ValueError(
                f"selector={cfg.selector!r}: cannot derive test series labels from {part.strip()!r} "
                "(only `label=\"value\"` and `label=~\"a|b\"` matchers)"
            )
        labels[match.group(1)] = match.group(3).split("|")[0] if match.group(2) == "=~" else match.group(3)
    return labels


def _step(cfg: MixinConfig, names: tuple[str, ...] | None = None) -> int:
    """Series and evaluation interval: divides every duration in ``names`` (default: all windows
    and `for:`s) and half the trend window, with at least 30 samples per floor window."""
    if names is None:
        names = tuple(f for f in cfg.__dataclass_fields__ if f.endswith(("_window", "_for", "_after", "_horizon")))
    g = 0
    for name in names:
        g = math.gcd(g, seconds(getattr(cfg, name)))
    g = math.gcd(g, seconds(cfg.trend_window) // 2)
    floor = seconds(cfg.floor_window)
    fits = [d for d in range(1, g + 1) if g % d == 0 and floor // d >= 30]
    return max(fits) if fits else 1


def compress(values: Values) -> str:
    """promtool's expanding notation: runs with a constant difference become ``a+bxn``."""
    out, i = [], 0
    while i < len(values):
        v = values[i]
        if v is None:
            out.append("_")
            i += 1
            continue
        j = i + 1
        if j < len(values) and values[j] is not None:
            diff = values[j] - v  # type: ignore[operator]
            while j + 1 < len(values) and values[j + 1] is not None and values[j + 1] - values[j] == diff:  # type: ignore[operator]
                j += 1
            if j - i >= 2:
                sign = "+" if diff >= 0 else "-"
                out.append(f"{_num(v)}{sign}{_num(abs(diff))}x{j - i}")
                i = j + 1
                continue
        out.append(_num(v))
        i += 1
    return " ".join(out)


def _num(value: float) -> str:
    return str(int(value)) if value == int(value) else repr(value)


@dataclass(frozen=True)
class Plan:
    """The time grid of one config's scenarios (all in seconds)."""

    cfg: MixinConfig
    step: int
    floor: int
    trend: int
    labels: dict[str, str]

    @classmethod
    def of(cls, cfg: MixinConfig, names: tuple[str, ...] | None = None) -> Plan:
        return cls(cfg, _step(cfg, names), seconds(cfg.floor_window), seconds(cfg.trend_window), target_labels(cfg))

    @property
    def age(self) -> int:
        """The leak rules' process-age guard: true from the first evaluation after this."""
        return self.floor + self.trend

    def n(self, t: int) -> int:
        return t // self.step

    def series(self, name: str, values: Values, /, **extra: str) -> dict[str, str]:
        labels = {**self.labels, **extra}
        inner = ",".join(f'{k}="{v}"' for k, v in labels.items())
        return {"series": f"{self.cfg.namespace}_{name}{{{inner}}}" if name != "up" else f"up{{{inner}}}",
                "values": compress(values)}

    def ramp(self, base: float, per_step: float, until: int, start: int = 0) -> Values:
        """``base`` until ``start``, then growing by ``per_step`` each step, through ``until``."""
        return [base + per_step * max(0, i - self.n(start)) for i in range(self.n(until) + 1)]

    def const(self, value: float, until: int) -> Values:
        return [value] * (self.n(until) + 1)


def _alert(cfg: MixinConfig, name: str, severity: str | None = None) -> Alert:
    return next(a for a in alerts(cfg) if a.name == name and severity in (None, a.severity))


def _expected(cfg: MixinConfig, alert: Alert, labels: dict[str, str], value: float) -> dict[str, Any]:
    full = {**labels, "severity": alert.severity, **alert.extra_labels}
    return {
        "exp_labels": full,
        "exp_annotations": {
            "summary": alert.summary,
            "description": render(alert.description, full, value),
            "runbook_url": cfg.runbook(alert.name),
        },
    }


def _timed(plan: Plan, name: str, onset: int, fires: list[tuple[Alert, dict[str, str], float]],
           also_silent: Iterable[str] = ()) -> list[dict[str, Any]]:
    """Silent one step before ``onset + for``, exactly ``fires`` at ``onset + for``."""
    fire_at = onset + seconds(fires[0][0].for_)
    tests = [
        {"eval_time": duration(fire_at - plan.step), "alertname": name, "exp_alerts": []},
        {"eval_time": duration(fire_at), "alertname": name,
         "exp_alerts": [_expected(plan.cfg, a, labels, value) for a, labels, value in fires]},
    ]
    tests += [{"eval_time": duration(fire_at), "alertname": other, "exp_alerts": []} for other in also_silent]
    return tests


def _group(plan: Plan, name: str, series: list[dict[str, str]], alert_tests: list[dict[str, Any]],
           expr_tests: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    group: dict[str, Any] = {"name": name, "interval": duration(plan.step), "input_series": series}
    if alert_tests:
        group["alert_rule_test"] = alert_tests
    if expr_tests:
        group["promql_expr_test"] = expr_tests
    return group


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
    alert = _alert(cfg, alert_name)
    onset = plan.age + plan.step
    end = onset + seconds(alert.for_) + plan.step
    rate = _leak_rate(plan, base, minimum)
    series = [plan.series("process_start_time_seconds", plan.const(0, end)),
              plan.series(metric, plan.ramp(base, rate, end), **labels)]
    for other_labels, grows in others:  # decoys the rule must leave alone
        series.append(plan.series(metric, plan.ramp(base, rate if grows else 0, end), **other_labels))
    value = base + rate * plan.n(onset + seconds(alert.for_))
    tests = _timed(plan, alert_name, onset, [(alert, {**plan.labels, **labels}, value)], silent)
    return _group(plan, title, series + list(extra), tests)


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
        fires = [(_alert(cfg, "TornadoMemoryNearLimit", s), plan.labels, value) for s in severities]
        groups.append(_group(plan, title, series, _timed(plan, "TornadoMemoryNearLimit", onset, fires)))
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
    a = _alert(cfg, "TornadoGCUncollectable")
    end, switch = at(onset, a)
    series = [p.series("gc_uncollectable_objects_total", switch(0, 0), generation=g) for g in ("0", "1")]
    series.append(p.series("gc_uncollectable_objects_total", switch(0, 3), generation="2"))
    groups.append(_group(p, "gc uncollectable", series, _timed(p, a.name, onset, [(a, p.labels, 0)])))

    for title, alert_name, metric, threshold, extra in (
        ("gc pause", "TornadoGCPauseHigh", "gc_pause_seconds_bucket", cfg.gc_pause_p99_seconds,
         {"generation": cfg.gc_oldest_generation}),
        ("ioloop lag", "TornadoIOLoopBlocked", "ioloop_lag_seconds_bucket", cfg.ioloop_lag_p99_seconds, {}),
    ):
        a = _alert(cfg, alert_name)
        end, switch = at(onset, a)
        # Every observation from the onset falls between `threshold` and 10x it.
        buckets = {f"{threshold:g}": 0, f"{10 * threshold:g}": 2, "+Inf": 2}
        series = [p.series(metric, switch(0, per_step, per_step), le=le, **extra) for le, per_step in buckets.items()]
        p99 = threshold + 9 * threshold * 0.99
        if alert_name == "TornadoGCPauseHigh":  # a younger generation's long pauses are not full ones
            series.append(p.series(metric, switch(0, 2, 2), le="+Inf", generation="0"))
            series.append(p.series(metric, switch(0, 0, 0), le=f"{threshold:g}", generation="0"))
        groups.append(_group(p, title, series, _timed(p, alert_name, onset, [(a, {**p.labels, **extra}, p99)])))

    pool = {"pool": "db"}
    a = _alert(cfg, "TornadoPoolSaturated")
    end, switch = at(onset, a)
    series = [p.series("pool_capacity", switch(10, 10), **pool), p.series("pool_in_use", switch(2, 10), **pool),
              p.series("pool_capacity", switch(0, 0), pool="empty"), p.series("pool_in_use", switch(0, 0), pool="empty")]
    groups.append(_group(p, "pool saturated", series, _timed(p, a.name, onset, [(a, {**p.labels, **pool}, 1.0)])))

    a = _alert(cfg, "TornadoPoolExhausted")
    end, switch = at(onset, a)
    series = [p.series("pool_waiting", switch(0, 3), **pool), p.series("pool_timeouts_total", switch(0, 1, 1), **pool),
              p.series("pool_waiting", switch(0, 2), pool="busy"),  # waiting but never timing out
              p.series("pool_timeouts_total", switch(0, 0), pool="busy")]
    groups.append(_group(p, "pool exhausted", series, _timed(p, a.name, onset, [(a, {**p.labels, **pool}, 3)])))

    a = _alert(cfg, "TornadoPoolLeak")
    end, switch = at(onset, a)
    series = [p.series("pool_leaked_total", switch(0, 1), **pool), p.series("pool_leaked_total", switch(2, 2), pool="old")]
    groups.append(_group(p, "pool leak", series, _timed(p, a.name, onset, [(a, {**p.labels, **pool}, 0)])))

    a = _alert(cfg, "TornadoCensusStale")
    stale_after = seconds(cfg.census_stale_after)
    frozen = 4 * p.step  # the census stops refreshing here
    onset = frozen + stale_after + p.step
    end = onset + seconds(a.for_) + p.step
    stamps = [min(i * p.step, frozen) for i in range(p.n(end) + 1)]
    series = [p.series("census_last_success_timestamp_seconds", stamps)]
    fire_at = onset + seconds(a.for_)
    groups.append(_group(p, "census stale", series, _timed(p, a.name, onset, [(a, p.labels, fire_at - frozen)])))

    a = _alert(cfg, "TornadoMemoryExporterDown")
    onset = 4 * p.step
    end = onset + seconds(a.for_) + p.step
    up = [1 if i < p.n(onset) else 0 for i in range(p.n(end) + 1)]
    info = [1 if i < p.n(onset) else None for i in range(p.n(end) + 1)]
    other = {"job": "unrelated", "instance": "db:5432"}
    series = [
        p.series("up", up),
        {"series": 'up{job="unrelated",instance="db:5432"}', "values": compress([0] * len(up))},
        p.series("exporter_info", info, version="1.0.0", python="3.11.2", tornado="6.4"),
    ]
    del other
    labels = {k: v for k, v in p.labels.items() if k in ("job", "instance")} | {
        k: v for k, v in p.labels.items() if k not in ("job", "instance")}
    groups.append(_group(p, "exporter down (an unrelated down target stays silent)", series,
                         _timed(p, a.name, onset, [(a, labels, 0)])))
    return groups


# --- traps and the slow leak under a sawtooth ----------------------------------------------

def sawtooth(plan: Plan, base: float, amplitude: float, period: int, until: int) -> Values:
    """GC sawtooth: grows by ``amplitude`` over ``period`` seconds, then drops back."""
    p = max(2, plan.n(period))
    rise = amplitude // p  # a whole number per step keeps each tooth one `a+bxn` run
    return [base + rise * (i % p) for i in range(plan.n(until) + 1)]


def trap_length(plan: Plan) -> int:
    # the restart happens at `age`; its plateau is watched well past the next age guard
    return 2 * plan.age + plan.trend // 2 + seconds(plan.cfg.leak_for)


def traps(plan: Plan) -> dict[str, tuple[Values, Values]]:
    """instance -> (start_time values, RSS shape relative to 1.0): the shapes that must stay silent."""
    f, t, end = plan.floor, plan.trend, trap_length(plan)
    n = plan.n(end) + 1
    scale = 1 << 20  # shapes in parts per million of the base
    small = sawtooth(plan, scale, scale // 10, f * 13 // 60, end)
    old = [0] * n
    shapes: dict[str, tuple[Values, Values]] = {
        "sawtooth-short": (old, sawtooth(plan, scale, scale // 10, f * 7 // 60, end)),
        "sawtooth-mid": (old, sawtooth(plan, scale, scale * 4 // 10, f * 23 // 60, end)),
        "sawtooth-long": (old, sawtooth(plan, scale, scale * 6 // 10, f * 47 // 60, end)),
    }
    restart = plan.n(plan.age)
    warm = max(1, plan.n(t // 3))
    start = [0 if i < restart else restart * plan.step for i in range(n)]
    rss = []
    for i in range(n):
        if i < restart:
            rss.append(small[i])
        elif i < restart + warm:  # cache warm-up after the restart, from half the old size
            rss.append(scale // 2 + scale * (i - restart) // warm + small[i] - scale)
        else:  # plateau 50% above the old size
            rss.append(scale * 3 // 2 + small[i] - scale)
    shapes["restart-warmup"] = (start, rss)
    burst_len, every = max(1, plan.n(f // 2)), max(2, plan.n(t // 2))
    shapes["short-burst"] = (old, [v + (scale if i % every >= every - burst_len else 0) for i, v in enumerate(small)])
    cycle = plan.n(t)
    rise, hold = cycle // 3, cycle // 6

    def traffic(i: int) -> int:
        k = i % cycle
        if k < rise:
            return scale // 2 * k // rise
        if k < rise + hold:
            return scale // 2
        if k < 2 * rise + hold:
            return scale // 2 - scale // 2 * (k - rise - hold) // rise
        return 0
    shapes["traffic-ramp"] = (old, [v + traffic(i) for i, v in enumerate(small)])
    return shapes


def trap_series(plan: Plan) -> list[dict[str, str]]:
    """RSS, Python heap and one object type of every trap, each on its own instance."""
    series = []
    end = trap_length(plan)
    for instance, (start, shape) in traps(plan).items():
        peak = max(shape) / (1 << 20)
        labels = {"instance": instance}
        series += [
            plan.series("process_start_time_seconds", start, **labels),
            plan.series("process_resident_memory_bytes", [256 * v for v in shape], **labels),  # type: ignore[operator]
            # the limit sits where the peaks would page if a level were alerted on
            plan.series("process_memory_limit_bytes", plan.const(int(256 * (1 << 20) * peak / 0.85), end), **labels),
            plan.series("python_allocated_blocks", [v * 2 for v in shape], **labels),  # type: ignore[operator]
            plan.series("objects", [v // 16 for v in shape], type="myapp.Session", **labels),  # type: ignore[operator]
        ]
    return series


def slow_leak_series(plan: Plan) -> tuple[list[dict[str, str]], int, float, float]:
    """A leak of 3x the threshold under a long sawtooth; returns (series, check time, rss, blocks)."""
    cfg = plan.cfg
    check = plan.age + seconds(cfg.leak_for) + plan.floor
    base = 256 * MiB
    amplitude = int(base * 0.3)
    per_step = math.ceil(3 * cfg.leak_growth_per_hour * base * plan.step / 3600)
    tooth = sawtooth(plan, base, amplitude, plan.floor * 47 // 60, check + plan.step)
    rss = [v + per_step * i for i, v in enumerate(tooth)]  # type: ignore[operator]
    blocks = [v // 128 for v in rss]  # type: ignore[operator]
    series = [
        plan.series("process_start_time_seconds", plan.const(0, check + plan.step)),
        plan.series("process_resident_memory_bytes", rss),
        plan.series("python_allocated_blocks", blocks),
    ]
    return series, check, rss[plan.n(check)], blocks[plan.n(check)]  # type: ignore[return-value]


def _noise_groups(plan: Plan) -> list[dict[str, Any]]:
    cfg = plan.cfg
    end = trap_length(plan)
    never = {
        "expr": f"count_over_time(ALERTS{{alertstate=\"firing\"}}[{duration(end)}])",
        "eval_time": duration(end),
        "exp_samples": [],
    }
    # The traps are evaluated: their floors exist at the end (a silent trap with no data proves nothing).
    floors = {
        "expr": f"count(instance:{cfg.namespace}_process_resident_memory_bytes:floor)",
        "eval_time": duration(end),
        "exp_samples": [{"labels": "{}", "value": len(traps(plan))}],
    }
    groups = [_group(plan, "traps: sawtooth, restart + warm-up, short burst, traffic ramp stay silent",
                     trap_series(plan), [], [floors, never])]
    series, check, rss, blocks = slow_leak_series(plan)
    fires = [
        {"eval_time": duration(check), "alertname": "TornadoMemoryLeakSuspected",
         "exp_alerts": [_expected(cfg, _alert(cfg, "TornadoMemoryLeakSuspected"), plan.labels, rss)]},
        {"eval_time": duration(check), "alertname": "TornadoPythonHeapGrowing",
         "exp_alerts": [_expected(cfg, _alert(cfg, "TornadoPythonHeapGrowing"), plan.labels, blocks)]},
    ]
    groups.append(_group(plan, "a slow leak under a long GC sawtooth fires", series, fires))
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
        _growth_group(plan, "watched cache grows without bound", "TornadoWatchedObjectGrowing",
                      "watched_object_items", 5_000, {"name": "sessions"}, [({"name": "config"}, False)],
                      minimum=cfg.leak_min_objects),
        *_limit_groups(plan),
        *_noise_groups(plan),
    ]
    others = Plan.of(cfg)
    return {
        LEAK_TEST_FILE: _file(plan, rules_file, leaks),
        TEST_FILE: _file(others, rules_file, _step_groups(others)),
    }
