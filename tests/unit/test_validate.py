from __future__ import annotations

import json

import pytest

from tests.eventgen import BASE_MS, encode, event
from udfs.dedup import dedup_step
from udfs.event import FIELDS, MAX_FUTURE_SKEW_MS, MIN_PUBLISHED_AT_MS
from udfs.validate import Article, Rejection, parse_event, reason_code


def test_valid_event_parses_to_article() -> None:
    obj = event(tags=["ai", "chips"], language="de", url=None)
    article = parse_event(encode(obj))
    assert isinstance(article, Article)
    assert article.tags == ("ai", "chips")
    assert article.url is None
    assert article.language == "de"
    assert article.to_event() == obj


def test_extra_fields_are_ignored() -> None:
    assert isinstance(parse_event(encode(event(extra="x"))), Article)


def _without(name: str) -> bytes:
    obj = event()
    del obj[name]
    return encode(obj)


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"\xff\xfe{}", "invalid_utf8"),
        (b'{"title": "caf\xc3"}', "invalid_utf8"),
        (encode(event()).replace(b'"Quantum', b'"\\ud800Quantum'), "invalid_utf8"),
        (encode(event(tags=["x"])).replace(b'"x"', b'"\\udfff"'), "invalid_utf8"),
        (b"", "malformed_json"),
        (b"{not json", "malformed_json"),
        (b'{"a": 1', "malformed_json"),
        (b"[" * 100_000 + b"]" * 100_000, "malformed_json"),
        (b"[]", "not_an_object"),
        (b'"str"', "not_an_object"),
        (b"null", "not_an_object"),
        (b"42", "not_an_object"),
        (encode(event(schema_version=2)), "unknown_schema_version"),
        (encode(event(schema_version=0)), "unknown_schema_version"),
        (encode(event(schema_version="1")), "wrong_type:schema_version"),
        (encode(event(schema_version=True)), "wrong_type:schema_version"),
        (encode(event(published_at=float(BASE_MS), fetched_at=BASE_MS)), "wrong_type:published_at"),
        (encode(event(published_at=str(BASE_MS), fetched_at=BASE_MS)), "wrong_type:published_at"),
        (encode({**event(), "fetched_at": None}), "wrong_type:fetched_at"),
        (encode(event(title=None)), "wrong_type:title"),
        (encode(event(summary=3)), "wrong_type:summary"),
        (encode(event(url=3)), "wrong_type:url"),
        (encode(event(language=["en"])), "wrong_type:language"),
        (encode(event(tags="ai")), "wrong_type:tags"),
        (encode(event(tags=["ai", 1])), "wrong_type:tags"),
        (encode(event(article_id=7)), "wrong_type:article_id"),
        (encode(event(published_at_source="guessed")), "wrong_type:published_at_source"),
        (encode(event(article_id="")), "missing_field:article_id"),
        (encode(event(feed_url="")), "missing_field:feed_url"),
        (encode(event(published_at=MIN_PUBLISHED_AT_MS - 1)), "absurd_timestamp"),
        (encode(event(published_at=-5)), "absurd_timestamp"),
        (encode(event(fetched_at=BASE_MS - MAX_FUTURE_SKEW_MS - 1)), "absurd_timestamp"),
        (encode(event(published_at=2**64, fetched_at=2**64)), "absurd_timestamp"),
        (encode(event(published_at=BASE_MS, fetched_at=2**63)), "absurd_timestamp"),
    ],
)
def test_rejection_reasons(raw: bytes, reason: str) -> None:
    result = parse_event(raw)
    assert isinstance(result, Rejection)
    assert result.reason == reason
    assert result.code == reason.split(":")[0]
    assert isinstance(result.detail, str)


@pytest.mark.parametrize("name", FIELDS)
def test_every_field_is_required(name: str) -> None:
    result = parse_event(_without(name))
    assert result == Rejection(f"missing_field:{name}", "field absent")


def test_first_missing_field_in_schema_order_is_reported() -> None:
    obj = event()
    del obj["title"], obj["article_id"]
    result = parse_event(encode(obj))
    assert isinstance(result, Rejection) and result.reason == "missing_field:article_id"


@pytest.mark.parametrize(
    ("published_at", "fetched_at", "ok"),
    [
        (MIN_PUBLISHED_AT_MS, MIN_PUBLISHED_AT_MS, True),
        (BASE_MS + MAX_FUTURE_SKEW_MS, BASE_MS, True),
        (BASE_MS + MAX_FUTURE_SKEW_MS + 1, BASE_MS, False),
        (BASE_MS, 0, False),
    ],
)
def test_timestamp_bounds_are_relative_to_fetched_at(published_at: int, fetched_at: int, ok: bool) -> None:
    result = parse_event(encode(event(published_at=published_at, fetched_at=fetched_at)))
    assert isinstance(result, Article) is ok


def test_valid_surrogate_pairs_and_escapes_are_fine() -> None:
    raw = json.dumps(event(title="emoji \U0001f600 caf\u00e9")).encode("ascii")  # \ud83d\ude00 escapes
    article = parse_event(raw)
    assert isinstance(article, Article) and article.title == "emoji \U0001f600 caf\u00e9"


def test_reason_code() -> None:
    assert reason_code("missing_field:title") == "missing_field"
    assert reason_code("absurd_timestamp") == "absurd_timestamp"


def test_dedup_step_first_copy_wins() -> None:
    article = parse_event(encode(event()))
    assert isinstance(article, Article)
    assert dedup_step(False, article) == (True, True)
    assert dedup_step(True, article) == (True, False)


def test_articles_pickle_round_trip() -> None:
    # Articles cross between Flink operators pickled (Article.__reduce__).
    import pickle

    article = parse_event(encode(event()))
    assert isinstance(article, Article)
    assert pickle.loads(pickle.dumps(article)) == article
