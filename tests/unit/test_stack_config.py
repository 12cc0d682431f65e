"""The local stack's generated configuration (no processes started)."""

from __future__ import annotations

import base64
import uuid

import pytest

from connectors.stack import flink as stack_flink
from connectors.stack import kafka as stack_kafka
from connectors.stack.paths import StackPaths, taskmanager_roles
from core.config import ConfigError, load_config


def test_kafka_format_command_takes_cluster_ids_starting_with_a_dash(tmp_path, monkeypatch) -> None:
    # A random KRaft cluster id is url-safe base64 and may start with "-": the
    # storage tool must not read it as an option (regression: "expected one argument").
    config = load_config({"state_dir": str(tmp_path)}, env={})
    dash_id = base64.urlsafe_b64encode(b"\xfb" + uuid.uuid4().bytes[1:]).rstrip(b"=").decode()
    assert dash_id.startswith("-")
    calls = []
    monkeypatch.setattr(stack_kafka, "kafka_java", lambda config, paths, main, *args: [main, *args])
    monkeypatch.setattr(stack_kafka.uuid, "uuid4", lambda: uuid.UUID(bytes=b"\xfb" + bytes(15)))

    class Done(Exception):
        pass

    def fake_run(cmd, **kwargs):
        calls.append(cmd)
        raise Done

    monkeypatch.setattr(stack_kafka.subprocess, "run", fake_run)
    try:
        stack_kafka.start_kafka(config)
    except Done:
        pass
    (cmd,) = calls
    cluster_arg = next(a for a in cmd if a.startswith("--cluster-id"))
    assert cluster_arg.startswith("--cluster-id=-")


def test_kafka_properties_fit_the_flink_sink(tmp_path) -> None:
    config = load_config({"state_dir": str(tmp_path), "kafka_port": 19092, "kafka_controller_port": 19093}, env={})
    props = dict(
        line.split("=", 1) for line in stack_kafka.kafka_properties(config, StackPaths(tmp_path)).splitlines()
    )
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:19092,CONTROLLER://127.0.0.1:19093"
    assert props["process.roles"] == "broker,controller"
    # The Flink sink's transactions (15 min) must fit under the broker's maximum.
    assert int(props["transaction.max.timeout.ms"]) >= 15 * 60 * 1000
    assert props["transaction.state.log.replication.factor"] == "1"


def test_flink_conf_is_rendered_with_this_stacks_paths_and_ports(tmp_path) -> None:
    import yaml

    config = load_config({"state_dir": str(tmp_path), "flink_rest_port": 18081}, env={})
    conf = yaml.safe_load((stack_flink.render_flink_conf(config) / "config.yaml").read_text())
    assert conf["rest.port"] == 18081
    assert conf["execution.checkpointing.dir"] == (tmp_path / "checkpoints").as_uri()
    assert conf["execution.checkpointing.mode"] == "EXACTLY_ONCE"
    assert conf["execution.checkpointing.externalized-checkpoint-retention"] == "RETAIN_ON_CANCELLATION"
    assert conf["state.backend.type"] == "rocksdb"
    assert conf["rest.bind-address"] == "127.0.0.1"


def test_taskmanager_roles_and_their_pid_files(tmp_path) -> None:

    config = load_config({"state_dir": str(tmp_path), "taskmanagers": 3}, env={})
    assert taskmanager_roles(config) == ["taskmanager", "taskmanager-2", "taskmanager-3"]
    paths = StackPaths(tmp_path)
    assert paths.pid_file("taskmanager-2") == tmp_path / "flink" / "taskmanager-2.pid"
    # down finds every TaskManager a previous up started, whatever the config says now.
    (tmp_path / "flink").mkdir()
    for role in ("taskmanager", "taskmanager-10", "taskmanager-2"):
        paths.pid_file(role).write_text("1")
    assert paths.started_taskmanagers() == ["taskmanager", "taskmanager-2", "taskmanager-10"]


def test_counts_are_validated(tmp_path) -> None:
    for name, bad in (("taskmanagers", 0), ("term_buckets", 0), ("term_buckets", 129)):
        with pytest.raises(ConfigError, match=name):
            load_config({"state_dir": str(tmp_path), name: bad}, env={})


def test_a_misspelled_variable_is_an_error_naming_the_closest_setting() -> None:
    from core.config import ConfigError, load_config

    with pytest.raises(ConfigError, match="FEEDTRENDS_KAFKA_PRT.*FEEDTRENDS_KAFKA_PORT"):
        load_config(env={"FEEDTRENDS_KAFKA_PRT": "19092"})
    with pytest.raises(ConfigError, match="FEEDTRENDS_NOTHING_LIKE_IT"):
        load_config(env={"FEEDTRENDS_NOTHING_LIKE_IT": "1"})
    # Known names, and variables of other programs, are fine.
    assert load_config(env={"FEEDTRENDS_KAFKA_PORT": "19092", "KAFKA_PRT": "1"}).kafka_bootstrap == "127.0.0.1:19092"
