"""Series that must not fire (GC sawtooth, restart + warm-up, short bursts, a traffic ramp that
returns) and one that must (a slow leak under a long sawtooth), as promtool test groups."""

from __future__ import annotations

import math
from typing import Any

from ..config import duration, seconds
from .plan import MiB, Plan, Values, expected, find_alert, group


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


def noise_groups(plan: Plan) -> list[dict[str, Any]]:
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
    groups = [group(plan, "traps: sawtooth, restart + warm-up, short burst, traffic ramp stay silent",
                     trap_series(plan), [], [floors, never])]
    series, check, rss, blocks = slow_leak_series(plan)
    fires = [
        {"eval_time": duration(check), "alertname": "TornadoMemoryLeakSuspected",
         "exp_alerts": [expected(cfg, find_alert(cfg, "TornadoMemoryLeakSuspected"), plan.labels, rss)]},
        {"eval_time": duration(check), "alertname": "TornadoPythonHeapGrowing",
         "exp_alerts": [expected(cfg, find_alert(cfg, "TornadoPythonHeapGrowing"), plan.labels, blocks)]},
    ]
    groups.append(group(plan, "a slow leak under a long GC sawtooth fires", series, fires))
    return groups
