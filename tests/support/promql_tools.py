"""PromQL helpers for the artifact tests: every expression of the generated rules and dashboards,
parsed with promql-parser, with Grafana's variables substituted."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import promql_parser

# Durations no generated expression uses on its own: a parsed range equal to one of them proves
# the expression used the Grafana variable.
RATE_INTERVAL = "4242s"
RANGE = "4343s"


def substitute(expr: str, values: dict[str, str] | None = None) -> str:
    """``expr`` with ``$__rate_interval``/``$__range`` and ``$var`` replaced (default: ``.*``)."""
    expr = expr.replace("$__rate_interval", RATE_INTERVAL).replace("$__range", RANGE)
    return re.sub(r"\$(\w+)", lambda m: (values or {}).get(m.group(1), ".*"), expr)


@dataclass(frozen=True)
class Selector:
    name: str
    matchers: tuple[tuple[str, str, str], ...]  # (label, op, value)


def walk(expr: str) -> tuple[list[Selector], list[tuple[str, Any]]]:
    """(vector selectors, [(function name, matrix range or None)]) of a parsed expression."""
    selectors: list[Selector] = []
    calls: list[tuple[str, Any]] = []

    def visit(node: Any) -> None:
        kind = type(node).__name__
        if kind == "VectorSelector":
            ops = {"Equal": "=", "NotEqual": "!=", "Re": "=~", "NotRe": "!~"}
            selectors.append(
                Selector(
                    node.name or "",
                    tuple(
                        (m.name, ops[str(m.op).rsplit(".", 1)[-1]], m.value)
                        for m in node.matchers.matchers
                    ),
                )
            )
        elif kind == "Call":
            arg_range = next(
                (a.range for a in node.args if type(a).__name__ == "MatrixSelector"), None
            )
            calls.append((node.func.name, arg_range))

    promql_parser.walk(promql_parser.parse(expr), visit)
    return selectors, calls


def rule_exprs(rules: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(rule name, expr) of every rule of a rule file dict."""
    for group in rules["groups"]:
        for rule in group["rules"]:
            yield rule.get("alert") or rule["record"], rule["expr"]


def dashboard_exprs(model: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(where, expr) of every panel target and query variable of a dashboard model."""
    for panel in model["panels"]:
        for target in panel.get("targets", []):
            yield f"{model['uid']}: {panel['title']} [{target['refId']}]", target["expr"]
    for variable in model["templating"]["list"]:
        if variable["type"] == "query":
            yield f"{model['uid']}: ${variable['name']}", variable["query"]["query"]


def label_values_query(query: str) -> tuple[str, str]:
    """``label_values(<selector>, <label>)`` -> (selector, label)."""
    match = re.fullmatch(r"label_values\((.*),\s*(\w+)\)", query.strip())
    assert match, f"not a label_values() query: {query!r}"
    return match.group(1), match.group(2)
