"""myservice_api.settings: one declaration gives parsing, rules, flags and table rows."""
from __future__ import annotations

import argparse
import dataclasses

import pytest

from myservice_api import settings
from myservice_api.settings import SettingsError, declare

SHARED = settings.Setting(env="X_SHARED_SECONDS", default=30, minimum=0, zero="off", unit="seconds",
                          aliases=("X_OLD",), help="shared")


@dataclasses.dataclass(frozen=True)
class Example:
    name: str = declare(env="X_NAME", help="required: no default")
    port: int = declare(10, env="X_PORT", flag="--port", minimum=0, maximum=65535, help="a port")
    rate: float = declare(1.5, env="X_RATE", positive=True, help="100% of it")
    mode: str = declare("a", env="X_MODE", flag="--mode", choices=("a", "b", "c"), help="a mode")
    on: bool = declare(False, env="X_ON", flag="--on", help="a switch")
    path: str | None = declare(None, env="X_PATH", help="a file")
    shared_float: float = SHARED.field(flag="--shared")
    shared_int: int = SHARED.field(env="X_SHARED_INT")
    computed: int = declare(env="X_COMPUTED", factory=lambda: 7, default_text="seven", minimum=1, help="computed")
    not_a_setting: str = "x"


def test_defaults_env_flags_and_values():
    e = settings.parse(Example, {"X_NAME": "n"})
    assert e == Example(name="n", rate=1.5, shared_float=30.0)
    assert isinstance(e.shared_float, float) and isinstance(e.shared_int, int)
    e = settings.parse(Example, {"X_NAME": " n ", "X_PORT": " 80", "X_ON": "yes", "X_PATH": "/p", "X_SHARED_SECONDS": "2.5",
                                 "X_SHARED_INT": "3", "X_COMPUTED": "9"},
                       flags={"port": "81", "mode": None}, not_a_setting="y")
    assert (e.name, e.port, e.on, e.path, e.shared_float, e.shared_int, e.computed, e.not_a_setting) == (
        "n", 81, True, "/p", 2.5, 3, 9, "y")
    assert settings.parse(Example, {"X_PORT": ""}, defaults={"name": "run-time"}).name == "run-time"


@pytest.mark.parametrize("env,message", [
    ({}, "X_NAME must be set"),
    ({"X_PORT": "70000"}, "X_PORT must be an integer 0..65535, got '70000'"),
    ({"X_PORT": "1.5"}, "X_PORT must be an integer 0..65535, got '1.5'"),
    ({"X_RATE": "0"}, "X_RATE must be a number > 0, got '0'"),
    ({"X_RATE": "inf"}, "X_RATE must be a number > 0, got 'inf'"),
    ({"X_MODE": "d"}, "X_MODE must be a, b or c, got 'd'"),
    ({"X_ON": "maybe"}, "X_ON must be true or false, got 'maybe'"),
    ({"X_SHARED_SECONDS": "-1"}, "X_SHARED_SECONDS must be a number of seconds >= 0 (0 = off), got '-1'"),
    ({"X_SHARED_INT": "0.5"}, "X_SHARED_INT must be a whole number of seconds >= 0 (0 = off), got '0.5'"),
    ({"X_OLD": "x"}, "X_OLD must be a number of seconds >= 0 (0 = off), got 'x'"),
    ({"X_COMPUTED": "0"}, "X_COMPUTED must be an integer >= 1, got '0'"),
])
def test_errors_name_the_variable_and_the_rule(env, message):
    with pytest.raises(SettingsError) as error:
        settings.parse(Example, {"X_NAME": "n", **env} if env else env)
    assert str(error.value) == message


def test_errors_name_the_flag_a_value_came_from():
    with pytest.raises(SettingsError, match=r"^--port must be an integer 0..65535, got 'x'$"):
        settings.parse(Example, {"X_NAME": "n"}, flags={"port": "x"})
    with pytest.raises(SettingsError, match=r"^--port must be an integer 0..65535, got -1$"):
        settings.parse(Example, {"X_NAME": "n"}, flags={"port": -1})


def test_an_old_name_is_read_with_a_warning_and_ignored_beside_the_new(caplog):
    assert settings.parse(Example, {"X_NAME": "n", "X_OLD": "5"}).shared_float == 5.0
    assert "X_OLD is deprecated: read as X_SHARED_SECONDS, rename it" in caplog.text
    assert settings.parse(Example, {"X_NAME": "n", "X_OLD": "5", "X_SHARED_SECONDS": "6"}).shared_float == 6.0
    assert "X_OLD is ignored: X_SHARED_SECONDS is set" in caplog.text


def test_flags_and_their_help():
    parser = argparse.ArgumentParser()
    settings.add_flags(parser, Example, skip=("mode",), shown_defaults={"port": "20"})
    args = parser.parse_args(["--port", "5", "--on"])
    assert settings.flag_values(args, Example) == {"port": "5", "mode": None, "on": True, "shared_float": None}
    assert set(settings.flag_values(parser.parse_args([]), Example).values()) == {None}
    text = " ".join(parser.format_help().split())
    assert "--mode" not in text
    assert "a port (env X_PORT, default 20)" in text
    assert "a switch (env X_ON, default off)" in text
    assert "--shared SECONDS shared (env X_SHARED_SECONDS, default 30; 0 = off)" in text


def test_table():
    assert settings.table(Example)[:3] == [
        settings.Row("X_NAME", None, "unset", "required: no default"),
        settings.Row("X_PORT", "--port", "10", "a port"),
        settings.Row("X_RATE", None, "1.5", "100% of it"),
    ]
    assert [row.default for row in settings.table(Example)[3:]] == ["a", "off", "unset", "30", "30", "seven"]
