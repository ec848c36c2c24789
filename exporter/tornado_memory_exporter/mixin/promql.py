"""The shared clauses of the leak alerts, as recording rules built from small PromQL templates.

Leak rules never look at a level, and never at a raw derivative (a GC sawtooth flips its sign and
resets ``for:``). They trend the *floor*, ``min_over_time`` over a window longer than the
sawtooth, and record for each floored metric whether it grows like a leak (``...:leaking``):

- in a process older than floor + trend windows: faster than a fraction of itself per hour over
  the trend window and in both of its halves (``...:floor_grows``: a traffic ramp that returns,
  a one-time step or a warm-up that plateaus fails one half), and, once the process is older
  than a day, above the floor of the same time a day earlier (``...:floor_above_day_earlier``:
  a daily traffic cycle is not a leak);
- in a younger process past its warm-up window (a deploy that leaks from its start): the floor
  above the floor one floor window earlier by half a stricter fraction per hour, and so in each
  floor window of the warm-up window before (``...:floor_grows_young``: a traffic ramp rising
  for less than a warm-up is not a deploy that leaks), unless a shorter floor shows the growth
  has stopped (below). A leak that starts in such a process is judged once it has grown
  through a warm-up window (or by the old clause).

Why the young clause compares floors a floor window apart: under a GC sawtooth of period P the
floor sits between the lower line of the troughs at the window's start and P later, so it moves
in steps of P worth of leak. Floors one floor window apart (at least the longest period) differ
by at least the leak over (floor window - P), whatever the period and phase; two 15-minute halves
of a 30-minute window did not (a 20-minute sawtooth leaves one of them without a step, which
reset ``for:`` and made a bad deploy fire hours late). That comparison looks back into the
warm-up, though, so the end of a warm-up is told apart by shorter floors (``floor_young`` and
``floor_young_half``): where one of them has not dropped within a floor window (it holds a trough
of every tooth: the sawtooth is shorter than it) and has stayed flat over twice its window
(``...:floor_flat``), growth has stopped. Warm-ups under sawtooths longer than the young window
look like a leak until the floor window has passed them; no floor can tell them apart sooner.

Series of an instance continue under the same labels after a restart, so every window that could
reach into the previous process is guarded by the process age (``...:age_seconds``).

Templates use ``string.Template`` placeholders (``$floor``): PromQL's own braces stay as they are.
"""

from __future__ import annotations

from string import Template
from typing import Any

from .config import MixinConfig, duration, seconds

RSS = "process_resident_memory_bytes"
# Handlers alive after their work ended: finished HTTP handlers and closed WebSockets (an open
# WebSocket is a live connection, finished by Tornado at the upgrade: never a leak).
LEAKED_HANDLERS = 'state=~"finished|closed"'
# metric -> extra matchers restricting what is floored (the census's "other" bucket is no type).
FLOORED = {
    RSS: (),
    "python_allocated_blocks": (),
    "objects": ('type!="other"',),
    "handlers_alive": (LEAKED_HANDLERS,),
    "watched_object_items": (),
}

FLOOR = Template("min_over_time($series[$window])")
# Growth through a window and both of its halves: a ramp that returns, a one-time step or a
# warm-up that plateaus leaves one half flat. Each half must grow at half the rate at least.
GROWS = Template(
    "deriv($floor[$window]) * 3600 > $rate * $floor\n"
    "and $floor - $floor offset $half > $half_growth * $floor\n"
    "and $floor offset $half - $floor offset $window > $half_growth * $floor\n"
    # still at its highest: a ramp that returns within the window is past its top by the time
    # its flanks sit at the three points compared above (a 12h trend window saw that)
    "and $floor >= max_over_time($floor[$half])\n"
)
GROWS_BY_AT_LEAST = Template("and $floor - $floor offset $window >= $minimum\n")
# A young process: the floor one floor window later is higher by half the young rate; the
# floors' lag (at most one sawtooth period each) cannot hide growth over a whole floor window.
GROWS_YOUNG = Template(
    "$floor - $floor offset $window > $growth * $floor\n${earlier}unless $flat_half\nunless $flat\n"
)
# ...and so it did in each floor window of the warm-up window before: growth that lasted less
# than a warm-up (a traffic ramp in a process aged a few hours) is not a deploy that leaks.
GREW_EARLIER = Template(
    "and $floor offset $later - $floor offset $earlier > $growth * $floor offset $later\n"
)
# A short floor holds the trough of every tooth when it has not dropped below its recent high (a
# GC drops a floor shorter than the sawtooth within each period, hence within a floor window).
AT_HIGH = Template("$short >= bool $keep * max_over_time($short[$floor_window])\n")
# ...and then it has stayed flat over twice its window: growth has stopped (a warm-up's end).
FLAT = Template(
    "$short - $short offset $twice <= $growth * $short\n"
    "and min_over_time($at_high[$floor_window]) == 1\n"
)
# A daily traffic cycle: above the floor of the same time a day earlier, once there is one.
ABOVE_DAY_EARLIER = Template(
    "$floor - $floor offset $day > $day_growth * $floor\n"
    "or ($floor unless $floor offset $day)\n"
    "or ($floor and on($on) $age <= $day_and_floor)\n"
)
LEAKING = Template(
    "(\n"
    "  $grows\n"
    "  and $above_day_earlier\n"
    "  and on($on) $age > $old_from\n"
    ")\n"
    "or\n"
    "(\n"
    "  $grows_young\n"
    "  and on($on) $age >= $young_from\n"
    "  and on($on) $age <= $old_from\n"
    ")\n"
)
AGE = Template("time() - $start")
# Reachable finished handlers (a census that computed reachability): garbage no longer counts,
# so a count that keeps rising through both halves of a short window is a leak at any age.
REACHABLE_GROWS = Template(
    "$floor - $floor offset $half >= $half_minimum\n"
    "and $floor offset $half - $floor offset $window >= $half_minimum\n"
    "and on($on) $reachability == 1\n"
)
# Object types and watched objects, where the census told reachable objects from garbage: with
# no garbage counted there is no GC sawtooth, so a short floor (half the young window) rising
# through both halves of one floor window, faster than half the young rate, is a leak once the
# process is past its warm-up (caches fill then). The floors' rules still apply to every process:
# a leak too slow for the short window (or an in-loop census's counts) is judged on them.
REACHABLE_COUNTS = ("objects", "watched_object_items")
REACHABLE_TREND = Template(
    "$short - $short offset $half >= $half_minimum\n"
    "and $short offset $half - $short offset $window >= $half_minimum\n"
    "and $short - $short offset $window > $growth * $short\n"
    "and on($on) $reachability == 1\n"
    "and on($on) $age >= $warmup\n"
)
REACHABLE_OR_FLOORS = Template("(\n$floors\n)\nor $reachable\n")
RESTART_PEAK = Template(
    "max_over_time($rss[$lookback]) / max_over_time($limit[$lookback])\n"
    "and changes($start[$lookback]) > 0\n"
)


def record_name(cfg: MixinConfig, metric: str, what: str) -> str:
    """``instance:<ns>_<metric>:<what>``: the name of a recording rule of ours."""
    return f"instance:{cfg.namespace}_{metric}:{what}"


def floor_name(cfg: MixinConfig, metric: str) -> str:
    """Name of the recording rule holding the floor of ``<ns>_<metric>``."""
    return record_name(cfg, metric, "floor")


def leaking_name(cfg: MixinConfig, metric: str) -> str:
    """Name of the recording rule keeping the floors of ``<ns>_<metric>`` that grow like a leak."""
    return record_name(cfg, metric, "leaking")


def age_name(cfg: MixinConfig) -> str:
    """Recording rule: seconds since the process started."""
    return record_name(cfg, "process", "age_seconds")


def restart_peak_name(cfg: MixinConfig) -> str:
    """Recording rule: RSS / limit peak around a restart, present only just after one."""
    return record_name(cfg, "process_restarts", "peak_memory_ratio")


def handlers_reachable_name(cfg: MixinConfig) -> str:
    """Recording rule: reachable finished handlers that grow like a leak (any process age)."""
    return record_name(cfg, "handlers_alive", "reachable_leaking")


def handler_windows(cfg: MixinConfig) -> tuple[str, str, str]:
    """(short floor, half, window) of the reachable-handlers clause: fractions of the young
    window, so that a steady leak fires within floor + window + ``for:`` (45 min by default)."""
    young = seconds(cfg.young_trend_window)
    return duration(max(1, young // 6)), duration(max(1, young // 3)), duration(2 * (young // 3))


def handlers_rules(cfg: MixinConfig) -> list[dict[str, Any]]:
    """The short floor of finished handlers and its reachable-only leak clause."""
    short, half, window = handler_windows(cfg)
    floor = record_name(cfg, "handlers_alive", "floor_short")
    series = cfg.metric("handlers_alive", LEAKED_HANDLERS)
    grows = REACHABLE_GROWS.substitute(
        floor=floor,
        half=half,
        window=window,
        half_minimum=max(1, cfg.handlers_leak_min // 2),
        on=cfg.on,
        reachability=cfg.metric("census_reachability"),
    )
    return [
        {"record": floor, "expr": FLOOR.substitute(series=series, window=short)},
        {"record": handlers_reachable_name(cfg), "expr": grows},
    ]


# Scheduled timers of one callback: a floor over a quarter of the floor window (timers that
# fire soon come and go) rising through both halves of the floor window.
TIMERS_GROW = Template(
    "$floor - $floor offset $half >= $minimum\n"
    "and $floor offset $half - $floor offset $window >= $minimum\n"
)


def timers_windows(cfg: MixinConfig) -> tuple[str, str, str]:
    """(floor, half, window) of TornadoTimersGrowing."""
    floor = seconds(cfg.floor_window)
    return duration(max(1, floor // 4)), duration(max(1, floor // 2)), cfg.floor_window


def timers_rules(cfg: MixinConfig) -> list[dict[str, Any]]:
    """The floor of scheduled timers per callback."""
    window = timers_windows(cfg)[0]
    return [
        {
            "record": floor_name(cfg, "ioloop_timers"),
            "expr": FLOOR.substitute(series=cfg.metric("ioloop_timers"), window=window),
        }
    ]


def _reachable_grows(cfg: MixinConfig, metric: str) -> str:
    """Reachable counts of ``metric`` rising through both halves of a floor window."""
    floor_s = seconds(cfg.floor_window)
    return REACHABLE_TREND.substitute(
        short=record_name(cfg, metric, "floor_young_half"),
        half=duration(floor_s // 2),
        window=cfg.floor_window,
        half_minimum=max(1, minimum_growth(cfg, metric) // 2),
        growth=f"{cfg.young_growth_per_hour * floor_s / 3600 / 2:.6g}",
        on=cfg.on,
        reachability=cfg.metric("census_reachability"),
        age=age_name(cfg),
        warmup=seconds(cfg.warmup_window),
    )


def minimum_growth(cfg: MixinConfig, metric: str) -> int:
    """How much a floor of counted objects must also have grown over the trend window."""
    return {
        "objects": cfg.leak_min_objects,
        "handlers_alive": cfg.handlers_leak_min,
        "watched_object_items": cfg.watched_leak_min,
    }.get(metric, 0)


def _grows(floor: str, window_s: int, rate: float, minimum: int) -> str:
    expr = GROWS.substitute(
        floor=floor,
        window=duration(window_s),
        half=duration(window_s // 2),
        rate=f"{rate:g}",
        half_growth=f"{rate * window_s / 2 / 3600 / 2:.6g}",
    )
    if minimum:
        expr += GROWS_BY_AT_LEAST.substitute(
            floor=floor, window=duration(window_s), minimum=minimum
        )
    return expr


def _young(cfg: MixinConfig, metric: str, series: str) -> dict[str, str]:
    """The young clause of one floored metric, with the short floors that silence a warm-up's
    end: ``floor_young_half`` and ``floor_young`` (half and all of the young window)."""
    floor, rate = floor_name(cfg, metric), cfg.young_growth_per_hour
    floor_s, young_s = seconds(cfg.floor_window), seconds(cfg.young_trend_window)
    rules, flats = {}, []
    for what, window_s in (("floor_young_half", young_s // 2), ("floor_young", young_s)):
        short, at_high = record_name(cfg, metric, what), record_name(cfg, metric, f"{what}_at_high")
        flat = record_name(cfg, metric, f"{what}_flat")
        # a quarter of the window's growth threshold: noise, not a GC drop
        keep = 1 - rate * window_s / 3600 / 4
        rules[short] = FLOOR.substitute(series=series, window=duration(window_s))
        rules[at_high] = AT_HIGH.substitute(
            short=short, keep=f"{keep:.6g}", floor_window=cfg.floor_window
        )
        rules[flat] = FLAT.substitute(
            short=short,
            twice=duration(2 * window_s),
            growth=f"{rate * window_s / 3600:.6g}",  # half the young rate over twice the window
            at_high=at_high,
            floor_window=cfg.floor_window,
        )
        flats.append(flat)
    growth = f"{rate * floor_s / 3600 / 2:.6g}"
    windows = max(1, seconds(cfg.warmup_window) // floor_s)
    earlier = "".join(
        GREW_EARLIER.substitute(
            floor=floor,
            later=duration(k * floor_s),
            earlier=duration((k + 1) * floor_s),
            growth=growth,
        )
        for k in range(1, windows)
    )
    grows = GROWS_YOUNG.substitute(
        floor=floor,
        window=cfg.floor_window,
        growth=growth,
        earlier=earlier,
        flat_half=flats[0],
        flat=flats[1],
    )
    minimum = minimum_growth(cfg, metric)
    if minimum:
        grows += GROWS_BY_AT_LEAST.substitute(floor=floor, window=cfg.floor_window, minimum=minimum)
    rules[record_name(cfg, metric, "floor_grows_young")] = grows
    return rules


def _clauses(cfg: MixinConfig, metric: str, series: str) -> dict[str, str]:
    """Recording rule name -> expression of the leak clauses of one floored metric."""
    floor, minimum = floor_name(cfg, metric), minimum_growth(cfg, metric)
    floor_s, trend_s = seconds(cfg.floor_window), seconds(cfg.trend_window)
    day_s, age = seconds(cfg.day_window), age_name(cfg)
    grows = record_name(cfg, metric, "floor_grows")
    grows_young = record_name(cfg, metric, "floor_grows_young")
    above = record_name(cfg, metric, "floor_above_day_earlier")
    leaking = LEAKING.substitute(
        grows=grows,
        above_day_earlier=above,
        grows_young=grows_young,
        on=cfg.on,
        age=age,
        old_from=floor_s + trend_s,
        young_from=seconds(cfg.warmup_window) + floor_s,
    )
    reachable = {}
    if metric in REACHABLE_COUNTS:
        name = record_name(cfg, metric, "reachable_grows")
        reachable[name] = _reachable_grows(cfg, metric)
        leaking = REACHABLE_OR_FLOORS.substitute(floors=leaking.rstrip("\n"), reachable=name)
    return {
        grows: _grows(floor, trend_s, cfg.leak_growth_per_hour, minimum),
        **_young(cfg, metric, series),
        above: ABOVE_DAY_EARLIER.substitute(
            floor=floor,
            day=cfg.day_window,
            day_growth=f"{cfg.leak_growth_per_hour * day_s / 3600:.6g}",
            on=cfg.on,
            age=age,
            day_and_floor=day_s + floor_s,
        ),
        **reachable,
        leaking_name(cfg, metric): leaking,
    }


def recording_rules(cfg: MixinConfig) -> list[dict[str, Any]]:
    """Process age, floors, the leak clauses of every floored metric, and the restart peak."""
    m = cfg.metric
    start = m("process_start_time_seconds")
    rules = [{"record": age_name(cfg), "expr": AGE.substitute(start=start)}]
    for metric, matchers in FLOORED.items():
        series = m(metric, *matchers)
        rules.append(
            {
                "record": floor_name(cfg, metric),
                "expr": FLOOR.substitute(series=series, window=cfg.floor_window),
            }
        )
    for metric, matchers in FLOORED.items():
        clauses = _clauses(cfg, metric, m(metric, *matchers))
        rules += [{"record": name, "expr": e} for name, e in clauses.items()]
    rules += handlers_rules(cfg) + timers_rules(cfg)
    peak = RESTART_PEAK.substitute(
        rss=m(RSS),
        limit=m("process_memory_limit_bytes"),
        start=start,
        lookback=cfg.restart_lookback,
    )
    rules.append({"record": restart_peak_name(cfg), "expr": peak})
    return rules
