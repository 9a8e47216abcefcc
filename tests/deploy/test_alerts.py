"""The alert rules are valid and fire when they should: ``promtool check`` accepts them, and
promtool's rule unit tests (deploy/prometheus/tests/) show every alert firing on series written
for it and silent on series written for that. A mutation check proves those unit tests can fail:
an alert that never fires fails its firing tests, one that always fires fails its silent tests."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.prometheus import (
    ALERTS,
    PROMETHEUS_DIR,
    RULE_TESTS,
    alert_rules,
    selectors,
    tool,
)

ALERT_NAMES = sorted({rule["alert"] for rule in alert_rules()})


def promtool(*args: str, cwd: Path = PROMETHEUS_DIR) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [tool("promtool"), *args], capture_output=True, text=True, timeout=120, cwd=cwd
    )


def rule_test_cases() -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    """(test name, test, alert_rule_test) for every alert check of every rule test file."""
    return [
        (test["name"], test, check)
        for path in RULE_TESTS
        for test in yaml.safe_load(path.read_text())["tests"]
        for check in test.get("alert_rule_test", [])
    ]


def test_config_and_rules_pass_promtool_check() -> None:
    done = promtool("check", "config", "prometheus.yml")
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(alert_rules())} rules found" in done.stdout, done.stdout


def test_rule_unit_tests_pass() -> None:
    assert RULE_TESTS
    done = promtool("test", "rules", *(str(p) for p in RULE_TESTS))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout and "FAILED" not in done.stdout, done.stdout


@pytest.mark.parametrize("alert", ALERT_NAMES)
def test_every_alert_has_a_firing_and_a_silent_test(alert: str) -> None:
    exprs = [rule["expr"] for rule in alert_rules() if rule["alert"] == alert]
    read = {s.split("{")[0] for expr in exprs for s in selectors(expr)}
    cases = [
        (name, test, check)
        for name, test, check in rule_test_cases()
        if check["alertname"] == alert
    ]
    firing = [name for name, _, check in cases if check["exp_alerts"]]
    silent = [(name, test) for name, test, check in cases if not check["exp_alerts"]]
    assert firing, f"no test where {alert} fires"
    assert silent, f"no test where {alert} stays silent"
    for name, test in silent:
        fed = {series["series"].split("{")[0] for series in test["input_series"]}
        # silent on series written for it, not merely on no data
        assert fed & read, (name, read)


def mutated(tmp_path: Path, expr: str) -> Path:
    """A copy of the rules and their unit tests in which every alert's expression is ``expr``
    (a rule test checks one alert only, so each test sees its own alert's mutation)."""
    groups = yaml.safe_load(ALERTS.read_text())
    for group in groups["groups"]:
        for rule in group["rules"]:
            if "alert" in rule:
                rule["expr"] = expr
    (tmp_path / "tests").mkdir(parents=True)
    (tmp_path / "alerts.yml").write_text(yaml.safe_dump(groups, sort_keys=False))
    for path in RULE_TESTS:
        shutil.copy(path, tmp_path / "tests" / path.name)
    return tmp_path


@pytest.mark.parametrize(
    ("expr", "fails"),
    [("vector(1) == 0", "firing"), ("vector(1)", "silent")],
    ids=["never-fires", "always-fires"],
)
def test_unit_tests_fail_when_alerts_never_or_always_fire(
    expr: str, fails: str, tmp_path: Path
) -> None:
    """Every firing test fails when its alert never fires; every silent test fails when its
    alert always fires."""
    broken = {
        name
        for name, _, check in rule_test_cases()
        if bool(check["exp_alerts"]) == (fails == "firing")
    }
    assert broken
    folder = mutated(tmp_path, expr)
    done = promtool("test", "rules", *(f"tests/{p.name}" for p in RULE_TESTS), cwd=folder)
    assert done.returncode != 0
    output = done.stdout + done.stderr
    for name in broken:
        assert f"name: {name}," in output, (expr, name, output[-2000:])
