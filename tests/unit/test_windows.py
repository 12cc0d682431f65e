from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from udfs.windows import (
    SKETCH_SIZE,
    article_hash,
    sketch_similarity,
    fold_hits,
    merge_windows,
    MAX_WATERMARK,
    NO_WATERMARK,
    TermWindow,
    add_article,
    classify_lateness,
    cleanup_time,
    expiry_time,
    fire_time,
    last_fired_window_start,
    window_end,
    window_start,
)

H = 3_600_000


@pytest.mark.parametrize(
    ("ts", "size", "start"),
    [(0, H, 0), (1, H, 0), (H - 1, H, 0), (H, H, H), (-1, H, -H), (-H, H, -H), (-H - 1, H, -2 * H), (7, 5, 5)],
)
def test_window_start_floors(ts: int, size: int, start: int) -> None:
    assert window_start(ts, size) == start
    assert window_end(start, size) == start + size


def test_time_rules() -> None:
    assert fire_time(0, H) == H - 1
    assert cleanup_time(0, H, 10) == H - 1 + 10
    assert expiry_time(0, H, 10, 3) == 4 * H - 1 + 10


@pytest.mark.parametrize(
    ("watermark", "last"),
    [(H - 2, -H), (H - 1, 0), (2 * H - 2, 0), (2 * H - 1, H), (NO_WATERMARK, window_start(NO_WATERMARK - H + 1, H))],
)
def test_last_fired_window_start(watermark: int, last: int) -> None:
    assert last_fired_window_start(watermark, H) == last


@pytest.mark.parametrize(
    ("ts", "watermark", "lateness", "late", "by"),
    [
        (10, NO_WATERMARK, 0, False, None),
        (10, H - 2, 0, False, -1),  # window [0, H) has not fired yet
        (10, H - 1, 0, True, 0),  # fired at H - 1; with no lateness the event missed it
        (10, H - 1, 1000, False, -1000),  # fired, but within lateness
        (10, H - 1 + 999, 1000, False, -1),
        (10, H - 1 + 1000, 1000, True, 0),  # cleanup happened at this watermark
        (10, 3 * H, 1000, True, 2 * H + 1 - 1000),
        (H, H - 1, 0, False, -H),  # next window
    ],
)
def test_classify_lateness(ts: int, watermark: int, lateness: int, late: bool, by: int | None) -> None:
    is_late, late_by = classify_lateness(ts, watermark, H, lateness)
    assert is_late is late
    if by is not None:
        assert late_by == by


def test_max_watermark_makes_everything_late() -> None:
    assert classify_lateness(10**15, MAX_WATERMARK, H, 10**9)[0]


def _fold(items: list[tuple[str, str, str, int]], k: int) -> TermWindow | None:
    agg = None
    for article_id, feed, title, ts in items:
        agg = add_article(agg, article_id=article_id, feed_url=feed, title=title, published_at=ts, k=k)
    return agg


def test_add_article() -> None:
    agg = _fold([("b", "f2", "B", 5), ("a", "f1", "A", 5), ("c", "f2", "C", 1)], k=2)
    hashes = tuple(sorted(article_hash(a) for a in "abc"))
    assert agg == TermWindow(3, (("f1", 1), ("f2", 2)), ((1, "c", "C"), (5, "a", "A")), hashes)
    assert agg.examples == ("C", "A") and agg.feeds == ("f1", "f2") and agg.first_seen == 1
    assert TermWindow.from_state(agg.to_state()) == agg
    assert _fold([("a", "f", "A", 1)], k=0) == TermWindow(1, (("f", 1),), (), (article_hash("a"),))


def test_sketch_keeps_the_smallest_hashes_and_compares_sets() -> None:
    ids = [f"url:{i}" for i in range(40)]
    agg = _fold([(a, "f", a, 1) for a in ids], k=1)
    assert agg.sketch == tuple(sorted(article_hash(a) for a in ids))[:SKETCH_SIZE]
    small_a = _fold([(a, "f", a, 1) for a in ids[:6]], k=1)
    small_b = _fold([(a, "f", a, 1) for a in ids[3:9]], k=1)
    assert sketch_similarity(small_a.sketch, small_b.sketch) == 3 / 9  # exact below SKETCH_SIZE
    assert sketch_similarity(small_a.sketch, small_a.sketch) == 1.0
    assert sketch_similarity((), ()) == 0.0
    assert sketch_similarity(agg.sketch, agg.sketch) == 1.0


items_strategy = st.lists(
    st.tuples(st.sampled_from("fghij"), st.text(max_size=5), st.integers(0, 20)), min_size=1, max_size=30
)


@settings(max_examples=200, deadline=None)
@given(items_strategy, st.integers(0, 4), st.randoms(use_true_random=False))
def test_fold_is_independent_of_arrival_order(raw: list[tuple[str, str, int]], k: int, rnd: random.Random) -> None:
    items = [(f"id{i}", feed, title, ts) for i, (feed, title, ts) in enumerate(raw)]
    shuffled = items[:]
    rnd.shuffle(shuffled)
    a, b = _fold(items, k), _fold(shuffled, k)
    assert a == b
    assert a is not None
    assert a.articles == len(items)
    assert a.feeds == tuple(sorted({f for _, f, _, _ in items}))
    expected_best = sorted((ts, i, t) for i, _, t, ts in items)[:k]
    assert list(a.best) == expected_best


_articles = st.lists(
    st.tuples(st.integers(0, 50), st.sampled_from(["f1", "f2", "f3"]), st.sampled_from(["t", "u"])),
    max_size=12,
)


@settings(max_examples=200, deadline=None)
@given(_articles, st.integers(0, 12), st.integers(0, 4), st.randoms(use_true_random=False))
def test_counting_upstream_then_merging_equals_adding_one_by_one(articles, cut, k, rnd) -> None:
    """The job counts a window's on-time articles in the JVM (fold_hits) and merges the rest in
    (merge_windows / add_article) in any order: the aggregate must be the one-by-one fold's."""
    hits = [(published_at, f"a{i}", title, feed) for i, (published_at, feed, title) in enumerate(articles)]
    expected = None
    for p, a, t, f in hits:
        expected = add_article(expected, article_id=a, feed_url=f, title=t, published_at=p, k=k)
    rnd.shuffle(hits)
    counted, rest = hits[:cut], hits[cut:]
    got = fold_hits(counted, k) if counted else None
    for p, a, t, f in rest:
        got = add_article(got, article_id=a, feed_url=f, title=t, published_at=p, k=k)
    assert got == expected
    if counted and rest:
        # Two upstream counts of disjoint articles merge to the same aggregate as well.
        assert merge_windows(fold_hits(rest, k), fold_hits(counted, k), k) == expected
