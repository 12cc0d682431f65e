"""The operators' step functions (udfs/operators.py), one decision at a time.

The property tests (test_oracle_props.py) drive the same steps through whole
logs against the batch oracle; these pin the individual rules.
"""

from __future__ import annotations

import json

import pytest

from tests.eventgen import BASE_MS, event
from udfs.operators import (
    REJECTED,
    archive_key,
    counted_bucket,
    folded_bucket,
    BucketWindows,
    dedup_verdict,
    parse_columns,
    parse_state_key,
    partition_watermark,
    rank_fire,
    rank_flush_time,
    rank_rows,
    rank_state,
    rank_timers,
    route_terms,
    side_record,
    state_key,
)
from udfs.terms import article_terms
from udfs.validate import parse_event
from udfs.validate import Article
from udfs.windows import (
    MAX_WATERMARK, NO_WATERMARK, TermWindow, add_article, cleanup_time, expiry_time, fire_time,
)

H = 3_600_000


def article(article_id: str = "url:a", published_at: int = 10 * H) -> Article:
    return Article(
        event_id="e", article_id=article_id, feed_url="https://f.example/rss", feed_title="F", url=None,
        title="storm", summary="", tags=(), language="en", published_at=published_at,
        published_at_source="published", fetched_at=published_at,
    )


def add(bucket: BucketWindows, ws: int, terms: tuple[str, ...], article_id: str = "url:a"):
    return bucket.add(ws, terms, article_id=article_id, feed_url="https://f.example/rss", title="t", published_at=ws)


def test_partition_watermark_is_the_one_before_the_event_and_writes_only_a_new_max() -> None:
    assert partition_watermark(None, 5 * H, 0) == (NO_WATERMARK, 5 * H)
    assert partition_watermark(5 * H, 6 * H, 10) == (5 * H - 11, 6 * H)
    assert partition_watermark(6 * H, 5 * H, 10) == (6 * H - 11, None)  # out of order: no write


def test_parse_columns_carry_what_the_jvm_needs_and_the_terms_round_trip() -> None:
    # A feed URL holding a control character and a tag with spaces: JSON carries any term.
    raw = json.dumps(event(feed_url="https://f.example/\x1frss", title="Storm Bram hits", tags=["Local News"])).encode()
    ok, article_id, feed_url, title, published_at, terms = parse_columns(raw, include_summary=False)
    parsed = parse_event(raw)
    assert ok and (article_id, feed_url, title, published_at) == (
        parsed.article_id, parsed.feed_url, parsed.title, parsed.published_at,
    )
    assert route_terms(terms) == article_terms(parsed) and "storm bram" in route_terms(terms)
    assert parse_columns(b"{not json", include_summary=False) == REJECTED


def test_side_records_name_the_reason_or_rebuild_the_event() -> None:
    key, dlq = side_record(
        "dlq", b"{not json", "t", 2, 7, late_by_ms=None, watermark=None, size_ms=H,
    )
    record = json.loads(dlq)
    assert key is None and record["reason"].startswith("malformed_json") and (record["partition"], record["offset"]) == (2, 7)
    raw = json.dumps(event(article_id="url:x", published_at=BASE_MS + 5)).encode()
    key, late = side_record("late", raw, "t", 1, 3, late_by_ms=42, watermark=BASE_MS + 2 * H, size_ms=H)
    record = json.loads(late)
    assert key == "url:x" and record["window_start"] == BASE_MS and record["late_by_ms"] == 42
    assert record["event"] == parse_event(raw).to_event()
    # The JVM and Python disagreeing on a record is a bug, never a silent drop.
    with pytest.raises(ValueError):
        side_record("dlq", raw, "t", 1, 3, late_by_ms=None, watermark=None, size_ms=H)
    with pytest.raises(ValueError):
        side_record("late", b"{not json", "t", 1, 3, late_by_ms=1, watermark=1, size_ms=H)


def test_dedup_verdict_first_copy_then_lateness() -> None:
    on_time = dedup_verdict(False, article(published_at=10 * H), 10 * H, H, 0)
    assert (on_time.kind, on_time.write_seen) == ("ok", True)
    again = dedup_verdict(True, article(published_at=10 * H), 10 * H, H, 0)
    assert again.kind == "duplicate"
    late = dedup_verdict(False, article(published_at=8 * H), 10 * H, H, 0)
    assert late.kind == "late" and late.late_by_ms > 0 and late.write_seen  # later copies are duplicates


def test_state_keys_round_trip_terms_with_spaces() -> None:
    assert parse_state_key(state_key(-H, "new york")) == (-H, "new york")


def test_a_window_counts_until_its_timer_fires_then_late_data_refreshes_it_and_the_next_baseline() -> None:
    bucket = BucketWindows(H, 2 * H, 1, 2)
    step = add(bucket, 0, ("storm",))
    assert sorted(step.timers) == [fire_time(0, H), expiry_time(0, H, 2 * H, 1)]
    assert step.out == [] and set(step.puts) == {state_key(0, "storm")}
    add(bucket, H, ("storm",), "url:b")
    # Not fired yet: counted, no output, however far ahead the record's own partition is.
    assert add(bucket, 0, ("storm",), "url:c").out == []
    fired = bucket.on_timer(fire_time(0, H))
    assert [(ws, [(t, c.articles) for t, c in cands]) for ws, cands in fired.out] == [(0, [("storm", 2)])]
    assert bucket.on_timer(fire_time(H, H)).out[0][1][0][1].baseline == 2.0
    # Late within lateness: window 0 and window 1 (its baseline includes window 0) get new candidates.
    late = add(bucket, 0, ("storm",), "url:d")
    assert [(ws, cands[0][1].articles, cands[0][1].baseline) for ws, cands in late.out] == [(0, 3, 0.0), (H, 1, 3.0)]
    assert late.watermark == fire_time(H, H) and late.timers == []


def test_the_timer_watermark_survives_a_restore() -> None:
    bucket = BucketWindows(H, 2 * H, 1, 2)
    puts = {}
    for ws, article_id in ((0, "url:a"), (H, "url:b")):
        puts.update(add(bucket, ws, ("storm",), article_id).puts)
    bucket.on_timer(fire_time(0, H))
    restored = BucketWindows(H, 2 * H, 1, 2).load(puts.items(), bucket.timer_watermark)
    assert restored.by_term == bucket.by_term
    # Window 0 has fired: a late article refreshes it at once, on the restored instance too.
    assert [ws for ws, _ in add(restored, 0, ("storm",), "url:c").out] == [0]
    assert add(BucketWindows(H, 2 * H, 1, 2).load(puts.items()), 0, ("storm",), "url:c").out == []


def test_expiry_drops_the_window_from_memory_and_names_the_state_keys() -> None:
    bucket = BucketWindows(H, 0, 1, 2)
    add(bucket, 0, ("storm", "rally"))
    step = bucket.on_timer(expiry_time(0, H, 0, 1))
    assert sorted(step.removes) == [state_key(0, "rally"), state_key(0, "storm")]
    assert bucket.size() == 0 and bucket.by_term == {}


def test_rank_timers_and_fire() -> None:
    # Rows are kept until term-windows drops the window's counts, past its own lateness.
    assert rank_timers(0, NO_WATERMARK, H, 0, 2) == (fire_time(0, H), expiry_time(0, H, 0, 2))
    assert expiry_time(0, H, H, 2) > cleanup_time(0, H, H)
    assert rank_timers(0, MAX_WATERMARK, H, 0, 2)[0] == MAX_WATERMARK
    candidate = (2, 1, 0.0, ("storm",), (("f", 2),), (1, 2), 0)
    step = rank_fire({}, {"storm": candidate}, fire_time(0, H), 0, size_ms=H, lateness_ms=H, n=2, min_support=1,
                     emitted_at=7)
    assert [(r.term, r.rank, r.revision) for r in step.rows] == [("storm", 1, 1)] and not step.clear
    previous = {row.term: (row, c) for row, c in step.changed}
    later = rank_fire(previous, {"storm": (3, 1, 0.0, ("storm",), (("f", 3),), (1, 2, 3), 0)}, cleanup_time(0, H, H), 0, size_ms=H,
                      lateness_ms=H, n=2, min_support=1, emitted_at=8)
    assert [(r.articles, r.revision) for r in later.rows] == [(3, 2)] and not later.clear
    same = rank_fire(previous, {"storm": candidate}, expiry_time(0, H, H, 2), 0, size_ms=H, lateness_ms=H, n=2,
                     min_support=1, emitted_at=9)
    assert same.rows == [] and same.clear


def test_the_rankers_state_gives_back_the_rows_it_was_made_of() -> None:
    candidates = {
        "storm": (3, 2, 0.5, ("Storm hits", "Storm grows"), (("f", 2), ("g", 1)), (1, 2, 3), 5, 1.5, ("u", "")),
        "rally": (1, 1, 0.0, ("Rally",), (("g", 1),), (4,), 7),
    }
    step = rank_fire({}, candidates, fire_time(0, H), 0, size_ms=H, lateness_ms=H, n=2, min_support=1, emitted_at=7)
    rows = rank_rows(rank_state(step.changed), 0, H)
    assert {t: (row.revision, row.content(), c) for t, (row, c) in rows.items()} == {
        row.term: (row.revision, row.content(), c) for row, c in step.changed
    }
    # The earlier layout, (TrendRow, candidate as a tuple), reads as it was.
    old = {row.term: (row, tuple(c)) for row, c in step.changed}
    assert rank_rows(old, 0, H) == {row.term: (row, c) for row, c in step.changed}
    # A revision ranked from the rebuilt rows is the one ranked from the rows themselves.
    news = {"rally": (2, 2, 0.0, ("Rally", "Rally on"), (("f", 1), ("g", 1)), (4, 9), 7)}
    expected = rank_fire(old, news, fire_time(0, H) + 1, 0, size_ms=H, lateness_ms=H, n=2, min_support=1,
                         emitted_at=8)
    got = rank_fire(rows, news, fire_time(0, H) + 1, 0, size_ms=H, lateness_ms=H, n=2, min_support=1, emitted_at=8)
    assert got == expected and got.changed


@pytest.mark.parametrize(
    ("now", "wait", "expected"),
    [(1_000, 30_000, 31_000), (1_001, 30_000, 32_000), (1_999, 1_000, 3_000), (0, 0, 0)],
)
def test_rank_flush_time_is_a_whole_second_at_least_the_wait_later(now: int, wait: int, expected: int) -> None:
    assert rank_flush_time(now, wait) == expected
    assert rank_flush_time(now, wait) >= now + wait and rank_flush_time(now, wait) % 1000 == 0


def test_a_counted_bucket_folds_each_term_as_its_articles_one_by_one_would() -> None:
    hits = [
        ["storm", 10 * H + 5, "url:b", "Storm b", "f2"], ["rain", 10 * H + 9, "url:c", "Rain c", "f1"],
        ["storm", 10 * H + 1, "url:a", "Storm a", "f1"], ["rain", 10 * H + 2, "url:a", "Storm a", "f1"],
    ]
    ws, counted = counted_bucket(json.dumps(hits), H, 3)
    assert ws == 10 * H and list(counted) == ["rain", "storm"]
    for term, agg in counted.items():
        one_by_one = None
        for t, p, a, title, f in hits:
            if t == term:
                one_by_one = add_article(one_by_one, article_id=a, feed_url=f, title=title, published_at=p, k=3)
        assert agg == one_by_one


def test_a_folded_bucket_reads_the_aggregates_in_their_state_layout() -> None:
    # The JVM's fold (fold_term_hits) writes each term's aggregate as TermWindow.to_state() lays it out.
    _, counted = counted_bucket(json.dumps([
        ["storm", 10 * H + 5, "url:b", "Storm b", "f2"], ["storm", 10 * H + 1, "url:a", "Storm a", "f1"],
        ["rain", 10 * H + 2, "url:a", "Storm a", "f1"],
    ]), H, 3)
    folded = json.dumps([[term, *agg.to_state()] for term, agg in counted.items()])
    assert folded_bucket(folded) == counted
    assert folded_bucket("[]") == {}


def test_term_window_state_round_trip() -> None:
    agg = TermWindow(2, (("a", 1), ("b", 1)), ((1, "x", "t"),), (5, 9))
    assert TermWindow.from_state(agg.to_state()) == agg


def test_a_counted_window_fires_with_its_timer_and_articles_after_it_revise_it() -> None:
    bucket = BucketWindows(H, H, 2, 3)
    ws, counted = counted_bucket(
        json.dumps([["storm", 10 * H + 5, "url:b", "Storm b", "f2"], ["storm", 10 * H + 1, "url:a", "Storm a", "f1"]]),
        H, 3,
    )
    assert ws == 10 * H and (counted["storm"].articles, counted["storm"].feeds) == (2, ("f1", "f2"))
    step = bucket.add_counted(ws, counted)
    assert step.out == [] and fire_time(ws, H) in step.timers  # counted, fires with its timer
    fired = bucket.on_timer(fire_time(ws, H))
    assert [(w, [(t, c.articles, c.examples) for t, c in cands]) for w, cands in fired.out] == [
        (ws, [("storm", 2, ("Storm a", "Storm b"))])
    ]
    # An article for the fired window, within the lateness, revises it at once.
    late = add(bucket, ws, ("storm",), article_id="url:c")
    assert [(w, [(t, c.articles, c.feeds) for t, c in cands]) for w, cands in late.out] == [(ws, [("storm", 3, 3)])]


def _folded_json(counted: dict) -> str:
    """`fold_term_hits`' JSON of some aggregates (what `folded_bucket` reads back)."""
    return json.dumps([[term, *agg.to_state()] for term, agg in sorted(counted.items())])


def _apply(state: dict, step) -> None:
    """A step's writes, as the operator applies them to its map state."""
    state.update(step.puts)
    for key in step.removes:
        del state[key]  # a remove of a key never written would fail here


def test_a_counted_window_is_one_state_entry_until_a_late_article_changes_a_term() -> None:
    from udfs.operators import counted_key

    bucket = BucketWindows(H, H, 2, 3)
    ws, counted = counted_bucket(json.dumps([
        ["storm", 10 * H + 5, "url:b", "Storm b", "f2"], ["storm", 10 * H + 1, "url:a", "Storm a", "f1"],
        ["rally", 10 * H + 2, "url:a", "Storm a", "f1"],
    ]), H, 3)
    folded = _folded_json(counted)
    assert folded_bucket(folded) == counted
    state: dict = {}
    step = bucket.add_counted(ws, counted, folded)
    _apply(state, step)
    assert state == {counted_key(ws): folded} and step.out == []
    _apply(state, bucket.on_timer(fire_time(ws, H)))
    late = add(bucket, ws, ("storm",), article_id="url:c")
    _apply(state, late)
    assert set(state) == {counted_key(ws), state_key(ws, "storm")}
    # Restored in either order of the entries, the late article's count wins over the counted one.
    for items in (list(state.items()), list(reversed(state.items()))):
        restored = BucketWindows(H, H, 2, 3).load(items, bucket.timer_watermark)
        assert restored.by_term == bucket.by_term and restored.by_term["storm"][ws].articles == 3
        assert restored.counted_whole == bucket.counted_whole == {ws: {"storm"}}
    # A second counted record for a window with counts is written term by term.
    again = bucket.add_counted(ws, {"rally": counted["rally"]}, _folded_json({"rally": counted["rally"]}))
    assert set(again.puts) == {state_key(ws, "rally")}
    _apply(state, again)
    # Expiry removes the counted entry and each term's own, and nothing else.
    expiry = bucket.on_timer(expiry_time(ws, H, H, 2))
    assert sorted(expiry.removes) == sorted([counted_key(ws), state_key(ws, "storm"), state_key(ws, "rally")])
    _apply(state, expiry)
    assert list(state) == [archive_key(ws)] and bucket.counted_whole == {} and bucket.size() == 0


def test_expired_counts_stay_in_the_long_run_across_gaps_and_restores() -> None:
    from udfs.operators import archive_key

    D = 24 * H
    bucket = BucketWindows(D, 0, 1, 2)
    puts: dict = {}
    # "despite" on days 0 and 100 (a gap of 99 days without data), then day 200.
    for ws, article_id in ((0, "url:a"), (100 * D, "url:b"), (200 * D, "url:c")):
        puts.update(add(bucket, ws, ("despite",), article_id).puts)
    removed: list = []
    for ts in sorted({fire_time(w, D) for w in (0, 100 * D, 200 * D)} | {expiry_time(w, D, 0, 1) for w in (0, 100 * D)}):
        step = bucket.on_timer(ts)
        puts.update(step.puts)
        removed += step.removes
        for ws, cands in step.out:
            if ws == 200 * D:
                assert cands[0][1].longrun == 1.0 and cands[0][1].baseline == 0.0  # two windows with data, 1 each
    assert puts[archive_key(0)] == {"despite": 1} and state_key(0, "despite") in removed
    restored = BucketWindows(D, 0, 1, 2).load({k: v for k, v in puts.items() if k not in removed}.items())
    assert restored.archive == bucket.archive == {"despite": {0: 1, 100 * D: 1}}
    # The end of input drops the archive too.
    end = bucket.on_timer(2**63 - 1)
    assert archive_key(0) in end.removes and bucket.archive == {} and bucket.archive_by_window == {}
