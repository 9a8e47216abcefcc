"""The SSRF guard's rules, unit by unit: which addresses and target hosts a delivery may reach,
with and without WM_ALLOWED_CIDRS (the real-delivery case is in test_delivery.py)."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid

import pytest
from confluent_kafka import Consumer, TopicPartition

from delivery_agents.ssrf import BlockedTarget, allowed, check_host, noncanonical_ipv4, parse_cidrs
from schemas.topics import ATTEMPTS, DEAD_LETTER
from tests.support.pipeline import create_subscription, ingest_record, produce_ingest, running
from tests.support.receiver import Receiver
from tests.support.topics import read
from webhookmaster.kafka_clients import consumer_config
from webhookmaster.retry_ladder import tiers
from webhookmaster.settings import Settings

LOOPBACK = "127.0.0.0/8"
PRIVATE = "10.0.0.0/8,192.168.0.0/16"

# (address, WM_ALLOWED_CIDRS, allowed?)
ADDRESSES = [
    # plain IPv4 and IPv6
    ("8.8.8.8", "", True),
    ("127.0.0.1", "", False),
    ("10.1.2.3", "", False),
    ("169.254.169.254", "", False),
    ("100.64.0.1", "", False),
    ("224.0.0.1", "", False),
    ("2001:4860:4860::8888", "", True),
    ("::1", "", False),
    ("fd00::1", "", False),
    ("fe80::1%eth0", "", False),
    ("127.0.0.1", LOOPBACK, True),
    ("10.1.2.3", PRIVATE, True),
    ("::1", "::1/128", True),
    # unspecified: refused whatever is allowed (a connection to it reaches this host)
    ("0.0.0.0", "", False),
    ("0.0.0.0", "0.0.0.0/0", False),
    ("::", "", False),
    ("::", "::/0", False),
    # IPv4-mapped ::ffff:a.b.c.d
    ("::ffff:127.0.0.1", "", False),
    ("::ffff:127.0.0.1", LOOPBACK, True),
    ("::ffff:8.8.8.8", "", True),
    ("::ffff:0.0.0.0", "0.0.0.0/0", False),
    # IPv4-translated ::ffff:0:a.b.c.d
    ("::ffff:0:127.0.0.1", "", False),
    ("::ffff:0:8.8.8.8", "", True),
    # IPv4-compatible ::a.b.c.d (::/96)
    ("::127.0.0.1", "", False),
    ("::10.1.2.3", "", False),
    ("::10.1.2.3", PRIVATE, True),
    ("::8.8.8.8", "", True),
    # NAT64 64:ff9b::/96
    ("64:ff9b::127.0.0.1", "", False),
    ("64:ff9b::7f00:1", "", False),
    ("64:ff9b::a9fe:a9fe", "", False),  # 169.254.169.254, the metadata service
    ("64:ff9b::127.0.0.1", LOOPBACK, True),
    ("64:ff9b::8.8.8.8", "", True),
    # local-use NAT64 64:ff9b:1::/48: the embedding is the operator's choice; always refused
    ("64:ff9b:1::808:808", "", False),
    ("64:ff9b:1::7f00:1", LOOPBACK, False),
    # 6to4 2002::/16, IPv4 address in bits 16-48
    ("2002:7f00:1::", "", False),
    ("2002:7f00:1::1", "", False),
    ("2002:a9fe:a9fe::", "", False),
    ("2002:c0a8:101::", "192.168.0.0/16", True),
    ("2002:808:808::1", "", True),
    # Teredo 2001::/32: server and client (obfuscated in the last 32 bits) must both pass
    ("2001:0:4136:e378::f7f7:f7f7", "", True),  # server 65.54.227.120, client 8.8.8.8
    ("2001:0:4136:e378:8000:63bf:3fff:fdd2", "", False),  # client 192.0.2.45 (TEST-NET-1)
    ("2001:0:4136:e378::80ff:fffe", "", False),  # client 127.0.0.1
    ("2001:0:a01:203::f7f7:f7f7", "", False),  # server 10.1.2.3, client 8.8.8.8
    ("2001:0:a01:203::f7f7:f7f7", PRIVATE, True),
]


@pytest.mark.parametrize(("address", "cidrs", "ok"), ADDRESSES)
def test_address_rules(address: str, cidrs: str, ok: bool) -> None:
    assert allowed(address, parse_cidrs(cidrs)) is ok


NONCANONICAL = [
    "2130706433",
    "127.1",
    "0177.0.0.1",
    "0",
    "0x7f.1",
    "0x7f000001",
    "0X7F.0.0.1",
    "127.0.0.01",
    "127.0.0.1.",
    "017700000001",
    "1.2.3.4.5",
    "www.123",
]
HOSTNAMES = ["example.com", "localhost", "1e2", "my-host", "123.example", "xn--bcher-kva.example"]


@pytest.mark.parametrize("host", NONCANONICAL)
@pytest.mark.parametrize("cidrs", ["", LOOPBACK, "0.0.0.0/0"])
def test_noncanonical_ipv4_hosts_are_refused_before_connecting(host: str, cidrs: str) -> None:
    assert noncanonical_ipv4(host)
    with pytest.raises(BlockedTarget, match="not a dotted-decimal IPv4 address"):
        check_host(host, parse_cidrs(cidrs))


@pytest.mark.parametrize("host", HOSTNAMES)
def test_host_names_are_left_to_the_resolver(host: str) -> None:
    assert not noncanonical_ipv4(host)
    check_host(host, [])  # no refusal: the guarded resolver checks what the name resolves to


@pytest.mark.parametrize(
    ("host", "cidrs", "refused"),
    [
        ("8.8.8.8", "", False),
        ("127.0.0.1", "", True),
        ("127.0.0.1", LOOPBACK, False),
        ("0.0.0.0", "0.0.0.0/0", True),
        ("::ffff:7f00:1", "", True),  # as yarl gives the host of http://[::ffff:127.0.0.1]/
        ("::ffff:127.0.0.1", LOOPBACK, False),  # dotted IPv4 inside an IPv6 literal: an address
        ("64:ff9b::7f00:1", "", True),
        ("2002:7f00:1::", "", True),
        ("::7f00:1", "", True),
        ("2001:4860:4860::8888", "", False),
    ],
)
def test_literal_hosts(host: str, cidrs: str, refused: bool) -> None:
    if refused:
        with pytest.raises(BlockedTarget, match="SSRF guard"):
            check_host(host, parse_cidrs(cidrs))
    else:
        check_host(host, parse_cidrs(cidrs))


def retry_records(settings: Settings) -> int:
    """How many records the retry tiers' topics have ever held (high watermarks)."""
    consumer = Consumer(consumer_config(settings, f"test-{uuid.uuid4().hex}"))
    try:
        return sum(
            consumer.get_watermark_offsets(TopicPartition(tier.topic, p), timeout=10)[1]
            for tier in tiers(settings.topic_prefix, settings.retry_ladder)
            for p in range(settings.topic_partitions)
        )
    finally:
        consumer.close()


async def test_refused_targets_fail_after_one_attempt_without_retry(wm_settings: Settings) -> None:
    """Loopback is allowed, and a receiver listens on it: only the form of the host can refuse
    the non-canonical ones (before, they resolved to 127.0.0.1 and were delivered). NAT64 of the
    metadata address, 6to4 and IPv4-compatible forms of 10.1.2.3 used to pass as global
    addresses, then failed to connect and were retried tier by tier."""
    settings = dataclasses.replace(
        wm_settings,
        allowed_cidrs=LOOPBACK,
        retry_ladder="1,1,1,1,1",
        connect_timeout_s=1.0,
        request_timeout_s=2.0,
    )
    receiver = await Receiver().start()
    try:
        hosts = [
            "2130706433",
            "127.1",
            "0x7f.1",
            "0177.0.0.1",
            "0",
            "[64:ff9b::a9fe:a9fe]",
            "[2002:a01:203::]",
            "[::10.1.2.3]",
            "0.0.0.0",
            "[::]",
        ]
        subs = {
            create_subscription(settings, f"http://{host}:{receiver.port}/hook"): host
            for host in hosts
        }
        records_ = [ingest_record(sub) for sub in subs]
        async with running(settings):
            produce_ingest(settings, *records_)
            events = await read(settings, ATTEMPTS, len(records_))
            letters = await read(settings, DEAD_LETTER, len(records_))
        assert sorted(e["webhook_id"] for e in events) == sorted(r["webhook_id"] for r in records_)
        for event in events:
            assert (event["attempt_number"], event["outcome"]) == (1, "failed"), event
            assert event["status_code"] is None and "SSRF guard" in event["error"], event
        assert sorted(ltr["webhook_id"] for ltr in letters) == sorted(
            r["webhook_id"] for r in records_
        )
        for letter in letters:
            assert letter["reason"].startswith("not retried: SSRF guard"), letter["reason"]
        assert await asyncio.to_thread(retry_records, settings) == 0
        assert receiver.hits == []
    finally:
        await receiver.stop()
