"""Replication factor and min ISR of the topics we create, and the local cluster's node layout."""

from __future__ import annotations

import json

import pytest

from connectors.stack import kafka as stack_kafka
from connectors.stack.paths import StackError, StackPaths, broker_roles
from connectors.replication import replication_for
from core.config import ConfigError, load_config


@pytest.mark.parametrize(
    ("factor", "min_isr", "brokers", "expected"),
    [
        (3, 0, 1, (1, 1)),  # the one-broker local stack
        (3, 0, 2, (2, 1)),
        (3, 0, 3, (3, 2)),  # production: 3 copies, a write reaches 2
        (3, 0, 5, (3, 2)),
        (5, 0, 5, (5, 2)),
        (2, 0, 3, (2, 1)),
        (3, 3, 3, (3, 3)),
        (3, 2, 1, (1, 1)),  # an explicit min ISR never exceeds the capped factor
        (1, 0, 3, (1, 1)),
    ],
)
def test_factor_is_capped_at_the_brokers_and_min_isr_follows(factor, min_isr, brokers, expected) -> None:
    r = replication_for(factor, min_isr, brokers)
    assert (r.factor, r.min_insync) == expected
    assert r.topic_configs() == {"min.insync.replicas": str(expected[1])}


def test_capped_is_only_worth_a_warning_on_a_multi_broker_cluster() -> None:
    assert not replication_for(3, 0, 1).capped  # one broker can only hold one copy
    assert replication_for(3, 0, 2).capped  # a broker of three is missing right now
    assert not replication_for(3, 0, 3).capped


def test_defaults_and_validation(tmp_path) -> None:
    config = load_config({"state_dir": str(tmp_path)}, env={})
    assert (config.replication_factor, config.min_insync_replicas, config.brokers) == (3, 0, 1)
    env = {"FEEDTRENDS_REPLICATION_FACTOR": "2", "FEEDTRENDS_MIN_INSYNC_REPLICAS": "2", "FEEDTRENDS_BROKERS": "3"}
    config = load_config({"state_dir": str(tmp_path)}, env=env)
    assert (config.replication_factor, config.min_insync_replicas, config.brokers) == (2, 2, 3)
    with pytest.raises(ConfigError, match="min_insync_replicas"):
        load_config({"replication_factor": 2, "min_insync_replicas": 3}, env={})
    for name in ("brokers", "replication_factor"):
        with pytest.raises(ConfigError, match=name):
            load_config({name: 0}, env={})


def test_three_nodes_get_their_own_ports_and_every_node_in_the_bootstrap(tmp_path) -> None:
    config = load_config({"state_dir": str(tmp_path), "brokers": 3}, env={})
    assert config.kafka_node_ports == [(9092, 9093), (9094, 9095), (9096, 9097)]
    assert config.kafka_bootstrap == "127.0.0.1:9092,127.0.0.1:9094,127.0.0.1:9096"
    assert load_config({"state_dir": str(tmp_path)}, env={}).kafka_bootstrap == "127.0.0.1:9092"
    # Node 2's broker port would be node 1's controller port.
    with pytest.raises(ConfigError, match="distinct"):
        load_config({"brokers": 3, "kafka_port": 9092, "kafka_controller_port": 9094}, env={})


def _props(config, role: str) -> dict[str, str]:
    text = stack_kafka.kafka_properties(config, StackPaths(config.state_dir), role)
    return dict(line.split("=", 1) for line in text.splitlines())


def test_three_node_kraft_cluster_properties(tmp_path) -> None:
    config = load_config({"state_dir": str(tmp_path), "brokers": 3, "kafka_port": 19092, "kafka_controller_port": 19093}, env={})
    assert broker_roles(config) == ["kafka", "kafka-2", "kafka-3"]
    voters = "1@127.0.0.1:19093,2@127.0.0.1:19095,3@127.0.0.1:19097"
    for node, role in enumerate(broker_roles(config), start=1):
        props = _props(config, role)
        assert props["node.id"] == str(node)
        assert props["process.roles"] == "broker,controller"
        assert props["controller.quorum.voters"] == voters
        port = 19092 + 2 * (node - 1)
        assert props["listeners"] == f"PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{port + 1}"
        assert props["log.dirs"] == str(tmp_path / role / "data")
        # Offsets and transaction state survive a lost broker, like our topics.
        assert props["offsets.topic.replication.factor"] == "3"
        assert props["transaction.state.log.replication.factor"] == "3"
        assert props["transaction.state.log.min.isr"] == "2"
        assert props["min.insync.replicas"] == "2"
        assert props["unclean.leader.election.enable"] == "false"
    assert StackPaths(tmp_path).pid_file("kafka-3") == tmp_path / "kafka-3" / "kafka-3.pid"
    assert StackPaths(tmp_path).pid_file("kafka") == tmp_path / "kafka" / "kafka.pid"
    single = load_config({"state_dir": str(tmp_path)}, env={})
    assert _props(single, "kafka")["transaction.state.log.replication.factor"] == "1"
    assert _props(single, "kafka")["controller.quorum.voters"] == "1@127.0.0.1:9093"


def test_small_heaps_for_a_cluster_of_nodes(tmp_path) -> None:
    (tmp_path / "kafka").mkdir()
    (tmp_path / "kafka" / "kafka_2.13-4.1.1.jar").write_text("")
    config = load_config({"state_dir": str(tmp_path), "jars_dir": str(tmp_path), "brokers": 3}, env={})
    cmd = stack_kafka.kafka_java(config, tmp_path / "kafka-2", "kafka.Kafka")
    assert "-Xmx384m" in cmd and f"-Dkafka.logs.dir={tmp_path / 'kafka-2' / 'logs'}" in cmd


def test_down_finds_every_node_a_previous_up_started(tmp_path) -> None:
    paths = StackPaths(tmp_path)
    for role in ("kafka", "kafka-3", "kafka-2"):
        paths.kafka_node(role).mkdir(parents=True)
        paths.pid_file(role).write_text("1")
    assert paths.started_brokers() == ["kafka", "kafka-2", "kafka-3"]


def test_data_of_a_differently_sized_cluster_is_refused(tmp_path) -> None:
    paths = StackPaths(tmp_path)
    # Formatted as one node before the count was recorded.
    (paths.kafka / "data").mkdir(parents=True)
    (paths.kafka / "data" / "meta.properties").write_text("cluster.id=abc\nnode.id=1\nversion=1\n")
    one = load_config({"state_dir": str(tmp_path)}, env={})
    assert stack_kafka.cluster_id(one, paths) == "abc"
    assert json.loads((paths.kafka / "cluster.json").read_text()) == {"cluster_id": "abc", "brokers": 1}
    three = load_config({"state_dir": str(tmp_path), "brokers": 3}, env={})
    with pytest.raises(StackError, match="1-broker cluster, the config asks for 3"):
        stack_kafka.cluster_id(three, paths)
