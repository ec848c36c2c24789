"""Grafana classic-model building blocks: variables, panels, targets, the grid.

Every query goes through the ``$datasource`` variable (file provisioning does not resolve
``__inputs``/``${DS_...}``); every panel has a unit and a description.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from string import ascii_uppercase
from typing import Any

from .config import MixinConfig

DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
SCHEMA_VERSION = 39  # Grafana 11.2 (the compose stack's image) classic JSON model
WIDTH = 24


def filters(cfg: MixinConfig, *extra: str, worker: bool = True) -> tuple[str, ...]:
    """Matchers of the dashboard variables (plus ``extra``), for ``cfg.metric(name, *filters)``."""
    base = ['job=~"$job"', 'instance=~"$instance"'] + (['worker=~"$worker"'] if worker else [])
    return (*base, *extra)


# No "current" on the variables: Grafana selects the default datasource / "All" on first load,
# and an empty {} is not a valid VariableOption (caught by the @grafana/schema type check).


def datasource_variable() -> dict[str, Any]:
    return {
        "type": "datasource",
        "name": "datasource",
        "label": "Data source",
        "query": "prometheus",
        "hide": 0,
        "refresh": 1,
        "regex": "",
        "options": [],
        "includeAll": False,
        "multi": False,
    }


def query_variable(
    name: str, query: str, *, all_value: str = ".+", label: str | None = None
) -> dict[str, Any]:
    """A multi-value ``label_values`` variable with an "All" option matching ``all_value``."""
    return {
        "type": "query",
        "name": name,
        "label": label or name,
        "datasource": DATASOURCE,
        "query": {"query": query, "refId": "StandardVariableQuery"},
        "refresh": 2,
        "includeAll": True,
        "multi": True,
        "allValue": all_value,
        "sort": 1,
        "hide": 0,
        "options": [],
        "regex": "",
    }


@dataclass
class Target:
    expr: str
    legend: str = ""
    instant: bool = False
    table: bool = False
    """One row per series, labels as columns (an instant query feeding a ``table`` panel)."""


@dataclass
class Panel:
    title: str
    description: str
    unit: str
    targets: list[Target]
    kind: str = "timeseries"
    width: int = 12
    height: int = 8
    options: dict[str, Any] = field(default_factory=dict)
    links: list[dict[str, Any]] = field(default_factory=list)
    """Data links of every series (Grafana ``fieldConfig.defaults.links``)."""
    columns: tuple[str, ...] = ()
    """Of a ``table``: the labels shown, in this order (time, value and the rest are hidden)."""

    def model(self, panel_id: int, x: int, y: int) -> dict[str, Any]:
        targets = []
        for index, target in enumerate(self.targets):
            query: dict[str, Any] = {
                "refId": ascii_uppercase[index],  # more than 26 targets: IndexError
                "datasource": DATASOURCE,
                "expr": target.expr,
                "legendFormat": target.legend or "__auto",
                "range": not target.instant,
                "instant": target.instant,
            }
            if target.table:
                query["format"] = "table"
            targets.append(query)
        defaults: dict[str, Any] = {"unit": self.unit}
        if self.links:
            defaults["links"] = self.links
        options: dict[str, Any]
        if self.kind == "timeseries":
            defaults["custom"] = {
                "drawStyle": "line",
                "lineWidth": 1,
                "fillOpacity": 10,
                "showPoints": "never",
                "spanNulls": False,
            }
            options = {
                "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
                "tooltip": {"mode": "multi", "sort": "desc"},
            }
        elif self.kind == "table":
            options = {"showHeader": True, "cellHeight": "sm"}
        else:  # bargauge: one bar per series of an instant query
            options = {
                "displayMode": "gradient",
                "orientation": "horizontal",
                "showUnfilled": True,
                "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            }
        options.update(self.options)
        model: dict[str, Any] = {
            "id": panel_id,
            "type": self.kind,
            "title": self.title,
            "description": self.description,
            "datasource": DATASOURCE,
            "gridPos": {"x": x, "y": y, "w": self.width, "h": self.height},
            "fieldConfig": {"defaults": defaults, "overrides": []},
            "options": options,
            "targets": targets,
        }
        if self.columns:
            model["transformations"] = [
                {"id": "filterFieldsByName", "options": {"include": {"names": list(self.columns)}}},
                {
                    "id": "organize",
                    "options": {"indexByName": {c: i for i, c in enumerate(self.columns)}},
                },
            ]
        return model


@dataclass
class Row:
    title: str


def layout(items: list[Panel | Row]) -> list[dict[str, Any]]:
    """Place panels left to right in rows of 24 columns; a ``Row`` starts a new titled row."""
    panels: list[dict[str, Any]] = []
    x = y = 0
    row_height = 0
    for panel_id, item in enumerate(items, start=1):
        if isinstance(item, Row):
            if x:
                y, x = y + row_height, 0
            panels.append(
                {
                    "id": panel_id,
                    "type": "row",
                    "title": item.title,
                    "collapsed": False,
                    "gridPos": {"x": 0, "y": y, "w": WIDTH, "h": 1},
                    "panels": [],
                }
            )
            y += 1
            row_height = 0
            continue
        if x + item.width > WIDTH:
            y, x, row_height = y + row_height, 0, 0
        panels.append(item.model(panel_id, x, y))
        x += item.width
        row_height = max(row_height, item.height)
    return panels


def dashboard(
    cfg: MixinConfig,
    *,
    uid: str,
    title: str,
    description: str,
    variables: list[dict[str, Any]],
    items: list[Panel | Row],
) -> dict[str, Any]:
    return {
        "uid": uid,
        "id": None,
        "title": title,
        "description": description,
        "tags": list(cfg.dashboard_tags),
        "timezone": "browser",
        "editable": True,
        "graphTooltip": 1,
        "schemaVersion": SCHEMA_VERSION,
        "version": 1,
        "time": {"from": cfg.dashboard_time_from, "to": "now"},
        "refresh": cfg.dashboard_refresh,
        "fiscalYearStartMonth": 0,
        "liveNow": False,
        "weekStart": "",
        "annotations": {"list": []},
        "links": [
            {
                "type": "dashboards",
                "title": "Tornado memory",
                "tags": list(cfg.dashboard_tags),
                "asDropdown": False,
                "includeVars": True,
                "keepTime": True,
                "icon": "external link",
                "targetBlank": False,
                "tooltip": "",
                "url": "",
            }
        ],
        "templating": {"list": variables},
        "panels": layout(items),
    }
