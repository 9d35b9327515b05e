"""Apache Kafka in KRaft mode on loopback: one combined broker/controller, or a three-node cluster.

The tests and `make run BROKER=kafka` run Kafka's own jars (kafka/pom.xml; `make kafka/lib` copies them
once) as `java kafka.Kafka server.properties`, each node a process of its own on free ports, the cluster
formatted with a fresh cluster id. Given a CA and a broker certificate (`BrokerTLS`), the clients' listener
is SASL_SSL with SCRAM-SHA-512, and its one user is made at format time.
"""

from __future__ import annotations

import base64
import contextlib
import ctypes
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from .broker import BrokerError, free_port, stop_process

KAFKA_DIR = Path(__file__).resolve().parent.parent / "kafka"
LIB = KAFKA_DIR / "lib"
HEAP = "-Xmx512m"
PR_SET_PDEATHSIG = 1
USER, PASSWORD = "iris", "iris-secret-password"  # the SCRAM user of a secure cluster (tests only)


def java_command(main_class: str, *args: str, quick: bool = False) -> list[str]:
    """A JVM running `main_class` of Kafka's jars; `quick`: a short-lived tool, compiled for start-up."""
    if not any(LIB.glob("kafka_2.13-*.jar")):
        raise BrokerError(f"Apache Kafka's jars are missing from {LIB}: run `make kafka/lib` (needs Maven)")
    java = shutil.which("java")
    if java is None:
        raise BrokerError("Apache Kafka needs Java 17: 'java' is not on the PATH")
    logging = f"-Dlog4j2.configurationFile={KAFKA_DIR / 'log4j2.properties'}"
    tiers = ["-XX:TieredStopAtLevel=1"] if quick else []
    return [java, HEAP, "-XX:+UseSerialGC", *tiers, logging, "-cp", f"{LIB}/*", main_class, *args]


def new_cluster_id() -> str:
    """A random cluster id as Kafka makes them: a UUID in URL-safe base64, never starting with '-'
    (the storage tool would take it for an option)."""
    while (cluster_id := base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode())[0] == "-":
        pass
    return cluster_id


def die_with_parent() -> None:
    """In the child, before Java starts: SIGKILL it when the process that started it dies (Linux's
    PR_SET_PDEATHSIG), so that a test process killed mid-run leaves no broker behind."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


@dataclass(frozen=True)
class BrokerTLS:
    """PEM files of a secure cluster: the CA clients trust, and the brokers' key and certificate in one."""

    ca_file: Path
    broker_pem: Path


@dataclass
class Node:
    """One Kafka process: its id, the clients' port, the controller's port and its folder."""

    id: int
    port: int
    controller_port: int
    folder: Path
    process: subprocess.Popen | None = None
    log_offset: int = 0  # where this run's lines begin in its log

    @property
    def log(self) -> Path:
        return self.folder / "kafka.log"

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        """The node's process id while it runs (benchmarks read its CPU time)."""
        return self.process and self.process.pid


class KafkaCluster:
    """`size` Kafka nodes, each broker and controller, for the life of a `with` block."""

    def __init__(
        self,
        size: int = 1,
        tls: BrokerTLS | None = None,
        folder: Path | None = None,
        port: int | None = None,
        advertised_port: int | None = None,
        config: dict[str, str] | None = None,
    ) -> None:
        """Of a single node: `port` its clients' port (a free one by default), `advertised_port` the port
        its clients are told to use (a proxy's, in tests of an outage; by default its own). `config`: more
        broker properties."""
        self.size = size
        self.advertised_port = advertised_port
        self.config = config or {}
        self.tls = tls
        self.secure = tls is not None
        self._tmp = None if folder else tempfile.TemporaryDirectory(prefix="iris_app-kafka-")
        self.folder = Path(folder or self._tmp.name)
        self.cluster_id = new_cluster_id()
        self.nodes = [
            Node(i + 1, port or free_port(), free_port(), self.folder / f"node{i + 1}") for i in range(size)
        ]

    @property
    def pid(self) -> int | None:
        """The first node's process id (benchmarks read its CPU time)."""
        return self.nodes[0].pid

    @property
    def bootstrap(self) -> str:
        """host:port of every node, comma-separated, for plain Kafka clients."""
        if self.advertised_port:
            return f"127.0.0.1:{self.advertised_port}"
        return ",".join(node.address for node in self.nodes)

    @property
    def url(self) -> str:
        """Every node in Faust's form: kafka://a:1;kafka://b:2."""
        return ";".join(f"kafka://{address}" for address in self.bootstrap.split(","))

    def __enter__(self) -> KafkaCluster:
        try:
            formatting = [(node, self._format(node)) for node in self.nodes]
            for node, process in formatting:
                output = process.communicate()[0]
                if process.returncode != 0:
                    raise BrokerError(f"formatting Kafka node {node.id} failed: {output.strip()}")
            for node in self.nodes:
                self.start(node)
            for node in self.nodes:
                self.wait_until_started(node)
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, exc_type: type | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    def _properties(self, node: Node) -> str:
        voters = ",".join(f"{n.id}@127.0.0.1:{n.controller_port}" for n in self.nodes)
        replicas = min(3, self.size)
        client = "SASL_SSL" if self.secure else "PLAINTEXT"
        lines = [
            "process.roles=broker,controller",
            f"node.id={node.id}",
            f"controller.quorum.voters={voters}",
            f"listeners=CLIENT://127.0.0.1:{node.port},CONTROLLER://127.0.0.1:{node.controller_port}",
            f"advertised.listeners=CLIENT://127.0.0.1:{self.advertised_port or node.port}",
            "controller.listener.names=CONTROLLER",
            f"listener.security.protocol.map=CLIENT:{client},CONTROLLER:PLAINTEXT",
            "inter.broker.listener.name=CLIENT",
            f"log.dirs={node.folder / 'data'}",
            f"offsets.topic.replication.factor={replicas}",
            "offsets.topic.num.partitions=10",
            f"transaction.state.log.replication.factor={replicas}",
            f"transaction.state.log.min.isr={min(2, replicas)}",
            f"default.replication.factor={replicas}",
            # A new group starts at once: workers of a test or a benchmark join within seconds anyway.
            "group.initial.rebalance.delay.ms=0",
            "num.network.threads=2",
            "num.io.threads=4",
            "log.cleaner.threads=1",
            "controlled.shutdown.enable=true",
            # A lost broker is fenced, and leaves the in-sync replicas, within seconds; one back rejoins soon.
            "broker.session.timeout.ms=6000",
            "replica.lag.time.max.ms=10000",
        ]
        lines += [f"{name}={value}" for name, value in self.config.items()]
        if self.secure:
            tls = self.tls
            lines += [
                "sasl.enabled.mechanisms=SCRAM-SHA-512",
                "sasl.mechanism.inter.broker.protocol=SCRAM-SHA-512",
                "listener.name.client.scram-sha-512.sasl.jaas.config="
                "org.apache.kafka.common.security.scram.ScramLoginModule required"
                f' username="{USER}" password="{PASSWORD}";',
                "ssl.keystore.type=PEM",
                f"ssl.keystore.location={tls.broker_pem}",
                "ssl.truststore.type=PEM",
                f"ssl.truststore.location={tls.ca_file}",
                "ssl.endpoint.identification.algorithm=",
            ]
        return "\n".join(lines) + "\n"

    def _format(self, node: Node) -> subprocess.Popen:
        """Start formatting one node's storage (all nodes format at once: a JVM each, a few seconds)."""
        node.folder.mkdir(parents=True, exist_ok=True)
        config = node.folder / "server.properties"
        config.write_text(self._properties(node))
        args = ["format", "-t", self.cluster_id, "-c", str(config)]
        if self.secure:
            args += ["--add-scram", f"SCRAM-SHA-512=[name={USER},password={PASSWORD}]"]
        command = java_command("kafka.tools.StorageTool", *args, quick=True)
        return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    def start(self, node: Node) -> None:
        """Start (or start again) one node; it serves clients a few seconds later (`wait_until_started`)."""
        node.log_offset = node.log.stat().st_size if node.log.exists() else 0
        log = open(node.log, "ab")  # noqa: SIM115 - the process keeps it
        node.process = subprocess.Popen(
            java_command("kafka.Kafka", str(node.folder / "server.properties")),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C stops the worker first; the broker is stopped after it
            preexec_fn=die_with_parent,
        )
        log.close()

    def wait_until_started(self, node: Node, timeout: float = 60) -> None:
        """Wait until the node says it started (kafka/log4j2.properties logs it): it listens before it
        serves, and a client that connects meanwhile sees its connection closed."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if node.process.poll() is not None:
                tail = node.log.read_text(errors="replace")[-2000:]
                raise BrokerError(f"Kafka node {node.id} exited with code {node.process.returncode}:\n{tail}")
            with open(node.log, "rb") as log:
                log.seek(node.log_offset)
                if b"Kafka Server started" in log.read():
                    return
            time.sleep(0.1)  # a log file has no event to wait on
        raise BrokerError(f"Kafka node {node.id} did not start within {timeout} s (see {node.log})")

    def kill(self, node: Node) -> None:
        """SIGKILL one node, as a crash would."""
        if node.process is not None and node.process.poll() is None:
            node.process.kill()
            node.process.wait()

    def stop_node(self, node: Node, timeout: float = 30) -> None:
        """SIGTERM one node: a controlled shutdown that hands its partitions' leadership over."""
        if node.process is not None:
            stop_process(node.process, timeout=timeout)

    def stop(self) -> None:
        """Stop every node at once (a node waiting for the others' quorum to shut down gets 5 s)."""
        running = [node.process for node in self.nodes if node.process and node.process.poll() is None]
        for process in running:
            process.terminate()
        for process in running:
            stop_process(process, timeout=5)
        if self._tmp is not None:
            self._tmp.cleanup()
