"""The checks every fault scenario ends with, and the bounded waits before them.

Kafka read_committed final rows == Parquet final rows == the oracle; no (window_start,
term, revision) twice in either sink; the DLQ and late topics hold exactly the injected
(partition, offset)s; every committed Parquet file reads whole; no transaction left open.
"""

from __future__ import annotations

import json
import re
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow.parquet as pq

from connectors import flink_cluster
from connectors.flink_cluster import ClusterError
from connectors.topics import read_topic
from connectors.trend_store import read_parquet
from core.config import Config
from tests.faults.reference import Reference
from tests.support.rows import describe_diff, final_contents, table_rows


def committed_rows(config: Config) -> list[dict]:
    return [json.loads(m.value) for m in read_topic(config.kafka_bootstrap, config.trends_topic, "read_committed")]


def wait_for_reference(
    config: Config, reference: Reference, job_id: str | None, timeout_s: float = 300.0
) -> tuple[float, str]:
    """Until Kafka (read_committed) and Parquet both hold the reference's final rows.

    Returns (seconds, what differed last).  Does not assert: the caller's checks
    show the difference.  While waiting, a job that failed for good ends the wait.
    """
    start = time.monotonic()
    deadline = start + timeout_s
    diff = "not read yet"
    while time.monotonic() < deadline:
        kafka = final_contents(committed_rows(config))
        parquet = final_contents(table_rows(read_parquet(config.parquet_path)))
        if kafka == reference.rows and parquet == reference.rows:
            return time.monotonic() - start, "equal"
        diff = f"kafka {describe_diff(kafka, reference.rows)}; parquet {describe_diff(parquet, reference.rows)}"
        if job_id is not None:
            try:
                state = flink_cluster.job_details(config, job_id)["state"]
            except ClusterError:
                state = "unreachable"
            if state in ("FAILED", "CANCELED"):
                return time.monotonic() - start, f"job {state}; {diff}"
        time.sleep(3)
    return time.monotonic() - start, f"timed out; {diff}"


def assert_input_is_reference(config: Config, reference: Reference) -> None:
    """The events topic holds exactly the reference records (the harness re-sent nothing)."""
    got = [
        (m.partition, m.offset, m.timestamp, m.value)
        for m in read_topic(config.kafka_bootstrap, config.events_topic, "read_uncommitted")
    ]
    assert got == sorted(reference.records, key=lambda r: (r[0], r[1])), "the events topic is not the reference input"


_OPEN_STATES = {"Ongoing", "PrepareCommit", "PrepareAbort", "PrepareEpochFence"}


def open_transactions(config: Config, prefixes: list[str]) -> dict[str, object]:
    """What is still open on the output topics; empty when every transaction ended.

    Three views, all from the broker:
    * per partition, the read_committed end offset (the last stable offset, LSO)
      against the read_uncommitted end offset (the high watermark): an open
      transaction pins the LSO at its first record, so LSO == HW means none;
    * DescribeProducers per partition: a producer with a current transaction
      start offset >= 0 has a transaction open on that partition;
    * ListTransactions (KIP-1152 pattern filter, Kafka 4.1+) on the coordinator:
      transactional ids with our prefixes in an Ongoing/Prepare* state.
    """
    from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition

    topics = [config.trends_topic, config.dlq_topic, config.late_topic]
    found: dict[str, object] = {}
    consumers = {
        iso: KafkaConsumer(bootstrap_servers=config.kafka_bootstrap, enable_auto_commit=False, isolation_level=iso)
        for iso in ("read_committed", "read_uncommitted")
    }
    admin = KafkaAdminClient(bootstrap_servers=config.kafka_bootstrap, request_timeout_ms=15000)
    try:
        tps = []
        for topic in topics:
            partitions = consumers["read_uncommitted"].partitions_for_topic(topic) or set()
            tps += [TopicPartition(topic, p) for p in sorted(partitions)]
        lso = consumers["read_committed"].end_offsets(tps)
        hw = consumers["read_uncommitted"].end_offsets(tps)
        pinned = {f"{tp.topic}/{tp.partition}": (lso[tp], hw[tp]) for tp in tps if lso[tp] != hw[tp]}
        if pinned:
            found["lso_behind_high_watermark"] = pinned
        producers = admin.describe_producers(tps)
        active = {
            f"{tp.topic}/{tp.partition}": [
                (p.producer_id, p.producer_epoch, p.current_transaction_start_offset)
                for p in state.active_producers
                if p.current_transaction_start_offset >= 0
            ]
            for tp, state in producers.items()
        }
        active = {k: v for k, v in active.items() if v}
        if active:
            found["producers_with_open_transaction"] = active
        pattern = "|".join(re.escape(p) for p in prefixes)
        listings = admin.list_transactions(transactional_id_pattern=f"({pattern}).*")
        ongoing = sorted(
            (t.transactional_id, t.state.value)
            for rows in listings.values()
            for t in rows
            if t.state.value in _OPEN_STATES
        )
        if ongoing:
            found["coordinator_open_transactions"] = ongoing
        return found
    finally:
        for c in consumers.values():
            c.close()
        admin.close()


def wait_no_open_transactions(config: Config, prefixes: list[str], timeout_s: float = 60.0) -> dict[str, object]:
    """Empty dict once nothing is open (markers are written asynchronously: allow a moment)."""
    deadline = time.monotonic() + timeout_s
    found = open_transactions(config, prefixes)
    while found and time.monotonic() < deadline:
        time.sleep(2)
        found = open_transactions(config, prefixes)
    return found


@dataclass
class Outcome:
    kafka_rows: int = 0
    parquet_rows: int = 0
    parquet_files: int = 0
    dlq: int = 0
    late: int = 0
    notes: list[str] = field(default_factory=list)


def check_against_reference(config: Config, reference: Reference, *, prefixes: list[str] | None = None) -> Outcome:
    """All the assertions a scenario ends with, once its job has ended."""
    out = Outcome()
    committed = read_topic(config.kafka_bootstrap, config.trends_topic, "read_committed")
    kafka_rows = [json.loads(m.value) for m in committed]
    parquet_rows = table_rows(read_parquet(config.parquet_path))
    out.kafka_rows, out.parquet_rows = len(kafka_rows), len(parquet_rows)

    # Final rows (latest revision per window_start|term) equal the oracle, in both sinks.
    assert describe_diff(final_contents(kafka_rows), reference.rows) == "equal"
    assert describe_diff(final_contents(parquet_rows), reference.rows) == "equal"
    assert final_contents(kafka_rows) == reference.rows
    assert final_contents(parquet_rows) == reference.rows
    assert all(
        m.key.decode() == f"{json.loads(m.value)['window_start']}|{json.loads(m.value)['term']}" for m in committed
    )
    # Exactly once: no (window_start, term, revision) committed twice, in either sink.
    for name, rows in (("kafka", kafka_rows), ("parquet", parquet_rows)):
        revisions = Counter((r["window_start"], r["term"], r["revision"]) for r in rows)
        twice = {k: n for k, n in revisions.items() if n > 1}
        assert not twice, f"{name}: {len(twice)} revisions committed more than once, e.g. {list(twice.items())[:5]}"

    # Every committed Parquet file reads whole on its own.
    files = sorted(f for f in Path(config.parquet_path).rglob("part-*") if not f.name.startswith("."))
    assert files, "no committed Parquet file"
    assert sum(pq.read_table(f).num_rows for f in files) == len(parquet_rows)
    out.parquet_files = len(files)

    # The DLQ and late topics hold exactly the injected events: each once, none missing.
    for topic, expected in ((config.dlq_topic, reference.dlq), (config.late_topic, reference.late)):
        got = [json.loads(m.value) for m in read_topic(config.kafka_bootstrap, topic, "read_committed")]
        places = Counter((d["partition"], d["offset"]) for d in got)
        assert places == Counter(expected.keys()), (
            f"{topic}: missing {sorted(set(expected) - set(places))}, "
            f"unexpected {sorted(set(places) - set(expected))}, twice {sorted(k for k, n in places.items() if n > 1)}"
        )
        if topic == config.dlq_topic:
            assert [d["reason"] for d in sorted(got, key=lambda d: (d["partition"], d["offset"]))] == [
                expected[k] for k in sorted(expected)
            ]
            out.dlq = len(got)
        else:
            out.late = len(got)

    # No transaction left open on any output topic once the job has ended.
    found = wait_no_open_transactions(config, prefixes or [config.transactional_id_prefix])
    assert not found, f"transactions left open after the job ended: {found}"
    return out
