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

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from connectors import flink_cluster
from feedtrends import operations
from connectors.ingest import run_generate
from connectors.topics import ensure_topics, read_topic
from connectors.trend_store import FILE_SCHEMA, read_parquet
from connectors.synthetic import GeneratorConfig, generate
from tests.eventgen import encode, event
from tests.oracle import run_oracle
from tests.support.kafka import in_production_order, produce
from tests.support.rows import HOUR, final_contents, oracle_params, table_rows
from tests.support.stack import job_config
from udfs.trend_row import COLUMNS, JSON_COLUMNS, TrendRow
from udfs.windows import window_start

pytestmark = pytest.mark.e2e

_ARROW_KIND = {pa.int64(): "int64", pa.int32(): "int32", pa.float64(): "double", pa.string(): "string"}


def _arrow_kind(t: pa.DataType) -> str:
    if pa.types.is_list(t):  # the element's field name differs by writer ("element", "item")
        return f"list<{_arrow_kind(t.value_type)}>"
    return _ARROW_KIND.get(t, str(t))


def _file_mismatches(table: pa.Table) -> list[str]:
    """How a Parquet part file differs from the spec: columns, kinds, nulls where none may be."""
    expected = [(c.name, c.kind) for c in COLUMNS if not c.partition]
    actual = [(f.name, _arrow_kind(f.type)) for f in table.schema]
    problems = [f"columns {actual} != {expected}"] if actual != expected else []
    problems += [f"{c.name} holds nulls" for c in COLUMNS if not c.partition and not c.nullable and table[c.name].null_count]
    return problems


def _json_kind_ok(kind: str, value: object) -> bool:
    if kind in ("int64", "int32"):
        bits = 63 if kind == "int64" else 31
        return isinstance(value, int) and not isinstance(value, bool) and -(2**bits) <= value < 2**bits
    if kind == "double":
        return isinstance(value, float)
    if kind == "string":
        return isinstance(value, str)
    return isinstance(value, list) and all(isinstance(v, str) for v in value)  # list<string>


def _json_mismatches(row: dict) -> list[str]:
    """How a Kafka JSON value differs from the spec: keys, kinds, nulls where none may be."""
    if sorted(row) != sorted(c.name for c in JSON_COLUMNS):
        return [f"keys {sorted(row)}"]
    return [
        f"{c.name}={row[c.name]!r} is no {c.kind}"
        for c in JSON_COLUMNS
        if not (row[c.name] is None and c.nullable) and not _json_kind_ok(c.kind, row[c.name])
    ]


def test_the_spec_checks_catch_a_wrong_row() -> None:
    row = TrendRow(0, 10, "x", 1, 1, 0.0, 1.0, None, 1, 5, ("t",))
    assert _json_mismatches(json.loads(row.to_json())) == []
    assert _json_mismatches({**json.loads(row.to_json()), "feeds": None}) == ["feeds=None is no int32"]
    assert _json_mismatches({**json.loads(row.to_json()), "score": "1.0"}) == ["score='1.0' is no double"]
    good = pa.Table.from_pylist([row.as_dict()], schema=FILE_SCHEMA)
    assert _file_mismatches(good) == []
    assert _file_mismatches(good.set_column(3, "articles", pa.array([1], pa.int64())))[0].startswith("columns")
    assert _file_mismatches(good.set_column(2, "term", pa.array([None], pa.string()))) == ["term holds nulls"]



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
    produce(config.kafka_bootstrap, config.events_topic, sentinels)
    records = in_production_order(
        read_topic(config.kafka_bootstrap, config.events_topic, "read_uncommitted"),
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
            committed = read_topic(config.kafka_bootstrap, config.trends_topic, "read_committed")
            uncommitted = read_topic(config.kafka_bootstrap, config.trends_topic, "read_uncommitted")
            observed_uncommitted_ahead = max(observed_uncommitted_ahead, len(uncommitted) - len(committed))
            kafka_rows = [json.loads(m.value) for m in committed]
            parquet_rows = table_rows(read_parquet(config.parquet_path))
            if final_contents(kafka_rows) == expected_rows and final_contents(parquet_rows) == expected_rows:
                break
            assert flink_cluster.job_details(config, job_id)["state"] in ("RUNNING", "RESTARTING", "INITIALIZING")
            time.sleep(3)
        # Transactions are visible only once their checkpoint completed.
        print(f"read_uncommitted was ahead of read_committed by up to {observed_uncommitted_ahead} rows")

        assert final_contents(kafka_rows) == expected_rows
        assert final_contents(parquet_rows) == expected_rows
        # Exactly once: no revision of a row was committed twice, in either sink.
        for rows in (kafka_rows, parquet_rows):
            revisions = [(r["window_start"], r["term"], r["revision"]) for r in rows]
            assert len(revisions) == len(set(revisions))
        # Keys are window_start|term.
        committed = read_topic(config.kafka_bootstrap, config.trends_topic, "read_committed")
        assert all(m.key.decode() == f"{json.loads(m.value)['window_start']}|{json.loads(m.value)['term']}" for m in committed)

        dlq = [json.loads(m.value) for m in read_topic(config.kafka_bootstrap, config.dlq_topic, "read_committed")]
        assert {(d["partition"], d["offset"]) for d in dlq} == set(expected.dlq)
        assert len(dlq) == sum(v for k, v in injected.items() if k.startswith("malformed"))
        late = [json.loads(m.value) for m in read_topic(config.kafka_bootstrap, config.late_topic, "read_committed")]
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
        assert job_status["counters"]["duplicates"] == len(expected.duplicates)
        assert job_status["counters"]["late_beyond_lateness"] == len(late)
        # The JobManager's endpoint names the job too: look for the TaskManager's operator counter itself.
        counter = f'flink_taskmanager_job_task_operator_rows_out{{job_id="{job_id}"'
        assert counter in _prometheus_text_with(counter)

        # Every committed Parquet file reads whole on its own.
        files = [f for f in config.parquet_path.rglob("part-*") if not f.name.startswith(".")]
        assert files and sum(pq.read_table(f).num_rows for f in files) == len(parquet_rows)
        # Both sinks hold the one spec of the row (udfs/trend_row.COLUMNS).
        for f in files:
            assert _file_mismatches(pq.read_table(f)) == []
        assert {m for row in kafka_rows for m in _json_mismatches(row)} == set()
    finally:
        if flink_cluster.running_job(config, config.job_name):
            flink_cluster.cancel_job(config, job_id)
