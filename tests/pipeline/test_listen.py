"""``webhookmaster listen`` as a real process receiving real deliveries from the pipeline: it
prints the id, event type, attempt, headers and pretty-printed body, says whether the
signatures verify, and answers the status it was given."""

from __future__ import annotations

import asyncio
import contextlib
import re
import signal
import sys
from collections.abc import AsyncIterator

import orjson
import pytest

from tests.support.env import clean_env
from tests.support.pipeline import full_pipeline, status_of
from webhookmaster import signing
from webhookmaster.settings import PROJECT_ROOT, Settings

WAIT = 60.0


class Listener:
    """A running ``webhookmaster listen`` and what it printed so far."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.text = ""
        self.port = 0

    async def read_until(self, pattern: str, timeout: float = WAIT) -> re.Match[str]:
        """Read its output until ``pattern`` matches it (bounded)."""
        assert self.proc.stdout is not None
        async with asyncio.timeout(timeout):
            while (found := re.search(pattern, self.text, re.MULTILINE)) is None:
                line = await self.proc.stdout.readline()
                assert line, f"listen ended; it printed:\n{self.text}"
                self.text += line.decode()
        return found


@contextlib.asynccontextmanager
async def listening(*args: str) -> AsyncIterator[Listener]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "webhookmaster.ops.cli", "listen", "--port", "0", *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        stdin=asyncio.subprocess.DEVNULL,
        env=clean_env(),
        cwd=PROJECT_ROOT,
    )  # fmt: skip
    listener = Listener(proc)
    try:
        found = await listener.read_until(r"listening on http://127\.0\.0\.1:(\d+)/")
        listener.port = int(found.group(1))
        yield listener
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGINT)
            try:
                await asyncio.wait_for(proc.wait(), 15)
            except TimeoutError:
                proc.kill()
                await proc.wait()


@pytest.mark.timeout(240)
async def test_listen_prints_a_delivery_and_verifies_its_signatures(settings: Settings) -> None:
    secret = signing.new_secret()
    async with listening("--secret", secret) as listener, full_pipeline(settings) as gateway:
        sub = await gateway.create_subscription(
            target_url=f"http://127.0.0.1:{listener.port}/hook", secret_key=secret
        )
        body = orjson.dumps({"order": 42, "items": ["a", "b"]})
        reply = await gateway.ingest(sub, body, event_type="order.created")
        assert reply.status == 202, reply.body
        webhook_id = reply.json["id"]
        await listener.read_until(r"^body:\n(  .*\n)*  \}\n")
        await status_of(gateway, webhook_id, lambda b: b["status"] == "DELIVERED")
    text = listener.text
    assert listener.proc.returncode == 0, text  # stopped by SIGINT, cleanly
    assert f"id:         {webhook_id}" in text
    assert "event type: order.created" in text
    assert "attempt:    1" in text
    assert "signatures: webhook-signature valid, X-Hub-Signature-256 valid" in text
    assert "  webhook-signature: v1," in text and "  X-Hub-Signature-256: sha256=" in text
    assert '  "order": 42,' in text and '    "a",' in text  # pretty-printed
    assert "POST /hook" in text


@pytest.mark.timeout(240)
async def test_listen_answers_the_chosen_status_and_flags_a_wrong_secret(
    settings: Settings,
) -> None:
    async with listening("--status", "503", "--secret", signing.new_secret()) as listener:
        async with full_pipeline(settings) as gateway:
            sub = await gateway.create_subscription(
                target_url=f"http://127.0.0.1:{listener.port}/hook"
            )
            reply = await gateway.ingest(sub, b'{"n": 1}', event_type="e")
            assert reply.status == 202, reply.body
            webhook_id = reply.json["id"]
            await listener.read_until(r"^attempt:    2$")  # 503: retried on the ladder
            found = await status_of(gateway, webhook_id, lambda b: len(b["delivery_attempts"]) >= 1)
    attempt = found["delivery_attempts"][0]
    assert attempt["status_code"] == 503 and not attempt["is_success"]
    assert "signatures: webhook-signature INVALID, X-Hub-Signature-256 INVALID" in listener.text
