"""Alerts and dashboards for tornado-memory-exporter, generated from one ``MixinConfig``.

>>> from tornado_memory_exporter.mixin import MixinConfig, build_rules
>>> rules = build_rules(MixinConfig(selector='job="shop"'))
>>> [group["name"] for group in rules["groups"]]
['tornado-memory.rules', 'tornado-memory.alerts']

``python -m tornado_memory_exporter generate --config my.toml --out .`` writes the rules, their
``PrometheusRule`` twin, the promtool tests and the dashboards (``write_all``).
"""

from .alertmanager import alertmanager_config, build_alertmanager_fragment
from .config import MixinConfig
from .dashboards import build_dashboards
from .rules import build_prometheus_rule, build_rules
from .scenarios.build import build_rule_tests
from .write import render_all, write_all

__all__ = [
    "MixinConfig",
    "alertmanager_config",
    "build_alertmanager_fragment",
    "build_dashboards",
    "build_prometheus_rule",
    "build_rule_tests",
    "build_rules",
    "render_all",
    "write_all",
]
