"""Slow and oversize requests over raw loopback sockets: a request must arrive whole within
WM_REQUEST_READ_TIMEOUT (here 1 s) or its connection is answered 408 and closed; protocol errors
get the API's JSON error shape."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import AsyncIterator

import pytest

from tests.support.gateway import LiveGateway, running_gateway
from webhookmaster.settings import Settings

READ_TIMEOUT_S = 1.0
# Generous: a loaded 2-core machine; without a read timeout nothing closes at all.
CLOSED_WITHIN_S = READ_TIMEOUT_S + 5.0
DRIP_INTERVAL_S = 0.2


@pytest.fixture
async def strict(wm_settings: Settings) -> AsyncIterator[LiveGateway]:
    settings = dataclasses.replace(wm_settings, request_read_timeout_s=READ_TIMEOUT_S)
    async with running_gateway(settings) as live:
        yield live


def _port(gw: LiveGateway) -> int:
    return int(gw.url.rsplit(":", 1)[1])


async def _trickle(port: int, head: bytes, drip: bytes) -> tuple[float, bytes]:
    """Send ``head``, then one byte of ``drip`` every DRIP_INTERVAL_S; return how long until
    the server closed the connection (inf when it did not) and what it answered."""
    loop = asyncio.get_running_loop()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    started = loop.time()
    writer.write(head)

    async def drip_bytes() -> None:
        for byte in drip:
            await asyncio.sleep(DRIP_INTERVAL_S)
            writer.write(bytes([byte]))
            await writer.drain()

    dripper = asyncio.create_task(drip_bytes())
    received = b""
    elapsed = float("inf")
    try:
        async with asyncio.timeout(CLOSED_WITHIN_S + 2):
            while chunk := await reader.read(65_536):
                received += chunk
        elapsed = loop.time() - started
    except ConnectionError:
        elapsed = loop.time() - started
    except TimeoutError:
        pass
    finally:
        dripper.cancel()
        await asyncio.gather(dripper, return_exceptions=True)
        writer.close()
    return elapsed, received


def _json_answer(raw: bytes) -> tuple[int, dict[str, str], dict]:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {
        k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])
    }
    return status, headers, json.loads(body)


async def test_slow_clients_are_cut_off(strict: LiveGateway) -> None:
    port = _port(strict)
    endless = b"a" * 200
    line = [(b"POST /api/events/", endless)] * 15
    headers = [(b"POST /api/events/ HTTP/1.1\r\nHost: gw\r\nX-Slow: ", endless)] * 15
    body = [
        (
            b"POST /api/events/ HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\n"
            b'Content-Length: 5000\r\n\r\n{"event_type": "',
            endless,
        )
    ] * 15
    silent = [(b"", b"")] * 5
    clients = line + headers + body + silent
    results = await asyncio.gather(*(_trickle(port, head, drip) for head, drip in clients))
    assert len(results) == 50
    for (head, _), (elapsed, received) in zip(clients, results, strict=True):
        assert elapsed < CLOSED_WITHIN_S, (head, elapsed)
        if not head:
            continue  # nothing sent: closed without an answer
        status, answer_headers, answer = _json_answer(received)
        assert status == 408, received
        assert answer_headers["content-type"].startswith("application/json")
        assert answer["error"] == "request_timeout" and answer["detail"]


async def test_a_kept_alive_connection_survives_idle_time(strict: LiveGateway) -> None:
    """The deadline covers one request's arrival, not the idle time between requests."""
    reader, writer = await asyncio.open_connection("127.0.0.1", _port(strict))
    try:
        for _ in range(2):
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: gw\r\n\r\n")
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            assert head.startswith(b"HTTP/1.1 200"), head
            length = int(
                next(
                    h.split(b":")[1]
                    for h in head.split(b"\r\n")
                    if h.lower().startswith(b"content-length")
                )
            )
            await asyncio.wait_for(reader.readexactly(length), 10)
            await asyncio.sleep(READ_TIMEOUT_S * 1.5)  # idle longer than the read timeout
    finally:
        writer.close()


async def test_a_body_in_a_later_packet_then_idle_time_is_fine(strict: LiveGateway) -> None:
    """Headers, then the body in a second write: served; the connection then idles longer
    than the read timeout and still serves the next request."""
    body = b'{"event_type": "e", "payload": 1}'
    reader, writer = await asyncio.open_connection("127.0.0.1", _port(strict))
    try:
        writer.write(
            b"POST /api/events/ HTTP/1.1\r\nHost: gw\r\nContent-Type: "
            b"application/json\r\nContent-Length: %d\r\n\r\n" % len(body)
        )
        await writer.drain()
        await asyncio.sleep(READ_TIMEOUT_S / 4)
        writer.write(body)
        assert (await _read_response(reader)).startswith(b"HTTP/1.1 202")
        await asyncio.sleep(READ_TIMEOUT_S * 1.5)  # idle longer than the read timeout
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: gw\r\n\r\n")
        assert (await _read_response(reader)).startswith(b"HTTP/1.1 200")
    finally:
        writer.close()


async def _read_response(reader: asyncio.StreamReader) -> bytes:
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    length = int(
        next(
            h.split(b":")[1] for h in head.split(b"\r\n") if h.lower().startswith(b"content-length")
        )
    )
    return head + await asyncio.wait_for(reader.readexactly(length), 10)


async def test_a_whole_request_within_the_deadline_is_served(strict: LiveGateway) -> None:
    reply = await strict.call(
        "POST", "/api/events/", json_body={"event_type": "e", "payload": {"ok": True}}
    )
    assert reply.status == 202, reply.body


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"GET /healthz HTTP/1.1\r\nHost: gw\r\nX-Big: " + b"v" * 9000 + b"\r\n\r\n", 431),
        (
            b"GET /healthz HTTP/1.1\r\nHost: gw\r\n"
            + b"".join(b"X-H%d: v\r\n" % i for i in range(200))
            + b"\r\n",
            431,
        ),
        (b"GET /api/webhooks/?q=" + b"u" * 9000 + b" HTTP/1.1\r\nHost: gw\r\n\r\n", 431),
        (b"GET /healthz HTTP/1.1\r\nHost: gw\r\nBad Header\r\n\r\n", 400),
        (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03garbage\r\n\r\n", 400),
    ],
)
async def test_protocol_errors_are_json(
    strict: LiveGateway, request_bytes: bytes, status: int
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", _port(strict))
    try:
        writer.write(request_bytes)
        raw = await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()
    got, headers, body = _json_answer(raw)
    assert got == status, raw[:300]
    assert headers["content-type"].startswith("application/json")
    assert set(body) == {"error", "detail"} and body["detail"]
