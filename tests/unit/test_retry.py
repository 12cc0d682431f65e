"""The retry helpers: retriable errors are retried until they stop or the deadline passes."""

from __future__ import annotations

import pytest
from kafka.errors import CoordinatorNotAvailableError, GroupAuthorizationFailedError

from connectors.retry import BackendRefused, BackendUnavailable, FlinkUnreachable, flink_call, kafka_call
from feedtrends.exit_codes import UNREACHABLE, exit_code


def test_a_coordinator_not_available_yet_is_retried_until_it_answers() -> None:
    attempts = []

    def call(timeouts):
        attempts.append(timeouts)
        if len(attempts) < 3:
            raise CoordinatorNotAvailableError("FindCoordinatorResponse error for GROUP/feedtrends-trends-v2")
        return {"ok": True}

    assert kafka_call("offsets of group g", call, bootstrap="127.0.0.1:1", deadline_s=10) == {"ok": True}
    assert len(attempts) == 3
    assert all(1000 <= t.request_timeout_ms <= 15000 and t.bootstrap_timeout_ms <= 10000 for t in attempts)


def test_a_retriable_error_past_the_deadline_is_one_line_with_exit_code_3() -> None:
    def call(timeouts):
        raise CoordinatorNotAvailableError("not yet")

    with pytest.raises(BackendUnavailable) as info:
        kafka_call("offsets of group g", call, bootstrap="127.0.0.1:1", deadline_s=0.3)
    assert exit_code(info.value) == UNREACHABLE == 3
    assert "\n" not in str(info.value) and "offsets of group g" in str(info.value)


def test_a_non_retriable_kafka_error_fails_at_once() -> None:
    attempts = []

    def call(timeouts):
        attempts.append(1)
        raise GroupAuthorizationFailedError("no")

    with pytest.raises(BackendRefused):
        kafka_call("offsets of group g", call, bootstrap="127.0.0.1:1", deadline_s=10)
    assert attempts == [1]


def test_flink_call_retries_only_unreachable() -> None:
    attempts = []

    def call(left_s):
        attempts.append(left_s)
        if len(attempts) == 1:
            raise FlinkUnreachable("connection refused")
        return 7

    assert flink_call("GET /overview", call, url="http://127.0.0.1:1", deadline_s=10) == 7
    with pytest.raises(KeyError):
        flink_call("GET /overview", lambda left: {}["x"], url="http://127.0.0.1:1", deadline_s=10)
    with pytest.raises(BackendUnavailable, match="Flink cluster unreachable at http://127.0.0.1:1"):
        flink_call("GET /overview", lambda left: (_ for _ in ()).throw(FlinkUnreachable("refused")), url="http://127.0.0.1:1", deadline_s=0.2)
