"""Retrying the operations' calls to Kafka and to the Flink REST API.

A broker that has just started has no coordinator for a new consumer group yet, a
JobManager that is restarting refuses connections, a leader election makes a
partition briefly unavailable: these errors go away on their own.  Every
operation's call to a backend goes through `kafka_call` or `flink_call`, which
retry such errors with a bounded exponential backoff until a deadline
(`retry_deadline_ms`), and then fail with one line (`BackendUnavailable`, an
`Unreachable` error: exit code 3).  An error that retrying cannot fix (a bad request, an unknown job, an
authorization failure) fails at once.

    kafka_call("list topics", lambda timeouts: admin(timeouts).list_topics(), deadline_s=30)

The call gets the client timeouts for this attempt (`KafkaTimeouts`), so one
attempt never outlives the deadline: kafka-python would otherwise wait 30 s to
bootstrap and up to 305 s for a consumer request.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from core.errors import Refused, Unreachable

T = TypeVar("T")

DEFAULT_DEADLINE_S = 30.0
BACKOFF_FIRST_S = 0.25
BACKOFF_MAX_S = 4.0


class BackendUnavailable(Unreachable):
    """A backend kept failing with retriable errors until the deadline."""


class BackendRefused(Refused):
    """A backend answered with an error that retrying cannot fix."""


@dataclass(frozen=True)
class KafkaTimeouts:
    """Client settings for one attempt, each bounded by what is left of the deadline."""

    request_timeout_ms: int
    bootstrap_timeout_ms: int

    # request_timeout_ms stays above a consumer's fetch_max_wait_ms (500 ms), which kafka-python checks.
    def client_options(self) -> dict[str, int]:
        return {"request_timeout_ms": self.request_timeout_ms, "bootstrap_timeout_ms": self.bootstrap_timeout_ms}


def _clamp_ms(seconds: float, low_ms: int, high_ms: int) -> int:
    return int(max(low_ms, min(high_ms, seconds * 1000)))


def retry_until(
    what: str,
    call: Callable[[float], T],
    *,
    retriable: Callable[[BaseException], bool],
    deadline_s: float,
    on_give_up: Callable[[str, BaseException, int, float], BaseException],
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> T:
    """`call(seconds_left)` until it returns, raises a non-retriable error, or the deadline passes.

    The backoff doubles from BACKOFF_FIRST_S to BACKOFF_MAX_S and never sleeps past
    the deadline; the give-up error is built by `on_give_up(what, last_error,
    attempts, deadline_s)`.
    """
    deadline = clock() + max(0.0, deadline_s)
    pause = BACKOFF_FIRST_S
    attempts = 0
    while True:
        attempts += 1
        try:
            return call(max(0.0, deadline - clock()))
        except Exception as exc:
            if not retriable(exc):
                raise
            left = deadline - clock()
            if left <= 0:
                raise on_give_up(what, exc, attempts, deadline_s) from None
            sleep(min(pause, left))
            pause = min(BACKOFF_MAX_S, pause * 2)


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


# --------------------------------------------------------------------------- Kafka


def kafka_retriable(exc: BaseException) -> bool:
    from kafka.errors import KafkaError

    if isinstance(exc, KafkaError):
        return bool(getattr(exc, "retriable", False))
    # Connection refused / reset while the broker (re)starts.
    return isinstance(exc, (ConnectionError, TimeoutError))


def kafka_call(what: str, call: Callable[[KafkaTimeouts], T], *, bootstrap: str, deadline_s: float) -> T:
    """Run one Kafka operation (client creation included) with retries; see the module doc."""
    from kafka.errors import KafkaError

    def attempt(left_s: float) -> T:
        return call(KafkaTimeouts(_clamp_ms(left_s, 1000, 15000), _clamp_ms(left_s, 500, 10000)))

    def give_up(what: str, exc: BaseException, attempts: int, deadline_s: float) -> BaseException:
        return BackendUnavailable(
            f"Kafka at {bootstrap} did not answer ({what}) within {deadline_s:.0f}s "
            f"({attempts} attempt(s); last: {_one_line(exc)}); is the broker up? (`feedtrends up`)"
        )

    try:
        return retry_until(what, attempt, retriable=kafka_retriable, deadline_s=deadline_s, on_give_up=give_up)
    except KafkaError as exc:
        raise BackendRefused(f"Kafka at {bootstrap} refused {what}: {_one_line(exc)}") from None


# --------------------------------------------------------------------------- Flink REST


class FlinkUnreachable(Exception):
    """One failed REST attempt that may succeed later (connection refused, 502/503/504, timeout)."""


def flink_call(what: str, call: Callable[[float], T], *, url: str, deadline_s: float) -> T:
    """Run one Flink REST call with retries; `call(seconds_left)` raises FlinkUnreachable to retry."""

    def give_up(what: str, exc: BaseException, attempts: int, deadline_s: float) -> BaseException:
        return BackendUnavailable(
            f"Flink cluster unreachable at {url} ({what}) for {deadline_s:.0f}s "
            f"({attempts} attempt(s); last: {exc}); is it up? (`feedtrends up`)"
        )

    return retry_until(
        what, call, retriable=lambda exc: isinstance(exc, FlinkUnreachable), deadline_s=deadline_s, on_give_up=give_up
    )
