"""Scenarios of the object-level leak alerts where the census computes reachability
(``<ns>_census_reachability`` 1): reachable counts carry no GC sawtooth, so handlers fire within
the hour and object types and watched objects within 2 h on short windows; bounded retention
stays silent; a leak too slow for the short windows still fires on the floors."""

from __future__ import annotations

import math
from typing import Any

from ..config import duration, seconds
from ..promql import handler_windows
from .plan import Plan, expected, find_alert, group
from .traps import never_fires


def reachable_handlers_groups(plan: Plan) -> list[dict[str, Any]]:
    """With reachability (``census_reachability`` 1), a steady leak of finished handlers fires
    within the hour of its start at any process age, and names its holder; unreachable
    garbage, a framework keeping closed sessions for a minute and a filled LRU stay silent."""
    cfg = plan.cfg
    hour = seconds(cfg.floor_window)
    alert = find_alert(cfg, "TornadoHandlersLeaking")
    per_step = max(1, math.ceil(4 * cfg.handlers_leak_min * plan.step / hour))
    handler = {"handler": "myapp.ChatHandler", "state": "finished"}
    holder = {"type": "myapp.ChatHandler", "holder": "myapp.chat.ROOM.members"}
    groups = []
    for title, leak_from in (("from process start", 0), ("in a process aged 8h", 8 * hour)):
        # the short floor's lag, both halves, for: and two evaluations (48m20s by default)
        short, _, window = (seconds(w) for w in handler_windows(cfg))
        check = leak_from + short + window + seconds(alert.for_) + 2 * plan.step
        end = check + plan.step
        values = plan.ramp(3, per_step, end, start=leak_from)
        series = [
            plan.series("process_start_time_seconds", plan.const(0, end)),
            plan.series("census_reachability", plan.const(1, end)),
            plan.series("object_holder_info", plan.const(1, end), **holder),
            plan.series("handlers_alive", values, **handler),
        ]
        labels = {**plan.labels, **handler, **holder}
        fires = [expected(cfg, alert, labels, values[plan.n(check)])]
        tests = [
            {"eval_time": duration(leak_from), "alertname": alert.name, "exp_alerts": []},
            {"eval_time": duration(check), "alertname": alert.name, "exp_alerts": fires},
        ]
        name = f"reachable finished handlers leak {title}: fires within the hour, names its holder"
        groups.append(group(plan, name, series, tests))
    end = 3 * hour
    n = plan.n(end) + 1
    garbage = plan.ramp(0, per_step, end)  # unreachable: collected at the next full collection
    kept_a_minute = [(i * 7) % 40 for i in range(n)]  # closed sessions kept 15-60 s
    lru = [min(300, i * 300 // max(1, plan.n(hour // 6))) for i in range(n)]
    series = [
        plan.series("process_start_time_seconds", plan.const(0, end)),
        plan.series("census_reachability", plan.const(1, end)),
        plan.series("handlers_alive", garbage, handler="myapp.A", state="unreachable"),
        plan.series("handlers_alive", kept_a_minute, handler="myapp.B", state="closed"),
        plan.series("handlers_alive", lru, handler="myapp.C", state="finished"),
    ]
    groups.append(
        group(
            plan,
            "silent: unreachable handlers, sessions kept a minute, a filled LRU of 300",
            series,
            [],
            [never_fires(0, end)],
        )
    )
    return groups


def reachable_objects_groups(plan: Plan) -> list[dict[str, Any]]:
    """With reachability, a steady leak of one type (and of a watched cache) starting in a
    process aged 8h fires within 2h of its start, the type naming its holder; the same series
    from an in-loop census (``census_reachability`` 0) stay on the floors' rules: silent then."""
    cfg = plan.cfg
    young_half = seconds(cfg.young_trend_window) // 2
    leak_from = 8 * plan.hour
    # the short floor's lag, both halves of a floor window, for: and two evaluations
    check = leak_from + young_half + plan.floor + seconds(cfg.leak_for) + 2 * plan.step
    end = check + plan.step
    loop = {"instance": "inloop:8888"}
    groups = []
    for title, alert_name, metric, base, labels, holder, minimum in (
        (
            "object type",
            "TornadoObjectTypeGrowing",
            "objects",
            20_000,
            {"type": "myapp.Session"},
            {"type": "myapp.Session", "holder": "myapp.sessions.CACHE"},
            cfg.leak_min_objects,
        ),
        (
            "watched cache",
            "TornadoWatchedObjectGrowing",
            "watched_object_items",
            5_000,
            {"name": "sessions"},
            {},
            cfg.watched_leak_min,
        ),
    ):
        alert = find_alert(cfg, alert_name)
        # four times the minimum per floor window, and twice the relative threshold
        relative = cfg.young_growth_per_hour * plan.floor / 3600 * base
        per_floor = max(4 * minimum, 2 * relative)
        per_step = max(1, math.ceil(per_floor * plan.step / plan.floor))
        values = plan.ramp(base, per_step, end, start=leak_from)
        series = []
        for instance, reachability in ((plan.labels, 1), (loop, 0)):
            where = {"instance": instance["instance"]}
            series += [
                plan.series("process_start_time_seconds", plan.const(0, end), **where),
                plan.series("census_reachability", plan.const(reachability, end), **where),
                plan.series(metric, values, **labels, **where),
            ]
        if holder:
            series.append(plan.series("object_holder_info", plan.const(1, end), **holder))
        shown = {**plan.labels, **labels, **holder}
        if metric == "objects":
            shown["origin"] = "application"
        fires = [expected(cfg, alert, shown, values[plan.n(check)])]
        tests = [
            {"eval_time": duration(leak_from), "alertname": alert.name, "exp_alerts": []},
            {"eval_time": duration(check), "alertname": alert.name, "exp_alerts": fires},
        ]
        name = (
            f"reachable {title} leak in a process aged 8h: fires within 2h "
            "(an in-loop census's same series stays on the floors)"
        )
        groups.append(group(plan, name, series, tests))
    return groups


def slow_reachable_groups(plan: Plan) -> list[dict[str, Any]]:
    """With reachability, a leak too slow for the short windows (three times its minimum per
    trend window, from a base no larger than that minimum, so the relative threshold holds in
    every profile) still fires: on the floors, once the process is old enough to judge."""
    cfg = plan.cfg
    groups = []
    for title, alert_name, metric, base, labels, minimum, fired in (
        (
            "finished handlers",
            "TornadoHandlersLeaking",
            "handlers_alive",
            10,
            {"handler": "myapp.ChatHandler", "state": "finished"},
            cfg.handlers_leak_min,
            {},
        ),
        (
            "object type",
            "TornadoObjectTypeGrowing",
            "objects",
            cfg.leak_min_objects,
            {"type": "myapp.Session"},
            cfg.leak_min_objects,
            {"origin": "application"},
        ),
    ):
        alert = find_alert(cfg, alert_name)
        check = plan.age + seconds(alert.for_) + 3 * plan.step
        end = check + plan.step
        values = plan.ramp(base, 3 * minimum * plan.step / plan.trend, end)
        series = [
            plan.series("process_start_time_seconds", plan.const(0, end)),
            plan.series("census_reachability", plan.const(1, end)),
            plan.series(metric, values, **labels),
        ]
        fires = [expected(cfg, alert, {**plan.labels, **labels, **fired}, values[plan.n(check)])]
        tests = [
            {"eval_time": duration(plan.hour), "alertname": alert.name, "exp_alerts": []},
            {"eval_time": duration(check), "alertname": alert.name, "exp_alerts": fires},
        ]
        name = f"a slow leak of reachable {title} fires on the floors"
        groups.append(group(plan, name, series, tests))
    return groups
