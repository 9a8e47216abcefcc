"""Kafka client setup: configs for producers, consumers and the admin client (all built by
:func:`client_config`, with the security and pass-through settings), the start-up check of the
cluster, and an asyncio bridge for the confluent-kafka producer."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import Mapping, Sequence
from typing import Any, cast

from confluent_kafka import KafkaError, KafkaException, Message, Producer
from confluent_kafka.admin import AdminClient, ConfigResource

from schemas.topics import INGEST, MAX_MESSAGE_BYTES
from webhookmaster import kafka_security
from webhookmaster.settings import Settings

log = logging.getLogger(__name__)


def client_config(settings: Settings, *layers: Mapping[str, Any]) -> dict[str, Any]:
    """The one place a Kafka client's config is built: the bootstrap servers, then ``layers``
    (the client kind's defaults, the caller's extras) in order, then the security settings and
    the pass-through properties (``WM_KAFKA_*``, docs/kafka-security.md)."""
    config: dict[str, Any] = {"bootstrap.servers": settings.bootstrap}
    for layer in layers:
        config.update(layer)
    config.update(kafka_security.properties(settings))
    return config


# Keyed records go to murmur2(key) % partitions, as the Java client's default partitioner
# does (records without a key: a random partition). Every producer of ours uses it, so a
# subscription's records share one partition number on the ingest and due topics; direct
# producers must hash keys the same way (docs/delivery.md, Rate limit).
PARTITIONER = "murmur2_random"


def producer_config(settings: Settings, **extra: Any) -> dict[str, Any]:
    """Durable producer: acks=all, idempotent, short linger for batching, Java-compatible
    partitioner (:data:`PARTITIONER`)."""
    config: dict[str, Any] = {
        "partitioner": PARTITIONER,
        "acks": "all",
        "enable.idempotence": True,
        "linger.ms": 2,
        "compression.type": "lz4",
        "message.max.bytes": MAX_MESSAGE_BYTES + 64 * 1024,  # the topics' limit plus overhead
        "message.timeout.ms": 30_000,
        "socket.connection.setup.timeout.ms": 5_000,
    }
    return client_config(settings, config, extra)


def consumer_config(settings: Settings, group_id: str, **extra: Any) -> dict[str, Any]:
    """Consumer that never auto-commits: components commit after their work is durable. Its
    group protocol is :func:`group_protocol`'s unless ``extra`` sets ``group.protocol``."""
    config: dict[str, Any] = {
        "group.id": group_id,
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        "max.poll.interval.ms": 300_000,
    }
    if "group.protocol" not in extra:
        config.update(group_protocol_config(group_protocol(settings)))
    return client_config(settings, config, extra)


def group_protocol_config(protocol: str) -> dict[str, Any]:
    """The consumer properties of a group protocol ('consumer' or 'classic').

    Both move partitions incrementally: a member joining or leaving moves only its share, and
    the rebalance callbacks get only the partitions that move. KIP-848 ('consumer', Kafka 4.x)
    assigns on the broker; librdkafka refuses the classic-only properties with it
    (partition.assignment.strategy, session.timeout.ms, heartbeat.interval.ms). 'classic'
    needs the cooperative-sticky assignor for that; its session timeout is the client's.
    """
    if protocol == "consumer":
        return {"group.protocol": "consumer"}
    return {"group.protocol": "classic", "partition.assignment.strategy": "cooperative-sticky"}


# Protocol found per bootstrap address by 'auto' (one question per process and cluster).
_DETECTED: dict[str, str] = {}
_DETECT_LOCK = threading.Lock()
DETECT_TIMEOUT_S = 15.0


def group_protocol(settings: Settings) -> str:
    """``WM_KAFKA_GROUP_PROTOCOL``, with 'auto' resolved by asking the cluster
    (:func:`detect_group_protocol`); 'classic' when the cluster does not answer (every broker
    serves it), asked again at the next call."""
    if settings.kafka_group_protocol != "auto":
        return settings.kafka_group_protocol
    with _DETECT_LOCK:
        found = _DETECTED.get(settings.bootstrap)
        if found is None:
            found = detect_group_protocol(settings, DETECT_TIMEOUT_S)
            if found is None:
                log.warning(
                    "could not ask Kafka at %s which consumer group protocols it serves; "
                    "using 'classic' (set WM_KAFKA_GROUP_PROTOCOL to choose)",
                    settings.bootstrap,
                )
                return "classic"
            _DETECTED[settings.bootstrap] = found
            log.info("consumer group protocol %r (detected at %s)", found, settings.bootstrap)
        return found


def detect_group_protocol(settings: Settings, timeout: float) -> str | None:
    """The protocol :func:`protocol_for` picks from a broker's configuration; None when the
    cluster does not answer within ``timeout`` or refuses to describe its configuration
    (DescribeConfigs needs the cluster's Describe-Configs permission)."""
    deadline = time.monotonic() + timeout
    admin = admin_client(settings)
    try:
        brokers = admin.list_topics(timeout=timeout).brokers
        if not brokers:
            return None
        resource = ConfigResource(ConfigResource.Type.BROKER, str(min(brokers)))
        left = max(1.0, deadline - time.monotonic())
        future = admin.describe_configs([resource], request_timeout=left)[resource]
        entries = future.result(timeout=left)
    except (KafkaException, TimeoutError) as exc:
        log.debug("describing the broker's configuration failed: %s", exc)
        return None
    return protocol_for({name: entry.value for name, entry in entries.items()})


def protocol_for(config: Mapping[str, str | None]) -> str:
    """'consumer' for a Kafka 4.x broker whose ``group.coordinator.rebalance.protocols`` lists
    it (the 4.x default), else 'classic'. A broker that still has ``inter.broker.protocol.version``
    (removed in 4.0) is 3.x or older: classic even when the KIP-848 preview is listed, since
    librdkafka's consumer protocol got no assignment from a 3.9 broker with the preview on."""
    if config.get("inter.broker.protocol.version") is not None:
        return "classic"
    listed = (config.get("group.coordinator.rebalance.protocols") or "").split(",")
    return "consumer" if "consumer" in (p.strip() for p in listed) else "classic"


def record_tp(msg: Message) -> tuple[str, int]:
    """(topic, partition) of a consumed or acknowledged record (librdkafka sets both)."""
    topic, partition = msg.topic(), msg.partition()
    assert topic is not None and partition is not None, "record has no position"
    return topic, partition


def record_offset(msg: Message) -> int:
    """The offset of a consumed or acknowledged record (librdkafka sets it)."""
    offset = msg.offset()
    assert offset is not None, "record has no position"
    return offset


def record_headers(msg: Message) -> list[tuple[str, bytes | None]]:
    """A consumed record's headers as (name, value) pairs; librdkafka hands them over as bytes
    (or None), the str case is only there for the type."""
    found = msg.headers()
    if not found:
        return []
    pairs = found.items() if isinstance(found, dict) else found
    return [(k, v.encode() if isinstance(v, str) else v) for k, v in pairs]


def admin_config(settings: Settings, **extra: Any) -> dict[str, Any]:
    """Admin client (topic catalogue, probes)."""
    return client_config(settings, extra)


def admin_client(settings: Settings, **extra: Any) -> AdminClient:
    return AdminClient(admin_config(settings, **extra))


class KafkaCheckError(RuntimeError):
    """The cluster cannot be used with these settings; ``str()`` is the one line to show."""


# librdkafka error codes that no waiting can cure: wrong credentials, a TLS failure.
_AUTH_CODES = {KafkaError._AUTHENTICATION: "authentication failed", KafkaError._SSL: "TLS failed"}
CHECK_SLICE_S = 1.0


def _what(settings: Settings) -> str:
    """How the client authenticates, for an error line: ``SASL SCRAM-SHA-256 as user 'x'``."""
    props = kafka_security.properties(settings)
    protocol = props.get("security.protocol", "PLAINTEXT").upper()
    if protocol.startswith("SASL_"):
        mechanism = props.get("sasl.mechanism", "?").upper()
        user = props.get("sasl.username") or props.get("sasl.oauthbearer.client.id")
        return f"SASL {mechanism}" + (f" as {user!r}" if user else "")
    return "TLS client certificate" if "ssl.certificate.location" in props else protocol


def check_cluster(settings: Settings, timeout: float | None = None) -> None:
    """Return once the cluster answers a metadata request with these settings; raise
    :class:`KafkaCheckError` at once on an authentication or TLS failure, or after ``timeout``
    (default ``WM_KAFKA_CHECK_TIMEOUT``; 0 skips the check) when no broker answers."""
    timeout = settings.kafka_check_timeout_s if timeout is None else timeout
    if timeout <= 0:
        return
    errors: list[KafkaError] = []
    quick = {"socket.connection.setup.timeout.ms": 5000, "log_level": 0}
    config = admin_config(settings, error_cb=errors.append, **quick)
    admin = AdminClient(config)
    deadline = time.monotonic() + timeout
    last = "no answer"
    while True:
        try:
            # one topic's metadata: cheaper than all topics' on a large cluster
            slice_s = max(0.1, min(CHECK_SLICE_S, deadline - time.monotonic()))
            admin.list_topics(settings.topic(INGEST), timeout=slice_s)
            return
        except KafkaException as exc:
            last = exc.args[0].str()
        admin.poll(0)  # serves error_cb
        for error in errors:
            if error.code() in _AUTH_CODES:
                raise KafkaCheckError(
                    f"Kafka: {_AUTH_CODES[error.code()]} ({_what(settings)}) at "
                    f"{settings.bootstrap}: {error.str()}"
                )
        if errors:
            last = errors[-1].str()
        if time.monotonic() >= deadline:
            raise KafkaCheckError(
                f"Kafka: no broker answered at {settings.bootstrap} within {timeout:g} s "
                f"({_what(settings)}): {last}"
            )


# Produce errors that no retry can change: the record's size or form.
PERMANENT_CODES = frozenset(
    {
        KafkaError.MSG_SIZE_TOO_LARGE,
        KafkaError.INVALID_RECORD,
        KafkaError.RECORD_LIST_TOO_LARGE,
        KafkaError.INVALID_MSG_SIZE,
    }
)


class ProduceError(Exception):
    """A record was not acknowledged by Kafka; ``code`` is the KafkaError code when known."""

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code

    @property
    def permanent(self) -> bool:
        """True when sending the same record again cannot succeed."""
        return self.code in PERMANENT_CODES


class AsyncProducer:
    """confluent-kafka ``Producer`` whose ``send`` is awaitable: it resolves when the broker
    acknowledged the record (``acks=all``), or raises :class:`ProduceError`.

    A daemon thread serves delivery callbacks. The results of one ``poll`` cross to the event
    loop together, in one ``call_soon_threadsafe`` per loop (one wake-up for many records).
    """

    def __init__(self, config: dict[str, Any]) -> None:
        self._producer = Producer(config)
        self._stopping = threading.Event()
        # delivery results, appended by callbacks (inside poll or flush, on any thread)
        self._settled: deque[tuple[asyncio.Future[Message], KafkaError | None, Message]] = deque()
        self._thread = threading.Thread(target=self._serve, name="kafka-producer", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stopping.is_set():
            self._producer.poll(0.05)
            self._dispatch()
        self._dispatch()

    def _dispatch(self) -> None:
        by_loop: dict[asyncio.AbstractEventLoop, list[Any]] = {}
        while self._settled:
            item = self._settled.popleft()
            by_loop.setdefault(item[0].get_loop(), []).append(item)
        for loop, items in by_loop.items():
            try:
                loop.call_soon_threadsafe(_settle_all, items)
            except RuntimeError:
                pass  # that loop is closed: nobody awaits these any more

    async def send(
        self,
        topic: str,
        value: bytes | None,
        key: bytes | str | None = None,
        headers: Sequence[tuple[str, bytes | None]] | None = None,
        partition: int | None = None,
        queue_wait_s: float | None = None,
    ) -> Message:
        """Produce one record and wait for its acknowledgement (bounded by the producer's
        ``message.timeout.ms``: librdkafka reports every record exactly once). While the local
        queue is full it waits, at most ``queue_wait_s`` when given."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Message] = loop.create_future()

        def on_delivery(err: KafkaError | None, msg: Message) -> None:
            self._settled.append((future, err, msg))  # runs inside poll(), on the thread

        kwargs: dict[str, Any] = {"on_delivery": on_delivery}
        if headers:
            kwargs["headers"] = list(headers)
        if partition is not None:
            kwargs["partition"] = partition
        give_up = None if queue_wait_s is None else loop.time() + queue_wait_s
        while True:
            try:
                self._producer.produce(topic, value, key, **kwargs)
                break
            except BufferError:
                if give_up is not None and loop.time() > give_up:
                    raise ProduceError("the producer's local queue stayed full") from None
                await asyncio.sleep(0.005)  # local queue full: let the poll thread drain it
            except KafkaException as exc:
                raise ProduceError(str(exc), exc.args[0].code()) from exc
        return await future

    async def send_all(
        self, topic: str, records: Sequence[tuple[bytes, bytes, list[tuple[str, bytes]]]]
    ) -> None:
        """Produce ``(value, key, headers)`` records and wait until every one is acknowledged;
        raises :class:`ProduceError` at the first that is not (the others may still land: a
        caller that sends them again may duplicate some, never lose one). One future for all:
        a fan-out's thousand records cost one wake-up, not a thousand."""
        if not records:
            return
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Message] = loop.create_future()
        left = [len(records)]

        def on_delivery(err: KafkaError | None, msg: Message) -> None:
            left[0] -= 1  # callbacks run inside poll(), on one thread
            if err is not None or left[0] == 0:
                self._settled.append((future, err, msg))

        try:
            for value, key, headers in records:
                while True:
                    try:
                        self._producer.produce(
                            topic, value, key, headers=cast(Any, headers), on_delivery=on_delivery
                        )
                        break
                    except BufferError:
                        await asyncio.sleep(0.005)  # local queue full: the poll thread drains it
                    except KafkaException as exc:
                        raise ProduceError(str(exc), exc.args[0].code()) from exc
        except BaseException:
            future.cancel()  # the records already produced settle into nothing
            raise
        await future

    def produce_now(
        self,
        topic: str,
        value: bytes | None,
        key: bytes | None,
        headers: Sequence[tuple[str, bytes | None]],
        partition: int,
    ) -> asyncio.Future[Message]:
        """Produce one record at once (raises ``BufferError`` while the local queue is full, so
        that a caller can keep records in order); the future resolves on its acknowledgement,
        as :meth:`send`'s."""
        future: asyncio.Future[Message] = asyncio.get_running_loop().create_future()

        def on_delivery(err: KafkaError | None, msg: Message) -> None:
            self._settled.append((future, err, msg))

        try:
            self._producer.produce(
                topic,
                value,
                key,
                headers=list(headers),
                partition=partition,
                on_delivery=on_delivery,
            )
        except KafkaException as exc:
            raise ProduceError(str(exc), exc.args[0].code()) from exc
        return future

    def flush(self, timeout: float = 10.0) -> int:
        """Wait for outstanding records; returns how many are still queued."""
        return self._producer.flush(timeout)

    def purge_queued(self) -> None:
        """Drop the records still waiting in the local queue (not those already sent to a
        broker): each one's delivery report then fails with ``_PURGE_QUEUE``."""
        self._producer.purge(in_queue=True, in_flight=False, blocking=False)

    def connected(self, timeout: float = 2.0, topic: str | None = None) -> bool:
        """True when the cluster answers a metadata request (for ``topic`` only, when given:
        cheaper than all topics' metadata on a large cluster)."""
        try:
            self._producer.list_topics(topic, timeout=timeout)
        except KafkaException:
            return False
        return True

    def close(self, timeout: float = 10.0) -> None:
        """Flush for at most ``timeout`` s, then destroy the client (records still unsent fail
        as purged), so no librdkafka thread outlives it."""
        self._producer.flush(timeout)
        self._stopping.set()
        self._thread.join(timeout=2)
        self._producer.purge(in_queue=True, in_flight=True, blocking=False)
        self._producer.close()
        self._dispatch()


def _settle_all(items: list[tuple[asyncio.Future[Message], KafkaError | None, Message]]) -> None:
    for future, err, msg in items:
        if future.done():
            continue
        if err is not None:
            future.set_exception(ProduceError(err.str(), err.code()))
        else:
            future.set_result(msg)
