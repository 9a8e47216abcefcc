"""The Helm chart (deploy/helm/webhookmaster), rendered by the real ``helm`` and every object
validated strictly: Kubernetes kinds by ``kubernetes-validate --strict``, KEDA and
Prometheus-operator objects against their CRDs' schemas (unknown fields rejected), Strimzi
KafkaTopics through Strimzi's model classes (strimzi/ValidateKafkaTopics.java here). The tools
come from scripts/install-deploy-tools.sh (idempotent, cached in ~/.cache/webhookmaster; the
session fixture runs it). Then the
chart's promises: security context on every pod, the init hook, credentials from Secrets, KEDA
on the right topics and groups, and the chart's copies of the alerts, dashboard and topic
manifests in step with their sources. No broker or database is needed."""

from __future__ import annotations

import copy
import json
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from schemas.topics import DUE, INGEST, RETRY_TIERS, catalogue
from webhookmaster import components
from webhookmaster import settings as settings_mod
from webhookmaster.ops import cli, topic_manifests
from webhookmaster.settings import PROJECT_ROOT, Settings

pytestmark = pytest.mark.timeout(900)  # the first run builds helm

CHART = PROJECT_ROOT / "deploy" / "helm" / "webhookmaster"
KUBE_VERSION = "1.34.0"
NAMESPACE = "webhooks"
RELEASE = "wm"
VALUE_SETS = sorted(p.stem.removesuffix("-values") for p in (CHART / "ci").glob("*-values.yaml"))
CRD_FILES = {
    ("keda.sh/v1alpha1", "ScaledObject"): "keda.sh_scaledobjects.yaml",
    ("monitoring.coreos.com/v1", "ServiceMonitor"): "monitoring.coreos.com_servicemonitors.yaml",
    ("monitoring.coreos.com/v1", "PrometheusRule"): "monitoring.coreos.com_prometheusrules.yaml",
}
STRIMZI = ("kafka.strimzi.io/v1beta2", "KafkaTopic")
STRIMZI_CHECK = PROJECT_ROOT / "tests" / "deploy" / "strimzi" / "ValidateKafkaTopics.java"
KNOWN_ENV = settings_mod.env_names()
HOOK = "helm.sh/hook"


@dataclass(frozen=True)
class Tools:
    dir: Path

    @property
    def helm(self) -> str:
        return str(self.dir / "bin" / "helm")

    def crd_schema(self, api_version: str, kind: str) -> dict[str, Any]:
        crd = yaml.safe_load((self.dir / "crds" / CRD_FILES[(api_version, kind)]).read_text())
        version = api_version.split("/")[1]
        [served] = [v for v in crd["spec"]["versions"] if v["name"] == version]
        return strict(served["schema"]["openAPIV3Schema"])


def tools_dir() -> Path:
    """Where scripts/install-deploy-tools.sh puts the tools."""
    if "DEPLOY_TOOLS_DIR" in os.environ:
        return Path(os.environ["DEPLOY_TOOLS_DIR"])
    cache = os.environ.get("WM_CACHE_DIR", str(Path.home() / ".cache" / "webhookmaster"))
    return Path(cache) / "deploy-tools"


def validator(api_version: str, kind: str) -> jsonschema.Draft7Validator:
    """A validator of the CRD's schema (checked against the metaschema first)."""
    schema = Tools(tools_dir()).crd_schema(api_version, kind)
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema)


@pytest.fixture(scope="session")
def tools() -> Tools:
    subprocess.run([str(PROJECT_ROOT / "scripts" / "install-deploy-tools.sh")], check=True)
    return Tools(tools_dir())


def helm(tools: Tools, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [tools.helm, *args], capture_output=True, text=True, timeout=120, cwd=PROJECT_ROOT
    )


def template(tools: Tools, *args: str) -> list[dict[str, Any]]:
    done = helm(
        tools, "template", RELEASE, str(CHART), "-n", NAMESPACE, "--kube-version", KUBE_VERSION,
        *args,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return [d for d in yaml.safe_load_all(done.stdout) if d]


@pytest.fixture(scope="session")
def rendered(tools: Tools) -> dict[str, list[dict[str, Any]]]:
    """Every values set of the chart's ci/ folder, rendered."""
    return {
        name: template(tools, "-f", str(CHART / "ci" / f"{name}-values.yaml"))
        for name in VALUE_SETS
    }


def values_file(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((CHART / "ci" / f"{name}-values.yaml").read_text())
    return loaded


def chart_config(name: str) -> dict[str, str]:
    """The WM_* settings of the values set: the chart's defaults, then the set's own."""
    config: dict[str, str] = yaml.safe_load((CHART / "values.yaml").read_text())["config"]
    return {**config, **values_file(name).get("config", {})}


def strict(schema: Any) -> Any:
    """A CRD schema that rejects unknown fields (as the API server's strict field validation
    does): every object with properties gets ``additionalProperties: false`` unless it keeps
    unknown fields on purpose."""
    if isinstance(schema, list):
        return [strict(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: strict(v) for k, v in schema.items()}
    pattern = out.get("pattern")
    if isinstance(pattern, str) and "(?i)" in pattern:  # Go's inline flag; Python's goes first
        out["pattern"] = "(?i)" + pattern.replace("(?i)", "")
    if (
        "properties" in out
        and "additionalProperties" not in out
        and not out.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


def kinds(objects: list[dict[str, Any]]) -> list[str]:
    return sorted(o["kind"] for o in objects)


def of_kind(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind]


def pod_specs(objects: list[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
    for o in objects:
        if o["kind"] in ("Deployment", "Job"):
            yield o["metadata"]["name"], o["spec"]["template"]["spec"]


def env_of(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in container.get("env", [])}


# --- the real tools ------------------------------------------------------------------------


def test_helm_lint_passes_for_every_values_set(tools: Tools) -> None:
    for name in VALUE_SETS:
        done = helm(
            tools, "lint", "--strict", str(CHART), "--kube-version", KUBE_VERSION,
            "-f", str(CHART / "ci" / f"{name}-values.yaml"),
        )  # fmt: skip
        assert done.returncode == 0, (name, done.stdout, done.stderr)
        assert "0 chart(s) failed" in done.stdout


def test_required_values_fail_with_a_clear_message(tools: Tools) -> None:
    done = helm(tools, "template", RELEASE, str(CHART), "--kube-version", KUBE_VERSION)
    assert done.returncode != 0
    assert "database.url (or database.existingSecret) is required" in done.stderr
    no_keys = helm(
        tools, "template", RELEASE, str(CHART), "--kube-version", KUBE_VERSION,
        "--set", "database.url=postgresql://x@db/x", "--set", "secretKeys.keys=k",
    )  # fmt: skip
    assert no_keys.returncode != 0 and "an empty list leaves the API open" in no_keys.stderr


def kubernetes_validate(path: Path) -> subprocess.CompletedProcess[str]:
    """``kubernetes-validate --strict`` of the manifests in ``path``, for KUBE_VERSION."""
    validate = PROJECT_ROOT / ".venv" / "bin" / "kubernetes-validate"
    return subprocess.run(
        [str(validate), "--strict", "-k", KUBE_VERSION, str(path)],
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_every_kubernetes_object_validates_strictly(
    tools: Tools, rendered: dict[str, list[dict[str, Any]]], tmp_path: Path
) -> None:
    checked = 0
    for name, objects in rendered.items():
        core = [o for o in objects if "/" not in o["apiVersion"] or "k8s.io" in o["apiVersion"]
                or o["apiVersion"].startswith(("apps/", "batch/", "policy/"))]  # fmt: skip
        assert {o["kind"] for o in objects} - {o["kind"] for o in core} <= {
            kind for _, kind in [*CRD_FILES, STRIMZI]
        }, name
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump_all(core))
        done = kubernetes_validate(path)
        assert done.returncode == 0, (name, done.stdout, done.stderr)
        assert "Couldn't find schema" not in done.stdout + done.stderr, name
        assert done.stdout.count("INFO") == len(core), (name, done.stdout)
        checked += len(core)
    assert checked > 40


def test_kubernetes_validate_rejects_an_unknown_field(tools: Tools, tmp_path: Path) -> None:
    """The strict check above can fail: a misspelt field is an error."""
    objects = template(tools, "-f", str(CHART / "ci" / "all-off-values.yaml"))
    [deployment, *_] = of_kind(objects, "Deployment")
    deployment["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(deployment))
    done = kubernetes_validate(path)
    assert done.returncode != 0 and "readinesProbe" in done.stdout + done.stderr


def test_custom_resources_validate_against_their_crds(
    tools: Tools, rendered: dict[str, list[dict[str, Any]]]
) -> None:
    seen: set[str] = set()
    for objects in rendered.values():
        for o in objects:
            key = (o["apiVersion"], o["kind"])
            if key in CRD_FILES:
                validator(*key).validate(o)
                seen.add(o["kind"])
    assert seen == {"ScaledObject", "ServiceMonitor", "PrometheusRule"}


def test_crd_schemas_reject_unknown_and_mistyped_fields(
    tools: Tools, rendered: dict[str, list[dict[str, Any]]]
) -> None:
    """The CRD checks above can fail."""
    scaled = copy.deepcopy(of_kind(rendered["all-on"], "ScaledObject")[0])
    scaled["spec"]["maxReplicas"] = 3  # the field is maxReplicaCount
    with pytest.raises(jsonschema.ValidationError):
        validator("keda.sh/v1alpha1", "ScaledObject").validate(scaled)
    rule = copy.deepcopy(of_kind(rendered["all-on"], "PrometheusRule")[0])
    rule["spec"]["groups"][0]["rules"][0]["for"] = 5  # a duration string
    with pytest.raises(jsonschema.ValidationError):
        validator("monitoring.coreos.com/v1", "PrometheusRule").validate(rule)


def test_kafka_topics_deserialise_strictly_through_strimzis_model(
    tools: Tools, rendered: dict[str, list[dict[str, Any]]], tmp_path: Path
) -> None:
    topics = [o for objects in rendered.values() for o in objects
              if (o["apiVersion"], o["kind"]) == STRIMZI]  # fmt: skip
    cli_topics = list(
        yaml.safe_load_all(topic_manifests.strimzi_yaml("webhookmaster.", 6, 1000, "c", "ns"))
    )
    bad_field = copy.deepcopy(topics[0])
    bad_field["metadata"]["name"] = "bad-field"
    bad_field["spec"]["partitionCount"] = 3
    bad_type = copy.deepcopy(topics[0])
    bad_type["metadata"]["name"] = "bad-type"
    bad_type["spec"]["partitions"] = "3"
    path = tmp_path / "topics.json"
    path.write_text(json.dumps([*topics, *cli_topics, bad_field, bad_type]))
    classpath = (tools.dir / "strimzi" / "classpath.txt").read_text().strip()
    done = subprocess.run(
        ["java", "-cp", classpath, str(STRIMZI_CHECK), str(path)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    problems = [line for line in done.stdout.splitlines() if line.startswith("object ")]
    assert len(topics) >= 2 * len(catalogue()), "KafkaTopics from two values sets"
    assert f"checked {len(topics) + len(cli_topics) + 2} KafkaTopic objects, 2 problems" in (
        done.stdout
    ), done.stdout + done.stderr
    assert "(bad-field): unknown properties: spec.[partitionCount]" in problems[0]
    assert "(bad-type): does not round-trip" in problems[1]
    assert done.returncode == 1


# --- what the chart promises ---------------------------------------------------------------


def test_options_add_exactly_their_objects(rendered: dict[str, list[dict[str, Any]]]) -> None:
    base = ["Deployment"] * 4 + ["Job"] + ["Service"] * 4
    assert kinds(rendered["all-off"]) == sorted([*base, "Secret", "Secret", "Secret"])
    assert kinds(rendered["all-on"]) == sorted(
        base
        + ["PodDisruptionBudget"] * 4
        + ["Secret"] * 5  # credentials and Kafka (each with its hook copy), secret keys
        + ["ScaledObject"] * 2
        + ["ServiceMonitor", "PrometheusRule", "ConfigMap"]
        + ["KafkaTopic"] * len(catalogue())
    )
    # the user's own Secrets: the chart creates none
    assert "Secret" not in kinds(rendered["existing-secrets"])


def test_every_pod_runs_non_root_read_only_without_capabilities(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    for name, objects in rendered.items():
        pods = list(pod_specs(objects))
        assert len(pods) == 5, name
        for pod_name, pod in pods:
            where = (name, pod_name)
            security = pod["securityContext"]
            assert security["runAsNonRoot"] is True, where
            assert isinstance(security["runAsUser"], int) and security["runAsUser"] > 0, where
            assert isinstance(security["runAsGroup"], int) and security["runAsGroup"] > 0, where
            assert security["seccompProfile"] == {"type": "RuntimeDefault"}, where
            assert pod["automountServiceAccountToken"] is False, where
            containers = pod["containers"] + pod.get("initContainers", [])
            for c in containers:
                sc = c["securityContext"]
                assert sc["readOnlyRootFilesystem"] is True, (where, c["name"])
                assert sc["allowPrivilegeEscalation"] is False, (where, c["name"])
                assert sc["capabilities"] == {"drop": ["ALL"]}, (where, c["name"])
                assert sc["runAsNonRoot"] is True and sc["runAsUser"] > 0, (where, c["name"])
                assert sc["seccompProfile"] == {"type": "RuntimeDefault"}, (where, c["name"])
                assert c["resources"]["requests"]["cpu"] and c["resources"]["limits"]["memory"]
                mounts = {m["mountPath"] for m in c["volumeMounts"]}
                assert "/tmp" in mounts, (where, c["name"])  # the only writable path


def test_components_run_real_commands_with_probes_ports_and_settings(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    parser = cli.build_parser()
    for name, objects in rendered.items():
        deployments = {d["metadata"]["labels"]["app.kubernetes.io/component"]: d
                       for d in of_kind(objects, "Deployment")}  # fmt: skip
        assert set(deployments) == set(components.BY_NAME), name
        services = {s["metadata"]["labels"]["app.kubernetes.io/component"]: s
                    for s in of_kind(objects, "Service")}  # fmt: skip
        for component, dep in deployments.items():
            where = (name, component)
            pod = dep["spec"]["template"]
            labels = pod["metadata"]["labels"]
            assert dep["spec"]["selector"]["matchLabels"].items() <= labels.items(), where
            [container] = pod["spec"]["containers"]
            assert container["args"] == [component], where
            parser.parse_args(container["args"])
            env = env_of(container)
            assert {n for n in env if n.startswith("WM_")} <= KNOWN_ENV, where
            port = container["ports"][0]["containerPort"]
            assert env[components.BY_NAME[component].port_env]["value"] == str(port), where
            assert env["WM_HEALTH_HOST"]["value"] == env["WM_GATEWAY_HOST"]["value"] == "0.0.0.0"
            assert container["startupProbe"]["httpGet"]["path"] == "/healthz", where
            assert container["livenessProbe"]["httpGet"]["path"] == "/healthz", where
            assert container["readinessProbe"]["httpGet"]["path"] == "/readyz", where
            for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
                assert container[probe]["httpGet"]["port"] == "http", where
            assert container["ports"][0]["name"] == "http"
            mounts = {m["name"] for m in container["volumeMounts"]}
            if components.BY_NAME[component].needs_secret_keys:
                assert "secret-keys" in mounts and "WM_SECRET_KEYS_FILE" in env, where
            else:
                assert "secret-keys" not in mounts and "WM_SECRET_KEYS_FILE" not in env, where
            spread = pod["spec"]["topologySpreadConstraints"]
            assert {s["topologyKey"] for s in spread} == {
                "topology.kubernetes.io/zone", "kubernetes.io/hostname"
            }, where  # fmt: skip
            for s in spread:
                assert s["labelSelector"]["matchLabels"].items() <= labels.items(), where
            service = services[component]
            assert service["spec"]["selector"].items() <= labels.items(), where
            assert service["spec"]["ports"][0]["targetPort"] == "http"
        for pdb in of_kind(objects, "PodDisruptionBudget"):
            component = pdb["metadata"]["labels"]["app.kubernetes.io/component"]
            pod_labels = deployments[component]["spec"]["template"]["metadata"]["labels"]
            assert pdb["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
            assert pdb["spec"]["maxUnavailable"] == 1
        if name != "all-off":
            assert len(of_kind(objects, "PodDisruptionBudget")) == 4, name


def test_init_is_a_rerunnable_hook_job_the_components_wait_for(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    parser = cli.build_parser()
    for name, objects in rendered.items():
        [job] = of_kind(objects, "Job")
        annotations = job["metadata"]["annotations"]
        assert annotations[HOOK] == "pre-install,pre-upgrade", name
        assert annotations["helm.sh/hook-delete-policy"] == "before-hook-creation", name
        [container] = job["spec"]["template"]["spec"]["containers"]
        # with Strimzi the operator creates the topics; the Job only migrates
        strimzi = values_file(name).get("strimzi", {}).get("enabled", False)
        assert container["args"] == (["migrate"] if strimzi else ["init"]), name
        parser.parse_args(container["args"])
        # the Secrets the Job reads exist before it: the user's, or hook copies made first
        hooked = {
            o["metadata"]["name"]: o
            for o in objects
            if HOOK in o["metadata"].get("annotations", {})
        }
        for ref in secret_refs(container):
            if ref in hooked:
                secret = hooked[ref]["metadata"]["annotations"]
                assert secret[HOOK] == annotations[HOOK]
                assert int(secret["helm.sh/hook-weight"]) < int(annotations["helm.sh/hook-weight"])
            else:
                assert ref not in {s["metadata"]["name"] for s in of_kind(objects, "Secret")}, (
                    name, ref, "a release Secret does not exist yet when the hook runs"
                )  # fmt: skip
        for dep in of_kind(objects, "Deployment"):
            init = dep["spec"]["template"]["spec"].get("initContainers", [])
            if name == "all-off":  # init.waitForInit: false
                assert init == []
                continue
            [wait] = init
            script = wait["command"][-1]
            assert script.startswith("until webhookmaster init --check; do sleep ")
            assert parser.parse_args(["init", "--check"]).check is True
            assert (
                env_of(wait)["WM_DATABASE_URL"]
                == env_of(dep["spec"]["template"]["spec"]["containers"][0])["WM_DATABASE_URL"]
            )


def secret_refs(container: dict[str, Any]) -> set[str]:
    refs = {e["secretRef"]["name"] for e in container.get("envFrom", []) if "secretRef" in e}
    refs |= {
        e["valueFrom"]["secretKeyRef"]["name"]
        for e in container.get("env", [])
        if "valueFrom" in e and "secretKeyRef" in e["valueFrom"]
    }
    return refs


def test_credentials_come_from_secrets(rendered: dict[str, list[dict[str, Any]]]) -> None:
    # chart-created: the values land in Secrets, never in a pod spec
    objects = rendered["all-on"]
    values = values_file("all-on")
    secrets = {s["metadata"]["name"]: s["stringData"] for s in of_kind(objects, "Secret")}
    pods = json.dumps([p for _, p in pod_specs(objects)])
    for secret_value in (values["database"]["url"], values["apiKeys"]["value"],
                         values["secretKeys"]["keys"], "WM_KAFKA_EXAMPLE_PASSWORD"):  # fmt: skip
        assert any(secret_value in json.dumps(s) for s in secrets.values()), secret_value
        assert secret_value not in pods or secret_value.startswith("WM_")
    gateway = next(
        d for d in of_kind(objects, "Deployment") if d["metadata"]["name"].endswith("-gateway")
    )
    container = gateway["spec"]["template"]["spec"]["containers"][0]
    env = env_of(container)
    for var in ("WM_DATABASE_URL", "WM_API_KEYS"):
        ref = env[var]["valueFrom"]["secretKeyRef"]
        assert var in secrets[ref["name"]], var
    assert {e["secretRef"]["name"] for e in container["envFrom"]} == {
        f"{RELEASE}-webhookmaster-kafka"
    }
    assert "WM_KAFKA_EXAMPLE_PASSWORD" in secrets[f"{RELEASE}-webhookmaster-kafka"]
    # the user's Secrets, by the names and keys given
    objects = rendered["existing-secrets"]
    gateway = next(
        d for d in of_kind(objects, "Deployment") if d["metadata"]["name"].endswith("-gateway")
    )
    pod = gateway["spec"]["template"]["spec"]
    env = env_of(pod["containers"][0])
    assert env["WM_DATABASE_URL"]["valueFrom"]["secretKeyRef"] == {"name": "pg-app", "key": "uri"}
    assert env["PGPASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": "pg-app", "key": "password"}
    assert env["WM_API_KEYS"]["valueFrom"]["secretKeyRef"] == {"name": "wm-api", "key": "keys"}
    assert pod["containers"][0]["envFrom"] == [{"secretRef": {"name": "wm-kafka-sasl"}}]
    [keys] = [v for v in pod["volumes"] if v["name"] == "secret-keys"]
    assert keys["secret"]["secretName"] == "wm-fernet"
    assert keys["secret"]["items"] == [{"key": "fernet", "path": "keys"}]
    assert env["WM_SECRET_KEYS_FILE"]["value"] == "/etc/webhookmaster/secret-keys/keys"
    # every WM_* setting the chart passes is a real one, parsed as the components parse it
    plain = {n: e["value"] for n, e in env.items() if n.startswith("WM_") and "value" in e}
    settings_mod.load(plain)


def test_keda_scales_agents_on_ingest_and_due_lag_and_the_scheduler_on_tier_lag(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    from delivery_agents.agent import DUE_GROUP_ID as AGENTS_DUE
    from delivery_agents.agent import GROUP_ID as AGENTS
    from retry_scheduler.scheduler import GROUP_ID as SCHEDULER

    for name in ("all-on", "existing-secrets"):
        objects = rendered[name]
        settings = settings_mod.load(chart_config(name))
        scaled = {s["metadata"]["labels"]["app.kubernetes.io/component"]: s
                  for s in of_kind(objects, "ScaledObject")}  # fmt: skip
        assert set(scaled) == {"agent", "scheduler"}
        values = yaml.safe_load((CHART / "values.yaml").read_text())["keda"]
        expected = {
            "agent": [
                (settings.group(AGENTS), settings.topic(INGEST), values["agent"]["lagThreshold"]),
                (
                    settings.group(AGENTS_DUE),
                    settings.topic(DUE),
                    values["agent"]["dueLagThreshold"],
                ),
            ],
            "scheduler": [
                (settings.group(SCHEDULER), settings.topic(t), values["scheduler"]["lagThreshold"])
                for t, _ in RETRY_TIERS
            ],
        }
        deployments = {d["metadata"]["name"]: d for d in of_kind(objects, "Deployment")}
        for component, obj in scaled.items():
            triggers = obj["spec"]["triggers"]
            found = [
                (
                    t["metadata"]["consumerGroup"],
                    t["metadata"]["topic"],
                    t["metadata"]["lagThreshold"],
                )
                for t in triggers
            ]
            assert found == expected[component], (name, component)
            assert {t["type"] for t in triggers} == {"kafka"}
            target = deployments[obj["spec"]["scaleTargetRef"]["name"]]
            assert "replicas" not in target["spec"], "KEDA owns the replica count"
            assert obj["spec"]["maxReplicaCount"] <= settings.topic_partitions
            assert all(
                t["metadata"]["bootstrapServers"] == values_kafka_bootstrap(name) for t in triggers
            )
    for d in of_kind(rendered["all-off"], "Deployment"):
        assert d["spec"]["replicas"] >= 1


def values_kafka_bootstrap(name: str) -> str:
    chart_default: str = yaml.safe_load((CHART / "values.yaml").read_text())["kafka"]["bootstrap"]
    return str(values_file(name).get("kafka", {}).get("bootstrap", chart_default))


def test_service_monitor_scrapes_every_component_with_its_label(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    objects = rendered["all-on"]
    [monitor] = of_kind(objects, "ServiceMonitor")
    selector = monitor["spec"]["selector"]
    [expression] = selector["matchExpressions"]
    assert set(expression["values"]) == set(components.BY_NAME)
    for service in of_kind(objects, "Service"):
        labels = service["metadata"]["labels"]
        assert selector["matchLabels"].items() <= labels.items()
        assert labels[expression["key"]] in expression["values"]
        assert monitor["spec"]["endpoints"][0]["port"] in {
            p["name"] for p in service["spec"]["ports"]
        }
    # no `component` target label: it would rename the exported webhookmaster_component_info
    # label the rules join on to exported_component
    assert "relabelings" not in monitor["spec"]["endpoints"][0]
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    assert monitor["metadata"]["labels"]["release"] == "prometheus"


def test_chart_alerts_are_a_copy_of_deploy_prometheus_alerts(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    source = yaml.safe_load((PROJECT_ROOT / "deploy" / "prometheus" / "alerts.yml").read_text())
    copy_ = yaml.safe_load((CHART / "files" / "alerts.yml").read_text())
    assert copy_["groups"] == source["groups"], (
        "cp deploy/prometheus/alerts.yml into the chart's files/"
    )
    [rule] = of_kind(rendered["all-on"], "PrometheusRule")
    assert rule["spec"] == {"groups": source["groups"]}


def test_chart_dashboard_is_a_copy_of_deploy_grafana(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    source = json.loads((PROJECT_ROOT / "deploy" / "grafana" / "webhookmaster.json").read_text())
    assert json.loads((CHART / "files" / "webhookmaster.json").read_text()) == source, (
        "cp deploy/grafana/webhookmaster.json into the chart's files/"
    )
    [config_map] = of_kind(rendered["all-on"], "ConfigMap")
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"  # the sidecar's label
    assert json.loads(config_map["data"]["webhookmaster.json"]) == source


def test_chart_topic_template_is_the_cli_output(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["topics", "manifest", "--format", "helm"]) == 0
    assert capsys.readouterr().out == (CHART / "files" / "kafkatopics.yaml").read_text(), (
        "regenerate: webhookmaster topics manifest --format helm > "
        "deploy/helm/webhookmaster/files/kafkatopics.yaml"
    )


def test_chart_kafka_topics_equal_the_cli_manifest(
    rendered: dict[str, list[dict[str, Any]]],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("strimzi", "all-on"):
        values = values_file(name)
        for var in KNOWN_ENV:
            monkeypatch.delenv(var, raising=False)
        for var, value in chart_config(name).items():
            monkeypatch.setenv(var, value)
        cluster = values["strimzi"]["cluster"]
        assert cli.main(["topics", "manifest", "--cluster", cluster, "--namespace", NAMESPACE]) == 0
        expected = list(yaml.safe_load_all(capsys.readouterr().out))
        got = copy.deepcopy(of_kind(rendered[name], "KafkaTopic"))
        for topic in got:
            topic["metadata"]["labels"] = {
                "strimzi.io/cluster": topic["metadata"]["labels"]["strimzi.io/cluster"]
            }
            if "replicas" in topic["spec"]:
                assert topic["spec"].pop("replicas") == values["strimzi"]["replicas"]
        assert got == expected, name
        settings = settings_mod.load(chart_config(name))
        assert [t["spec"]["topicName"] for t in got] == [
            s.name for s in catalogue(settings.topic_prefix, settings.topic_partitions)
        ]
    # the custom prefix of the strimzi values set is no DNS name: the resource names are made so
    first = of_kind(rendered["strimzi"], "KafkaTopic")[0]
    assert first["metadata"]["name"] == "acme-prod.ingest"


def test_chart_defaults_match_the_settings() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    from webhookmaster import __version__

    assert chart["appVersion"] == __version__
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert set(values["config"]) <= KNOWN_ENV
    assert all(isinstance(v, str) for v in values["config"].values()), "quote config values"
    defaults = Settings()
    helpers = (CHART / "templates" / "_helpers.tpl").read_text()
    assert f'default "{defaults.topic_prefix}"' in helpers
    for component in components.COMPONENTS:
        assert isinstance(values[component.name]["port"], int)


def test_values_schema_rejects_typos_and_unquoted_settings(tools: Tools) -> None:
    base = ["template", RELEASE, str(CHART), "--kube-version", KUBE_VERSION,
            "-f", str(CHART / "ci" / "all-off-values.yaml")]  # fmt: skip
    typo = helm(tools, *base, "--set", "keda.enable=true")
    assert typo.returncode != 0 and "'enable' not allowed" in typo.stderr
    number = helm(tools, *base, "--set-json", 'config={"WM_TOPIC_PARTITIONS": 12}')
    assert number.returncode != 0 and "WM_TOPIC_PARTITIONS" in number.stderr
    name = helm(tools, *base, "--set", "config.TOPIC_PREFIX=x")
    assert name.returncode != 0 and "TOPIC_PREFIX" in name.stderr
    assert helm(tools, *base, "--set", "config.WM_LOG_LEVEL=DEBUG").returncode == 0
