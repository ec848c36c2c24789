"""The Alertmanager side of the mixin: one notification group per process and ``inhibit_rules``
so that one leak pages once (its root cause), not once per symptom.

``build_alertmanager_fragment`` returns a ``route`` (to put under your top-level route's
``routes:``) and the ``inhibit_rules`` to append to yours; ``alertmanager_config`` wraps them
into a complete configuration around one receiver (what the demo and the compose stack load).
"""

from __future__ import annotations

from typing import Any

from .config import MixinConfig
from .rules import APPLICATION, CONSEQUENCES, ROOT_CAUSES

ALERTMANAGER_FILE = "tornado-memory.alertmanager.yml"
RECEIVER = "tornado-memory"


def _names(names: tuple[str, ...]) -> str:
    return "|".join(names)


def inhibit_rules(cfg: MixinConfig) -> list[dict[str, Any]]:
    """A root cause (handlers, watched object, pool, or an application type growing) silences
    its consequences (RSS, Python heap, builtin/library types growing) on the same process;
    the critical near-limit twin silences the warning one."""
    same = list(cfg.instance_labels)
    # `origin!="application"` also matches alerts without the label (RSS, Python heap).
    consequences = [f'alertname=~"{_names(CONSEQUENCES)}"', f'origin!="{APPLICATION}"']
    return [
        {
            "source_matchers": [f'alertname=~"{_names(ROOT_CAUSES)}"'],
            "target_matchers": consequences,
            "equal": same,
        },
        {
            "source_matchers": ['alertname="TornadoObjectTypeGrowing"', f'origin="{APPLICATION}"'],
            "target_matchers": consequences,
            "equal": same,
        },
        {
            "source_matchers": ['alertname="TornadoMemoryNearLimit"', 'severity="critical"'],
            "target_matchers": ['alertname="TornadoMemoryNearLimit"', 'severity="warning"'],
            "equal": same,
        },
    ]


def route(cfg: MixinConfig, receiver: str = RECEIVER) -> dict[str, Any]:
    """The sub-route of every Tornado alert: grouped per process (one leak, one notification)."""
    return {
        "receiver": receiver,
        "matchers": ['alertname=~"Tornado.+"'],
        "group_by": list(cfg.instance_labels),
        "group_wait": cfg.alert_group_wait,
        "group_interval": cfg.alert_group_interval,
        "repeat_interval": cfg.alert_repeat_interval,
    }


def build_alertmanager_fragment(cfg: MixinConfig) -> dict[str, Any]:
    """``{"route": ..., "inhibit_rules": [...]}`` to merge into an Alertmanager configuration
    (rename the receiver to one of yours)."""
    return {"route": route(cfg), "inhibit_rules": inhibit_rules(cfg)}


def alertmanager_config(
    cfg: MixinConfig, *, webhook_url: str, receiver: str = "webhook-logger"
) -> dict[str, Any]:
    """A complete configuration: the fragment's route and inhibitions around one webhook receiver
    (resolved notifications included)."""
    return {
        "route": {
            "receiver": receiver,
            "group_by": list(cfg.instance_labels),
            "group_wait": cfg.alert_group_wait,
            "group_interval": cfg.alert_group_interval,
            "repeat_interval": cfg.alert_repeat_interval,
            "routes": [route(cfg, receiver)],
        },
        "inhibit_rules": inhibit_rules(cfg),
        "receivers": [
            {"name": receiver, "webhook_configs": [{"url": webhook_url, "send_resolved": True}]}
        ],
    }
