"""Offline checks of the files users run elsewhere: the Prometheus and Grafana files and the
configuration table of docs/configuration.md (docker-compose.yml and the Dockerfile:
test_compose_and_image.py; the Helm chart, with the real tools: test_helm_chart.py)."""

from __future__ import annotations

import dataclasses
import re

import yaml

from webhookmaster import settings as settings_mod
from webhookmaster.settings import PROJECT_ROOT, Settings

KNOWN_ENV = {f.metadata["env"] for f in dataclasses.fields(Settings)}


def test_configuration_doc_table_is_current() -> None:
    doc = (PROJECT_ROOT / "docs" / "configuration.md").read_text()
    assert settings_mod.markdown_table() in doc


def test_prometheus_scrapes_the_local_stack_ports() -> None:
    prom = yaml.safe_load((PROJECT_ROOT / "deploy" / "prometheus" / "prometheus.yml").read_text())
    targets = {
        t for job in prom["scrape_configs"] for sc in job["static_configs"] for t in sc["targets"]
    }
    defaults = Settings()
    assert targets == {
        f"127.0.0.1:{getattr(defaults, p)}"
        for p in ("gateway_port", "agent_port", "scheduler_port", "projector_port")
    }
    for rule_file in prom.get("rule_files", []):
        rules = yaml.safe_load((PROJECT_ROOT / "deploy" / "prometheus" / rule_file).read_text())
        assert rules["groups"] and all(r["expr"] for g in rules["groups"] for r in g["rules"])


def test_grafana_dashboard_queries_real_metrics() -> None:
    import json

    from prometheus_client import REGISTRY

    # every metric a component registers, as Prometheus exposes it
    import delivery_agents.metrics  # noqa: F401
    import ingest_gateway.metrics  # noqa: F401
    import retry_scheduler.metrics  # noqa: F401
    import status_projector.metrics  # noqa: F401
    import webhookmaster.consumer_thread
    import webhookmaster.health_server  # noqa: F401

    families = {metric.name for metric in REGISTRY.collect()}
    exposed = {
        f + suffix for f in families for suffix in ("", "_total", "_count", "_sum", "_bucket")
    }
    dashboard = json.loads((PROJECT_ROOT / "deploy" / "grafana" / "webhookmaster.json").read_text())
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            for name in re.findall(r"webhookmaster_[a-z_]+", target["expr"]):
                assert name in exposed, (panel["title"], name)
    alerts = (PROJECT_ROOT / "deploy" / "prometheus" / "alerts.yml").read_text()
    for name in re.findall(r"webhookmaster_[a-z_]+", alerts):
        assert name in exposed, name
