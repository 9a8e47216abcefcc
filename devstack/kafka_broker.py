"""A single-node Apache Kafka broker (KRaft, broker and controller in one JVM) on 127.0.0.1,
assembled from Maven Central jars with Maven, data kept in the state folder.

Any Apache Kafka from 3.9 on (``WM_KAFKA_VERSION``): 3.9 brought what the stack relies on,
``kafka-storage format --standalone`` and ``controller.quorum.bootstrap.servers`` (KIP-853).
The same main classes start 3.9 and 4.x, and both log through log4j2 with one configuration:
their POMs name no logging backend (the release tarballs ship reload4j for 3.9, log4j2 for 4.x),
so the stack adds the slf4j-to-log4j2 bridge either way (kafka-pom.xml)."""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from devstack import processes
from devstack.errors import StackError
from webhookmaster.settings import Settings

JAVA_MIN = 17
KAFKA_MIN = (3, 9)
TOOL_HEAP = "-Xmx256m"  # StorageTool runs need little memory, whatever the broker's heap


SCRAM_MECHANISMS = ("SCRAM-SHA-256", "SCRAM-SHA-512")


@dataclass(frozen=True)
class SecureListeners:
    """Extra listeners beside the plain one, to try client security locally (the tests):
    ``ssl_port`` takes TLS with a client certificate signed by ``ca_file`` (mutual TLS),
    ``sasl_ssl_port`` takes SASL over TLS with SCRAM-SHA-256, SCRAM-SHA-512 (credentials made
    at format time) and PLAIN, for each of ``users``. The broker keeps talking to itself over
    the plain listener."""

    keystore: Path  # PKCS12: the broker's key and certificate (names 127.0.0.1, localhost)
    keystore_password: str
    ca_file: Path  # PEM: the CA the SSL listener trusts for client certificates
    ssl_port: int | None = None
    sasl_ssl_port: int | None = None
    users: tuple[tuple[str, str], ...] = ()  # (name, password)

    def listeners(self) -> list[tuple[str, int]]:
        """(listener name = security protocol, port) of each extra listener."""
        found = [("SSL", self.ssl_port), ("SASL_SSL", self.sasl_ssl_port)]
        return [(name, port) for name, port in found if port is not None]

    def properties(self) -> list[str]:
        """The server.properties lines of the TLS material and the SASL mechanisms."""
        scram = "org.apache.kafka.common.security.scram.ScramLoginModule required;"
        plain_users = " ".join(f'user_{name}="{password}"' for name, password in self.users)
        return [
            "ssl.keystore.type=PKCS12",
            f"ssl.keystore.location={self.keystore}",
            f"ssl.keystore.password={self.keystore_password}",
            f"ssl.key.password={self.keystore_password}",
            "ssl.truststore.type=PEM",
            f"ssl.truststore.location={self.ca_file}",
            "listener.name.ssl.ssl.client.auth=required",
            f"sasl.enabled.mechanisms={','.join(SCRAM_MECHANISMS)},PLAIN",
            *(
                f"listener.name.sasl_ssl.{m.lower()}.sasl.jaas.config={scram}"
                for m in SCRAM_MECHANISMS
            ),
            "listener.name.sasl_ssl.plain.sasl.jaas.config="
            f"org.apache.kafka.common.security.plain.PlainLoginModule required {plain_users};",
        ]

    def format_args(self) -> list[str]:
        """StorageTool arguments that create the users' SCRAM credentials."""
        return [
            arg
            for name, password in self.users
            for mechanism in SCRAM_MECHANISMS
            for arg in ("--add-scram", f"{mechanism}=[name={name},password={password}]")
        ]


def paths(settings: Settings) -> dict[str, Path]:
    files = processes.state_paths(
        settings.state_path,
        "kafka",
        data="data",
        config="server.properties",
        log="broker.log",
        pid="broker.pid",
    )
    return {**files, "libs": Path(settings.cache_dir) / f"kafka-{settings.kafka_version}" / "libs"}


def check_java(settings: Settings) -> None:
    """Raise unless ``settings.java`` is a Java 17+ runtime."""
    exe = shutil.which(settings.java)
    if exe is None:
        raise StackError(
            f"Java {JAVA_MIN}+ not found ({settings.java!r} is not on PATH): install "
            "a JDK, e.g. 'apt-get install openjdk-17-jre-headless', or set WM_JAVA"
        )
    out = subprocess.run([exe, "-version"], capture_output=True, text=True, timeout=30)
    match = re.search(r'version "(\d+)(?:\.(\d+))?', out.stderr + out.stdout)
    if not match:
        raise StackError(f"could not read the Java version from {exe} -version")
    major = int(match.group(1))
    if major == 1 and match.group(2):
        major = int(match.group(2))
    if major < JAVA_MIN:
        raise StackError(f"Kafka needs Java {JAVA_MIN}+, {exe} is Java {major}: set WM_JAVA")


def check_version(version: str) -> None:
    """Raise unless ``version`` names an Apache Kafka release the stack can run (3.9+)."""
    match = re.match(r"(\d+)\.(\d+)\.\d+$", version)
    if match is None:
        raise StackError(f"WM_KAFKA_VERSION {version!r} is not a Kafka release such as 4.1.1")
    if (int(match.group(1)), int(match.group(2))) < KAFKA_MIN:
        raise StackError(
            f"the local stack runs Apache Kafka {KAFKA_MIN[0]}.{KAFKA_MIN[1]} or newer "
            f"(WM_KAFKA_VERSION is {version}): older releases cannot format a standalone "
            "KRaft controller"
        )


def assemble(settings: Settings) -> Path:
    """The folder of broker jars, fetched with Maven on first use."""
    check_version(settings.kafka_version)
    libs = paths(settings)["libs"]
    if (libs / f"kafka_2.13-{settings.kafka_version}.jar").exists():
        return libs
    mvn = shutil.which("mvn")
    if mvn is None:
        raise StackError(
            "Maven not found: install it (apt-get install maven); it fetches the "
            "Kafka jars from Maven Central"
        )
    work = libs.parent
    work.mkdir(parents=True, exist_ok=True)
    pom = resources.files("devstack").joinpath("kafka-pom.xml").read_text()
    (work / "pom.xml").write_text(pom.replace("@KAFKA_VERSION@", settings.kafka_version))
    staging = work / "libs.partial"
    shutil.rmtree(staging, ignore_errors=True)
    argv = [
        mvn,
        "-B",
        "-q",
        *settings.maven_args.split(),
        "-f",
        str(work / "pom.xml"),
        "dependency:copy-dependencies",
        f"-DoutputDirectory={staging}",
        "-DincludeScope=runtime",
    ]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=900)
    if result.returncode != 0:
        (work / "maven.log").write_text(result.stdout + result.stderr)
        raise StackError(
            f"Maven could not fetch the Apache Kafka {settings.kafka_version} jars (offline, or "
            f"Maven Central unreachable?); Maven's output is in {work / 'maven.log'}"
        )
    staging.rename(libs)
    return libs


def _write_config(settings: Settings, secure: SecureListeners | None = None) -> None:
    p = paths(settings)
    port, cport = settings.kafka_port, settings.kafka_controller_port
    extra = secure.listeners() if secure else []
    listeners = ",".join(
        [f"PLAINTEXT://127.0.0.1:{port}", f"CONTROLLER://127.0.0.1:{cport}"]
        + [f"{name}://127.0.0.1:{extra_port}" for name, extra_port in extra]
    )
    protocols = ",".join(
        ["PLAINTEXT:PLAINTEXT", "CONTROLLER:PLAINTEXT"] + [f"{n}:{n}" for n, _ in extra]
    )
    p["config"].write_text(
        "\n".join(
            [
                "node.id=1",
                "process.roles=broker,controller",
                f"listeners={listeners}",
                f"advertised.listeners={listeners}",
                "controller.listener.names=CONTROLLER",
                "inter.broker.listener.name=PLAINTEXT",
                f"listener.security.protocol.map={protocols}",
                f"controller.quorum.bootstrap.servers=127.0.0.1:{cport}",
                f"log.dirs={p['data']}",
                "num.partitions=1",
                "default.replication.factor=1",
                "min.insync.replicas=1",
                "offsets.topic.replication.factor=1",
                "transaction.state.log.replication.factor=1",
                "transaction.state.log.min.isr=1",
                "share.coordinator.state.topic.replication.factor=1",
                "share.coordinator.state.topic.min.isr=1",
                "group.initial.rebalance.delay.ms=0",
                # KIP-848 groups: a member that died silently loses its partitions after 10 s,
                # not 45 s
                "group.consumer.min.session.timeout.ms=6000",
                "group.consumer.session.timeout.ms=10000",
                "auto.create.topics.enable=false",
                *(secure.properties() if secure else []),
                "",
            ]
        )
    )


def _java_argv(settings: Settings, main: str, *args: str, heap: str | None = None) -> list[str]:
    log_config = resources.files("devstack").joinpath("kafka-log4j2.properties")
    heap_flags = (settings.kafka_heap if heap is None else heap).split()
    return [
        shutil.which(settings.java) or settings.java,
        *heap_flags,
        f"-Dlog4j2.configurationFile={log_config}",
        "-cp",
        f"{paths(settings)['libs']}/*",
        main,
        *args,
    ]


def _format_storage(settings: Settings, secure: SecureListeners | None = None) -> None:
    p = paths(settings)
    if (p["data"] / "meta.properties").exists():
        return
    cluster = subprocess.run(
        _java_argv(settings, "kafka.tools.StorageTool", "random-uuid", heap=TOOL_HEAP),
        capture_output=True,
        text=True,
        timeout=120,
    )
    cluster_id = cluster.stdout.strip().splitlines()[-1] if cluster.stdout.strip() else ""
    fmt = subprocess.run(
        _java_argv(
            settings,
            "kafka.tools.StorageTool",
            "format",
            "-t",
            cluster_id,
            "-c",
            str(p["config"]),
            "--standalone",
            *(secure.format_args() if secure else []),
            heap=TOOL_HEAP,
        ),
        capture_output=True,
        text=True,
        timeout=120,
    )
    if fmt.returncode != 0 or not cluster_id:
        raise StackError(
            "formatting Kafka storage failed",
            detail=(cluster.stderr + fmt.stdout + fmt.stderr)[-4000:],
        )


def responds(settings: Settings, timeout: float = 2.0) -> bool:
    """True when a broker answers a metadata request at the bootstrap address."""
    try:
        AdminClient(
            {
                "bootstrap.servers": settings.bootstrap,
                "socket.connection.setup.timeout.ms": 1000,
                "log_level": 0,
            }
        ).list_topics(timeout=timeout)
    except KafkaException:
        return False
    return True


def running(settings: Settings) -> int | None:
    return processes.read_pid(paths(settings)["pid"])


def secure_dirs(settings: Settings) -> None:
    """The broker's folders, created if needed, mode 0700: its log segments hold every record
    (subscriptions included) and the broker has no authentication."""
    p = paths(settings)
    p["data"].mkdir(parents=True, exist_ok=True)
    for folder in (p["base"], p["data"]):
        folder.chmod(0o700)


def start(settings: Settings, secure: SecureListeners | None = None) -> str:
    """Start the broker unless it already runs; wait until it answers. Returns a status line.
    ``secure`` adds TLS and SASL listeners (applied when the broker is first formatted)."""
    p = paths(settings)
    secure_dirs(settings)
    if running(settings):
        if processes.wait_until(lambda: responds(settings), settings.ready_timeout_s):
            return f"kafka      already running  {settings.bootstrap}"
        raise StackError(
            f"Kafka (pid {running(settings)}) runs but does not answer at {settings.bootstrap}",
            detail=processes.tail(p["log"]),
        )
    check_java(settings)
    processes.require_free_port(settings.kafka_port, "Kafka", "WM_KAFKA_PORT")
    processes.require_free_port(
        settings.kafka_controller_port, "Kafka controller", "WM_KAFKA_CONTROLLER_PORT"
    )
    for name, extra_port in secure.listeners() if secure else []:
        processes.require_free_port(extra_port, f"Kafka {name} listener", "the listener's port")
    assemble(settings)
    _write_config(settings, secure)
    _format_storage(settings, secure)
    pid = processes.start(_java_argv(settings, "kafka.Kafka", str(p["config"])), p["log"], p["pid"])
    ok = processes.wait_until(
        lambda: responds(settings),
        settings.ready_timeout_s,
        alive=lambda: running(settings) is not None,
    )
    if not ok:
        processes.stop(p["pid"], timeout=10)
        raise StackError(
            f"Kafka did not become ready on {settings.bootstrap} within "
            f"{settings.ready_timeout_s:.0f} s (log: {p['log']})",
            detail=processes.tail(p["log"]),
        )
    return f"kafka      started (pid {pid})  {settings.bootstrap}"


def stop(settings: Settings) -> bool:
    return processes.stop(paths(settings)["pid"], timeout=60)
