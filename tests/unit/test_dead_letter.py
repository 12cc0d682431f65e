from __future__ import annotations

import base64
import json

import pytest

from tests.eventgen import encode, event
from udfs.dead_letter import dlq_record, late_record
from udfs.validate import Article, parse_event


def test_dlq_record_text() -> None:
    out = json.loads(dlq_record(b'{"a": "caf\xc3\xa9"', "malformed_json", "feed-events", 3, 42, detail="Expecting"))
    assert out == {
        "reason": "malformed_json",
        "reason_code": "malformed_json",
        "detail": "Expecting",
        "topic": "feed-events",
        "partition": 3,
        "offset": 42,
        "original": '{"a": "caf\u00e9"',
        "original_encoding": "utf-8",
        "original_truncated": False,
        "original_bytes": 13,
    }


def test_dlq_record_binary_is_base64() -> None:
    raw = b"\xff\x00\xfe"
    out = json.loads(dlq_record(raw, "invalid_utf8", "t", 0, 1))
    assert out["original_encoding"] == "base64"
    assert base64.b64decode(out["original"]) == raw
    assert out["original_truncated"] is False


@pytest.mark.parametrize(
    ("raw", "cap", "original", "truncated"),
    [
        (b"abcdef", 4, "abcd", True),
        (b"abcd", 4, "abcd", False),
        ("ab\u00e9cd".encode(), 3, "ab", True),  # the cap splits "é": the partial character is dropped
        ("ab\u00e9cd".encode(), 4, "ab\u00e9", True),
    ],
)
def test_dlq_record_cap(raw: bytes, cap: int, original: str, truncated: bool) -> None:
    out = json.loads(dlq_record(raw, "missing_field:title", "t", 0, 1, cap=cap))
    assert out["original"] == original
    assert out["original_truncated"] is truncated
    assert out["original_bytes"] == len(raw)
    assert out["reason_code"] == "missing_field"


def test_dlq_record_binary_cap() -> None:
    raw = b"\xff" * 10
    out = json.loads(dlq_record(raw, "invalid_utf8", None, None, None, cap=4))
    assert base64.b64decode(out["original"]) == raw[:4] and out["original_truncated"] is True
    assert out["topic"] is None and out["partition"] is None and out["offset"] is None


def test_dlq_record_is_compact_and_sorted() -> None:
    data = dlq_record(b"x", "malformed_json", "t", 0, 1)
    obj = json.loads(data)
    assert list(obj) == sorted(obj)
    assert data == json.dumps(obj, separators=(",", ":"), sort_keys=True).encode()


def test_late_record_carries_a_replayable_event() -> None:
    obj = event(title="Caf\u00e9 news", tags=["x"])
    article = parse_event(encode(obj))
    assert isinstance(article, Article)
    out = json.loads(late_record(article, 1234, 99, "feed-events", 1, 7, window_start=0))
    assert out["late_by_ms"] == 1234 and out["watermark"] == 99 and out["window_start"] == 0
    assert (out["topic"], out["partition"], out["offset"]) == ("feed-events", 1, 7)
    assert out["event"] == obj
    assert parse_event(encode(out["event"])) == article
