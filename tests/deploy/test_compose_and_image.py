"""docker-compose.yml and the Dockerfile, checked with real tools although no Docker engine runs
here: compose-go (the loader of Docker Compose, built by scripts/install-deploy-tools-docker.sh as
``compose-config``) interpolates and loads the file, ``check-jsonschema`` validates it against the
vendored compose-spec schema, ``hadolint`` lints the Dockerfile, ``promtool`` loads the compose
Prometheus configuration, and the wheel the Dockerfile builds is built here the same way and run
without the development stack. The rest are checks of the resolved file against the code."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from webhookmaster import components, secret_box
from webhookmaster import settings as settings_mod
from webhookmaster.ops import cli
from webhookmaster.settings import PROJECT_ROOT, Settings

ROOT = PROJECT_ROOT
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
SCHEMA = ROOT / "tests" / "deploy" / "vendor" / "compose-spec" / "compose-spec.json"
PROM_COMPOSE = ROOT / "deploy" / "prometheus" / "prometheus-compose.yml"
OUR_IMAGE = "webhookmaster:local"
# The secrets the file must take from the environment; each sample is unique so that a value
# found in the resolved file can be traced to its variable.
REQUIRED = {
    "WM_API_KEYS": "sample-api-key-1,sample-api-key-2",
    "WM_SECRET_KEYS": secret_box.new_key(),
    "POSTGRES_PASSWORD": "0123456789abcdef0123456789abcdef",
    "GRAFANA_ADMIN_PASSWORD": "sample-grafana-password",
}
SECRET_NAME = re.compile(r"PASSWORD|SECRET|API_KEY|_KEYS?$")
KNOWN_ENV = {f.metadata["env"] for f in dataclasses.fields(Settings)}
RUNTIME_PACKAGES = {
    "webhookmaster",
    "schemas",
    "ingest_gateway",
    "delivery_agents",
    "retry_scheduler",
    "status_projector",
}
STACK_MISSING = (
    "webhookmaster: error: the local development stack (the devstack package) is not "
    "installed here; run it from a source checkout"
)


@dataclasses.dataclass(frozen=True)
class Tools:
    hadolint: Path
    check_jsonschema: Path
    compose_config: Path
    promtool: Path


@pytest.fixture(scope="module")
def tools() -> Tools:
    """The checkers, installed (or found already installed) by the project's script."""
    script = ROOT / "scripts" / "install-deploy-tools-docker.sh"
    run = subprocess.run([str(script)], capture_output=True, text=True, timeout=1200)
    assert run.returncode == 0, run.stderr
    venv_bin = ROOT / ".venv" / "bin"
    tools_bin = Path(os.environ.get("WM_TOOLS_DIR") or ROOT / ".tools") / "bin"
    promtool = shutil.which("promtool")
    assert promtool, "the install script left no promtool on PATH"
    return Tools(
        venv_bin / "hadolint",
        venv_bin / "check-jsonschema",
        tools_bin / "compose-config",
        Path(promtool),
    )


def compose_config(tools: Tools, env: dict[str, str], path: Path = COMPOSE) -> Any:
    """``compose-config`` on ``path`` with exactly ``env`` (plus PATH)."""
    return subprocess.run(
        [str(tools.compose_config), str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": os.environ["PATH"], **env},
    )


@pytest.fixture(scope="module")
def project(tools: Tools) -> dict[str, Any]:
    """docker-compose.yml as Docker Compose resolves it with the required secrets set."""
    run = compose_config(tools, REQUIRED)
    assert run.returncode == 0, run.stderr
    resolved: dict[str, Any] = json.loads(run.stdout)
    return resolved


def ours(project: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The services that run the WebhookMaster image."""
    return {n: s for n, s in project["services"].items() if s.get("image") == OUR_IMAGE}


# --- docker-compose.yml -------------------------------------------------------------------


def test_the_vendored_schema_is_the_recorded_one() -> None:
    digest = hashlib.sha256(SCHEMA.read_bytes()).hexdigest()
    assert f"sha256: {digest}" in (SCHEMA.parent / "README.md").read_text()
    assert json.loads(SCHEMA.read_text())["title"] == "Compose Specification"


def test_compose_file_validates_against_the_compose_spec_schema(
    tools: Tools, tmp_path: Path
) -> None:
    def check(path: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(tools.check_jsonschema), "--schemafile", str(SCHEMA), str(path)],
            capture_output=True,
            text=True,
            timeout=120,
        )

    good = check(COMPOSE)
    assert good.returncode == 0, good.stdout + good.stderr
    # the same file with one misspelt key must fail: the schema is really applied
    bad = tmp_path / "docker-compose.yml"
    bad.write_text(COMPOSE.read_text().replace("stop_grace_period:", "stop_grace_periods:", 1))
    rejected = check(bad)
    assert rejected.returncode == 1 and "stop_grace_periods" in rejected.stdout, rejected.stdout


def test_compose_loads_with_the_required_secrets(project: dict[str, Any]) -> None:
    assert project["name"] == "webhookmaster"
    assert {
        "kafka",
        "postgres",
        "init",
        "gateway",
        "agent",
        "scheduler",
        "projector",
        "prometheus",
        "grafana",
    } == set(project["services"])


@pytest.mark.parametrize("missing", sorted(REQUIRED))
def test_compose_refuses_to_run_without_each_secret(tools: Tools, missing: str) -> None:
    for env in (
        {k: v for k, v in REQUIRED.items() if k != missing},  # unset
        {**REQUIRED, missing: ""},  # set but empty
    ):
        run = compose_config(tools, env)
        assert run.returncode == 1
        assert f"required variable {missing} is missing a value: set {missing}" in run.stderr, (
            run.stderr
        )


def test_no_secret_has_a_default(project: dict[str, Any]) -> None:
    text = COMPOSE.read_text()
    for name in REQUIRED:
        uses = re.findall(r"\$\{" + name + r"([^}]*)\}", text)
        assert uses and all(u.startswith(":?") for u in uses), (name, uses)
    samples = set(REQUIRED.values())
    for service, svc in project["services"].items():
        for key, value in (svc.get("environment") or {}).items():
            if SECRET_NAME.search(key):  # every secret-looking value came from the environment
                assert value in samples, (service, key)
            if key == "WM_DATABASE_URL":
                assert urlsplit(value).password == REQUIRED["POSTGRES_PASSWORD"], service


def test_every_service_is_healthchecked_and_waited_for(project: dict[str, Any]) -> None:
    services = project["services"]
    for name, svc in services.items():
        check = svc.get("healthcheck") or {}
        if name == "init":
            # a one-shot job: its exit status is its health
            assert check == {"disable": True} and svc["restart"] == "no"
        else:
            assert check.get("test") and not check.get("disable"), name
            assert svc["restart"] == "unless-stopped", name
        for dep, spec in (svc.get("depends_on") or {}).items():
            assert dep in services, (name, dep)
            if spec["condition"] == "service_healthy":
                assert services[dep]["healthcheck"].get("test"), (name, dep)
            else:
                assert (dep, spec["condition"]) == ("init", "service_completed_successfully")
    assert {d: c["condition"] for d, c in services["init"]["depends_on"].items()} == {
        "kafka": "service_healthy",
        "postgres": "service_healthy",
    }
    for name in ("gateway", "agent", "scheduler", "projector"):
        assert services[name]["depends_on"]["init"]["condition"] == (
            "service_completed_successfully"
        )


def test_our_services_run_real_commands_with_real_settings(project: dict[str, Any]) -> None:
    choices = cli.build_parser()._subparsers._group_actions[0].choices
    services = ours(project)
    assert set(services) == {"init", "gateway", "agent", "scheduler", "projector"}
    for name, svc in services.items():
        assert svc["command"] == [name] and name in choices
        assert svc["build"]["context"] == str(ROOT)
        env = svc["environment"]
        assert set(env) <= KNOWN_ENV, (name, set(env) - KNOWN_ENV)
        settings = settings_mod.load(env)  # every value parses (a SettingsError fails here)
        assert settings.kafka_bootstrap == "kafka:9092"
        if "WM_DATABASE_URL" in env:
            assert urlsplit(settings.database_url).hostname == "postgres"


def test_components_get_only_the_secrets_they_need(project: dict[str, Any]) -> None:
    db_readers = {"init", "gateway", "projector"}
    for name, svc in ours(project).items():
        env = svc["environment"]
        component = components.BY_NAME.get(name)
        needs_keys = bool(component and component.needs_secret_keys)
        assert ("WM_SECRET_KEYS" in env) == needs_keys, name
        assert ("WM_API_KEYS" in env) == (name == "gateway"), name
        assert ("WM_DATABASE_URL" in env) == (name in db_readers), name
        if needs_keys:
            secret_box.from_settings(settings_mod.load(env))  # the key is usable


def test_probes_scrapes_and_ports_agree_with_the_settings(project: dict[str, Any]) -> None:
    scrape = yaml.safe_load(PROM_COMPOSE.read_text())
    [job] = scrape["scrape_configs"]
    discovered = {(sd["names"][0], sd["port"]) for sd in job["dns_sd_configs"]}
    services = ours(project)
    expected = set()
    for component in components.COMPONENTS:
        svc = services[component.name]
        settings = settings_mod.load(svc["environment"])
        port = component.port(settings)
        listens_on = settings.gateway_host if component.name == "gateway" else settings.health_host
        assert listens_on == "0.0.0.0", component.name
        assert f"http://127.0.0.1:{port}/readyz" in " ".join(svc["healthcheck"]["test"])
        expected.add((component.name, port))
    assert discovered == expected
    [published] = services["gateway"]["ports"]
    assert published["target"] == settings_mod.load(services["gateway"]["environment"]).gateway_port


def test_published_ports_listen_on_loopback_only(project: dict[str, Any]) -> None:
    published = {
        (name, p["target"])
        for name, svc in project["services"].items()
        for p in svc.get("ports") or []
    }
    assert published == {
        ("gateway", 8080),
        ("kafka", 9094),
        ("prometheus", 9090),
        ("grafana", 3000),
    }
    for svc in project["services"].values():
        for p in svc.get("ports") or []:
            assert p["host_ip"] == "127.0.0.1", p


def test_kafka_keeps_its_data_on_a_named_volume(project: dict[str, Any]) -> None:
    kafka = project["services"]["kafka"]
    # apache/kafka's image declares VOLUME /var/lib/kafka/data (owned by its user) but its
    # log.dirs default is under /tmp: KAFKA_LOG_DIRS must point at the mounted volume.
    assert re.fullmatch(r"apache/kafka:4\.\d+\.\d+", kafka["image"])
    env = kafka["environment"]
    [mount] = kafka["volumes"]
    assert mount["type"] == "volume" and mount["source"] in project["volumes"]
    assert env["KAFKA_LOG_DIRS"] == mount["target"] == "/var/lib/kafka/data"
    assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"  # init applies the catalogue
    assert "PLAINTEXT://kafka:9092" in env["KAFKA_ADVERTISED_LISTENERS"].split(",")


def test_volumes_are_declared_used_and_present(project: dict[str, Any]) -> None:
    used = set()
    for name, svc in project["services"].items():
        for mount in svc.get("volumes") or []:
            if mount["type"] == "volume":
                used.add(mount["source"])
            else:
                assert mount["type"] == "bind" and mount.get("read_only"), (name, mount)
                source = Path(mount["source"])
                assert source.is_relative_to(ROOT) and source.exists(), (name, mount)
    assert used == set(project["volumes"])
    for name in ("kafka", "postgres", "prometheus", "grafana"):
        assert any(m["type"] == "volume" for m in project["services"][name]["volumes"]), name
    images = [svc["image"] for svc in project["services"].values() if svc["image"] != OUR_IMAGE]
    for image in images:  # third-party images pinned to a release (PostgreSQL's are x.y)
        assert re.fullmatch(r"[\w./-]+:v?\d+\.\d+(\.\d+)?(-[\w.]+)?", image), image


def _mounted(svc: dict[str, Any], target: str) -> Path:
    [source] = [m["source"] for m in svc["volumes"] if m["target"] == target]
    return Path(source)


def test_prometheus_loads_the_compose_scrape_config_and_the_alerts(
    project: dict[str, Any], tools: Tools
) -> None:
    prom = project["services"]["prometheus"]
    flags = dict(arg.removeprefix("--").split("=", 1) for arg in prom["command"])
    config_path = PurePosixPath(flags["config.file"])
    assert _mounted(prom, str(config_path)) == PROM_COMPOSE
    config = yaml.safe_load(PROM_COMPOSE.read_text())
    for rule_file in config["rule_files"]:  # relative to the configuration file
        assert (
            _mounted(prom, str(config_path.parent / rule_file)) == PROM_COMPOSE.parent / rule_file
        )
    assert any(m["target"] == flags["storage.tsdb.path"] for m in prom["volumes"])
    run = subprocess.run(
        [str(tools.promtool), "check", "config", str(PROM_COMPOSE)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "1 rule files found" in run.stdout + run.stderr


def test_grafana_is_provisioned_with_the_datasource_and_the_dashboard(
    project: dict[str, Any],
) -> None:
    grafana = project["services"]["grafana"]
    provisioning = _mounted(grafana, "/etc/grafana/provisioning")
    assert provisioning == ROOT / "deploy" / "grafana" / "provisioning"
    datasources = [
        ds
        for path in sorted((provisioning / "datasources").glob("*.y*ml"))
        for ds in yaml.safe_load(path.read_text())["datasources"]
    ]
    [prometheus] = [ds for ds in datasources if ds["type"] == "prometheus"]
    url = urlsplit(prometheus["url"])
    assert url.hostname == "prometheus" and url.port == 9090
    assert ("prometheus", 9090) in {
        (n, p["target"]) for n, s in project["services"].items() for p in s.get("ports") or []
    }
    providers = [
        p
        for path in sorted((provisioning / "dashboards").glob("*.y*ml"))
        for p in yaml.safe_load(path.read_text())["providers"]
    ]
    [provider] = [p for p in providers if p["type"] == "file"]
    dashboards = {
        Path(m["source"]).name: PurePosixPath(m["target"])
        for m in grafana["volumes"]
        if m["source"].endswith(".json")
    }
    assert set(dashboards) == {"webhookmaster.json"}
    assert dashboards["webhookmaster.json"].parent == PurePosixPath(provider["options"]["path"])
    assert grafana["depends_on"]["prometheus"]["condition"] == "service_healthy"


def test_the_operations_guide_sets_every_secret_and_runs_real_commands() -> None:
    guide = (ROOT / "docs" / "operations.md").read_text()
    section = guide.split("## Docker compose", 1)[1].split("\n## ", 1)[0]
    env_file = re.search(r"cat > \.env\) <<EOF\n(.*?)\nEOF", section, re.S)
    assert env_file, "the guide's .env recipe is gone"
    assert {line.split("=", 1)[0] for line in env_file.group(1).splitlines()} == set(REQUIRED)
    choices = cli.build_parser()._subparsers._group_actions[0].choices
    commands = re.findall(re.escape(OUR_IMAGE) + r" ([a-z-]+)", section)
    assert commands and set(commands) <= set(choices), commands


# --- Dockerfile and the image's contents ----------------------------------------------------


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined, comments out."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    lines = [line.strip() for line in text.splitlines()]
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1])
        for line in lines
        if line and not line.startswith("#")
    ]


def _stages() -> list[list[tuple[str, str]]]:
    stages: list[list[tuple[str, str]]] = []
    for instruction in _instructions():
        if instruction[0] == "FROM":
            stages.append([])
        stages[-1].append(instruction)
    return stages


def _copied_sources() -> list[str]:
    """The build-context paths the builder stage copies."""
    sources = []
    for op, args in _stages()[0]:
        if op == "COPY":
            assert not args.startswith("--from"), args
            sources += args.split()[:-1]
    return sources


def test_dockerfile_is_hadolint_clean(tools: Tools, tmp_path: Path) -> None:
    def lint(path: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [
                str(tools.hadolint),
                "--no-color",
                "--disable-ignore-pragma",
                "--failure-threshold",
                "style",
                str(path),
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )

    clean = lint(DOCKERFILE)
    assert clean.returncode == 0 and not clean.stdout.strip(), clean.stdout + clean.stderr
    # the linter really runs: the old single-stage file's `USER nobody` is DL3066
    old = tmp_path / "Dockerfile"
    old.write_text('FROM python:3.11.14-slim-trixie\nUSER nobody\nENTRYPOINT ["webhookmaster"]\n')
    flagged = lint(old)
    assert flagged.returncode == 1 and "DL3066" in flagged.stdout, flagged.stdout


def test_dockerfile_is_multi_stage_pinned_and_non_root() -> None:
    builder, runtime = _stages()
    bases = [stage[0][1].split()[0] for stage in (builder, runtime)]
    for base in bases:
        assert re.fullmatch(r"python:\d+\.\d+\.\d+-slim-\w+", base), base
    assert bases[0] == bases[1]  # wheels built for the interpreter that runs them
    assert any(op == "RUN" and "pip wheel" in args for op, args in builder)
    runtime_ops = [op for op, _ in runtime]
    assert "COPY" not in runtime_ops and "ADD" not in runtime_ops  # no sources in the image
    [install] = [args for op, args in runtime if op == "RUN"]
    assert "from=builder" in install and "--no-index" in install
    [user] = [args for op, args in runtime if op == "USER"]
    uid, gid = user.split(":")
    assert uid.isdigit() and gid.isdigit() and int(uid) >= 10000 and int(gid) >= 10000
    assert runtime_ops.index("USER") > runtime_ops.index("RUN")
    assert json.loads(dict(runtime)["ENTRYPOINT"]) == ["webhookmaster"]


def test_build_context_is_the_runtime_packages_only() -> None:
    """.dockerignore admits exactly what the builder copies; every top-level package is either
    in the image or a development-only one (so a new package cannot be left out silently)."""
    ignore = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert ignore[0] == "*"
    admitted = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    copied = set(_copied_sources())
    assert admitted == copied
    assert {"pyproject.toml", "README.md", "LICENSE"} | RUNTIME_PACKAGES == copied
    packages = {p.parent.name for p in ROOT.glob("*/__init__.py")}
    assert packages - RUNTIME_PACKAGES == {"devstack", "tests", "bench"}
    assert not {"devstack", "tests", "bench", ".env", ".venv", ".wm-state"} & admitted


@pytest.fixture(scope="module")
def image_wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The project wheel built as the Dockerfile's builder stage builds it: from the copied
    sources alone, ``pip wheel`` (dependencies left out here; the builder fetches them)."""
    base = tmp_path_factory.mktemp("image")
    context = base / "src"
    for source in _copied_sources():
        origin = ROOT / source
        if origin.is_dir():
            shutil.copytree(origin, context / source, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            context.mkdir(exist_ok=True)
            shutil.copy2(origin, context / source)
    out = base / "wheels"
    run = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "--wheel-dir", str(out), "."],
        cwd=context,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr
    [wheel] = out.glob("webhookmaster-*.whl")
    return wheel


def test_the_image_wheel_holds_the_runtime_and_not_the_dev_stack(image_wheel: Path) -> None:
    with zipfile.ZipFile(image_wheel) as wheel:
        names = wheel.namelist()
        [entry_points] = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
        scripts = wheel.read(entry_points).decode()
    tops = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert tops == RUNTIME_PACKAGES
    assert not [n for n in names if "devstack" in n or n.startswith(("tests/", "bench/"))]
    migrations = [n for n in names if n.startswith("webhookmaster/ops/migrations/")]
    assert any(n.endswith(".sql") for n in migrations)
    assert "webhookmaster = webhookmaster.ops.cli:main" in scripts


def test_the_image_wheel_runs_without_the_dev_stack(image_wheel: Path, tmp_path: Path) -> None:
    """Installed alone (no source tree, no editable install on the path), the wheel runs its
    commands, and the local-stack command answers the one-line error."""
    target = tmp_path / "site"
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--target",
            str(target),
            str(image_wheel),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr
    # -S: no site processing, so the editable install's import hook stays out; the
    # dependencies come from this virtualenv's site-packages, named explicitly.
    deps = next(p for p in sys.path if p.endswith("site-packages"))
    env = {"PATH": os.environ["PATH"], "PYTHONPATH": f"{target}{os.pathsep}{deps}"}

    def webhookmaster(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-S", "-m", "webhookmaster", *args],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=tmp_path,
            env=env,
        )

    where = subprocess.run(
        [sys.executable, "-S", "-c", "import webhookmaster, sys; print(webhookmaster.__file__)"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env=env,
    )
    assert Path(where.stdout.strip()).is_relative_to(target), where.stdout + where.stderr
    shown = webhookmaster("topics", "show")
    assert shown.returncode == 0 and "webhookmaster.ingest" in shown.stdout, shown.stderr
    stack = webhookmaster("stack", "status")
    assert stack.returncode == 1
    assert stack.stderr.strip().splitlines() == [STACK_MISSING], stack.stderr
