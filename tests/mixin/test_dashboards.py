"""The shipped dashboards: structural lint (TOOLING.md), every expression parses, every metric a
rule or panel names exists in a real scrape, and every panel query and variable returns data from
a real Prometheus that scraped a real app (with the shipped rules loaded)."""

from __future__ import annotations

import asyncio
import copy
import gc
import json
import math
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import tornado.ioloop
import tornado.web
import tornado.websocket
import yaml
from appserver import AppServer
from prometheus_client.parser import text_string_to_metric_families
from promql_tools import (
    RANGE,
    RATE_INTERVAL,
    dashboard_exprs,
    label_values_query,
    rule_exprs,
    substitute,
    walk,
)
from realbin import Prometheus, require_binary, wait_for

from tornado_memory_exporter import Config, ObjectPool
from tornado_memory_exporter.mixin import MixinConfig, build_dashboards
from tornado_memory_exporter.mixin.panels import DATASOURCE, SCHEMA_VERSION

ROOT = Path(__file__).resolve().parents[2]
DASHBOARDS = {
    p.name: json.loads(p.read_text()) for p in sorted((ROOT / "dashboards").glob("*.json"))
}
RULES = yaml.safe_load((ROOT / "alerts/tornado-memory.rules.yml").read_text())
RECORDED = {name for name, _ in rule_exprs(RULES) if ":" in name}
NOT_OURS = {"up", "ALERTS"}
# Metrics that rules or panels use but the exporter does not export yet (reported, not hidden).
NOT_YET_EXPORTED: set[str] = set()


def _panels(model: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for p in model["panels"] if p["type"] != "row"]


def _names(expr: str) -> set[str]:
    """Metric names an expression (dashboard variables substituted) selects."""
    return {selector.name for selector in walk(substitute(expr))[0]}


def test_two_dashboards_with_stable_uids_and_pinned_schema() -> None:
    assert sorted(DASHBOARDS) == ["tornado-memory-leak-hunt.json", "tornado-memory-overview.json"]
    uids = [d["uid"] for d in DASHBOARDS.values()]
    assert uids == ["tornado-memory-leak-hunt", "tornado-memory-overview"]
    for model in DASHBOARDS.values():
        assert (
            model["id"] is None
            and model["schemaVersion"] == SCHEMA_VERSION
            and len(model["uid"]) <= 40
        )
        text = json.dumps(model)
        assert "__inputs" not in text and "${DS_" not in text


@pytest.mark.parametrize("name", sorted(DASHBOARDS))
def test_structure_lint(name: str) -> None:
    model = DASHBOARDS[name]
    variables = {v["name"]: v for v in model["templating"]["list"]}
    expected = ["datasource", "job", "instance", "worker"] + (
        ["type"] if "leak-hunt" in name else []
    )
    assert list(variables) == expected
    assert (variables["datasource"]["type"], variables["datasource"]["query"]) == (
        "datasource",
        "prometheus",
    )
    for var in expected[1:]:
        assert variables[var]["datasource"] == DATASOURCE, var
    ids = [p["id"] for p in model["panels"]]
    assert len(ids) == len(set(ids))
    cells: set[tuple[int, int]] = set()
    for panel in model["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["w"] > 0 and grid["x"] + grid["w"] <= 24, panel["title"]
        mine = {
            (x, y)
            for x in range(grid["x"], grid["x"] + grid["w"])
            for y in range(grid["y"], grid["y"] + grid["h"])
        }
        assert not mine & cells, f"{panel['title']} overlaps another panel"
        cells |= mine
    for panel in _panels(model):
        where = f"{name}: {panel['title']}"
        assert panel["description"].strip(), where
        assert panel["fieldConfig"]["defaults"]["unit"], where
        assert panel["datasource"] == DATASOURCE, where
        refs = [t["refId"] for t in panel["targets"]]
        assert refs and len(refs) == len(set(refs)), where
        for target in panel["targets"]:
            assert target["datasource"] == DATASOURCE, where
            for function, window in walk(substitute(target["expr"]))[1]:
                if function in ("rate", "irate", "increase"):
                    assert window.total_seconds() == int(RATE_INTERVAL[:-1]), (
                        f"{where}: {function} not over $__rate_interval"
                    )


def test_every_alert_signal_has_a_panel() -> None:
    alerts = {
        rule["alert"] for group in RULES["groups"] for rule in group["rules"] if "alert" in rule
    }
    described = " ".join(p["description"] for m in DASHBOARDS.values() for p in _panels(m))
    assert sorted(a for a in alerts if a not in described) == []


def _rows(model: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """Row title -> the panels under it, in order."""
    rows: dict[str, list[dict[str, Any]]] = {}
    for panel in model["panels"]:
        if panel["type"] == "row":
            current = rows.setdefault(panel["title"], [])
        else:
            current.append(panel)
    return rows


def _named(panel: dict[str, Any]) -> set[str]:
    return {name for target in panel["targets"] for name in _names(target["expr"])}


def _side_by_side(row: list[dict[str, Any]], *metrics: str) -> list[dict[str, Any]]:
    """The panels of ``row`` naming each of ``metrics``, checked to share one line of the grid."""
    found = [next(p for p in row if metric in _named(p)) for metric in metrics]
    assert len({p["gridPos"]["y"] for p in found}) == 1, [p["title"] for p in found]
    return found


def test_reachability_loop_and_runtime_panels_are_where_operators_look() -> None:
    """Issue 20 item 5 and issue 23 items 3 and 6: garbage beside live objects, the holder table,
    the Loop row, the after-GC heap over its sawtooth and pool hold time beside the pools."""
    overview = _rows(DASHBOARDS["tornado-memory-overview.json"])
    hunt = _rows(DASHBOARDS["tornado-memory-leak-hunt.json"])
    live, garbage = _side_by_side(
        overview["Heap census"], "tornado_objects", "tornado_unreachable_objects"
    )
    assert (live["type"], garbage["type"]) == ("bargauge", "bargauge")
    assert "census_reachability 0" in live["description"] + garbage["description"]
    _side_by_side(hunt["Object types"], "tornado_objects", "tornado_unreachable_objects")
    _side_by_side(hunt["Object types"], "tornado_object_bytes", "tornado_unreachable_object_bytes")
    (holders,) = [p for p in hunt["Object types"] if p["type"] == "table"]
    assert _named(holders) == {"tornado_object_holder_info"}
    assert [t["format"] for t in holders["targets"]] == ["table"]
    assert holders["transformations"][0]["options"]["include"]["names"] == [
        "type",
        "holder",
        "instance",
        "worker",
    ]
    assert "unreachable" in next(
        p["description"] for p in hunt["Handlers and watched objects"] if "state" in p["title"]
    )
    loop = {p["title"]: p for p in overview["Loop"]}
    assert {name for p in loop.values() for name in _named(p)} >= {
        "tornado_ioloop_busy_seconds_total",
        "tornado_ioloop_lag_seconds_bucket",
        "tornado_ioloop_ready_callbacks",
        "tornado_ioloop_timers",
    }
    assert loop["Loop utilisation"]["fieldConfig"]["defaults"]["unit"] == "percentunit"
    (heap,) = [p for p in overview["Memory"] if "tornado_python_allocated_blocks" in _named(p)]
    assert "tornado_python_allocated_blocks_after_gc" in _named(heap)
    assert any(
        "tornado_gc_last_full_collection_timestamp_seconds" in _named(p)
        and p["fieldConfig"]["defaults"]["unit"] == "s"
        for p in overview["Garbage collector"]
    )
    _side_by_side(overview["Pools"], "tornado_pool_in_use", "tornado_pool_hold_seconds_bucket")
    _side_by_side(
        hunt["Pools"], "tornado_pool_oldest_checkout_seconds", "tornado_pool_hold_seconds_bucket"
    )


def test_every_panel_the_runbook_sends_to_exists() -> None:
    """The runbook's "**Confirm**: overview, *Panel title* ..." names panels by title: a renamed
    panel must take the runbook along. (Emphasised single words there are not titles.)"""
    runbook = " ".join((ROOT / "alerts/RUNBOOK.md").read_text().split())
    spans = re.findall(r"\*\*Confirm\*\*:(.*?)\*\*", runbook)
    cited = {t for span in spans for t in re.findall(r"\*([^*]+)\*", span) if " " in t}
    titles = {p["title"] for m in DASHBOARDS.values() for p in _panels(m)}
    assert len(cited) >= 20
    assert sorted(cited - titles) == []


def test_every_expression_parses() -> None:
    for cfg in (MixinConfig(), MixinConfig.fast(), MixinConfig(selector='job="a"')):
        for model in build_dashboards(cfg).values():
            for where, expr in dashboard_exprs(model):
                if where.endswith(("$job", "$instance", "$worker", "$type")):
                    expr = label_values_query(expr)[0]
                assert walk(substitute(expr))[0], where


SCHEMA_DIR = ROOT / "tests" / "grafana_schema"


def test_dashboards_type_check_against_grafana_schema() -> None:
    """``const d: Dashboard = <json>`` through tsc with @grafana/schema's types (the Grafana 11.2
    model): catches misspelt keys and wrong types that a JSON lint cannot. A deliberately broken
    copy must fail, so a check that accepts anything would be noticed."""
    tsc = SCHEMA_DIR / "node_modules/.bin/tsc"
    if not tsc.exists():
        message = "@grafana/schema is not installed (make test runs npm ci in tests/grafana_schema)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    require_binary("node")
    build = SCHEMA_DIR / "build" / str(os.getpid())  # under node_modules' parent: imports resolve
    build.mkdir(parents=True, exist_ok=True)
    wrong_type = copy.deepcopy(DASHBOARDS["tornado-memory-overview.json"])
    wrong_type["panels"][1]["gridPos"]["w"] = "12"
    misspelt = copy.deepcopy(DASHBOARDS["tornado-memory-overview.json"])
    misspelt["refresh_rate"] = "5s"
    files = {**DASHBOARDS, "broken-type.json": wrong_type, "broken-key.json": misspelt}
    try:
        for name, model in files.items():
            (build / f"{name[:-5]}.ts").write_text(
                "import type { Dashboard } from '@grafana/schema';\n"
                f"export const dashboard: Dashboard = {json.dumps(model, indent=1)};\n"
            )
        result = subprocess.run(
            [
                str(tsc),
                "--noEmit",
                "--strict",
                "--target",
                "es2020",
                "--moduleResolution",
                "node",
                *sorted(str(p) for p in build.glob("*.ts")),
            ],
            check=False,
            capture_output=True,
            text=True,
            timeout=180,
        )
    finally:
        shutil.rmtree(build, ignore_errors=True)
    errors = [line for line in result.stdout.splitlines() if "error TS" in line]
    assert [e.split("(")[0].rsplit("/", 1)[-1] for e in errors] == [
        "broken-key.ts",
        "broken-type.ts",
    ], result.stdout
    assert "'\"refresh_rate\"' does not exist in type 'Dashboard'" in result.stdout
    assert "Type 'string' is not assignable to type 'number'" in result.stdout


# --- against a real app and a real Prometheus ---------------------------------------------

kept: list[tornado.web.RequestHandler] = []


class Connection:
    """A pooled object (weakly referenceable, so the pool can notice leaks)."""


class KeptHandler(tornado.web.RequestHandler):
    """Finished but kept alive by a global: what TornadoHandlersLeaking is about."""

    def get(self) -> None:
        kept.append(self)
        self.write("kept")


class ChatSocket(tornado.websocket.WebSocketHandler):
    """An open WebSocket: the connection panels read its handler's states."""


class Cycle:
    """Half of a reference cycle nothing else refers to: garbage waiting for the collector."""

    other: Cycle


def leave_cycles(pairs: int) -> None:
    for _ in range(pairs):
        first, second = Cycle(), Cycle()
        first.other, second.other = second, first


def scheduled_tick() -> None:
    """A named timer callback: the timers-by-callback panel shows it."""


@pytest.fixture(scope="module")
def live() -> Any:
    app = tornado.web.Application([(r"/kept", KeptHandler), (r"/chat", ChatSocket)])
    cache = {f"session-{i}": i for i in range(50)}
    with AppServer(app, config=Config(census_interval=0, worker_label=True)) as server:

        async def setup() -> Any:
            pool = ObjectPool(Connection, max_size=4, name="db")
            server.exporter.pools.register("db", pool)
            server.exporter.watch("sessions", cache)
            server.chat = await tornado.websocket.websocket_connect(f"ws://{server.target}/chat")

            def churn() -> None:  # checkouts given back while scraped: hold-time rates are real
                with pool.acquire():
                    pass

            tornado.ioloop.PeriodicCallback(churn, 200).start()
            asyncio.get_running_loop().call_later(3600, scheduled_tick)
            return await pool.get()  # one object checked out: in_use and oldest checkout move

        held = server.call(setup)
        for _ in range(3):
            assert server.get("/kept")[0] == 200
        census()(server)
        with Prometheus(
            [server.target], rule_files=[ROOT / "alerts/tornado-memory.rules.yml"]
        ) as prom:
            yield server, prom, held, cache
    kept.clear()


def census() -> Any:
    def run(server: AppServer) -> None:
        async def now() -> None:
            gc.collect()  # test code: full collections for the pause and after-GC panels
            gc.disable()  # test code: the cycles stay uncollected garbage until counted
            try:
                leave_cycles(100)
                await server.exporter.census_now()
            finally:
                gc.enable()

        server.call(now)

    return run


def _exported(text: str) -> set[str]:
    return {s.name for family in text_string_to_metric_families(text) for s in family.samples}


@pytest.mark.integration
def test_every_metric_named_by_a_rule_or_panel_is_exported(live: Any) -> None:
    server = live[0]
    exported = _exported(server.scrape())
    named: dict[str, str] = {}
    exprs = list(rule_exprs(RULES)) + [x for m in DASHBOARDS.values() for x in dashboard_exprs(m)]
    for where, expr in exprs:
        if where.endswith(("$job", "$instance", "$worker", "$type")):
            expr = label_values_query(expr)[0]
        for selector in walk(substitute(expr))[0]:
            named.setdefault(selector.name, where)
    missing = {
        name: where for name, where in named.items() if name not in exported | RECORDED | NOT_OURS
    }
    assert set(missing) == NOT_YET_EXPORTED, f"named but not exported: {missing}"
    assert NOT_YET_EXPORTED <= set(named), "NOT_YET_EXPORTED lists names nothing uses any more"


def _resolve(prom: Prometheus, query: str, values: dict[str, str]) -> list[str]:
    selector, label = label_values_query(query)
    series = prom.api("series", **{"match[]": substitute(selector, values)})
    return sorted({s[label] for s in series if label in s})


def _finite(result: list[dict]) -> bool:
    return any(math.isfinite(float(r["value"][1])) for r in result)


@pytest.mark.integration
def test_every_variable_and_panel_query_returns_data(live: Any) -> None:
    server, prom = live[0], live[1]
    prom.wait_for_series('tornado_exporter_info{worker="0"}')
    # enough samples for rates over the substituted windows, and censuses to take deltas of
    for _ in range(2):
        census()(server)
    wait_for(
        "recorded floors",
        lambda: len(prom.query("count_over_time(instance:tornado_handlers_alive:floor[1m]) >= 3")),
        timeout=30,
    )
    substitutions = {RATE_INTERVAL: "20s", RANGE: "1m"}
    last: dict[str, str] = {}

    def attempt() -> bool:
        census()(server)
        for model in DASHBOARDS.values():
            values: dict[str, str] = {}
            for variable in model["templating"]["list"]:
                if variable["type"] != "query":
                    continue
                found = _resolve(prom, variable["query"]["query"], values)
                if not found:
                    last["problem"] = f"{model['uid']}: ${variable['name']} resolves to nothing"
                    return False
                # "All", as Grafana selects on first load (the garbage of one type may be none)
                values[variable["name"]] = variable["allValue"]
            for panel in _panels(model):
                for target in panel["targets"]:
                    expr = substitute(target["expr"], values)
                    for sentinel, real in substitutions.items():
                        expr = expr.replace(sentinel, real)
                    if " offset 1d" in expr:  # a day-old comparison: no test Prometheus has it
                        continue
                    if not _finite(prom.query(expr)):
                        last["problem"] = (
                            f"{model['uid']}: {panel['title']} [{target['refId']}] {expr}"
                        )
                        return False
        return True

    try:
        wait_for("every dashboard query to return data", attempt, timeout=60, interval=1)
    except AssertionError:
        raise AssertionError(f"no data after 60 s: {last.get('problem')}") from None
    rules = prom.api("rules")["groups"]
    unhealthy = [
        (r["name"], r.get("lastError")) for g in rules for r in g["rules"] if r["health"] != "ok"
    ]
    assert unhealthy == []
    assert sum(len(g["rules"]) for g in rules) == 82
