"""The mixin's config, YAML writer, generator and CLI: what a user narrows and regenerates."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from promql_tools import dashboard_exprs, label_values_query, rule_exprs, substitute, walk

from tornado_memory_exporter.mixin import (
    MixinConfig,
    build_dashboards,
    build_prometheus_rule,
    build_rules,
    render_all,
    templating,
    write_all,
)
from tornado_memory_exporter.mixin.config import duration, seconds
from tornado_memory_exporter.mixin.write import to_yaml

ROOT = Path(__file__).resolve().parents[2]
GENERATED_DIRS = ("alerts", "dashboards")
HAND_WRITTEN: set[str] = set()  # RUNBOOK.md is written by the generator too (from the package)


def test_committed_artifacts_equal_the_generated_output() -> None:
    expected = render_all(MixinConfig())
    on_disk = {
        str(path.relative_to(ROOT)): path.read_text(encoding="utf-8")
        for folder in GENERATED_DIRS
        for path in (ROOT / folder).rglob("*")
        if path.is_file()
    }
    stale = sorted(set(on_disk) - set(expected) - HAND_WRITTEN)
    assert stale == [], f"files not produced by the generator: {stale}"
    drifted = sorted(name for name, text in expected.items() if on_disk.get(name) != text)
    assert drifted == [], (
        f"{drifted} differ from the generated output: run "
        "`.venv/bin/python -m tornado_memory_exporter generate --out .`"
    )


@pytest.mark.parametrize("profile", ["default", "fast"])
def test_yaml_writer_round_trips_every_generated_file(profile: str) -> None:
    cfg = MixinConfig() if profile == "default" else MixinConfig.fast()
    for name, text in render_all(cfg).items():
        if name.endswith((".yml", ".yaml")):
            assert yaml.safe_load(text) is not None, name
    assert yaml.safe_load(to_yaml(build_rules(cfg))) == build_rules(cfg)


@pytest.mark.parametrize(
    "value",
    [
        "yes",
        "No",
        "on",
        "null",
        "true",
        "1h",
        "a: b",
        "#x",
        "- x",
        "",
        "é ü",
        'quote " and \\',
        "two\nlines\n",
        "two\nlines",
        "trailing space \nline",
        " leading\nspace",
        "tab\there",
        "{{ $labels.x }}",
        "[1]",
        "*ref",
        "&a",
        "!tag",
        "%",
        "@",
        "`x`",
        "x\n\n",
    ],
)
def test_yaml_writer_keeps_tricky_strings(value: str) -> None:
    data = {"key": value, "list": [value, {"inner": value}], value or "empty": 1}
    assert yaml.safe_load(to_yaml(data)) == data


def test_durations_round_trip_and_bad_ones_are_named() -> None:
    assert [seconds(d) for d in ("90s", "1h30m", "2d", "1d2h3m4s")] == [90, 5400, 172800, 93784]
    assert [duration(s) for s in (90, 5400, 172800, 93784, 0)] == [
        "1m30s",
        "1h30m",
        "2d",
        "1d2h3m4s",
        "0s",
    ]
    for bad in ("", "1x", "h", "1.5h", "-1h", "5m1h"):
        with pytest.raises(ValueError, match=f"duration={bad!r} is not a Prometheus duration"):
            seconds(bad)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"namespace": "1x"}, "namespace='1x' is not a valid"),
        ({"selector": "job=shop"}, "selector='job=shop' must be label matchers"),
        ({"selector": 'job="a"}) or vector(1'}, "selector="),
        ({"floor_window": "6h"}, "floor_window='6h' must be shorter than trend_window='6h'"),
        ({"trend_window": "2h1s"}, "trend_window='2h1s' must be an even number of seconds"),
        ({"pool_window": "soon"}, "pool_window='soon' is not a Prometheus duration"),
        ({"leak_growth_per_hour": 0}, "leak_growth_per_hour=0 must be a finite number > 0"),
        ({"pool_window": "0s"}, "pool_window='0s' must be > 0s"),
        ({"leak_min_objects": -1}, "leak_min_objects=-1 must be an integer >= 0"),
        ({"instance_labels": ()}, "instance_labels=() must be"),
        ({"instance_labels": ("job", "in-stance")}, "instance_labels=('job', 'in-stance') must"),
        ({"dashboard_uid_prefix": "x" * 31}, "dashboard_uid_prefix='xxx"),
    ],
)
def test_invalid_config_raises_naming_the_value(changes: dict, message: str) -> None:
    with pytest.raises(ValueError) as error:
        MixinConfig(**changes)
    assert message in str(error.value)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"floor_window": 3600}, "floor_window=3600 is not a Prometheus duration: pass a string"),
        ({"leak_growth_per_hour": "1%"}, "leak_growth_per_hour='1%' must be a finite number > 0"),
        ({"leak_min_objects": 10.0}, "leak_min_objects=10.0 must be an integer >= 0"),
        ({"dashboard_tags": ["a"]}, "dashboard_tags=['a'] must be a tuple of strings"),
        ({"runbook_url": None}, "runbook_url=None must be a non-empty string"),
    ],
)
def test_wrong_types_raise_type_error_saying_what_to_pass(changes: dict, message: str) -> None:
    with pytest.raises(TypeError) as error:
        MixinConfig(**changes)
    assert message in str(error.value)


def test_few_options_and_every_for_derived_from_the_windows() -> None:
    assert len(dataclasses.fields(MixinConfig)) <= 25
    assert not [f.name for f in dataclasses.fields(MixinConfig) if f.name.endswith("_for")]
    # the defaults keep their documented durations; the fast profile scales them
    default, fast = MixinConfig(), MixinConfig.fast()
    assert (default.leak_for, default.near_limit_for, default.pool_saturated_for) == (
        "30m",
        "30m",
        "15m",
    )
    assert (fast.leak_for, fast.near_limit_for, fast.alert_group_wait) == ("20s", "10s", "10s")


def test_from_mapping_rejects_unknown_keys_and_profiles() -> None:
    with pytest.raises(ValueError, match=r"unknown MixinConfig option\(s\) \['selecter'\]"):
        MixinConfig.from_mapping({"selecter": 'job="x"'})
    with pytest.raises(ValueError, match="profile='quick' must be 'default' or 'fast'"):
        MixinConfig.from_mapping({"profile": "quick"})
    fast = MixinConfig.from_mapping({"profile": "fast", "dashboard_tags": ["a"]})
    assert fast == MixinConfig.fast(dashboard_tags=("a",))


def test_fast_profile_fires_a_steady_leak_within_two_minutes() -> None:
    fast = MixinConfig.fast()
    # warm-up guard + floor, then both halves of the young window rising + for: the demo's budget.
    worst = (
        seconds(fast.warmup_window)
        + seconds(fast.floor_window)
        + seconds(fast.young_trend_window)
        + seconds(fast.leak_for)
        + 30
    )
    assert worst <= 120, worst


def test_fast_profile_keeps_the_guards_of_the_default_one() -> None:
    # Same clauses, same relative thresholds per window: only the time scale differs.
    default, fast = MixinConfig(), MixinConfig.fast()
    for cfg in (default, fast):
        assert seconds(cfg.warmup_window) + seconds(cfg.floor_window) < seconds(
            cfg.floor_window
        ) + seconds(cfg.trend_window)
        assert 2 * seconds(cfg.leak_for) > seconds(cfg.young_trend_window)
    per_window = [
        (
            c.leak_growth_per_hour * seconds(c.trend_window),
            c.young_growth_per_hour * seconds(c.young_trend_window),
            c.leak_growth_per_hour * seconds(c.day_window),
        )
        for c in (default, fast)
    ]
    for d, f in zip(*per_window, strict=True):
        assert f >= d * 0.99, per_window


def _selector_cfg() -> MixinConfig:
    return MixinConfig(selector='job="shop", env=~"prod|stage"', namespace="shop")


def test_narrowed_selector_reaches_every_series_of_rules_and_dashboards() -> None:
    cfg = _selector_cfg()
    exprs = list(rule_exprs(build_rules(cfg)))
    for model in build_dashboards(cfg).values():
        exprs += list(dashboard_exprs(model))
    recorded = {name for name, _ in rule_exprs(build_rules(cfg)) if ":" in name}
    seen = 0
    for where, expr in exprs:
        if where.endswith(("$job", "$instance", "$worker", "$type")):
            expr = label_values_query(expr)[0]
        for selector in walk(substitute(expr))[0]:
            if selector.name in recorded:  # recorded from already narrowed series
                continue
            seen += 1
            assert ("job", "=", "shop") in selector.matchers, (where, expr)
            assert ("env", "=~", "prod|stage") in selector.matchers, (where, expr)
            assert selector.name == "up" or selector.name.startswith("shop_"), (
                where,
                selector.name,
            )
    assert seen >= 70  # a walk that found next to nothing would prove nothing


def test_prometheus_rule_wraps_the_same_groups() -> None:
    cfg = _selector_cfg()
    crd = build_prometheus_rule(cfg)
    assert (crd["apiVersion"], crd["kind"]) == ("monitoring.coreos.com/v1", "PrometheusRule")
    assert crd["spec"] == build_rules(cfg)


def test_generate_command_writes_a_narrowed_mixin(tmp_path: Path) -> None:
    config = tmp_path / "mixin.toml"
    config.write_text(
        'selector = \'job="shop"\'\nrunbook_url = "https://runbooks.example/tornado.md"\n'
    )
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "tornado_memory_exporter",
            "generate",
            "--config",
            str(config),
            "--out",
            str(tmp_path / "out"),
        ],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    expected = render_all(
        MixinConfig(selector='job="shop"', runbook_url="https://runbooks.example/tornado.md")
    )
    written = sorted(
        str(p.relative_to(tmp_path / "out")) for p in (tmp_path / "out").rglob("*") if p.is_file()
    )
    assert written == sorted(expected)
    assert result.stdout.splitlines() == [f"wrote {tmp_path / 'out' / name}" for name in expected]
    rules = yaml.safe_load((tmp_path / "out/alerts/tornado-memory.rules.yml").read_text())
    alert = rules["groups"][1]["rules"][0]
    assert (
        alert["annotations"]["runbook_url"]
        == "https://runbooks.example/tornado.md#tornadomemoryleaksuspected"
    )
    assert 'tornado_process_resident_memory_bytes{job="shop"}' in alert["expr"]
    overview = json.loads((tmp_path / "out/dashboards/tornado-memory-overview.json").read_text())
    assert (
        overview["templating"]["list"][1]["query"]["query"]
        == 'label_values(tornado_exporter_info{job="shop"}, job)'
    )


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("selector = 'job=shop'\n", "selector='job=shop' must be label matchers"),
        ("floor_window = 3\n", "floor_window=3 is not a Prometheus duration: pass a string"),
        ("nope = 1\n", "unknown MixinConfig option(s) ['nope']"),
        ("selector = \n", "is not valid TOML"),
    ],
)
def test_generate_command_rejects_a_bad_config_with_exit_2(
    tmp_path: Path, content: str, message: str
) -> None:
    config = tmp_path / "bad.toml"
    config.write_text(content)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "tornado_memory_exporter",
            "generate",
            "--config",
            str(config),
            "--out",
            str(tmp_path / "out"),
        ],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2, result
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()


def test_generate_command_names_a_missing_config(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "tornado_memory_exporter",
            "generate",
            "--config",
            str(tmp_path / "none.toml"),
        ],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert f"--config '{tmp_path / 'none.toml'}': No such file or directory" in result.stderr


def test_regex_selectors_the_scenarios_cannot_express_skip_only_the_tests(
    tmp_path: Path, caplog
) -> None:
    cfg = MixinConfig(selector='job=~"shop.*"')
    written = {str(p.relative_to(tmp_path)) for p in write_all(cfg, tmp_path)}
    assert "alerts/tornado-memory.rules.yml" in written
    assert not any(name.endswith(".test.yml") for name in written)
    assert "cannot derive test series labels from 'job=~\"shop.*\"'" in caplog.text


@pytest.mark.parametrize(
    ("function", "value", "text"),
    [
        (templating.humanize, 1234567, "1.235M"),
        (templating.humanize, 0.00123, "1.23m"),
        (templating.humanize, 0, "0"),
        (templating.humanize1024, 268435456, "256Mi"),
        (templating.humanize1024, 1, "1"),
        (templating.humanize1024, 1536, "1.5ki"),
        (templating.humanize_duration, 0.9925, "992.5ms"),
        (templating.humanize_duration, 3725, "1h 2m 5s"),
        (templating.humanize_duration, 90061, "1d 1h 1m 1s"),
        (templating.humanize_duration, 5, "5s"),
        (templating.humanize_percentage, 0.5, "50%"),
        (templating.plain, 3.0, "3"),
    ],
)
def test_template_twins_format_like_prometheus(function, value: float, text: str) -> None:
    # promtool asserts the same formatting in the committed tests (exact annotations).
    assert function(value) == text


def test_a_bad_value_names_its_key_with_generates_usage(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text("trend_window = 12\n")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "tornado_memory_exporter",
            "generate",
            "--config",
            str(config),
            "--out",
            str(tmp_path / "out"),
        ],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.startswith("usage: tornado-memory-exporter generate "), result.stderr
    assert (
        f"--config '{config}': trend_window=12 is not a Prometheus duration: pass a string"
        in result.stderr
    )


def test_without_out_generate_says_it_writes_into_the_current_directory(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "tornado_memory_exporter", "generate"]
    helped = subprocess.run(
        [*command, "--help"], capture_output=True, text=True, timeout=60, check=True
    )
    assert "(default: the current directory)" in " ".join(helped.stdout.split())
    result = subprocess.run(
        command, cwd=tmp_path, capture_output=True, text=True, timeout=60, check=True
    )
    assert f"writing into the current directory, {tmp_path}" in result.stderr
    # The runbook every runbook_url points into is written (and shipped in the package) too.
    assert (tmp_path / "alerts" / "RUNBOOK.md").read_text() == (
        ROOT / "alerts" / "RUNBOOK.md"
    ).read_text()
    assert "wrote alerts/RUNBOOK.md" in result.stdout.splitlines()
