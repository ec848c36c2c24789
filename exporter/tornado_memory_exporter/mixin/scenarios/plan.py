"""The time grid and series helpers of the generated promtool tests (``scenarios``, ``traps``)."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from ..config import MixinConfig, duration, seconds
from ..rules import Alert, alerts
from ..templating import render

INSTANCE = "app:8888"
MiB = 1 << 20
_EQ = re.compile(r'\s*([a-zA-Z_]\w*)\s*(=~|=)\s*"((?:[^"\\]|\\.)*)"\s*')

STALE = "stale"  # promtool's staleness marker (what Prometheus writes when a scrape fails)
Values = list[float | str | None]  # None: no sample


def target_labels(cfg: MixinConfig) -> dict[str, str]:
    """Labels of the test series: ``job``/``instance``, plus what an equality selector demands."""
    labels = {"job": "tornado", "instance": INSTANCE}
    for part in filter(str.strip, cfg.selector.split(",")) if cfg.selector else ():
        match = _EQ.fullmatch(part)
        literal = match and (
            match.group(2) == "=" or re.fullmatch(r"[\w:.\-]+(\|[\w:.\-]+)*", match.group(3))
        )
        if not literal:
            raise ValueError(
                f"selector={cfg.selector!r}: cannot derive test series labels from "
                f"{part.strip()!r} "
                '(only `label="value"` and `label=~"a|b"` matchers)'
            )
        labels[match.group(1)] = (
            match.group(3).split("|")[0] if match.group(2) == "=~" else match.group(3)
        )
    return labels


def step_for(cfg: MixinConfig, names: tuple[str, ...] | None = None) -> int:
    """Series and evaluation interval: divides every duration in ``names`` (default: all windows
    and `for:`s) and half the trend window, with at least 30 samples per floor window."""
    if names is None:
        names = tuple(
            n for n in dir(type(cfg)) if n.endswith(("_window", "_for", "_after", "_horizon"))
        )
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
        if v is None or isinstance(v, str):
            out.append("_" if v is None else v)
            i += 1
            continue
        j = i + 1
        if j < len(values) and isinstance(values[j], (int, float)):
            diff = values[j] - v  # type: ignore[operator]
            while (
                j + 1 < len(values)
                and isinstance(values[j + 1], (int, float))
                and values[j + 1] - values[j] == diff
            ):  # type: ignore[operator]
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
        return cls(
            cfg,
            step_for(cfg, names),
            seconds(cfg.floor_window),
            seconds(cfg.trend_window),
            target_labels(cfg),
        )

    @property
    def hour(self) -> int:
        """The profile's hour: 3600 s with the default 6h trend window, a sixth of it otherwise."""
        return self.trend // 6

    @property
    def age(self) -> int:
        """The leak rules' process-age guard: true from the first evaluation after this."""
        return self.floor + self.trend

    def n(self, t: int) -> int:
        return t // self.step

    def series(self, name: str, values: Values, /, **extra: str) -> dict[str, str]:
        labels = {**self.labels, **extra}
        inner = ",".join(f'{k}="{v}"' for k, v in labels.items())
        return {
            "series": f"{self.cfg.namespace}_{name}{{{inner}}}"
            if name != "up"
            else f"up{{{inner}}}",
            "values": compress(values),
        }

    def ramp(self, base: float, per_step: float, until: int, start: int = 0) -> Values:
        """``base`` until ``start``, then growing by ``per_step`` each step, through ``until``."""
        return [base + per_step * max(0, i - self.n(start)) for i in range(self.n(until) + 1)]

    def const(self, value: float, until: int) -> Values:
        return [value] * (self.n(until) + 1)


def find_alert(cfg: MixinConfig, name: str, severity: str | None = None, **labels: str) -> Alert:
    """The alert ``name`` (of ``severity``, with static ``labels``: twins differ by them)."""
    return next(
        a
        for a in alerts(cfg)
        if a.name == name and severity in (None, a.severity) and dict(a.labels) == labels
    )


def expected(
    cfg: MixinConfig, alert: Alert, labels: dict[str, str], value: float
) -> dict[str, Any]:
    full = {**labels, "severity": alert.severity, **dict(alert.labels)}
    return {
        "exp_labels": full,
        "exp_annotations": {
            "summary": alert.summary,
            "description": render(alert.description, full, value),
            "runbook_url": cfg.runbook(alert.name),
        },
    }


def timed(
    plan: Plan,
    name: str,
    onset: int,
    fires: list[tuple[Alert, dict[str, str], float]],
    also_silent: Iterable[str] = (),
) -> list[dict[str, Any]]:
    """Silent one step before ``onset + for``, exactly ``fires`` at ``onset + for``."""
    fire_at = onset + seconds(fires[0][0].for_)
    tests = [
        {"eval_time": duration(fire_at - plan.step), "alertname": name, "exp_alerts": []},
        {
            "eval_time": duration(fire_at),
            "alertname": name,
            "exp_alerts": [expected(plan.cfg, a, labels, value) for a, labels, value in fires],
        },
    ]
    tests += [
        {"eval_time": duration(fire_at), "alertname": other, "exp_alerts": []}
        for other in also_silent
    ]
    return tests


def group(
    plan: Plan,
    name: str,
    series: list[dict[str, str]],
    alert_tests: list[dict[str, Any]],
    expr_tests: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    group: dict[str, Any] = {"name": name, "interval": duration(plan.step), "input_series": series}
    if alert_tests:
        group["alert_rule_test"] = alert_tests
    if expr_tests:
        group["promql_expr_test"] = expr_tests
    return group
