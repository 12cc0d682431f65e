"""Synthetic event generator (connectors/synthetic.py)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import jsonschema
import pytest

from connectors.synthetic import (
    MALFORMED_REASONS,
    GeneratorConfig,
    format_counts,
    generate,
    iter_synthetic,
    planned_counts,
)
from udfs.canonical import canonical_url, event_id
from udfs.event import FIELDS

SCHEMA = json.loads((Path(__file__).resolve().parents[2] / "schemas" / "event-v1.schema.json").read_text())
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)  # built once: validate() rebuilds it per call
VALID_KINDS = {"ok", "duplicate", "out_of_order", "late"}

MIXED = GeneratorConfig(count=3000, seed=11, rate=2.0, duplicates=0.1, out_of_order=0.07, late=0.03, malformed=0.05)


@pytest.fixture(scope="module")
def mixed() -> tuple[list, dict[str, int]]:
    return generate(MIXED)


def test_same_seed_same_bytes_other_seed_other_bytes(mixed: tuple[list, dict[str, int]]) -> None:
    records, _ = mixed
    again, _ = generate(MIXED)
    assert again == records
    other, _ = generate(GeneratorConfig(**{**MIXED.__dict__, "seed": 12}))
    assert [r.value for r in other] != [r.value for r in records]


def test_exact_injected_counts(mixed: tuple[list, dict[str, int]]) -> None:
    records, counts = mixed
    assert len(records) == 3000
    by_kind = Counter("malformed" if r.kind.startswith("malformed:") else r.kind for r in records)
    assert dict(by_kind) == {"ok": 2250, "duplicate": 300, "out_of_order": 210, "late": 90, "malformed": 150}
    assert planned_counts(MIXED) == {"ok": 2250, "duplicate": 300, "out_of_order": 210, "late": 90, "malformed": 150}
    assert counts == dict(Counter(r.kind for r in records))
    assert {k.split(":", 1)[1] for k in counts if k.startswith("malformed:")} == set(MALFORMED_REASONS)
    line = format_counts(counts)
    assert line.startswith("injected ok=2250 duplicate=300 out_of_order=210 late=90 malformed=150 (")


def test_fraction_rounding_is_exact() -> None:
    config = GeneratorConfig(count=100, seed=1, duplicates=0.29, late=0.07)
    assert Counter(r.kind for r in iter_synthetic(config)) == Counter({"ok": 64, "duplicate": 29, "late": 7})


def test_valid_records_match_schema_and_record_contract(mixed: tuple[list, dict[str, int]]) -> None:
    for record in mixed[0]:
        if record.kind not in VALID_KINDS:
            continue
        event = json.loads(record.value)
        VALIDATOR.validate(event)
        assert tuple(event) == FIELDS
        assert record.key == event["article_id"].encode()
        assert record.timestamp_ms == event["published_at"]
        assert event["event_id"] == event_id(event["feed_url"], event["article_id"])
        assert event["article_id"] == "url:" + canonical_url(event["url"])
        assert event["fetched_at"] >= event["published_at"]
        assert 450 <= len(record.value) <= 760


def test_typical_event_size_is_500_to_700_bytes(mixed: tuple[list, dict[str, int]]) -> None:
    sizes = sorted(len(r.value) for r in mixed[0] if r.kind == "ok")
    assert 500 <= sizes[len(sizes) // 20] and sizes[-len(sizes) // 20] <= 700  # 5th..95th percentile


def test_kinds_mean_what_they_say(mixed: tuple[list, dict[str, int]]) -> None:
    current_max = None
    seen: dict[str, dict] = {}
    for record in mixed[0]:
        if record.kind.startswith("malformed:"):
            continue
        event = json.loads(record.value)
        ts = record.timestamp_ms
        if record.kind == "ok":
            assert current_max is None or ts >= current_max
            assert event["article_id"] not in seen
        elif record.kind == "duplicate":
            original = seen[event["article_id"]]
            assert ts == original["published_at"]
            assert ts > current_max - MIXED.out_of_order_bound_ms  # never also late
            if event["feed_url"] == original["feed_url"]:
                assert event["event_id"] == original["event_id"]
            else:
                assert event["event_id"] != original["event_id"]
        elif record.kind == "out_of_order":
            assert 0 < current_max - ts < MIXED.out_of_order_bound_ms
            assert event["article_id"] not in seen
        elif record.kind == "late":
            assert current_max - ts > MIXED.late_horizon_ms
            assert event["article_id"] not in seen
        if record.kind != "duplicate":
            seen[event["article_id"]] = event
        current_max = ts if current_max is None else max(current_max, ts)
    duplicates = [json.loads(r.value) for r in mixed[0] if r.kind == "duplicate"]
    cross_feed = sum(1 for d in duplicates if d["feed_url"] != seen[d["article_id"]]["feed_url"])
    assert 0 < cross_feed < len(duplicates)  # both flavours present


def _is_valid_v1(value: bytes) -> bool:
    try:
        event = json.loads(value.decode("utf-8"))
        VALIDATOR.validate(event)
    except (UnicodeDecodeError, ValueError, jsonschema.ValidationError):
        return False
    # The schema cannot express the future bound; absurd timestamps include far-future ones.
    return event["published_at"] <= event["fetched_at"] + 86_400_000


def test_every_malformed_record_is_invalid_and_timestamped_sanely(mixed: tuple[list, dict[str, int]]) -> None:
    valid_ts = [r.timestamp_ms for r in mixed[0] if r.kind == "ok"]
    for record in mixed[0]:
        if record.kind.startswith("malformed:"):
            assert not _is_valid_v1(record.value), record
            assert b"\n" not in record.value
            # Record timestamps stay within the stream, so they cannot poison watermarks.
            assert valid_ts[0] <= record.timestamp_ms <= valid_ts[-1]


def test_stream_is_mostly_increasing(mixed: tuple[list, dict[str, int]]) -> None:
    ts = [r.timestamp_ms for r in mixed[0]]
    increasing = sum(1 for a, b in zip(ts, ts[1:]) if b >= a)
    assert increasing / (len(ts) - 1) > 0.8
    span_s = (max(ts) - min(t for t, r in zip(ts, mixed[0]) if r.kind == "ok")) / 1000
    assert span_s == pytest.approx(3000 / MIXED.rate, rel=0.05)


def test_topics_burst_and_fade() -> None:
    records, _ = generate(GeneratorConfig(count=4000, seed=3))
    quarters = [Counter(), Counter(), Counter(), Counter()]
    for index, record in enumerate(records):
        title = json.loads(record.value)["title"].lower()
        for term in ("hurricane", "storm", "landfall", "penalty", "cup", "trophy"):
            if term in title:
                quarters[index * 4 // len(records)][term] += 1
    storm = [sum(q[t] for t in ("hurricane", "storm", "landfall")) for q in quarters]
    final = [sum(q[t] for t in ("penalty", "cup", "trophy")) for q in quarters]
    assert storm[0] > 2 * storm[3]  # the storm peaks early
    assert final[3] > 2 * final[0]  # the cup final peaks late


def test_empty_and_only_malformed_streams() -> None:
    assert generate(GeneratorConfig(count=0))[0] == []
    records, counts = generate(GeneratorConfig(count=20, malformed=1.0))
    assert sum(counts.values()) == 20 and all(k.startswith("malformed:") for k in counts)


@pytest.mark.parametrize(
    "changes",
    [
        {"count": -1},
        {"rate": 0},
        {"duplicates": 1.5},
        {"duplicates": 0.6, "late": 0.6},
        {"duplicates": 1.0},
        {"out_of_order_bound_ms": 1},
        {"feeds": 1},
        {"start_ms": 946_684_800_000},
    ],
)
def test_invalid_configs_are_refused(changes: dict) -> None:
    with pytest.raises(ValueError):
        generate(GeneratorConfig(**{"count": 10, **changes}))
