"""Observability proven on a real Prometheus: Debian's ``prometheus`` scrapes the four components
running as processes while they deliver, retry and dead-letter real webhooks; every Grafana
panel query (dashboard variables resolved through Prometheus) returns series, every alert
expression evaluates, every series an alert reads is there, the rule manager evaluates every
rule without error, and killing the only agent makes the "down" and "absent" alerts pending.
Also the dashboard and its Grafana provisioning files, checked structurally."""

from __future__ import annotations

import contextlib
import re
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import yaml

from tests.support.fixtures_processes import MakeComponent
from tests.support.pipeline import ingest_record, produce_ingest
from tests.support.ports import free_port
from tests.support.processes import ComponentProcess
from tests.support.prometheus import (
    ALERTS,
    DASHBOARD,
    GRAFANA_DIR,
    alert_rules,
    dashboard,
    panel_queries,
    selectors,
    substitute,
    tool,
)
from tests.support.receiver import Receiver, Reply
from tests.support.waiting import eventually
from webhookmaster import signing
from webhookmaster.settings import Settings

WAIT_S = 180.0  # generous: a busy machine, 1 s scrapes, 1 s retry tiers
FILTERS = ("job", "namespace", "instance")
VARIABLE = re.compile(r"\$\{(\w+)\}|\$(\w+)")


# --- the dashboard and the provisioning files, structurally ---------------------------------


def test_dashboard_structure() -> None:
    board = dashboard()
    assert board["uid"] and board["title"] and isinstance(board["schemaVersion"], int)
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for name in FILTERS:
        var = variables[name]
        assert var["type"] == "query" and var["includeAll"] and var["allValue"] == ".*", name
        assert var["query"]["query"] == var["definition"]
        assert re.fullmatch(
            r"label_values\(webhookmaster_component_info(\{.*\})?, \w+\)", var["definition"]
        )
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))
    cells: set[tuple[int, int]] = set()
    for panel in board["panels"]:
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        pos = panel["gridPos"]
        assert pos["x"] >= 0 and pos["w"] > 0 and pos["x"] + pos["w"] <= 24, panel["title"]
        area = {
            (x, y)
            for x in range(pos["x"], pos["x"] + pos["w"])
            for y in range(pos["y"], pos["y"] + pos["h"])
        }
        assert not area & cells, f"{panel['title']} overlaps another panel"
        cells |= area
        refs = [t["refId"] for t in panel["targets"]]
        assert panel["targets"] and len(refs) == len(set(refs)), panel["title"]
    for title, expr in panel_queries(board):
        used = {a or b for a, b in VARIABLE.findall(expr)}
        assert used <= set(variables), (title, used)
        for selector in selectors(expr):
            # every series the panel reads follows the job / namespace / instance variables
            for name in FILTERS:
                assert f'{name}=~"${name}"' in selector, (title, selector)


def test_grafana_provisioning_files() -> None:
    sources = yaml.safe_load(
        (GRAFANA_DIR / "provisioning" / "datasources" / "webhookmaster.yml").read_text()
    )
    assert sources["apiVersion"] == 1
    [source] = sources["datasources"]
    assert source["type"] == "prometheus" and source["access"] == "proxy"
    assert re.fullmatch(r"https?://[\w.-]+(:\d+)?/?", source["url"])
    # the dashboard's datasource variable picks a Prometheus datasource: this is the default one
    assert source["isDefault"] is True
    providers = yaml.safe_load(
        (GRAFANA_DIR / "provisioning" / "dashboards" / "webhookmaster.yml").read_text()
    )
    assert providers["apiVersion"] == 1
    [provider] = providers["providers"]
    assert provider["type"] == "file" and provider["name"]
    assert Path(provider["options"]["path"]).is_absolute()
    assert DASHBOARD.suffix == ".json" and DASHBOARD.parent == GRAFANA_DIR


# --- a real Prometheus against the running components ---------------------------------------


class Prometheus:
    """``prometheus`` on a free loopback port with a temporary data folder, scraping the given
    ports every second and evaluating the project's alert rules every second."""

    def __init__(self, targets: list[int], folder: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = folder / "prometheus.log"
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(ALERTS)],
            "scrape_configs": [
                {
                    "job_name": "webhookmaster",
                    "static_configs": [{"targets": [f"127.0.0.1:{port}" for port in targets]}],
                }
            ],
        }
        self.config = folder / "prometheus.yml"
        self.config.write_text(yaml.safe_dump(config))
        self.data = folder / "prometheus-data"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Prometheus:
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [
                    tool("prometheus"),
                    f"--config.file={self.config}",
                    f"--storage.tsdb.path={self.data}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                    "--log.level=warn",
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


@contextlib.asynccontextmanager
async def api(prometheus: Prometheus) -> AsyncIterator[Callable[..., Awaitable[Any]]]:
    """``get(path, **params)``: the ``data`` of a Prometheus HTTP API answer; an answer whose
    status is not ``success`` fails the test with Prometheus's error."""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15)) as session:

        async def get(path: str, **params: str) -> Any:
            async with session.get(prometheus.url + path, params=params) as resp:
                body = await resp.json()
            assert body["status"] == "success", (path, params, body)
            return body["data"]

        yield get


async def ready(prometheus: Prometheus) -> None:
    async def answers() -> bool:
        assert prometheus.proc is not None and prometheus.proc.poll() is None, (
            prometheus.log.read_text()
        )
        try:
            async with aiohttp.ClientSession() as session:
                async with session.get(prometheus.url + "/-/ready") as resp:
                    return resp.status == 200
        except aiohttp.ClientError:
            return False

    await eventually(answers, timeout=60, interval=0.5, what="Prometheus ready")


async def subscribe(gateway: ComponentProcess, receiver: Receiver) -> dict[str, dict[str, Any]]:
    """A subscription per receiver path, created through the gateway's HTTP API."""
    subs = {}
    async with aiohttp.ClientSession() as session:
        for path in ("/ok", "/flaky", "/down"):
            async with session.post(
                f"http://127.0.0.1:{gateway.port}/api/subscriptions/",
                json={"target_url": receiver.url(path)},
            ) as resp:
                assert resp.status == 201, await resp.text()
                subs[path] = await resp.json()
    return subs


async def drive(
    gateway: ComponentProcess,
    subs: dict[str, dict[str, Any]],
    settings: Settings,
    receiver: Receiver,
) -> None:
    """Deliveries, a retry, failures ending in a dead letter (attempts exhausted) and a record
    for an unknown subscription (dead-lettered at once); webhooks ingested through the
    gateway's HTTP API."""
    receiver.script("/flaky", Reply(500, "first"), Reply(503, "second"))
    receiver.script("/down", then=Reply(500, "always"))
    async with aiohttp.ClientSession() as session:
        for path, count in (("/ok", 5), ("/flaky", 1), ("/down", 1)):
            sub = subs[path]
            for i in range(count):
                body = orjson.dumps({"path": path, "i": i})
                headers = {
                    "Content-Type": "application/json",
                    "X-Hub-Signature-256": signing.hub_signature(sub["secret_key"], body),
                }
                async with session.post(
                    f"http://127.0.0.1:{gateway.port}/api/ingest/{sub['id']}/",
                    data=body,
                    headers=headers,
                    params={"event_type": "order.created"},
                ) as resp:
                    assert resp.status == 202, await resp.text()
    produce_ingest(settings, ingest_record("00000000-0000-4000-8000-000000000000"))
    # /flaky: two failures, then delivered; /down: the first attempt and one per retry tier,
    # then dead-lettered (attempts exhausted)
    wanted = {"/ok": 5, "/flaky": 3, "/down": 6}
    done = await receiver.wait_for(
        lambda: all(len(receiver.on(path)) >= n for path, n in wanted.items()), WAIT_S
    )
    assert done, {path: len(receiver.on(path)) for path in wanted}


async def test_panels_and_alerts_on_a_real_prometheus(
    settings: Settings, receiver: Receiver, make_component: MakeComponent, tmp_path: Path
) -> None:
    gateway = make_component("gateway", settings)
    await gateway.wait_ready()
    # before the agent starts: it loads the subscription table to its end before it consumes
    # (an agent already running may see a webhook before its subscription, and dead-letter it)
    subs = await subscribe(gateway, receiver)
    components = {"gateway": gateway}
    for name in ("agent", "scheduler", "projector"):
        components[name] = make_component(name, settings)
    for component in components.values():
        await component.wait_ready()
    prometheus = Prometheus([c.port for c in components.values()], tmp_path).start()
    try:
        await ready(prometheus)
        await drive(gateway, subs, settings, receiver)
        async with api(prometheus) as get:
            await check_panels(get)
            await check_alert_expressions(get)
            await check_agent_death(get, components["agent"])
    finally:
        prometheus.stop()


async def check_panels(get: Callable[..., Awaitable[Any]]) -> None:
    """The variables resolve through Prometheus; then every panel query returns series."""
    board = dashboard()
    values: dict[str, str] = {"datasource": "prometheus", "namespace": ".*", "instance": ".*"}
    found: dict[str, list[str]] = {}

    async def variables_resolve() -> bool:
        # the job and instance variables' queries (label_values): one job, every target
        found["job"] = await get(
            "/api/v1/label/job/values", **{"match[]": "webhookmaster_component_info"}
        )
        found["instance"] = await get(
            "/api/v1/label/instance/values",
            **{"match[]": 'webhookmaster_component_info{job=~".+", namespace=~".*"}'},
        )
        return len(found["instance"]) == 4

    await eventually(
        variables_resolve,
        timeout=WAIT_S,
        interval=0.5,
        what=lambda: f"the dashboard variables list the four components {found}",
    )
    assert found["job"] == ["webhookmaster"], found
    values["job"] = found["job"][0]
    empty: dict[str, str] = {}

    async def every_panel_has_series() -> bool:
        empty.clear()
        for title, expr in panel_queries(board):
            query = substitute(expr, values)
            data = await get("/api/v1/query", query=query)
            if not data["result"]:
                empty[title] = query
        return not empty

    await eventually(
        every_panel_has_series,
        timeout=WAIT_S,
        interval=0.5,
        what=lambda: f"every panel query returns series {empty}",
    )


async def check_alert_expressions(get: Callable[..., Awaitable[Any]]) -> None:
    """Every alert expression evaluates; every series selector in it matches real series (an
    absent() argument too: those alerts are silent while everything runs); the rule manager
    evaluated every rule without error; the component joins find the consumers."""
    rules = alert_rules()
    missing: dict[str, str] = {}

    async def every_selector_matches() -> bool:
        missing.clear()
        for rule in rules:
            await get("/api/v1/query", query=rule["expr"])
            for selector in selectors(rule["expr"]):
                if not (await get("/api/v1/query", query=selector))["result"]:
                    missing[rule["alert"]] = selector
        return not missing

    await eventually(
        every_selector_matches,
        timeout=WAIT_S,
        interval=0.5,
        what=lambda: f"every series the alerts read exists {missing}",
    )

    async def all_rules_evaluated() -> bool:
        groups = (await get("/api/v1/rules", type="alert"))["groups"]
        loaded = [r for g in groups for r in g["rules"]]
        assert len(loaded) == len(rules), loaded
        for r in loaded:
            assert r["health"] != "err", (r["name"], r.get("lastError"))
        return all(r["health"] == "ok" for r in loaded)

    await eventually(all_rules_evaluated, timeout=WAIT_S, interval=0.5, what="every rule evaluated")
    joined = await get(
        "/api/v1/query",
        query="webhookmaster_assigned_partitions"
        " * on (job, instance) group_left (component) webhookmaster_component_info",
    )
    assert {s["metric"]["component"] for s in joined["result"]} == {
        "agent",
        "scheduler",
        "projector",
    }
    firing = (await get("/api/v1/alerts"))["alerts"]
    assert not [a for a in firing if a["state"] == "firing"], firing


async def check_agent_death(get: Callable[..., Awaitable[Any]], agent: ComponentProcess) -> None:
    """With the only agent killed, its target is down and no agent exports metrics: the
    ComponentDown and ComponentAbsent alerts become pending for component="agent"."""
    agent.kill()
    wanted = {"WebhookMasterComponentDown", "WebhookMasterComponentAbsent"}

    async def pending_for_agent() -> bool:
        alerts = (await get("/api/v1/alerts"))["alerts"]
        names = {
            a["labels"]["alertname"]
            for a in alerts
            if a["labels"].get("component") == "agent" and a["state"] in {"pending", "firing"}
        }
        return wanted <= names

    await eventually(
        pending_for_agent,
        timeout=60,
        interval=0.5,
        what="down and absent alerts pending for the killed agent",
    )
