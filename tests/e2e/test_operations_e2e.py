"""Operating the job on the real cluster (tier 3): submit -> stop with savepoint ->
resume while events keep arriving, then `replay --bounded` into a new version.

The output must continue with no gap and no duplicate (Kafka read_committed and
Parquet), and the rebuilt version's final rows must equal the live version's.
"""

from __future__ import annotations

import json
import threading
import time

import pytest

from connectors import flink_cluster
from connectors.synthetic import GeneratorConfig, generate
from connectors.topics import ensure_topics, read_topic
from connectors.trend_store import read_parquet
from connectors.versions import config_for, current_version
from feedtrends import operations
from tests.eventgen import encode, event
from tests.oracle import run_oracle
from tests.support.kafka import in_production_order, produce
from tests.support.rows import HOUR, final_contents, oracle_params, table_rows
from tests.support.stack import job_config
from udfs.windows import window_start

pytestmark = pytest.mark.e2e


def _wait_for_rows(config, expected: dict, deadline_s: float = 300) -> tuple[list, list]:
    deadline = time.monotonic() + deadline_s
    while True:
        kafka_rows = [json.loads(m.value) for m in read_topic(config.kafka_bootstrap, config.trends_topic, "read_committed")]
        parquet_rows = table_rows(read_parquet(config.parquet_path))
        if (final_contents(kafka_rows) == expected and final_contents(parquet_rows) == expected) or time.monotonic() > deadline:
            return kafka_rows, parquet_rows
        time.sleep(3)


def _no_revision_twice(rows: list[dict]) -> bool:
    keys = [(r["window_start"], r["term"], r["revision"]) for r in rows]
    return len(keys) == len(set(keys))


def test_stop_with_savepoint_resume_and_bounded_replay(stack, unique_topics, tmp_path) -> None:
    config = job_config(
        stack,
        unique_topics,
        tmp_path / "parquet",
        "ops",
        window_ms=HOUR,
        lateness_ms=HOUR,
        baseline_windows=3,
        min_support=1,
        parallelism=1,
        partitions=2,
        idleness_ms=5_000,
    )
    suffix = config.job_name.rsplit("-", 1)[1]
    synthetic, _ = generate(GeneratorConfig(count=300, seed=9, rate=0.02, duplicates=0.2, out_of_order=0.1, late=0.03))
    sentinel_ts = max(r.timestamp_ms for r in synthetic) + 10 * HOUR
    sentinels = [encode(event(f"url:sentinel-{p}", title="sentinel", published_at=sentinel_ts)) for p in (0, 1)]
    planned = [(None, r.key, r.timestamp_ms, r.value) for r in synthetic]
    planned += [(p, f"url:sentinel-{p}".encode(), sentinel_ts, v) for p, v in enumerate(sentinels)]

    ensure_topics(config)
    half = len(synthetic) // 2
    produce(config.kafka_bootstrap, config.events_topic, planned[:half])
    job_id = operations.submit(config, echo=lambda line: None)
    try:
        # The second half arrives while the job is stopped and resumed.
        def trickle() -> None:
            for start in range(half, len(planned), 10):
                produce(config.kafka_bootstrap, config.events_topic, planned[start:start + 10])
                time.sleep(0.3)

        producer = threading.Thread(target=trickle)
        producer.start()
        time.sleep(3)
        savepoint = operations.stop(config, savepoint=True, echo=lambda line: None)
        assert savepoint and flink_cluster.running_job(config) is None
        time.sleep(2)
        resumed_id = operations.resume(config, None, echo=lambda line: None)
        assert resumed_id != job_id
        producer.join(timeout=120)
        assert not producer.is_alive()

        records = in_production_order(
            read_topic(config.kafka_bootstrap, config.events_topic, "read_uncommitted"), [p[3] for p in planned]
        )
        expected = run_oracle(records, oracle_params(config))
        cutoff = window_start(sentinel_ts, config.window_ms)
        expected_rows = {k: v for k, v in expected.rows.items() if v[0] < cutoff}

        kafka_rows, parquet_rows = _wait_for_rows(config, expected_rows)
        # No gap: every final row is there; no duplicate: no revision committed twice.
        assert final_contents(kafka_rows) == expected_rows
        assert final_contents(parquet_rows) == expected_rows
        assert _no_revision_twice(kafka_rows) and _no_revision_twice(parquet_rows)

        # A second instance is refused.
        with pytest.raises(operations.OperationError, match="already running"):
            operations.submit(config, echo=lambda line: None)

        # Rebuild from the earliest offset into v2; it becomes current.
        name = operations.replay(config, bounded=True, timeout_s=300, echo=lambda line: None)
        assert name == "v2" and current_version(config).name == "v2"
        v2 = config_for(config, current_version(config))
        assert v2.trends_topic != config.trends_topic and v2.parquet_path != config.parquet_path
        v2_kafka, v2_parquet = _wait_for_rows(v2, expected_rows, deadline_s=60)
        assert final_contents(v2_kafka) == final_contents(kafka_rows) == expected_rows
        assert final_contents(v2_parquet) == expected_rows
        assert flink_cluster.running_job(v2) is None  # --bounded stopped it
    finally:
        for job in flink_cluster.list_jobs(config):
            if job["state"] == "RUNNING" and suffix in job["name"]:
                flink_cluster.cancel_job(config, job["jid"])
        from connectors.topics import delete_topics

        delete_topics(config, [f"{t}-v2" for t in (config.trends_topic, config.dlq_topic, config.late_topic)])
        (config.state_dir / "versions.json").unlink(missing_ok=True)
