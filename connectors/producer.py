"""Writing events: to Kafka (kafka-python) or, for --dry-run, to stdout.

Record contract (udfs/event.py): key = article_id (UTF-8) so every copy of an
article lands in one partition in order; value = compact JSON; record
timestamp = published_at, because the Flink job derives event time and
watermarks from the record timestamp without parsing JSON.
"""

from __future__ import annotations

import logging
import sys
from collections import Counter
from dataclasses import dataclass, field
from typing import IO, Any, Hashable, Protocol

log = logging.getLogger("feedtrends.producer")

DEFAULT_TOPIC = "feed-events"
FLUSH_TIMEOUT_S = 60.0


@dataclass
class SendReport:
    sent: int = 0
    failed: int = 0
    failed_tags: set[Hashable] = field(default_factory=set)  # callers' tags of failed records
    errors: Counter[str] = field(default_factory=Counter)


class EventSink(Protocol):
    def send(self, key: bytes | None, value: bytes, timestamp_ms: int, tag: Hashable = None) -> None: ...

    def flush(self) -> SendReport: ...

    def close(self) -> None: ...


class DryRunSink:
    """Writes each record value as one line: exactly the bytes Kafka would get."""

    def __init__(self, out: IO[Any] | None = None) -> None:
        self.out = out if out is not None else sys.stdout
        self._pending = 0

    def send(self, key: bytes | None, value: bytes, timestamp_ms: int, tag: Hashable = None) -> None:
        buffer = getattr(self.out, "buffer", None)
        if buffer is not None:
            self.out.flush()
            buffer.write(value + b"\n")
        else:  # text streams (StringIO in tests)
            self.out.write(value.decode("utf-8", errors="replace") + "\n")
        self._pending += 1

    def flush(self) -> SendReport:
        self.out.flush()
        report = SendReport(sent=self._pending)
        self._pending = 0
        return report

    def close(self) -> None:
        self.out.flush()


def make_producer(bootstrap: str, *, client_id: str = "feedtrends", **overrides: Any) -> Any:
    """KafkaProducer configured for no loss and no broker-side duplicates."""
    from kafka import KafkaProducer

    config: dict[str, Any] = {
        "bootstrap_servers": bootstrap.split(","),
        "client_id": client_id,
        "acks": "all",
        # kafka-python >= 2.1 supports idempotence: retries after a lost ack
        # do not write the record twice.
        "enable_idempotence": True,
        # gzip needs no extra package (lz4/snappy/zstd would).
        "compression_type": "gzip",
        "linger_ms": 20,
        "request_timeout_ms": 30_000,
        "max_block_ms": 30_000,
    }
    config.update(overrides)
    return KafkaProducer(**config)


class KafkaSink:
    """Sends to one topic; flush() waits and reports which tagged records failed."""

    def __init__(self, bootstrap: str, topic: str, *, producer: Any = None, client_id: str = "feedtrends") -> None:
        self.topic = topic
        self.producer = producer if producer is not None else make_producer(bootstrap, client_id=client_id)
        self._pending: list[tuple[Any, Hashable]] = []
        self._send_errors: list[tuple[str, Hashable]] = []

    def send(self, key: bytes | None, value: bytes, timestamp_ms: int, tag: Hashable = None) -> None:
        try:
            future = self.producer.send(self.topic, key=key, value=value, timestamp_ms=timestamp_ms)
        except Exception as exc:  # e.g. record too large, buffer full past max_block_ms
            self._send_errors.append((type(exc).__name__, tag))
            return
        self._pending.append((future, tag))

    def flush(self, timeout_s: float = FLUSH_TIMEOUT_S) -> SendReport:
        report = SendReport()
        try:
            self.producer.flush(timeout=timeout_s)
        except Exception as exc:  # flush timeout: the undone futures count as failed below
            log.warning("flush did not complete: %s", exc)
        for error, tag in self._send_errors:
            report.failed += 1
            report.failed_tags.add(tag)
            report.errors[error] += 1
        for future, tag in self._pending:
            if future.is_done and future.succeeded():
                report.sent += 1
            else:
                report.failed += 1
                report.failed_tags.add(tag)
                exc = future.exception if future.is_done else None
                report.errors[type(exc).__name__ if exc else "not_acknowledged"] += 1
        self._pending.clear()
        self._send_errors.clear()
        return report

    def close(self) -> None:
        self.producer.close(timeout=10)

