from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from udfs.trend_row import COLUMNS, JSON_COLUMNS, TrendRow, batch_json, utc_date

ROW = TrendRow(
    window_start=1_700_000_000_000,
    window_end=1_700_003_600_000,
    term="quantum chips",
    articles=3,
    feeds=2,
    baseline=0.333333,
    score=2.309401,
    rank=1,
    revision=2,
    emitted_at=1_700_003_700_000,
    examples=("Quantum chips \u00e9", "Second"),
    links=("https://example.com/q", ""),
)


def test_key_and_content() -> None:
    assert ROW.key() == "1700000000000|quantum chips"
    assert ROW.content() == (
        1_700_000_000_000,
        1_700_003_600_000,
        "quantum chips",
        3,
        2,
        0.333333,
        2.309401,
        1,
        ("Quantum chips \u00e9", "Second"),
        (),
        ("https://example.com/q", ""),
    )
    other = TrendRow(**{**{f: getattr(ROW, f) for f in ROW.__slots__}, "revision": 9, "emitted_at": 0})
    assert other.content() == ROW.content() and other != ROW


def test_json_is_compact_sorted_and_round_trips() -> None:
    data = ROW.to_json()
    obj = json.loads(data)
    assert data == json.dumps(obj, separators=(",", ":"), sort_keys=True, ensure_ascii=False).encode()
    assert list(obj) == sorted(obj)
    assert obj["examples"] == ["Quantum chips \u00e9", "Second"]
    assert "\u00e9".encode() in data  # UTF-8, not \u escapes
    assert TrendRow.from_json(data) == ROW
    assert TrendRow.from_json(data.decode()) == ROW


def test_json_written_before_a_column_existed_reads_it_as_empty() -> None:
    obj = json.loads(ROW.to_json())
    del obj["aliases"], obj["links"]
    assert TrendRow.from_json(json.dumps(obj)) == TrendRow(**{**{f: getattr(ROW, f) for f in ROW.__slots__}, "links": ()})


def test_null_rank_round_trips() -> None:
    row = TrendRow(0, 10, "feed:x", 1, 1, 0.0, 1.0, None, 1, 5, ())
    assert json.loads(row.to_json())["rank"] is None
    assert TrendRow.from_json(row.to_json()) == row


@settings(max_examples=100, deadline=None)
@given(
    st.integers(-(2**40), 2**40),
    st.text(min_size=1, max_size=10),
    st.floats(allow_nan=False, allow_infinity=False).map(lambda x: round(x, 6)),
    st.one_of(st.none(), st.integers(1, 1000)),
    st.lists(st.text(max_size=10), max_size=3),
)
def test_json_round_trip_property(ws: int, term: str, sc: float, rank: int | None, examples: list[str]) -> None:
    row = TrendRow(ws, ws + 1, term, 1, 1, 0.5, sc, rank, 1, 0, tuple(examples))
    assert TrendRow.from_json(row.to_json()) == row
    # The same bytes as the plain sorted dump of the row's columns: output already written stays byte-stable.
    plain = {c.name: v for c, v in zip(COLUMNS, row.column_values()) if not c.partition}
    expected = json.dumps(plain, separators=(",", ":"), sort_keys=True, ensure_ascii=False)
    assert row.json_text() == expected and row.to_json() == expected.encode("utf-8")
    # In a batch, each row's object is its JSON text: the sinks cut the Kafka value out of it.
    other = TrendRow(ws, ws + 1, term + "x", 2, 1, 0.5, sc, None, 2, 0, ())
    assert batch_json([row, other]) == f"[{expected},{other.json_text()}]"
    assert batch_json([]) == "[]"


@pytest.mark.parametrize(
    ("ms", "date"),
    [(0, "1970-01-01"), (-1, "1969-12-31"), (1_700_000_000_000, "2023-11-14"), (86_400_000 - 1, "1970-01-01")],
)
def test_utc_date(ms: int, date: str) -> None:
    assert utc_date(ms) == date


def test_the_spec_lists_every_field_once_and_only_rank_may_be_null() -> None:
    names = [c.name for c in COLUMNS]
    assert len(names) == len(set(names))
    assert [c.name for c in JSON_COLUMNS] == [n for n in names if n != "window_date"]
    assert set(ROW.__slots__) == set(n for n in names if n != "window_date")
    assert {c.name for c in COLUMNS if c.nullable} == {"rank"}
    assert [c.name for c in COLUMNS if c.partition] == ["window_date"]


def test_column_values_follow_the_spec_and_json_matches_them() -> None:
    values = dict(zip([c.name for c in COLUMNS], ROW.column_values()))
    assert values["window_date"] == "2023-11-14" and values["examples"] == list(ROW.examples)
    assert json.loads(ROW.to_json()) == {k: v for k, v in values.items() if k != "window_date"}
    assert list(json.loads(ROW.to_json())) == sorted(c.name for c in JSON_COLUMNS)


def test_values_crossing_operators_pickle() -> None:
    """PyFlink pickles Python records between operators and PICKLED_BYTE_ARRAY state."""
    import pickle

    from tests.eventgen import encode, event
    from udfs.trend import Candidate
    from udfs.validate import Rejection, parse_event
    from udfs.windows import add_article

    values = [
        parse_event(encode(event(tags=["ai"]))),
        Rejection("missing_field:title", "field absent"),
        add_article(None, article_id="a", feed_url="f", title="t", published_at=1, k=2),
        Candidate(1, 1, 0.0, ("t",), (("f", 1),), (7,), 1),
        ROW,
    ]
    for value in values:
        assert pickle.loads(pickle.dumps(value)) == value


def test_pickles_round_trip_with_every_field() -> None:
    # Rows live pickled in the ranker's state (TrendRow.__reduce__).
    import pickle

    row = TrendRow(0, 3_600_000, "bank england", 4, 2, 1.5, 1.9, None, 3, 123, ("a", "b"))
    assert pickle.loads(pickle.dumps(row)) == row
