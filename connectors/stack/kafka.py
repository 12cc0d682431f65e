"""The stack's Kafka: KRaft nodes (broker and controller in one) from the jars Maven copied
into `.cache/jars/kafka`, their properties and logging, and whether the cluster counts them."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import uuid
from pathlib import Path

from connectors.stack.paths import StackError, StackPaths, broker_roles, node_id
from connectors.stack.processes import running_pid, spawn
from core.config import Config


def kafka_marker(paths: StackPaths, role: str) -> str:
    """What a node's command line holds, so a recycled pid is not taken for it."""
    return str(paths.kafka_node(role) / "server.properties")


def kafka_properties(config: Config, paths: StackPaths, role: str = "kafka") -> str:
    node, nodes = node_id(role), config.kafka_node_ports
    port, cport = nodes[node - 1]
    # Internal topics (group offsets, transaction state) as replicated as ours:
    # 3 copies, 2 in sync, once there are three nodes.
    internal_rf = min(3, config.brokers)
    internal_min_isr = 2 if internal_rf >= 3 else 1
    # The longest transaction Flink's sink may hold open; the sink's own
    # transaction.timeout.ms (set by the job) must stay below it.
    max_txn_ms = 60 * 60 * 1000
    props = {
        "process.roles": "broker,controller",
        "node.id": str(node),
        "controller.quorum.voters": ",".join(f"{i}@127.0.0.1:{c}" for i, (_, c) in enumerate(nodes, start=1)),
        "listeners": f"PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{cport}",
        "advertised.listeners": f"PLAINTEXT://127.0.0.1:{port}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
        "log.dirs": str(paths.kafka_node(role) / "data"),
        "num.partitions": "1",
        "auto.create.topics.enable": "false",
        "offsets.topic.replication.factor": str(internal_rf),
        "offsets.topic.num.partitions": "4",
        "transaction.state.log.replication.factor": str(internal_rf),
        "transaction.state.log.min.isr": str(internal_min_isr),
        "transaction.state.log.num.partitions": "4",
        "share.coordinator.state.topic.replication.factor": str(internal_rf),
        "share.coordinator.state.topic.min.isr": str(internal_min_isr),
        # The broker default for topics created by anyone else; ours set their own.
        "min.insync.replicas": str(internal_min_isr),
        "default.replication.factor": str(internal_rf),
        # A replica that lost data must not become leader: acknowledged rows stay.
        "unclean.leader.election.enable": "false",
        "transaction.max.timeout.ms": str(max_txn_ms),
        "group.initial.rebalance.delay.ms": "0",
        # Kafka 4 rejects record timestamps more than an hour ahead by default.  We
        # want such records in the topic: the job routes them to the dead-letter
        # topic with a reason instead of the producer failing a whole batch.
        "log.message.timestamp.after.max.ms": str(2**63 - 1),
        # Replay from the earliest offset must find every event: keep them all locally.
        "log.retention.ms": "-1",
        "log.segment.bytes": str(256 * 1024 * 1024),
    }
    if config.brokers > 1:
        # Three nodes share two cores with Flink: fewer threads each.
        props.update({"num.network.threads": "2", "num.io.threads": "2", "background.threads": "2"})
    return "".join(f"{k}={v}\n" for k, v in props.items())


_KAFKA_LOG4J2 = """\
status = warn
appender.file.type = RollingFile
appender.file.name = file
appender.file.fileName = {logs}/server.log
appender.file.filePattern = {logs}/server.log.%i
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
appender.file.policies.type = Policies
appender.file.policies.size.type = SizeBasedTriggeringPolicy
appender.file.policies.size.size = 50MB
appender.file.strategy.type = DefaultRolloverStrategy
appender.file.strategy.max = 3
rootLogger.level = info
rootLogger.appenderRef.file.ref = file
logger.kafka.name = kafka
logger.kafka.level = info
logger.state.name = state.change.logger
logger.state.level = warn
"""


def kafka_java(config: Config, node_dir: Path, main: str, *args: str) -> list[str]:
    jars = config.jars_dir / "kafka"
    if not any(jars.glob("kafka_*.jar")):
        raise StackError(f"Kafka jars missing in {jars}: run `make jars` (Maven resolves them)")
    # A cluster of nodes on one small machine: small heaps (a node of this stack
    # holds little: the page cache, not the heap, serves the logs).
    heap = ["-Xms256m", "-Xmx1g"] if config.brokers == 1 else ["-Xms128m", "-Xmx384m"]
    return [
        "java",
        *heap,
        "-XX:+UseG1GC",
        f"-Dlog4j2.configurationFile={node_dir / 'log4j2.properties'}",
        f"-Dkafka.logs.dir={node_dir / 'logs'}",
        "-cp",
        str(jars / "*"),
        main,
        *args,
    ]


def _admin(bootstrap: str, timeout_ms: int = 3000):
    from kafka import KafkaAdminClient

    return KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=timeout_ms)


def registered_brokers(bootstrap: str) -> list[int] | None:
    """Node ids of the brokers the cluster reports (registered, not fenced); None if it does not answer."""
    from kafka.errors import KafkaError

    try:
        admin = _admin(bootstrap)
    except (KafkaError, OSError, ValueError):
        return None
    try:
        admin.list_topics()
        brokers = admin.describe_cluster().get("brokers", [])
        return sorted(b["broker_id"] for b in brokers if not b.get("is_fenced"))
    except (KafkaError, OSError, KeyError):
        return None
    finally:
        admin.close()


def _cluster_file(paths: StackPaths) -> Path:
    return paths.kafka / "cluster.json"


def cluster_id(config: Config, paths: StackPaths) -> str:
    """The KRaft cluster id every node is formatted with; refuses data of a differently sized cluster.

    The controller quorum (every node) is fixed at format time: nodes formatted
    for one broker cannot join a three-node quorum, nor the other way round.
    """
    record = _cluster_file(paths)
    meta = paths.kafka / "data" / "meta.properties"
    if record.exists():
        saved = json.loads(record.read_text())
    elif meta.exists():  # formatted before the node count was recorded: one node
        props = dict(line.split("=", 1) for line in meta.read_text().splitlines() if "=" in line)
        saved = {"cluster_id": props["cluster.id"].strip(), "brokers": 1}
    else:
        saved = {"cluster_id": base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode(), "brokers": config.brokers}
    if saved["brokers"] != config.brokers:
        raise StackError(
            f"the Kafka data in {paths.root} is a {saved['brokers']}-broker cluster, the config asks for "
            f"{config.brokers}: use another state_dir (or remove {paths.root}, losing its data)"
        )
    record.parent.mkdir(parents=True, exist_ok=True)
    record.write_text(json.dumps(saved))
    return saved["cluster_id"]


def start_kafka(config: Config) -> dict[str, str]:
    """Start every Kafka node that is not running; role -> "started" / "already running"."""
    paths = StackPaths(config.state_dir)
    result = {}
    cluster = None
    for role in broker_roles(config):
        node_dir = paths.kafka_node(role)
        props_file = node_dir / "server.properties"
        if running_pid(paths.pid_file(role), kafka_marker(paths, role)):
            result[role] = "already running"
            continue
        cluster = cluster or cluster_id(config, paths)
        (node_dir / "logs").mkdir(parents=True, exist_ok=True)
        props_file.write_text(kafka_properties(config, paths, role))
        (node_dir / "log4j2.properties").write_text(_KAFKA_LOG4J2.format(logs=node_dir / "logs"))
        if not (node_dir / "data" / "meta.properties").exists():
            # KRaft storage is formatted once; the data then survives down/up.
            fmt = subprocess.run(
                kafka_java(
                    config, node_dir, "kafka.tools.StorageTool", "format",
                    # "=" form: a random id may start with "-", which argparse would take for an option.
                    f"--cluster-id={cluster}", f"--config={props_file}",
                ),
                capture_output=True,
                text=True,
                timeout=120,
            )
            if fmt.returncode != 0:
                raise StackError(f"formatting Kafka storage of {role} failed: {fmt.stderr.strip() or fmt.stdout.strip()}")
        spawn(
            kafka_java(config, node_dir, "kafka.Kafka", str(props_file)),
            log=paths.log_file(role),
            pid_file=paths.pid_file(role),
            env=dict(os.environ),
        )
        result[role] = "started"
    return result


def replication_warnings(config: Config) -> list[str]:
    """Product topics with fewer replicas than configured (never changed silently: said here)."""
    from kafka.errors import KafkaError

    from connectors.replication import replication_of, under_replicated
    from connectors.topics import product_topics

    try:
        admin = _admin(config.kafka_bootstrap, timeout_ms=10000)
    except (KafkaError, OSError, ValueError) as exc:
        return [f"warning: cannot check the topics' replication: {exc}"]
    try:
        return under_replicated(replication_of(config, admin), admin, list(product_topics(config)))
    except (KafkaError, OSError) as exc:
        return [f"warning: cannot check the topics' replication: {exc}"]
    finally:
        admin.close()
