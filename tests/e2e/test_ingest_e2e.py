"""Ingest and generate against a real Kafka broker (tier 3).

Needs the `kafka_bootstrap` fixture ("127.0.0.1:<port>") from tests/e2e/conftest.py.
Feeds come from the local FeedServer over loopback HTTP, so the real
conditional-GET path runs; each test writes to a fresh uuid topic and deletes it.
"""

from __future__ import annotations

import io
import json
import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from connectors.feed_server import FeedServer
from connectors.ingest import run_generate, run_ingest
from connectors.synthetic import GeneratorConfig, generate

pytestmark = pytest.mark.e2e

SAMPLES = Path(__file__).resolve().parents[2] / "samples" / "feeds"
FETCH_TIME_S = 1_795_176_000.0  # fixed clock: identical events in every run
SAMPLE_EVENTS = 42


@pytest.fixture()
def topic(kafka_bootstrap: str) -> Iterator[str]:
    from kafka.admin import KafkaAdminClient

    name = f"feed-events-{uuid.uuid4().hex[:12]}"
    yield name
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap, client_id="feedtrends-e2e-cleanup")
    try:
        admin.delete_topics([name])
    except Exception:  # the topic may not exist if the test failed early
        pass
    finally:
        admin.close()


def consume_all(bootstrap: str, topic: str, expected: int, *, deadline_s: float = 60.0, quiet_s: float = 3.0) -> list:
    """Read from the beginning until `expected` records arrived and then `quiet_s` passed without more."""
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=None,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        consumer_timeout_ms=500,
    )
    records: list = []
    try:
        deadline = time.monotonic() + deadline_s
        last_arrival = time.monotonic()
        while time.monotonic() < deadline:
            batch = consumer.poll(timeout_ms=500)
            for partition_records in batch.values():
                records.extend(partition_records)
                last_arrival = time.monotonic()
            if len(records) >= expected and time.monotonic() - last_arrival >= quiet_s:
                break
    finally:
        consumer.close()
    return records


def test_ingest_samples_twice_over_http_sends_each_event_once(kafka_bootstrap: str, topic: str, tmp_path: Path) -> None:
    with FeedServer(str(SAMPLES)) as server:
        feeds = tmp_path / "feeds.txt"
        feeds.write_text("".join(server.url_for(name) + "\n" for name in sorted(os.listdir(SAMPLES))))

        expected_out = io.StringIO()
        run_ingest(str(feeds), once=True, dry_run=True, state_path=None, out=expected_out, err=io.StringIO(), clock=lambda: FETCH_TIME_S)
        expected = {json.loads(line)["event_id"]: json.loads(line) for line in expected_out.getvalue().splitlines()}
        assert len(expected) == SAMPLE_EVENTS

        state = tmp_path / "state.json"
        err = io.StringIO()
        first = run_ingest(
            str(feeds), once=True, bootstrap=kafka_bootstrap, topic=topic, partitions=2,
            state_path=str(state), err=err, clock=lambda: FETCH_TIME_S,
        )
        assert (first.feeds_ok, first.entries_new, first.events_delivered, first.exit_code) == (5, SAMPLE_EVENTS, SAMPLE_EVENTS, 0)

        second = run_ingest(
            str(feeds), once=True, bootstrap=kafka_bootstrap, topic=topic, partitions=2,
            state_path=str(state), err=err, clock=lambda: FETCH_TIME_S + 600,
        )
        assert (second.feeds_not_modified, second.entries_new, second.events_delivered) == (5, 0, 0)
        assert err.getvalue().splitlines()[-1] == "feeds ok=0 not_modified=5 failed=0; entries new=0 already_sent=0 rejected=0"

    records = consume_all(kafka_bootstrap, topic, SAMPLE_EVENTS)
    received = [json.loads(r.value) for r in records]
    assert len(received) == SAMPLE_EVENTS  # nothing twice, nothing missing
    assert {e["event_id"]: e for e in received} == expected
    for record, event in zip(records, received):
        assert record.key == event["article_id"].encode()
        assert record.timestamp == event["published_at"]  # the job's event time
    # Copies of one article share a key, hence a partition.
    partition_of: dict[bytes, int] = {}
    for record in records:
        assert partition_of.setdefault(record.key, record.partition) == record.partition


def test_generate_to_kafka_delivers_exactly_the_generated_records(kafka_bootstrap: str, topic: str) -> None:
    config = GeneratorConfig(count=400, seed=21, duplicates=0.1, out_of_order=0.05, late=0.05, malformed=0.05)
    expected, counts = generate(config)
    out = io.StringIO()
    summary = run_generate(config, bootstrap=kafka_bootstrap, topic=topic, partitions=2, out=out, err=io.StringIO())
    assert summary.delivered == 400 and summary.failed == 0 and summary.counts == counts
    assert "injected ok=300 duplicate=40 out_of_order=20 late=20 malformed=20" in out.getvalue()

    records = consume_all(kafka_bootstrap, topic, 400)
    # key may be None (malformed records), so sort on bytes
    assert sorted((r.key or b"", r.value, r.timestamp) for r in records) == sorted(
        (e.key or b"", e.value, e.timestamp_ms) for e in expected
    )


def test_cli_ingest_and_generate_follow_the_one_config(stack, topic: str, tmp_path: Path) -> None:
    """`feedtrends ingest`/`generate` take broker, topic, partitions and state dir from the
    same FEEDTRENDS_* configuration as every other command (here: a broker on a
    non-default port), and keep ingest state in <state_dir>, not the working directory."""
    import subprocess
    import sys

    from feedtrends.cli import SAMPLE_FEEDS

    state_dir = tmp_path / "state"
    env = {**os.environ, **stack.as_env(), "FEEDTRENDS_STATE_DIR": str(state_dir), "FEEDTRENDS_EVENTS_TOPIC": topic}
    env.pop("FEEDTRENDS_BOOTSTRAP")  # "": the configured kafka_port decides
    run = lambda *args: subprocess.run(  # noqa: E731
        [sys.executable, "-m", "feedtrends.cli", *args], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=180
    )
    ingest = run("ingest", str(SAMPLE_FEEDS), "--allow-files")
    assert ingest.returncode == 0, ingest.stderr
    assert (state_dir / "ingest-state.json").exists()
    assert not (tmp_path / ".feedtrends").exists()
    generated = run("generate", "--count", "20")
    assert generated.returncode == 0, generated.stderr
    assert f"topic={topic}" in generated.stdout
    assert len(consume_all(stack.kafka_bootstrap, topic, SAMPLE_EVENTS + 20)) == SAMPLE_EVENTS + 20
