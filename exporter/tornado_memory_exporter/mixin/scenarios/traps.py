"""Series that must not fire (GC sawtooth up to the floor window, restart + warm-up, a warm-up
after a deploy, short bursts, traffic ramps that return in old and young processes, a one-time
step, deploy restarts, a daily traffic cycle) and one that must (a slow leak under a long
sawtooth), as promtool groups."""

from __future__ import annotations

import math
from typing import Any

from ..config import duration, seconds
from .plan import MiB, Plan, Values, expected, find_alert, group

Trap = tuple[Values, Values, float]  # start_time values, RSS shape (parts per 2**20), limit ratio


def sawtooth(plan: Plan, base: float, amplitude: float, period: int, until: int) -> Values:
    """GC sawtooth: grows by ``amplitude`` over ``period`` seconds, then drops back."""
    p = max(2, plan.n(period))
    rise = amplitude // p  # a whole number per step keeps each tooth one `a+bxn` run
    return [base + rise * (i % p) for i in range(plan.n(until) + 1)]


def trap_length(plan: Plan) -> int:
    # the restart happens at `age`; its plateau is watched well past the next age guard
    return 2 * plan.age + plan.trend // 2 + seconds(plan.cfg.leak_for)


def traps(plan: Plan) -> dict[str, Trap]:
    """instance -> (start_time values, RSS shape relative to 1.0, where the limit sits as a
    fraction of the shape's peak): the shapes that must stay silent.

    Sawtooth and bursts have their limit where a level alert on the peaks would page (85%). A
    ramp, a step or a warm-up that would reach the limit within the critical twin's horizon at
    its current slope is a page (a bad deploy looks the same until it stops): their limits sit
    beyond that horizon."""
    f, t, end = plan.floor, plan.trend, trap_length(plan)
    n = plan.n(end) + 1
    scale = 1 << 20  # shapes in parts per million of the base
    small = sawtooth(plan, scale, scale // 10, f * 13 // 60, end)
    old = [0] * n
    shapes: dict[str, Trap] = {
        "sawtooth-short": (old, sawtooth(plan, scale, scale // 10, f * 7 // 60, end), 0.85),
        "sawtooth-mid": (old, sawtooth(plan, scale, scale * 4 // 10, f * 23 // 60, end), 0.85),
        "sawtooth-long": (old, sawtooth(plan, scale, scale * 6 // 10, f * 47 // 60, end), 0.85),
        "sawtooth-floor": (old, sawtooth(plan, scale, scale * 6 // 10, f, end), 0.85),
    }
    restart = plan.n(plan.age)
    warm = max(
        1, plan.n(min(t // 3, seconds(plan.cfg.warmup_window)))
    )  # a warm-up of up to the window
    start = [0 if i < restart else restart * plan.step for i in range(n)]
    rss = []
    for i in range(n):
        if i < restart:
            rss.append(small[i])
        elif i < restart + warm:  # cache warm-up after the restart, from half the old size
            rss.append(scale // 2 + scale * (i - restart) // warm + small[i] - scale)
        else:  # plateau 50% above the old size
            rss.append(scale * 3 // 2 + small[i] - scale)
    shapes["restart-warmup"] = (start, rss, 0.5)
    # A deploy: the process starts with the series and warms up for the whole warm-up window.
    deploy = max(1, plan.n(seconds(plan.cfg.warmup_window)))
    shapes["deploy-warmup"] = (
        old,
        [
            scale // 2 + min(i, deploy) * (scale // 2) // deploy + v - scale
            for i, v in enumerate(small)
        ],
        0.6,
    )
    # ...and one that slows down as caches fill (95% done after the warm-up window).
    tau = deploy / 3
    shapes["deploy-warmup-slowing"] = (
        old,
        [
            scale // 2 + int(scale // 2 * (1 - math.exp(-i / tau))) + v - scale
            for i, v in enumerate(small)
        ],
        0.6,
    )
    burst_len, every = max(1, plan.n(f // 2)), max(2, plan.n(t // 2))
    shapes["short-burst"] = (
        old,
        [v + (scale if i % every >= every - burst_len else 0) for i, v in enumerate(small)],
        0.85,
    )
    cycle = plan.n(t)

    def traffic(begin: int, rise: int) -> Values:
        """+50% over ``rise`` steps from ``begin``, held half as long, back as fast as it came."""
        hold = rise // 2
        ramp = [0] * n
        for i in range(begin, n):
            k = (i - begin) % cycle
            if k < rise:
                ramp[i] = scale // 2 * k // rise
            elif k < rise + hold:
                ramp[i] = scale // 2
            elif k < 2 * rise + hold:
                ramp[i] = scale // 2 - scale // 2 * (k - rise - hold) // rise
        return [v + r for v, r in zip(small, ramp, strict=True)]

    # In an old process, over a third of the trend window (each half of it sees one flank)...
    shapes["traffic-ramp"] = (old, traffic(plan.n(plan.age), cycle // 3), 0.6)
    # ...and in a process judged on its young clause, over two thirds of a warm-up window.
    young_from = seconds(plan.cfg.warmup_window) + f
    young_rise = min(cycle // 3, plan.n(seconds(plan.cfg.warmup_window)) * 2 // 3)
    for begin in range(young_from, plan.age, plan.hour):
        ramp = traffic(plan.n(begin), young_rise)
        shapes[f"traffic-ramp-at-{duration(begin)}"] = (old, ramp, 0.6)
    # A reload in an old process: memory steps up once by 20% and stays there.
    step_at = plan.n(plan.age + t // 4)
    shapes["one-time-step"] = (
        old,
        [v + (scale // 5 if i >= step_at else 0) for i, v in enumerate(small)],
        0.5,
    )
    # Two deploys (restarts) with memory far from the limit: no restart loop.
    first, second = plan.n(t // 2), plan.n(t)
    deploys = [
        0 if i < first else first * plan.step if i < second else second * plan.step
        for i in range(n)
    ]
    shapes["deploy-restarts"] = (deploys, small, 0.85)
    return shapes


def trap_series(plan: Plan) -> list[dict[str, str]]:
    """RSS, Python heap and one object type of every trap, each on its own instance."""
    series = []
    end = trap_length(plan)
    cfg = plan.cfg
    k = max(1, plan.n(seconds(cfg.near_limit_window)))
    ahead = seconds(cfg.near_limit_critical_horizon) + plan.floor
    for instance, (start, shape, ratio) in traps(plan).items():
        peak = max(shape) / (1 << 20)  # type: ignore[type-var]
        limit = peak / ratio
        if ratio < 0.85:  # a ramp: beyond where its steepest slope reaches within the horizon
            rises = [b - a for a, b in zip(shape, shape[k:], strict=False)]  # type: ignore[operator]
            slope = max(rises) / (1 << 20) / (k * plan.step)
            limit = max(limit, 1.1 * (peak + slope * ahead))
        labels = {"instance": instance}
        series += [
            plan.series("process_start_time_seconds", start, **labels),
            plan.series("process_resident_memory_bytes", [256 * v for v in shape], **labels),  # type: ignore[operator]
            plan.series(
                "process_memory_limit_bytes",
                plan.const(int(256 * (1 << 20) * limit), end),
                **labels,
            ),
            plan.series("python_allocated_blocks", [v * 2 for v in shape], **labels),  # type: ignore[operator]
            plan.series("objects", [v // 16 for v in shape], type="myapp.Session", **labels),  # type: ignore[operator]
        ]
    return series


def daily_cycle_series(plan: Plan) -> tuple[list[dict[str, str]], int, int]:
    """A process whose memory follows a daily traffic cycle (+60% from night to afternoon, with a
    GC sawtooth), watched through its second day; returns (series, watch from, until)."""
    day = seconds(plan.cfg.day_window)
    until = 2 * day + plan.trend
    n = plan.n(until) + 1
    scale = 1 << 20
    tooth = sawtooth(plan, 0, scale // 10, plan.floor * 13 // 60, until)
    rss = [
        scale
        + int(0.3 * scale * (1 - math.cos(2 * math.pi * (i * plan.step % day) / day)))
        + tooth[i]
        for i in range(n)
    ]  # type: ignore[operator]
    labels = {"instance": "daily-cycle"}
    series = [
        plan.series("process_start_time_seconds", [0] * n, **labels),
        plan.series("process_resident_memory_bytes", [256 * v for v in rss], **labels),
        plan.series("process_memory_limit_bytes", [256 * scale * 3] * n, **labels),
        plan.series("python_allocated_blocks", [2 * v for v in rss], **labels),
        plan.series("objects", [v // 16 for v in rss], type="myapp.Session", **labels),
    ]
    return series, day + plan.floor + plan.step, until


def slow_leak_series(plan: Plan) -> tuple[list[dict[str, str]], int, float, float]:
    """A leak of 3x the threshold under a long sawtooth: (series, check time, rss, blocks)."""
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


def never_fires(since: int, until: int) -> dict[str, Any]:
    return {
        "expr": f'count_over_time(ALERTS{{alertstate="firing"}}[{duration(until - since)}])',
        "eval_time": duration(until),
        "exp_samples": [],
    }


def noise_groups(plan: Plan) -> list[dict[str, Any]]:
    cfg = plan.cfg
    end = trap_length(plan)
    # The traps are evaluated: their floors exist at the end (a silent trap without data
    # proves nothing).
    floors = {
        "expr": f"count(instance:{cfg.namespace}_process_resident_memory_bytes:floor)",
        "eval_time": duration(end),
        "exp_samples": [{"labels": "{}", "value": len(traps(plan))}],
    }
    groups = [
        group(
            plan,
            "traps: sawtooth, restart + warm-up, deploy warm-up, short burst, traffic ramps "
            "(in an old process and at each hour of a young one), one-time step, deploy "
            "restarts stay silent",
            trap_series(plan),
            [],
            [floors, never_fires(0, end)],
        )
    ]
    series, check, rss, blocks = slow_leak_series(plan)
    fires = [
        {
            "eval_time": duration(check),
            "alertname": "TornadoMemoryLeakSuspected",
            "exp_alerts": [
                expected(cfg, find_alert(cfg, "TornadoMemoryLeakSuspected"), plan.labels, rss)
            ],
        },
        {
            "eval_time": duration(check),
            "alertname": "TornadoPythonHeapGrowing",
            "exp_alerts": [
                expected(cfg, find_alert(cfg, "TornadoPythonHeapGrowing"), plan.labels, blocks)
            ],
        },
    ]
    groups.append(group(plan, "a slow leak under a long GC sawtooth fires", series, fires))
    return groups


def long_groups(plan: Plan) -> list[dict[str, Any]]:
    """The daily traffic cycle trap (two days of series)."""
    series, since, until = daily_cycle_series(plan)
    return [
        group(
            plan,
            "traps: a daily traffic cycle in a process older than a day stays silent",
            series,
            [],
            [never_fires(since, until)],
        )
    ]
