"""ensure_topics waits until the brokers describe the topics it created."""

from __future__ import annotations

import pytest
from connectors.retry import kafka_retriable
from connectors.topics import DESCRIBE_POLL_S, wait_until_described


class LaggingAdmin:
    """Answers for each topic as unknown for its first `lag` descriptions, as a broker does before the
    controller's record of the topic reaches it."""

    def __init__(self, lag: dict[str, int]) -> None:
        self.lag = dict(lag)
        self.calls = 0

    def describe_topics(self, names: list[str]) -> list[dict]:
        self.calls += 1
        out = []
        for name in names:
            if self.lag.get(name, 0) > 0:
                self.lag[name] -= 1
                out.append({"name": name, "error_code": 3, "partitions": []})
            else:
                out.append({"name": name, "error_code": 0, "partitions": [{"replica_nodes": [1, 2, 3]}]})
        return out


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def test_it_returns_once_every_topic_is_described() -> None:
    admin, clock = LaggingAdmin({"events": 2, "trends": 4}), FakeClock()
    wait_until_described(admin, ["events", "trends"], 10.0, sleep=clock.sleep, clock=lambda: clock.now)
    assert admin.calls == 5  # the fifth description has both
    assert clock.sleeps == [DESCRIBE_POLL_S] * 4


def test_it_gives_up_at_its_timeout_with_a_retriable_error_naming_the_topics() -> None:
    admin, clock = LaggingAdmin({"events": 1000, "trends": 0}), FakeClock()
    with pytest.raises(TimeoutError, match="events") as caught:
        wait_until_described(admin, ["events", "trends"], 1.0, sleep=clock.sleep, clock=lambda: clock.now)
    assert "trends" not in str(caught.value)
    assert kafka_retriable(caught.value)  # kafka_call then tries the creation again
    assert clock.now == pytest.approx(1.0)
    assert admin.calls == int(1.0 / DESCRIBE_POLL_S) + 1


def test_nothing_to_wait_for_asks_nothing() -> None:
    admin = LaggingAdmin({})
    wait_until_described(admin, [], 1.0)
    assert admin.calls == 0
