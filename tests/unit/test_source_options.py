"""The Kafka source's table options: what the job asks of the connector."""

from __future__ import annotations

from connectors.flink_io import SOURCE_ALIGNMENT_UPDATE_MS, KafkaRecordSource
from core.config import Config, load_config

H = 3_600_000


def test_the_readers_are_aligned_within_the_drift_and_not_at_all_at_zero() -> None:
    aligned = KafkaRecordSource(Config(max_source_drift_ms=6 * H, job_name="trends-a")).options()
    assert aligned["scan.watermark.alignment.group"] == "trends-a-events"
    assert aligned["scan.watermark.alignment.max-drift"] == f"{6 * H} ms"
    # A reader ahead waits for an update to go on: the updates must come far more often
    # than the drift is read (6 h of the bench's data is read in ~5 s).
    assert aligned["scan.watermark.alignment.update-interval"] == f"{SOURCE_ALIGNMENT_UPDATE_MS} ms"
    unaligned = KafkaRecordSource(Config(max_source_drift_ms=0)).options()
    assert not [name for name in unaligned if name.startswith("scan.watermark.alignment")]
    # The rest of the options does not depend on it.
    assert {k: v for k, v in aligned.items() if "alignment" not in k} == {
        **unaligned, "properties.group.id": "trends-a"
    }


def test_the_drift_is_a_duration_setting() -> None:
    assert load_config({"max_source_drift_ms": "12h"}, env={}).max_source_drift_ms == 12 * H
    assert load_config({}, env={"FEEDTRENDS_MAX_SOURCE_DRIFT_MS": "0"}).max_source_drift_ms == 0
