"""Offline checks of the files users run elsewhere: docker-compose.yml, the Dockerfile, and the
configuration table of docs/configuration.md (no Docker engine runs here, so these read the
files)."""

from __future__ import annotations

import dataclasses
import re

import yaml

from webhookmaster import settings as settings_mod
from webhookmaster.ops import cli
from webhookmaster.settings import PROJECT_ROOT, Settings

COMPOSE_TOP = {"name", "services", "volumes", "networks", "configs", "secrets"}
SERVICE_KEYS = {
    "image",
    "build",
    "command",
    "environment",
    "depends_on",
    "volumes",
    "ports",
    "healthcheck",
    "restart",
    "deploy",
}
KNOWN_ENV = {f.metadata["env"] for f in dataclasses.fields(Settings)}


def compose() -> dict:
    return yaml.safe_load((PROJECT_ROOT / "docker-compose.yml").read_text())


def test_compose_structure() -> None:
    doc = compose()
    assert set(doc) <= COMPOSE_TOP | {k for k in doc if k.startswith("x-")}
    services = doc["services"]
    assert {"kafka", "postgres", "init", "gateway", "agent", "scheduler", "projector"} <= set(
        services
    )
    declared_volumes = set(doc.get("volumes") or {})
    for name, svc in services.items():
        assert set(svc) <= SERVICE_KEYS, (name, set(svc) - SERVICE_KEYS)
        assert ("image" in svc) != ("build" in svc), name
        for dep, cond in (svc.get("depends_on") or {}).items():
            assert dep in services, (name, dep)
            assert cond["condition"] in {
                "service_started",
                "service_healthy",
                "service_completed_successfully",
            }
            if cond["condition"] == "service_healthy":
                assert "healthcheck" in services[dep], dep
        for volume in svc.get("volumes") or []:
            source = volume.split(":")[0]
            assert source.startswith((".", "/")) or source in declared_volumes, (name, volume)
        for port in svc.get("ports") or []:
            assert re.fullmatch(r"(\d+\.\d+\.\d+\.\d+:)?\d+:\d+", str(port)), port


def test_compose_components_use_real_commands_and_settings() -> None:
    parser_choices = cli.build_parser()._subparsers._group_actions[0].choices
    for name, svc in compose()["services"].items():
        if "build" not in svc:
            continue
        assert svc["command"][0] in parser_choices, name
        env = svc.get("environment") or {}
        unknown = {k for k in env if k.startswith("WM_")} - KNOWN_ENV
        assert not unknown, (name, unknown)


def test_kafka_service_matches_catalogue_needs() -> None:
    kafka = compose()["services"]["kafka"]
    assert kafka["image"].startswith("apache/kafka:4.")
    env = kafka["environment"]
    assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"  # init applies the catalogue


def test_dockerfile_copies_every_package() -> None:
    dockerfile = (PROJECT_ROOT / "Dockerfile").read_text()
    for package in (
        "webhookmaster",
        "schemas",
        "ingest_gateway",
        "delivery_agents",
        "retry_scheduler",
        "status_projector",
    ):
        assert f"COPY {package} ./{package}" in dockerfile
        assert (PROJECT_ROOT / package / "__init__.py").exists(), package


def test_configuration_doc_table_is_current() -> None:
    doc = (PROJECT_ROOT / "docs" / "configuration.md").read_text()
    assert settings_mod.markdown_table() in doc


K8S = PROJECT_ROOT / "deploy" / "kubernetes"
PORT_VARS = {
    "gateway": "WM_GATEWAY_PORT",
    "agent": "WM_AGENT_PORT",
    "scheduler": "WM_SCHEDULER_PORT",
    "projector": "WM_PROJECTOR_PORT",
}


def k8s_documents() -> list[dict]:
    docs = []
    for path in sorted(K8S.glob("*.yaml")):
        docs += [d for d in yaml.safe_load_all(path.read_text()) if d]
    return docs


def test_kustomization_lists_every_manifest() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    listed = set(kustomization["resources"])
    present = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == present


def test_kubernetes_workloads_match_the_cli_and_settings() -> None:
    docs = [d for d in k8s_documents() if d.get("kind") != "Kustomization"]
    config = next(d for d in docs if d["kind"] == "ConfigMap")["data"]
    assert set(config) <= KNOWN_ENV
    secret = next(d for d in docs if d["kind"] == "Secret")["stringData"]
    assert set(secret) <= KNOWN_ENV
    assert config["WM_HEALTH_HOST"] == "0.0.0.0" and config["WM_GATEWAY_HOST"] == "0.0.0.0"
    choices = cli.build_parser()._subparsers._group_actions[0].choices
    deployments = [d for d in docs if d["kind"] == "Deployment"]
    assert {d["spec"]["template"]["spec"]["containers"][0]["args"][0] for d in deployments} == set(
        PORT_VARS
    )
    for dep in deployments:
        spec = dep["spec"]
        assert (
            spec["selector"]["matchLabels"].items()
            <= spec["template"]["metadata"]["labels"].items()
        )
        [container] = spec["template"]["spec"]["containers"]
        component = container["args"][0]
        assert component in choices
        port = container["ports"][0]["containerPort"]
        assert str(port) == config[PORT_VARS[component]], component
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
        annotations = spec["template"]["metadata"]["annotations"]
        assert annotations["prometheus.io/port"] == str(port)
    job = next(d for d in docs if d["kind"] == "Job")
    assert job["spec"]["template"]["spec"]["containers"][0]["args"] == ["init"]
    service = next(d for d in docs if d["kind"] == "Service")
    assert service["spec"]["selector"]["app.kubernetes.io/component"] == "gateway"


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
    import webhookmaster.consumer_thread  # noqa: F401

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
