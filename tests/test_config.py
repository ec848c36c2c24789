import dataclasses
import math

import pytest

from tornado_memory_exporter import Config


def test_defaults_are_valid_and_documented():
    config = Config()
    assert config.namespace == "tornado"
    assert config.census_interval == 60.0
    assert config.process_full_memory is False
    assert config.auth_required is False


def test_is_frozen_and_keyword_only():
    config = Config()
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.namespace = "x"  # type: ignore[misc]
    with pytest.raises(TypeError):
        Config("x")  # type: ignore[misc]


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("namespace", ""),
        ("namespace", "9lives"),
        ("namespace", "my-app"),
        ("namespace", "python"),
        ("namespace", "process"),
        ("census_interval", -1),
        ("census_interval", math.nan),
        ("census_interval", "60"),
        ("census_interval", True),
        ("census_top_n", -1),
        ("census_top_n", 2.5),
        ("census_top_n", 1001),
        ("census_mode", "sometimes"),
        ("worker_interval", 0),
        ("worker_dir", "relative/dir"),
        ("scrape_cache_seconds", -1),
        ("explorer_path", "no-slash"),
        ("explorer_show_contents", 1),
        ("census_allowlist", ["dict"]),
        ("census_allowlist", ("",)),
        ("process_full_memory", "yes"),
        ("auth_token", ""),
        ("basic_auth", ("user",)),
        ("basic_auth", ("us:er", "pw")),
    ],
)
def test_invalid_values_raise_value_error_naming_them(option, value):
    with pytest.raises(ValueError, match=option):
        Config(**{option: value})


@pytest.mark.parametrize(
    ("option", "value", "what"),
    [
        ("census_interval", "60", "a finite number"),
        ("census_mode", 1, "one of 'auto', 'fork', 'inloop'"),
        ("census_top_n", 2.5, "an integer"),
        ("process_full_memory", "yes", "True or False"),
    ],
)
def test_wrong_types_raise_type_error_saying_what_to_pass(option, value, what):
    with pytest.raises(TypeError, match=f"{option}={value!r} must be {what}"):
        Config(**{option: value})


def test_options_a_user_sets_stay_few():
    # Tuning knobs are module constants beside the code they tune (issue: at most 16 options).
    assert len(dataclasses.fields(Config)) <= 16


def test_basic_auth_error_does_not_echo_the_password():
    with pytest.raises(ValueError) as error:
        Config(basic_auth=("user", ""))
    assert "redacted" in str(error.value)


def test_auth_required_with_either_scheme():
    assert Config(auth_token="t").auth_required
    assert Config(basic_auth=("u", "p")).auth_required
