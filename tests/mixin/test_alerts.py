"""The shipped rules: lint, promtool scenarios (committed and regenerated for other configs), the
alert contract of docs/design.md, runbook anchors, and proof that the traps are traps."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from promql_tools import rule_exprs, walk
from realbin import promtool

from tornado_memory_exporter.mixin import (
    MixinConfig,
    build_rule_tests,
    build_rules,
    write_all,
)
from tornado_memory_exporter.mixin.config import duration, seconds
from tornado_memory_exporter.mixin.rules import ALERTING_GROUP, RECORDING_GROUP
from tornado_memory_exporter.mixin.scenarios.build import time_to_fire
from tornado_memory_exporter.mixin.write import to_yaml

ROOT = Path(__file__).resolve().parents[2]
ALERTS = ROOT / "alerts"
RULES = ALERTS / "tornado-memory.rules.yml"
TEST_FILES = sorted(ALERTS.glob("*.test.yml"))

# docs/design.md "Alerts" with each alert's severities.
CONTRACT = {
    "TornadoMemoryLeakSuspected": {"warning"},
    "TornadoMemoryNearLimit": {"warning", "critical"},  # node-mixin style twins
    "TornadoMemoryRestartLoop": {"critical"},
    "TornadoPythonHeapGrowing": {"warning"},
    "TornadoObjectTypeGrowing": {"warning"},
    "TornadoHandlersLeaking": {"warning"},
    "TornadoWatchedObjectGrowing": {"warning"},
    "TornadoGCUncollectable": {"warning"},
    "TornadoGCPauseHigh": {"warning"},
    "TornadoIOLoopBlocked": {"warning"},
    "TornadoPoolSaturated": {"warning"},
    "TornadoPoolExhausted": {"critical"},
    "TornadoPoolLeak": {"critical"},
    "TornadoCensusStale": {"warning"},
    "TornadoMemoryExporterDown": {"warning"},
    "TornadoWriteBuffersGrowing": {"warning"},
    "TornadoAllocatorRetention": {"warning"},
    "TornadoTimersGrowing": {"warning"},
}


def _alert_rules() -> list[dict[str, Any]]:
    rules = yaml.safe_load(RULES.read_text())
    return [rule for group in rules["groups"] for rule in group["rules"] if "alert" in rule]


def test_every_contract_alert_exists_with_its_severities() -> None:
    found: dict[str, set[str]] = {}
    for rule in _alert_rules():
        found.setdefault(rule["alert"], set()).add(rule["labels"]["severity"])
    assert found == CONTRACT


def test_every_alert_has_static_summary_templated_description_runbook_and_for() -> None:
    runbook = (ALERTS / "RUNBOOK.md").read_text()
    anchors = {
        re.sub(r"[^a-z0-9 -]", "", h.strip().lower()).replace(" ", "-")
        for h in re.findall(r"^#+ (.+)$", runbook, flags=re.MULTILINE)
    }
    base = MixinConfig().runbook_url
    for rule in _alert_rules():
        name, notes = rule["alert"], rule["annotations"]
        assert set(notes) == {"summary", "description", "runbook_url"}, name
        assert "{{" not in notes["summary"] and notes["summary"].endswith("."), name
        assert "{{ $labels.instance }}" in notes["description"], name
        assert notes["runbook_url"] == f"{base}#{name.lower()}", name
        assert name.lower() in anchors, f"RUNBOOK.md has no section for {name}"
        assert seconds(rule["for"]) > 0, name
    # the runbook's internal links point at real anchors
    for link in re.findall(r"\]\(#([^)]+)\)", runbook):
        assert link in anchors, link


@pytest.mark.integration
def test_rules_pass_promtool_lint_and_the_prometheusrule_twin_too(tmp_path: Path) -> None:
    result = promtool("check", "rules", "--lint=all", "--lint-fatal", str(RULES))
    assert result.returncode == 0, result.stdout.decode() + result.stderr.decode()
    assert b"SUCCESS: 82 rules found" in result.stdout
    crd = yaml.safe_load((ALERTS / "tornado-memory.prometheusrule.yaml").read_text())
    assert crd["spec"] == yaml.safe_load(RULES.read_text())
    (tmp_path / "spec.yml").write_text(yaml.safe_dump(crd["spec"]))
    result = promtool("check", "rules", "--lint=all", "--lint-fatal", str(tmp_path / "spec.yml"))
    assert result.returncode == 0, result.stdout.decode() + result.stderr.decode()


@pytest.mark.integration
def test_lint_is_fatal_on_a_duplicate_rule(tmp_path: Path) -> None:
    # The flag the suite relies on really fails the check (without it promtool exits 0).
    rules = yaml.safe_load(RULES.read_text())
    rules["groups"][1]["rules"].append(copy.deepcopy(rules["groups"][1]["rules"][0]))
    (tmp_path / "dup.yml").write_text(yaml.safe_dump(rules))
    assert (
        promtool(
            "check", "rules", "--lint=all", "--lint-fatal", str(tmp_path / "dup.yml")
        ).returncode
        == 3
    )


@pytest.mark.integration
@pytest.mark.parametrize("test_file", TEST_FILES, ids=lambda p: p.name)
def test_committed_promtool_scenarios_pass(test_file: Path) -> None:
    result = promtool("test", "rules", str(test_file))
    assert result.returncode == 0, result.stdout.decode()[-3000:] + result.stderr.decode()[-3000:]
    assert b"SUCCESS" in result.stdout


@pytest.mark.integration
@pytest.mark.parametrize("profile", ["fast", "narrowed"])
def test_scenarios_hold_for_other_configs(tmp_path: Path, profile: str) -> None:
    # The demo loads the fast profile; users narrow the selector: their regenerated tests pass too.
    cfg = (
        MixinConfig.fast()
        if profile == "fast"
        else MixinConfig.fast(
            selector='job="shop", env=~"prod|stage"',
            namespace="shop",
            # a longer trend window; the floor window stays: the near-limit twins' windows
            # follow it, and a longer one leaves the fast leak no room for "warning only"
            trend_window="90s",
            day_window="6m",
        )
    )
    write_all(cfg, tmp_path)
    for test_file in sorted((tmp_path / "alerts").glob("*.test.yml")):
        if profile == "narrowed":  # labels and names are the point here; the traps ran for "fast"
            tests = yaml.safe_load(test_file.read_text())
            tests["tests"] = [g for g in tests["tests"] if not g["name"].startswith("traps:")]
            test_file.write_text(yaml.safe_dump(tests))
        result = promtool("test", "rules", str(test_file))
        assert result.returncode == 0, (
            result.stdout.decode()[-3000:] + result.stderr.decode()[-3000:]
        )


@pytest.mark.integration
def test_a_twelve_hour_trend_window_keeps_every_trap_silent(tmp_path: Path) -> None:
    # The README's TOML example. Its traffic ramp (4 h up, 2 h held, 4 h down) once fired three
    # alerts: its flanks sat at the three points the both-halves clause compares; the clause
    # now also asks the floor to be at its highest of the last half window.
    write_all(MixinConfig(trend_window="12h"), tmp_path)
    result = promtool("test", "rules", str(tmp_path / "alerts" / "tornado-memory.traps.test.yml"))
    assert result.returncode == 0, result.stdout.decode()[-3000:] + result.stderr.decode()[-3000:]


def test_every_alert_and_severity_is_asserted_firing_and_silent() -> None:
    firing: set[tuple[str, str]] = set()
    silent: set[str] = set()
    for tests in build_rule_tests(MixinConfig()).values():
        for group in tests["tests"]:
            for check in group.get("alert_rule_test", []):
                if check["exp_alerts"]:
                    firing |= {
                        (check["alertname"], a["exp_labels"]["severity"])
                        for a in check["exp_alerts"]
                    }
                else:
                    silent.add(check["alertname"])
    assert firing == {(name, s) for name, severities in CONTRACT.items() for s in severities}
    assert silent == set(CONTRACT)


def test_every_rule_expression_parses() -> None:
    for cfg in (
        MixinConfig(),
        MixinConfig.fast(),
        MixinConfig(selector='job="a", env!~"dev|test"'),
    ):
        for name, expr in rule_exprs(build_rules(cfg)):
            selectors, _ = walk(expr)
            assert selectors, name


def _trap_run(
    tmp_path: Path, rules: dict[str, Any], groups: list[dict[str, Any]], cfg: MixinConfig
) -> str:
    """Run ``groups`` against ``rules``; return the promtool failure output ('' on success)."""
    (tmp_path / "r.yml").write_text(to_yaml(rules))
    # The alerts read the recording group's floors: without an order promtool may evaluate the
    # groups either way round, and a trap's verdict then depends on the run.
    tests = {
        "rule_files": ["r.yml"],
        "evaluation_interval": groups[0]["interval"],
        "group_eval_order": [RECORDING_GROUP, ALERTING_GROUP],
        "tests": groups,
    }
    (tmp_path / "t.yml").write_text(to_yaml(tests))
    result = promtool("test", "rules", str(tmp_path / "t.yml"))
    return "" if result.returncode == 0 else (result.stdout + result.stderr).decode()


def _trap_groups(cfg: MixinConfig) -> list[dict[str, Any]]:
    return [
        g
        for tests in build_rule_tests(cfg).values()
        for g in tests["tests"]
        if g["name"].startswith("traps:")
    ]


@pytest.mark.integration
def test_the_traps_fire_naive_leak_rules(tmp_path: Path) -> None:
    """Each trap trips at least one naive rule of the issue (`deriv(rss[1h]) > 0`, "20% growth in
    2h"): a trap that nothing could mistake for a leak would prove nothing."""
    cfg = MixinConfig()
    floor, ns = seconds(cfg.floor_window), cfg.namespace
    rss = f"{ns}_process_resident_memory_bytes"
    naive = {
        "groups": [
            {
                "name": "naive",
                "rules": [
                    {
                        "alert": "NaiveDeriv",
                        "expr": f"deriv({rss}[{cfg.floor_window}]) > 0",
                        "for": duration(floor // 4),
                    },
                    {
                        "alert": "NaiveGrowth",
                        "expr": f"{rss} > 1.2 * {rss} offset {duration(2 * floor)}",
                        "for": duration(floor // 4),
                    },
                ],
            }
        ]
    }
    seen = set()
    for traps in _trap_groups(cfg):
        end = traps["promql_expr_test"][-1]["eval_time"]
        probe = dict(
            traps,
            alert_rule_test=[],
            promql_expr_test=[
                {
                    "expr": "count by (instance) "
                    f'(count_over_time(ALERTS{{alertstate="firing"}}[{end}]))',
                    "eval_time": end,
                    "exp_samples": [],
                }
            ],
        )
        failure = _trap_run(tmp_path, naive, [probe], cfg)
        fired = set(re.findall(r'\{instance="([\w-]+)"\}', failure))
        instances = {
            s["series"].split('instance="')[1].split('"')[0] for s in traps["input_series"]
        }
        assert fired == instances, failure[-2000:]
        seen |= instances
    assert len(seen) == 15  # three traffic ramps in young processes among them


@pytest.mark.parametrize(
    ("changes", "trap", "instance"),
    [
        # without the day-over-day comparison the daily cycle fires (day_window beyond the test)
        ({"day_window": "30d"}, "traps: a daily", "daily-cycle"),
        # with a 1h warm-up guard the 3h warm-up of a deploy is judged as a leak
        ({"warmup_window": "1h"}, "traps: sawtooth", "deploy-warmup"),
        # the strict young-process rate is what keeps the warm-up's slowing tail silent
        ({"leak_growth_per_hour": 0.0004}, "traps: sawtooth", "deploy-warmup-slowing"),
    ],
)
@pytest.mark.integration
def test_each_new_guard_is_what_keeps_its_trap_silent(
    tmp_path: Path, changes: dict, trap: str, instance: str
) -> None:
    """The traps of the default config, against rules with one guard weakened: that trap fires."""
    (group,) = [g for g in _trap_groups(MixinConfig()) if g["name"].startswith(trap)]
    weakened = build_rules(MixinConfig(**changes))
    failure = _trap_run(tmp_path, weakened, [group], MixinConfig())
    assert f'instance="{instance}"' in failure, failure[-2000:]


def test_the_time_to_fire_page_lists_every_scenario_with_its_time() -> None:
    page = (ALERTS / "TIME-TO-FIRE.md").read_text()
    rows = time_to_fire(MixinConfig())
    assert len(rows) == sum(len(t["tests"]) for t in build_rule_tests(MixinConfig()).values())
    missing = [row for row in rows if "| " + " | ".join(row) + " |" not in page]
    assert missing == [], "alerts/TIME-TO-FIRE.md is stale: regenerate it"
    # every leak row with a duration as its target meets it
    for name, _, goal, time in rows:
        if goal.startswith("by "):
            assert seconds(time.split()[-1]) <= seconds(goal.split()[-1]), name
