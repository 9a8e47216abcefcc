"""``webhookmaster gateway`` as a process: it serves, stops cleanly on SIGTERM and SIGINT, and
exits 1 with one log line when it cannot load the subscription table."""

from __future__ import annotations

import dataclasses
import json
import signal
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from schemas.topics import INGEST
from tests.support.processes import ComponentProcess
from tests.support.topics import read_topic, webhook_view
from webhookmaster import signing
from webhookmaster.settings import Settings

START_TIMEOUT_S = 60.0


def _http(
    method: str, url: str, body: bytes | None = None, headers: dict[str, str] | None = None
) -> tuple[int, Any]:
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=15) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")
    except OSError:
        return 0, None


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
async def test_serves_and_stops_cleanly(
    wm_settings: Settings, tmp_path: Path, sig: signal.Signals
) -> None:
    gateway = ComponentProcess("gateway", wm_settings, tmp_path / "gateway.log").start()
    try:
        await gateway.wait_ready(START_TIMEOUT_S)
        status, sub = _http(
            "POST",
            gateway.url + "/api/subscriptions/",
            json.dumps({"target_url": "https://example.com/"}).encode(),
        )
        assert status == 201
        body = b'{"via": "process"}'
        status, accepted = _http(
            "POST",
            f"{gateway.url}/api/ingest/{sub['id']}/?event_type=e",
            body,
            {"X-Hub-Signature-256": signing.hub_signature(sub["secret_key"], body)},
        )
        assert status == 202
        gateway.running.send_signal(sig)
        assert gateway.running.wait(timeout=30) == 0
    finally:
        gateway.ensure_stopped()
    log = gateway.log()
    assert "gateway shutting down" in log and "Traceback" not in log
    [msg] = await read_topic(wm_settings, INGEST, 1)
    assert webhook_view(msg)["webhook_id"] == accepted["id"]


def test_exits_1_when_the_table_cannot_load(wm_settings: Settings, tmp_path: Path) -> None:
    missing = dataclasses.replace(
        wm_settings, topic_prefix="no-such-prefix-" + wm_settings.topic_prefix
    )
    gateway = ComponentProcess("gateway", missing, tmp_path / "gateway.log").start()
    try:
        assert gateway.running.wait(timeout=60) == 1
    finally:
        gateway.ensure_stopped()
    log = gateway.log()
    assert "gateway cannot start" in log and "subscriptions" in log
    assert "Traceback" not in log
