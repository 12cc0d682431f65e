"""Tier 3: a real Kafka broker and a real Flink cluster, started for the test session.

The stack is a private one (tests/support/stack.py): a temporary state dir on free
loopback ports, stopped (by pid) at the end of the session, also when tests fail.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from core.config import Config
from tests.support.stack import running_stack, topic_names


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

    names = topic_names(uuid.uuid4().hex[:10])
    yield names
    delete_topics(stack, list(names.values()))
