"""Private stacks for the test tiers, and per-test job configs on them.

A private stack runs from a temporary state dir on free loopback ports, so it never
touches a developer's own `feedtrends up` stack, and is stopped (by pid) when its
block ends, also when the block fails.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import subprocess
import sys
from collections.abc import Iterator

from connectors.stack.paths import free_port_block, free_ports
from core.config import Config, load_config


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


def topic_names(tag: str) -> dict[str, str]:
    """The four topics of one test, named `<kind>-<tag>`."""
    return {kind: f"{kind}-{tag}" for kind in ("events", "trends", "dlq", "late")}


def job_config(stack: Config, topics: dict[str, str], parquet_dir, name: str, **overrides) -> Config:
    """The stack's config with one test's own topics (`topic_names`), Parquet dir, job name and transactions."""
    tag = topics["events"].removeprefix("events-")
    return dataclasses.replace(
        stack,
        events_topic=topics["events"],
        trends_topic=topics["trends"],
        dlq_topic=topics["dlq"],
        late_topic=topics["late"],
        parquet_dir=parquet_dir,
        transactional_id_prefix=f"{name}-{tag}",
        job_name=f"feedtrends-{name}-{tag}",
        **overrides,
    )


def run_cli(config: Config, *args: str, timeout_s: float = 240.0) -> subprocess.CompletedProcess:
    """`feedtrends ARGS` as a user runs it, with this config in its environment."""
    return subprocess.run(
        [sys.executable, "-m", "feedtrends.cli", *args],
        env={**os.environ, **config.as_env()},
        capture_output=True,
        text=True,
        timeout=timeout_s,
    )
