"""The pure half of `feedtrends query` (feedtrends/query.py): times, selections, formats; and the latest
revision per key it answers from (connectors/trend_store.py)."""

from __future__ import annotations

import csv
import io
import json
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from connectors.trend_store import latest_revisions
from feedtrends.exit_codes import BAD_INPUT, REFUSED, UNREACHABLE, exit_code
from feedtrends.query import (
    ROW_FIELDS,
    TABLE_COLUMNS,
    BackendUnavailable,
    NothingFound,
    QueryInputError,
    feed_counts,
    format_csv,
    format_json,
    format_table,
    parse_time_ms,
    render,
    resolve_window,
    term_history,
    top_terms,
    utc_iso,
    windows_summary,
)

H = 3_600_000
W0 = 1_795_154_400_000  # 2026-11-20T06:00:00Z
NOW = W0 + 10 * H  # 2026-11-20T16:00:00Z


def row(ws: int, term: str, *, articles: int = 1, rank: int | None = None, revision: int = 1, **extra) -> dict:
    base = {
        "window_start": ws,
        "window_end": ws + H,
        "term": term,
        "articles": articles,
        "feeds": 1,
        "baseline": 0.0,
        "score": float(articles),
        "rank": rank,
        "revision": revision,
        "emitted_at": 1_795_669_273_983 + revision,
        "examples": [f"{term} headline"],
        "aliases": [],
        "links": [f"https://news.example/{term.replace(' ', '-')}"],
    }
    return {**base, **extra}


# --------------------------------------------------------------------------- times


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-20T06:00:00Z", W0),
        ("2026-11-20T06:00Z", W0),
        ("2026-11-20t06:00:00z", W0),
        ("2026-11-20T06:00:00", W0),  # naive = UTC
        ("2026-11-20 06:00", W0),
        ("2026-11-20T07:00:00+01:00", W0),
        ("2026-11-20T01:30:00-04:30", W0),
        ("2026-11-20T06:00:00.250Z", W0 + 250),
        ("2026-11-20", W0 - 6 * H),
        (str(W0), W0),  # epoch ms, as `--format json` prints window_start
        (f"  {W0} ", W0),
        ("0", 0),
        ("now", NOW),
        ("NOW", NOW),
        ("-24h", NOW - 24 * H),
        ("-30m", NOW - 30 * 60_000),
        ("-7d", NOW - 7 * 24 * H),
        ("-1w", NOW - 7 * 24 * H),
        ("-90s", NOW - 90_000),
        ("-500ms", NOW - 500),
        ("now-2h", NOW - 2 * H),
        ("-0h", NOW),
    ],
)
def test_parse_time_ms_accepts_iso_epoch_and_relative(text: str, expected: int) -> None:
    assert parse_time_ms(text, NOW) == expected


@pytest.mark.parametrize(
    "text", ["", "  ", "yesterday", "+1h", "24h", "-24", "-24y", "2026-13-01", "2026-11-20T25:00", "1.5e12", "-"]
)
def test_parse_time_ms_rejects_with_usage_error(text: str) -> None:
    with pytest.raises(QueryInputError) as info:
        parse_time_ms(text, NOW)
    assert exit_code(info.value) == BAD_INPUT
    assert "\n" not in str(info.value)


@given(st.integers(min_value=0, max_value=4_102_444_800_000))
def test_utc_iso_round_trips_to_the_second(ms: int) -> None:
    assert parse_time_ms(utc_iso(ms), NOW) == ms - ms % 1000


def test_error_classes_carry_their_exit_codes() -> None:
    assert [exit_code(cls("x")) for cls in (QueryInputError, NothingFound, BackendUnavailable)] == [
        BAD_INPUT,
        REFUSED,
        UNREACHABLE,
    ]


# --------------------------------------------------------------------------- latest revisions


@pytest.mark.parametrize(
    ("rows", "expected_revisions"),
    [
        ([row(W0, "a", revision=1)], {(W0, "a"): 1}),
        ([row(W0, "a", revision=1), row(W0, "a", revision=3), row(W0, "a", revision=2)], {(W0, "a"): 3}),
        ([row(W0, "a", revision=2), row(W0, "a", revision=1)], {(W0, "a"): 2}),
        (
            [row(W0, "a", revision=2), row(W0 + H, "a", revision=1), row(W0, "b", revision=5)],
            {(W0, "a"): 2, (W0 + H, "a"): 1, (W0, "b"): 5},
        ),
    ],
)
def test_latest_revisions_keeps_the_highest_revision_per_key(rows: list[dict], expected_revisions: dict) -> None:
    latest = latest_revisions(rows)
    assert {(r["window_start"], r["term"]): r["revision"] for r in latest} == expected_revisions
    assert [(r["window_start"], r["term"]) for r in latest] == sorted(expected_revisions)


def test_latest_revisions_takes_the_whole_row_of_the_latest_revision() -> None:
    old = row(W0, "bram", articles=3, rank=1, revision=1)
    new = row(W0, "bram", articles=4, rank=2, revision=2, examples=["late article"])
    assert latest_revisions([new, old]) == [new]


def test_equal_revisions_keep_the_first_row_seen() -> None:
    # Only the revision decides; emitted_at does not (the job never writes a revision twice).
    first = row(W0, "a", revision=2, emitted_at=20, articles=1)
    second = row(W0, "a", revision=2, emitted_at=10, articles=2)
    assert latest_revisions([first, second])[0]["articles"] == 1
    assert latest_revisions([second, first])[0]["articles"] == 2


@given(
    st.lists(
        st.tuples(st.integers(0, 3), st.sampled_from(["a", "b", "c"]), st.integers(1, 5)),
        min_size=1,
        max_size=30,
        unique=True,
    ),
    st.randoms(use_true_random=False),
)
def test_latest_revisions_ignores_arrival_order(keys: list[tuple[int, str, int]], rnd: random.Random) -> None:
    rows = [row(W0 + w * H, term, revision=rev) for w, term, rev in keys]
    shuffled = rows[:]
    rnd.shuffle(shuffled)
    assert latest_revisions(shuffled) == latest_revisions(rows)
    expected = {}
    for w, term, rev in keys:
        expected[(W0 + w * H, term)] = max(rev, expected.get((W0 + w * H, term), 0))
    assert {(r["window_start"], r["term"]): r["revision"] for r in latest_revisions(rows)} == expected


# --------------------------------------------------------------------------- selections

ROWS = [
    row(W0, "storm", articles=3, rank=2),
    row(W0, "bram", articles=3, rank=1),
    row(W0, "cup", articles=2, rank=3),
    row(W0, "ahead", articles=1, rank=None),
    row(W0, "feed:https://a.example/rss", articles=3),
    row(W0, "feed:https://b.example/rss", articles=2),
    row(W0 + H, "bram", articles=4, rank=1, revision=2),
    row(W0 + H, "Zürich", articles=2, rank=2),
    row(W0 + H, "feed:https://a.example/rss", articles=4, revision=2),
    row(W0 + 2 * H, "bram", articles=1, rank=None),
]


@pytest.mark.parametrize(
    ("window", "k", "terms"),
    [
        (W0, 10, ["bram", "storm", "cup"]),
        (W0, 2, ["bram", "storm"]),
        (W0, 1, ["bram"]),
        (W0 + H, 5, ["bram", "Zürich"]),
        (W0 + 2 * H, 5, []),  # only unranked rows
        (W0 + 9 * H, 5, []),
    ],
)
def test_top_terms_orders_by_rank_and_leaves_out_unranked(window: int, k: int, terms: list[str]) -> None:
    top = top_terms(ROWS, window, k)
    assert [r["term"] for r in top] == terms
    assert [r["rank"] for r in top] == sorted(r["rank"] for r in top)


def test_top_terms_breaks_equal_ranks_by_term() -> None:
    rows = [row(W0, "b", rank=1), row(W0, "a", rank=1), row(W0, "c", rank=0)]
    assert [r["term"] for r in top_terms(rows, W0, 3)] == ["c", "a", "b"]


@pytest.mark.parametrize("k", [0, -1])
def test_top_terms_needs_a_positive_k(k: int) -> None:
    with pytest.raises(QueryInputError):
        top_terms(ROWS, W0, k)


@pytest.mark.parametrize(
    ("at", "expected_start"),
    [
        (None, W0 + 2 * H),  # latest
        (W0, W0),
        (W0 + H, W0 + H),
        (W0 + H + 1, W0 + H),  # inside a window: that window
        (W0 + 2 * H - 1, W0 + H),
        (W0 + 3 * H - 1, W0 + 2 * H),
    ],
)
def test_resolve_window_exact_containing_or_latest(at: int | None, expected_start: int) -> None:
    window = resolve_window(ROWS, at)
    assert (window.window_start, window.window_end) == (expected_start, expected_start + H)


@pytest.mark.parametrize("at", [W0 - 1, W0 + 3 * H, 0])
def test_resolve_window_outside_the_data_is_nothing_found(at: int) -> None:
    with pytest.raises(NothingFound, match="no window at .* 3 windows from 2026-11-20T06:00:00Z"):
        resolve_window(ROWS, at)


def test_resolve_window_without_rows_is_no_data() -> None:
    with pytest.raises(NothingFound, match="no trend rows"):
        resolve_window([], None)


def test_windows_summary_counts_terms_without_feeds_and_articles_from_feeds() -> None:
    assert windows_summary(ROWS) == [
        {"window_start": W0, "window_end": W0 + H, "window_start_utc": "2026-11-20T06:00:00Z",
         "terms": 4, "articles": 5, "max_revision": 1},
        {"window_start": W0 + H, "window_end": W0 + 2 * H, "window_start_utc": "2026-11-20T07:00:00Z",
         "terms": 2, "articles": 4, "max_revision": 2},
        {"window_start": W0 + 2 * H, "window_end": W0 + 3 * H, "window_start_utc": "2026-11-20T08:00:00Z",
         "terms": 1, "articles": 0, "max_revision": 1},
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("term", "since", "until", "windows"),
    [
        ("bram", None, None, [W0, W0 + H, W0 + 2 * H]),
        ("BRAM", None, None, [W0, W0 + H, W0 + 2 * H]),  # case-folded match
        (" bram ", None, None, [W0, W0 + H, W0 + 2 * H]),
        ("zürich", None, None, [W0 + H]),
        ("ZÜRICH", None, None, [W0 + H]),
        ("bram", W0 + H, None, [W0 + H, W0 + 2 * H]),  # window_end > since
        ("bram", W0 + H - 1, None, [W0, W0 + H, W0 + 2 * H]),
        ("bram", None, W0 + H, [W0]),  # window_start < until
        ("bram", None, W0 + H + 1, [W0, W0 + H]),
        ("bram", W0 + 30 * 60_000, W0 + 90 * 60_000, [W0, W0 + H]),
        ("feed:https://a.example/rss", None, None, [W0, W0 + H]),
    ],
)
def test_term_history_matches_and_filters_by_overlap(
    term: str, since: int | None, until: int | None, windows: list[int]
) -> None:
    assert [r["window_start"] for r in term_history(ROWS, term, since, until)] == windows


def test_unknown_term_names_close_matches() -> None:
    with pytest.raises(NothingFound, match=r"unknown term 'brm'.*close: bram"):
        term_history(ROWS, "brm")


def test_term_without_rows_in_range_is_nothing_found() -> None:
    with pytest.raises(NothingFound, match="'bram' has no rows in"):
        term_history(ROWS, "bram", since_ms=W0 + 5 * H)


def test_term_since_not_before_until_is_a_usage_error() -> None:
    with pytest.raises(QueryInputError):
        term_history(ROWS, "bram", since_ms=W0 + H, until_ms=W0 + H)


def test_feed_counts_per_window_and_feed() -> None:
    assert [(r["window_start"], r["feed"], r["articles"]) for r in feed_counts(ROWS)] == [
        (W0, "https://a.example/rss", 3),
        (W0, "https://b.example/rss", 2),
        (W0 + H, "https://a.example/rss", 4),
    ]


# --------------------------------------------------------------------------- formats

TOP = top_terms(ROWS, W0, 3)


def test_json_is_a_list_of_output_rows_in_field_order() -> None:
    data = json.loads(render("top", [{**r, "window_date": "2026-11-20"} for r in TOP], "json"))
    assert [list(d) for d in data] == [list(ROW_FIELDS)] * 3  # extras such as window_date are left out
    assert data == [{f: r[f] for f in ROW_FIELDS} for r in TOP]


def test_json_keeps_non_ascii_and_null() -> None:
    text = format_json([{"term": "Zürich", "rank": None}])
    assert "Zürich" in text and json.loads(text) == [{"term": "Zürich", "rank": None}]


@pytest.mark.parametrize("kind", ["top", "term"])
def test_csv_has_the_row_fields_null_as_empty_and_lists_as_json(kind: str) -> None:
    rows = [row(W0, 'say "hi", ok', rank=None, examples=["a, b", 'c "d"'])] + TOP
    text = render(kind, rows, "csv")
    parsed = list(csv.DictReader(io.StringIO(text)))
    assert list(parsed[0]) == list(ROW_FIELDS)
    assert parsed[0]["term"] == 'say "hi", ok'
    assert parsed[0]["rank"] == ""
    assert json.loads(parsed[0]["examples"]) == ["a, b", 'c "d"']
    assert [p["rank"] for p in parsed[1:]] == ["1", "2", "3"]
    assert not text.endswith("\n")


def test_csv_of_windows_and_feeds_use_their_own_fields() -> None:
    assert render("windows", windows_summary(ROWS), "csv").splitlines()[0] == (
        "window_start,window_end,window_start_utc,terms,articles,max_revision"
    )
    assert render("feeds", feed_counts(ROWS), "csv").splitlines()[0] == (
        "window_start,window_end,window_start_utc,feed,articles,revision"
    )


def test_table_aligns_columns_under_their_headers() -> None:
    lines = render("top", TOP, "table").splitlines()
    assert lines[0].split() == ["rank", "term", "articles", "feeds", "baseline", "score", "rev", "also", "example"]
    assert [line.split()[:2] for line in lines[1:]] == [["1", "bram"], ["2", "storm"], ["3", "cup"]]
    # right-aligned numbers end under the end of their header
    end = lines[0].index("articles") + len("articles")
    assert all(line[end - 1] == "3" or line[end - 1] == "2" for line in lines[1:])
    assert all(line == line.rstrip() for line in lines)


def test_table_renders_null_rank_utc_times_and_clips_examples() -> None:
    long = row(W0, "x", rank=None, examples=["y" * 200])
    term_line = render("term", [long], "table").splitlines()[1]
    assert term_line.startswith("2026-11-20 06:00") and f"{W0}" in term_line and " - " in term_line
    top_line = format_table([long], TABLE_COLUMNS["top"]).splitlines()[1]
    assert top_line.split()[0] == "-" and top_line.endswith("y…") and len(top_line) < 120


def test_unknown_format_is_a_usage_error() -> None:
    with pytest.raises(QueryInputError):
        render("top", TOP, "xml")


def test_empty_csv_is_just_the_header() -> None:
    assert format_csv([], ["a", "b"]) == "a,b"
