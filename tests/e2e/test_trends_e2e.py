"""The trends job on the real cluster, reading and writing the real broker (tier 3).

Generated events (duplicates, out-of-order, late, malformed) go into a 2-partition
topic; the job runs on the local Flink cluster at parallelism 2; the final rows
read back with read_committed from Kafka and from the Parquet files must equal
each other and the batch oracle, and the DLQ and late topics must hold exactly
the injected bad and late events.
"""

from __future__ import annotations

import io
import json
import time

import pyarrow.parquet as pq
import pytest

from connectors import flink_cluster
from feedtrends import operations
from connectors.ingest import run_generate
from connectors.topics import ensure_topics
from connectors.trend_store import read_kafka_rows, read_parquet
from tests.e2e.conftest import job_config
from tests.eventgen import encode, event
from tests.integration.job_runner import oracle_params
from tests.oracle import run_oracle
from udfs.synthetic import GeneratorConfig, generate
from udfs.trend_row import TrendRow
from udfs.windows import window_start

pytestmark = pytest.mark.e2e

HOUR = 3_600_000


def _consume(bootstrap: str, topic: str, isolation: str) -> list:
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        isolation_level=isolation,
        consumer_timeout_ms=1500,
    )
    try:
        return list(consumer)
    finally:
        consumer.close()


def _produce(bootstrap: str, topic: str, records) -> list[tuple[int, int, int, bytes]]:
    """Produce (partition, key, timestamp, value) in order; returns oracle records with real offsets."""
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    futures = [
        (producer.send(topic, key=key, value=value, partition=partition, timestamp_ms=ts), ts, value)
        for partition, key, ts, value in records
    ]
    producer.flush()
    out = []
    for future, ts, value in futures:
        meta = future.get(timeout=30)
        out.append((meta.partition, meta.offset, ts, value))
    producer.close()
    return out


def _prometheus_text_with(needle: str) -> str:
    """The /metrics text of the Flink process whose exposition mentions `needle` (ports 9249-9260)."""
    import urllib.request

    for port in range(9249, 9261):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=3) as resp:
                text = resp.read().decode()
        except OSError:
            continue
        if needle in text:
            return text
    return ""


def _in_production_order(messages, values_in_order: list[bytes]) -> list[tuple[int, int, int, bytes]]:
    """Merge the partitions back into the order the records were produced (the oracle's input order)."""
    queues: dict[int, list] = {}
    for m in sorted(messages, key=lambda m: (m.partition, m.offset)):
        queues.setdefault(m.partition, []).append(m)
    heads = dict.fromkeys(queues, 0)
    out = []
    for value in values_in_order:
        for partition, queue in queues.items():
            if heads[partition] < len(queue) and queue[heads[partition]].value == value:
                m = queue[heads[partition]]
                heads[partition] += 1
                out.append((m.partition, m.offset, m.timestamp, m.value))
                break
        else:
            raise AssertionError("a produced record is missing from the topic")
    return out


def _latest(rows: list[dict]) -> dict[str, tuple]:
    best: dict[str, TrendRow] = {}
    for obj in rows:
        row = TrendRow.from_json(json.dumps(obj))
        if row.key() not in best or best[row.key()].revision < row.revision:
            best[row.key()] = row
    return {key: row.content() for key, row in best.items()}


def _parquet_rows(table) -> list[dict]:
    rows = table.to_pylist()
    for r in rows:
        r.pop("window_date", None)
    return rows


def test_generated_events_end_to_end_exactly_once(stack, unique_topics, tmp_path) -> None:
    config = job_config(
        stack,
        unique_topics,
        tmp_path / "parquet",
        "e2e",
        window_ms=HOUR,
        lateness_ms=HOUR,
        out_of_orderness_ms=5 * 60_000,
        idleness_ms=5_000,
        baseline_windows=3,
        min_support=1,
        parallelism=2,
        partitions=2,
    )
    ensure_topics(config)

    # The events come in through `feedtrends generate` (keyed by article id, record
    # timestamp = published_at), as a user would load them.
    generator = GeneratorConfig(count=400, seed=5, rate=0.02, duplicates=0.2, out_of_order=0.1, late=0.03, malformed=0.03)
    synthetic, injected = generate(generator)
    summary = run_generate(
        generator, bootstrap=config.kafka_bootstrap, topic=config.events_topic, partitions=2, err=io.StringIO()
    )
    assert summary.delivered == len(synthetic)
    # One valid sentinel per partition, far ahead, moves both watermarks past every
    # data window so each window's final revision is emitted.
    sentinel_ts = max(r.timestamp_ms for r in synthetic) + 10 * HOUR
    sentinels = []
    for p in (0, 1):
        obj = event(f"url:sentinel-{p}", title=f"sentinel {p}", published_at=sentinel_ts)
        sentinels.append((p, obj["article_id"].encode(), sentinel_ts, encode(obj)))
    _produce(config.kafka_bootstrap, config.events_topic, sentinels)
    records = _in_production_order(
        _consume(config.kafka_bootstrap, config.events_topic, "read_uncommitted"),
        [r.value for r in synthetic] + [s[3] for s in sentinels],
    )
    assert len(records) == len(synthetic) + 2

    expected = run_oracle(records, oracle_params(config))
    cutoff = window_start(sentinel_ts, config.window_ms)
    expected_rows = {k: v for k, v in expected.rows.items() if v[0] < cutoff}
    assert len(expected_rows) > 100 and len(expected.late) == injected["late"]

    job_id = flink_cluster.submit(config)
    try:
        flink_cluster.wait_for_all_tasks_running(config, job_id)
        deadline = time.monotonic() + 300
        kafka_rows, parquet_rows = [], []
        observed_uncommitted_ahead = 0
        while time.monotonic() < deadline:
            committed = _consume(config.kafka_bootstrap, config.trends_topic, "read_committed")
            uncommitted = _consume(config.kafka_bootstrap, config.trends_topic, "read_uncommitted")
            observed_uncommitted_ahead = max(observed_uncommitted_ahead, len(uncommitted) - len(committed))
            kafka_rows = [json.loads(m.value) for m in committed]
            parquet_rows = _parquet_rows(read_parquet(config.parquet_path))
            if _latest(kafka_rows) == expected_rows and _latest(parquet_rows) == expected_rows:
                break
            assert flink_cluster.job_details(config, job_id)["state"] in ("RUNNING", "RESTARTING", "INITIALIZING")
            time.sleep(3)
        # Transactions are visible only once their checkpoint completed.
        print(f"read_uncommitted was ahead of read_committed by up to {observed_uncommitted_ahead} rows")

        assert _latest(kafka_rows) == expected_rows
        assert _latest(parquet_rows) == expected_rows
        # Exactly once: no revision of a row was committed twice, in either sink.
        for rows in (kafka_rows, parquet_rows):
            revisions = [(r["window_start"], r["term"], r["revision"]) for r in rows]
            assert len(revisions) == len(set(revisions))
        # Keys are window_start|term.
        committed = _consume(config.kafka_bootstrap, config.trends_topic, "read_committed")
        assert all(m.key.decode() == f"{json.loads(m.value)['window_start']}|{json.loads(m.value)['term']}" for m in committed)

        dlq = [json.loads(m.value) for m in _consume(config.kafka_bootstrap, config.dlq_topic, "read_committed")]
        assert {(d["partition"], d["offset"]) for d in dlq} == set(expected.dlq)
        assert len(dlq) == sum(v for k, v in injected.items() if k.startswith("malformed"))
        late = [json.loads(m.value) for m in _consume(config.kafka_bootstrap, config.late_topic, "read_committed")]
        assert {(d["partition"], d["offset"]) for d in late} == set(expected.late)

        # The job's counters: in `feedtrends status` and on the Prometheus endpoint.
        # (Offsets are committed to the consumer group after a checkpoint completes,
        # asynchronously, and the REST API serves metrics fetched every few seconds:
        # both may lag the output a little.)
        deadline = time.monotonic() + 60
        while True:
            job_status = next(j for j in operations.status(config)["jobs"] if j["id"] == job_id)
            settled = job_status["consumer_lag"]["total"] == 0 and job_status["counters"]["events_in"] == len(records)
            if settled or time.monotonic() > deadline:
                break
            time.sleep(2)
        assert job_status["consumer_lag"]["total"] == 0
        assert job_status["counters"]["events_in"] == len(records)
        assert job_status["counters"]["dead_letters"] == len(dlq)
        # The JobManager's endpoint names the job too: look for the TaskManager's operator counter itself.
        counter = f'flink_taskmanager_job_task_operator_events_in{{job_id="{job_id}"'
        assert counter in _prometheus_text_with(counter)

        # Every committed Parquet file reads whole on its own.
        files = [f for f in config.parquet_path.rglob("part-*") if not f.name.startswith(".")]
        assert files and sum(pq.read_table(f).num_rows for f in files) == len(parquet_rows)
    finally:
        if flink_cluster.running_job(config, config.job_name):
            flink_cluster.cancel_job(config, job_id)
