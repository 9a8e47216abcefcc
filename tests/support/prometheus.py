"""Debian's Prometheus and promtool for the tests, installed by scripts/install-prometheus.sh
when missing (idempotent), and the project's rule and dashboard files read back."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from typing import Any

import yaml

from webhookmaster.settings import PROJECT_ROOT

PROMETHEUS_DIR = PROJECT_ROOT / "deploy" / "prometheus"
ALERTS = PROMETHEUS_DIR / "alerts.yml"
RULE_TESTS = sorted((PROMETHEUS_DIR / "tests").glob("*.yml"))
GRAFANA_DIR = PROJECT_ROOT / "deploy" / "grafana"
DASHBOARD = GRAFANA_DIR / "webhookmaster.json"
INSTALL = PROJECT_ROOT / "scripts" / "install-prometheus.sh"


def tool(name: str) -> str:
    """The path of ``prometheus`` or ``promtool``, installed by the project script if missing."""
    if shutil.which(name) is None:
        done = subprocess.run([str(INSTALL)], capture_output=True, text=True, timeout=900)
        assert done.returncode == 0, f"{INSTALL.name} failed:\n{done.stderr[-3000:]}"
    path = shutil.which(name)
    assert path is not None, f"{name} not on PATH after {INSTALL.name}"
    return path


def alert_rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return data


def panel_queries(board: dict[str, Any]) -> list[tuple[str, str]]:
    """(panel title, query) for every target of every panel."""
    return [
        (panel["title"], target["expr"])
        for panel in board["panels"]
        for target in panel.get("targets", [])
    ]


def substitute(expr: str, values: dict[str, str]) -> str:
    """A panel query with the dashboard's variables replaced (``$name`` and ``${name}``)."""
    return re.sub(
        r"\$\{(\w+)\}|\$(\w+)",
        lambda m: values[m.group(1) or m.group(2)],
        expr,
    )


METRIC_SELECTOR = re.compile(r"\b(webhookmaster_[a-z_]+)(\{[^}]*\})?")


def selectors(expr: str) -> list[str]:
    """Every ``webhookmaster_*`` series selector in an expression, with its label matchers."""
    return [name + (labels or "") for name, labels in METRIC_SELECTOR.findall(expr)]
