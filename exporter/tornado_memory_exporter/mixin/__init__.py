"""Alerts and dashboards for tornado-memory-exporter, generated from one ``MixinConfig``.

>>> from tornado_memory_exporter.mixin import MixinConfig, build_rules
>>> rules = build_rules(MixinConfig(selector='job="shop"'))
>>> [group["name"] for group in rules["groups"]]
['tornado-memory.rules', 'tornado-memory.alerts']
"""

from .config import MixinConfig
from .rules import build_prometheus_rule, build_rules

__all__ = ["MixinConfig", "build_prometheus_rule", "build_rules"]
