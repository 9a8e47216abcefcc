"""Typed settings: every WM_* text parsed into its type at load, one clear line for a bad value,
a warning for an unknown WM_* name, and `webhookmaster settings` showing the effective values."""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import subprocess
import sys

import pytest

from webhookmaster import settings as settings_mod
from webhookmaster.ops import cli
from webhookmaster.retry_ladder import tiers
from webhookmaster.settings import PROJECT_ROOT, SettingsError

# (variable, text, parsed value): accepted texts, one or more per kind of setting.
GOOD = [
    ("WM_GATEWAY_PORT", "1", 1),
    ("WM_GATEWAY_PORT", "65535", 65535),
    ("WM_KAFKA_PORT", " 19092 ", 19092),
    ("WM_TOPIC_PARTITIONS", "1", 1),
    ("WM_MAX_BODY_BYTES", "2048", 2048),
    ("WM_CONNECT_TIMEOUT", "0.5", 0.5),
    ("WM_REQUEST_READ_TIMEOUT", "3", 3.0),
    ("WM_PROJECTOR_BATCH_WAIT", "0", 0.0),
    ("WM_UVLOOP", "true", True),
    ("WM_UVLOOP", "FALSE", False),
    ("WM_UVLOOP", "1", True),
    ("WM_UVLOOP", "0", False),
    ("WM_UVLOOP", "yes", True),
    ("WM_UVLOOP", "no", False),
    ("WM_UVLOOP", "On", True),
    ("WM_UVLOOP", " off ", False),
    ("WM_RETRY_LADDER", "1,2,3,4,5", "1,2,3,4,5"),
    ("WM_RETRY_LADDER", "0.5, 1, 2, 4, 8", "0.5, 1, 2, 4, 8"),
    ("WM_ALLOWED_CIDRS", "", ""),
    ("WM_ALLOWED_CIDRS", "127.0.0.0/8, ::1/128,10.1.2.3", "127.0.0.0/8, ::1/128,10.1.2.3"),
    ("WM_API_KEYS", "k-1,k_2~", "k-1,k_2~"),
    ("WM_API_KEYS", "", ""),
    ("WM_LOG_LEVEL", "debug", "debug"),
    ("WM_LOG_LEVEL", "WARNING", "WARNING"),
    ("WM_DB_SCHEMA", "anything goes", "anything goes"),
]

# (variable, text, words the error line must hold after "WM_X: ").
BAD = [
    ("WM_GATEWAY_PORT", "0", "greater than or equal to 1"),
    ("WM_AGENT_PORT", "65536", "less than or equal to 65535"),
    ("WM_PG_PORT", "-5", "greater than or equal to 1"),
    ("WM_KAFKA_PORT", "abc", "valid integer"),
    ("WM_MAX_IN_FLIGHT", "1.5", "valid integer"),
    ("WM_TOPIC_PARTITIONS", "0", "greater than 0"),
    ("WM_MAX_BODY_BYTES", "-1", "greater than 0"),
    ("WM_CONNECT_TIMEOUT", "0", "greater than 0"),
    ("WM_REQUEST_TIMEOUT", "-2.5", "greater than 0"),
    ("WM_READY_TIMEOUT", "nan", "finite number"),
    ("WM_TABLE_LOAD_TIMEOUT", "inf", "finite number"),
    ("WM_PROJECTOR_BATCH_WAIT", "-0.1", "greater than or equal to 0"),
    ("WM_UVLOOP", "ture", "true/false"),
    ("WM_UVLOOP", "", "true/false"),
    ("WM_UVLOOP", "2", "true/false"),
    ("WM_RETRY_LADDER", "10,30,60,300", "needs 5 positive delays"),
    ("WM_RETRY_LADDER", "10,30,60,300,900,1800", "needs 5 positive delays"),
    ("WM_RETRY_LADDER", "10,30,0,300,900", "needs 5 positive delays"),
    ("WM_RETRY_LADDER", "10,30,1m,300,900", "needs 5 positive delays"),
    ("WM_RETRY_LADDER", "10,30,inf,300,900", "needs 5 positive delays"),
    ("WM_ALLOWED_CIDRS", "10.0.0.0/8,nonsense", "'nonsense' is not an IP network"),
    ("WM_ALLOWED_CIDRS", "10.0.0.0/33", "'10.0.0.0/33' is not an IP network"),
    ("WM_API_KEYS", "good,has space", "key 2 has a space"),
    ("WM_API_KEYS", "caf\u00e9", "key 1 has a space, control or non-ASCII"),
    ("WM_LOG_LEVEL", "loud", "expected DEBUG, INFO"),
]


@pytest.mark.parametrize(("name", "text", "value"), GOOD)
def test_good_values_parse_into_their_types(name: str, text: str, value: object) -> None:
    field = next(f for f in dataclasses.fields(settings_mod.Settings) if f.metadata["env"] == name)
    loaded = getattr(settings_mod.load({name: text}), field.name)
    assert loaded == value and type(loaded) is type(value)


@pytest.mark.parametrize(("name", "text", "words"), BAD)
def test_bad_values_give_one_line_naming_the_variable(name: str, text: str, words: str) -> None:
    with pytest.raises(SettingsError) as caught:
        settings_mod.load({name: text})
    message = str(caught.value)
    assert message.startswith(f"{name}: ") and words in message
    assert "\n" not in message


def test_api_keys_are_not_echoed_in_errors() -> None:
    with pytest.raises(SettingsError) as caught:
        settings_mod.load({"WM_API_KEYS": "sekrit-one,sekrit two"})
    assert "sekrit" not in str(caught.value)


def test_defaults_are_valid_and_survive_a_round_trip_through_the_environment() -> None:
    defaults = settings_mod.Settings()
    for f in dataclasses.fields(defaults):
        assert settings_mod.parse(f, f.default) == f.default
    assert settings_mod.load(settings_mod.to_env(defaults)) == defaults
    tuned = settings_mod.load({"WM_UVLOOP": "off", "WM_RETRY_LADDER": "1,2,3,4,5"})
    assert settings_mod.load(settings_mod.to_env(tuned)) == tuned


def test_parsed_views_of_the_list_settings() -> None:
    loaded = settings_mod.load(
        {
            "WM_RETRY_LADDER": "1, 2,3,4,5.5",
            "WM_ALLOWED_CIDRS": "10.0.0.1/8, ::1",
            "WM_API_KEYS": " a , ,b ",
        }
    )
    assert loaded.retry_delays == (1.0, 2.0, 3.0, 4.0, 5.5)
    assert [t.delay_s for t in tiers("p.", loaded.retry_ladder)] == list(loaded.retry_delays)
    assert loaded.allowed_networks == (
        ipaddress.ip_network("10.0.0.0/8"),
        ipaddress.ip_network("::1/128"),
    )
    assert loaded.api_key_list == ("a", "b")


def test_unknown_wm_names_are_listed_but_test_variables_are_not() -> None:
    env = {
        "WM_FOO": "1",
        "WM_GATEWAY_PORT": "1",
        "WM_TEST_KAFKA_PORT": "1",
        "WM_FUZZ_MAX_EXAMPLES": "5",
        "WMX": "1",
        "PATH": "/bin",
        "WM_GATEWAYPORT": "2",
    }
    assert settings_mod.unknown_names(env) == ["WM_FOO", "WM_GATEWAYPORT"]


def test_cli_warns_of_unknown_names_and_still_runs(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("WM_NO_SUCH_SETTING", "x")
    assert cli.main(["settings", "--table"]) == 0
    out, err = capsys.readouterr()
    assert err == "webhookmaster: warning: unknown setting WM_NO_SUCH_SETTING\n"
    assert out.strip() == settings_mod.markdown_table()


def test_settings_command_prints_effective_values_with_secrets_masked(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in settings_mod.env_names():
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("WM_GATEWAY_PORT", "18080")
    monkeypatch.setenv("WM_UVLOOP", "no")
    monkeypatch.setenv("WM_API_KEYS", "first-key,second-key")
    monkeypatch.setenv("WM_SECRET_KEYS", "fernet-key-text")
    assert cli.main(["settings"]) == 0
    out = capsys.readouterr().out
    shown = dict(line.split(None, 1) if " " in line else (line, "") for line in out.splitlines())
    assert set(shown) == settings_mod.env_names()
    assert shown["WM_GATEWAY_PORT"] == "18080"  # set: the effective value, not the default
    assert shown["WM_UVLOOP"] == "false"
    assert shown["WM_AGENT_PORT"] == "29101"  # unset: the default
    assert shown["WM_API_KEYS"] == "**** (2 keys)"
    assert shown["WM_SECRET_KEYS"] == "**** (1 key)"
    assert shown["WM_ALLOWED_CIDRS"] == ""
    assert "first-key" not in out and "fernet-key-text" not in out


@pytest.mark.parametrize("command", ["gateway", "agent", "scheduler", "projector"])
def test_component_with_a_bad_setting_fails_with_one_line(command: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WM_")}
    env.update({"WM_UVLOOP": "ture", "WM_STATE_DIR": str(PROJECT_ROOT / ".wm-state" / "unused")})
    done = subprocess.run(
        [sys.executable, "-m", "webhookmaster", command],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=PROJECT_ROOT,
    )
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr == (
        "webhookmaster: error: WM_UVLOOP: expected one of true/false, "
        "1/0, yes/no, on/off (got 'ture')\n"
    )


def test_table_lists_every_setting_once_with_the_local_stack_apart() -> None:
    table = settings_mod.markdown_table()
    runtime, _, local = table.partition("Local development stack")
    for name in settings_mod.env_names():
        assert table.count(f"| `{name}` |") == 1
    stack_names = {f.metadata["env"] for f in dataclasses.fields(settings_mod.StackSettings)}
    assert {"WM_MAVEN_ARGS", "WM_JAVA", "WM_KAFKA_HEAP", "WM_KAFKA_VERSION"} <= stack_names
    assert all(f"`{name}`" in local and f"`{name}`" not in runtime for name in stack_names)
