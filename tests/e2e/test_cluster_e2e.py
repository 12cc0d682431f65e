"""`feedtrends up` with `brokers: 3`: a three-node KRaft cluster, and every topic replicated (tier 3).

The replication factor and min.insync.replicas are read back from the brokers,
for the product's topics and for Kafka's own offsets and transaction-state topics.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid

import pytest

from connectors.replication import topic_min_insync, topic_replicas
from connectors.stack.processes import is_zombie
from tests.support.stack import cluster_config, run_cli

pytestmark = pytest.mark.e2e


def _use_internal_topics(bootstrap: str) -> None:
    """A transactional producer and a committing consumer: Kafka creates its internal topics on first use."""
    from kafka import KafkaConsumer, KafkaProducer, OffsetAndMetadata, TopicPartition

    producer = KafkaProducer(bootstrap_servers=bootstrap, transactional_id=f"probe-{uuid.uuid4().hex[:8]}")
    try:
        producer.init_transactions()
        producer.begin_transaction()
        producer.send("feed-events", key=b"probe", value=b"{}").get(timeout=60)
        producer.abort_transaction()  # nothing of the probe is ever read_committed
    finally:
        producer.close(timeout=10)
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id="probe", enable_auto_commit=False)
    try:
        tp = TopicPartition("feed-events", 0)
        consumer.assign([tp])
        consumer.seek(tp, 0)
        deadline = time.monotonic() + 60
        while True:
            try:
                consumer.commit({tp: OffsetAndMetadata(0, "", -1)})
                break
            except Exception:  # noqa: BLE001 - the coordinator needs a moment on a fresh cluster
                if time.monotonic() > deadline:
                    raise
                time.sleep(1)
    finally:
        consumer.close()


def test_three_broker_stack_replicates_every_topic_it_creates(tmp_path) -> None:
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic

    config = cluster_config(tmp_path / "state", taskmanagers=1)
    pids: dict[str, int] = {}
    try:
        up = run_cli(config, "up", timeout_s=420)
        assert up.returncode == 0, up.stderr
        assert "kafka: started; kafka-2: started; kafka-3: started; jobmanager: started" in up.stdout
        status = json.loads(run_cli(config, "status", "--json", timeout_s=420).stdout)
        assert status["kafka_ready"] and status["kafka_running"]
        assert [(b["node_id"], b["registered"]) for b in status["brokers"]] == [(1, True), (2, True), (3, True)]
        assert status["kafka_bootstrap"] == ",".join(f"127.0.0.1:{config.kafka_port + 2 * i}" for i in range(3))
        pids = status["pids"]
        assert {"kafka", "kafka-2", "kafka-3", "jobmanager", "taskmanager"} <= set(pids)
        printed = run_cli(config, "status", timeout_s=420).stdout
        assert all(f"broker {n}" in printed for n in (1, 2, 3)), printed

        topics = run_cli(config, "topics", timeout_s=420)
        assert topics.returncode == 0, topics.stderr
        assert topics.stderr == ""  # created as configured: nothing to warn about
        product = [config.events_topic, config.trends_topic, config.dlq_topic, config.late_topic]
        _use_internal_topics(config.kafka_bootstrap)

        admin = KafkaAdminClient(bootstrap_servers=config.kafka_bootstrap, request_timeout_ms=15000)
        try:
            internal = ["__consumer_offsets", "__transaction_state"]
            replicas = topic_replicas(admin, product + internal)
            min_isr = topic_min_insync(admin, product + internal)
            print("replication factor:", replicas, "min.insync.replicas:", min_isr)
            assert replicas == {t: 3 for t in product + internal}
            assert min_isr == {t: 2 for t in product + internal}
            # Every replica in sync on a healthy cluster, and the leaders spread over the nodes.
            described = admin.describe_topics(product)
            assert all(sorted(p["isr_nodes"]) == [1, 2, 3] for t in described for p in t["partitions"])

            # A topic made by someone else with one copy is not changed, but said.
            admin.create_topics([NewTopic("legacy-single-copy", 1, 1)])
        finally:
            admin.close()
        env_topics = dict(config.as_env(), FEEDTRENDS_EVENTS_TOPIC="legacy-single-copy")
        warned = subprocess.run(
            [sys.executable, "-m", "feedtrends.cli", "topics"], env={**os.environ, **env_topics},
            capture_output=True, text=True, timeout=120,
        )
        assert warned.returncode == 0, warned.stderr
        assert "warning: topic legacy-single-copy has 1 replica(s), configured 3" in warned.stderr
        assert len(warned.stderr.strip().splitlines()) == 1
        shown = subprocess.run(
            [sys.executable, "-m", "feedtrends.cli", "status"], env={**os.environ, **env_topics},
            capture_output=True, text=True, timeout=120,
        )
        assert "warning: topic legacy-single-copy has 1 replica(s)" in shown.stdout
    finally:
        down = run_cli(config, "down", timeout_s=420)
    assert down.returncode == 0, down.stderr
    for role in ("kafka", "kafka-2", "kafka-3"):
        assert f"{role}: stopped" in down.stdout
    for role, pid in pids.items():
        assert is_zombie(pid), f"{role} (pid {pid}) still running after down"
