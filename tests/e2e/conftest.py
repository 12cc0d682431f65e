"""Tier 3: a real Kafka broker and a real Flink cluster, started for the test session.

The stack runs from a temporary state dir on free loopback ports, so it never
touches a developer's own `feedtrends up` stack; it is stopped (by pid) at the end
of the session, also when tests fail.
"""

from __future__ import annotations

import contextlib
import dataclasses
import uuid
from collections.abc import Iterator

import pytest

from core.config import Config, load_config
from tests.conftest import free_ports


def stack_config(state_dir, **overrides) -> Config:
    kafka, controller, rest, rpc = free_ports(4)
    settings = {
        "state_dir": str(state_dir),
        "kafka_port": kafka,
        "kafka_controller_port": controller,
        "flink_rest_port": rest,
        "flink_rpc_port": rpc,
    }
    settings.update(overrides)
    return load_config(settings, env={})


def cluster_config(state_dir, **overrides) -> Config:
    """A private three-node Kafka stack: node i listens on kafka_port + 2(i-1), so six consecutive ports."""
    from connectors.stack import free_port_block

    base = free_port_block(6)
    rest, rpc = free_ports(2)
    settings = {
        "state_dir": str(state_dir),
        "brokers": 3,
        "kafka_port": base,
        "kafka_controller_port": base + 1,
        "flink_rest_port": rest,
        "flink_rpc_port": rpc,
    }
    settings.update(overrides)
    return load_config(settings, env={})


@contextlib.contextmanager
def running_stack(state_dir, **overrides) -> Iterator[Config]:
    """A private stack for the duration of the block, stopped (by pid) even if the block fails."""
    from connectors import stack as local_stack

    config = cluster_config(state_dir, **overrides) if overrides.get("brokers", 1) > 1 else stack_config(state_dir, **overrides)
    try:
        local_stack.up(config, echo=lambda line: None)
        yield config
    finally:
        local_stack.down(config, echo=lambda line: None)


def job_config(stack: Config, topics: dict[str, str], parquet_dir, name: str, **overrides) -> Config:
    """The stack's config with one test's own topics, Parquet dir, job name and transactions."""
    suffix = topics["events"].rsplit("-", 1)[1]
    return dataclasses.replace(
        stack,
        events_topic=topics["events"],
        trends_topic=topics["trends"],
        dlq_topic=topics["dlq"],
        late_topic=topics["late"],
        parquet_dir=parquet_dir,
        transactional_id_prefix=f"{name}-{suffix}",
        job_name=f"feedtrends-{name}-{suffix}",
        **overrides,
    )


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Config]:
    # Two TaskManagers, as the benchmark runs: jobs at parallelism 2 get one slot on
    # each (taskmanager.load-balance.mode), so their shuffles cross processes.
    with running_stack(tmp_path_factory.mktemp("stack"), taskmanagers=2) as config:
        yield config


@pytest.fixture(scope="session")
def kafka_bootstrap(stack: Config) -> str:
    return stack.kafka_bootstrap


@pytest.fixture()
def unique_topics(stack: Config) -> Iterator[dict[str, str]]:
    """Fresh uuid-named topic names for one test; deleted afterwards."""
    from connectors.topics import delete_topics

    suffix = uuid.uuid4().hex[:10]
    names = {kind: f"{kind}-{suffix}" for kind in ("events", "trends", "dlq", "late")}
    yield names
    delete_topics(stack, list(names.values()))
