"""``webhookmaster gateway`` as a process: it serves, stops cleanly on SIGTERM and SIGINT, and
exits 1 with one log line when it cannot load the subscription table."""

from __future__ import annotations

import dataclasses
import json
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from typing import Any

import pytest

from schemas.topics import INGEST
from tests.conftest import clean_env
from tests.gateway_helpers import free_port
from tests.kafka_helpers import consume, wait_for, webhook_view
from webhookmaster import signing
from webhookmaster.settings import Settings, to_env

START_TIMEOUT_S = 60.0


def _start(settings: Settings) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = clean_env(**to_env(dataclasses.replace(settings, gateway_port=port)))
    proc = subprocess.Popen(
        [sys.executable, "-m", "webhookmaster", "gateway"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    return proc, f"http://127.0.0.1:{port}"


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
def test_serves_and_stops_cleanly(wm_settings: Settings, sig: signal.Signals) -> None:
    proc, url = _start(wm_settings)
    try:
        assert wait_for(
            lambda: _http("GET", url + "/readyz")[0] == 200, START_TIMEOUT_S, interval=0.1
        ), proc.stderr.read() if proc.poll() is not None else ""
        status, sub = _http(
            "POST",
            url + "/api/subscriptions/",
            json.dumps({"target_url": "https://example.com/"}).encode(),
        )
        assert status == 201
        body = b'{"via": "process"}'
        status, accepted = _http(
            "POST",
            f"{url}/api/ingest/{sub['id']}/?event_type=e",
            body,
            {"X-Hub-Signature-256": signing.hub_signature(sub["secret_key"], body)},
        )
        assert status == 202
        proc.send_signal(sig)
        assert proc.wait(timeout=30) == 0
    finally:
        _reap(proc)
    err = proc.stderr.read()
    assert "gateway shutting down" in err and "Traceback" not in err
    [msg] = consume(wm_settings, wm_settings.topic(INGEST), 1)
    assert webhook_view(msg)["webhook_id"] == accepted["id"]


def test_exits_1_when_the_table_cannot_load(wm_settings: Settings) -> None:
    missing = dataclasses.replace(
        wm_settings, topic_prefix="no-such-prefix-" + wm_settings.topic_prefix
    )
    proc, _ = _start(missing)
    try:
        assert proc.wait(timeout=60) == 1
    finally:
        _reap(proc)
    err = proc.stderr.read()
    assert "gateway cannot start" in err and "subscriptions" in err
    assert "Traceback" not in err


def _reap(proc: subprocess.Popen[str]) -> None:
    """Kill the gateway process if a failed assertion left it running."""
    if proc.poll() is None:
        proc.kill()
        proc.wait()
