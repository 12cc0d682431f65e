"""Fault-injection suite: its own Kafka broker and Flink cluster, and one reference input.

The stack is started exactly as tests/e2e does (`tests.support.stack.running_stack`: a temporary state
dir, free loopback ports), but owned by this package, so `make test-faults` runs
alone and the faults injected here (killed TaskManager, JobManager, broker) never
touch another suite's processes.  It is package-scoped: stopped (by pid) as soon as
the last scenario ends, also when scenarios fail.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from core.config import Config
from tests.support.stack import running_stack
from tests.faults.reference import Reference, build_reference


@pytest.fixture(scope="package")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Config]:
    with running_stack(tmp_path_factory.mktemp("faults-stack")) as config:
        yield config


@pytest.fixture(scope="package")
def reference() -> Reference:
    """The one input every scenario replays, and the batch oracle's answer for it."""
    return build_reference()
