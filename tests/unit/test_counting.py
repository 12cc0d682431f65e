"""The counting steps the job's Python operators wrap (udfs/counting.py)."""

from __future__ import annotations

import random

from udfs.buckets import bucket_keys
from udfs.counting import (
    ArticleCounts,
    ArticleHit,
    TermHistory,
    article_bucket_key,
    by_term_bucket,
    count_hits,
    join_terms,
    split_terms,
)
from udfs.windows import TermWindow, add_article, expiry_time, fire_time

H = 3_600_000
W0 = 1_795_132_800_000  # an hour boundary
F1, F2 = "https://one.example/rss", "https://two.example/rss"


def hit(ws: int, n: int, feed: str = F1, terms: tuple[str, ...] = ("storm",), minute: int = 1) -> ArticleHit:
    return ArticleHit(ws, f"a{n}", feed, f"title {n}", ws + minute * 60_000, join_terms(terms))


def test_terms_round_trip_with_the_feed_term_rebuilt() -> None:
    terms = ("feed:" + F1, "storm", "storm bram", "tag:home")
    h = ArticleHit(W0, "a", F1, "t", W0, join_terms(terms))
    assert "feed:" not in h.terms
    assert sorted(split_terms(h)) == sorted(terms)
    assert split_terms(ArticleHit(W0, "a", F1, "t", W0, "")) == ["feed:" + F1]


def test_article_bucket_keys_are_the_bucket_labels_and_spread() -> None:
    keys = {article_bucket_key(f"url:{i}", 4) for i in range(200)}
    assert keys == set(bucket_keys(4))


def test_count_hits_equals_the_article_fold_in_any_order() -> None:
    hits = [hit(W0, i, F1 if i % 3 else F2, ("storm", "bram") if i % 2 else ("storm",), minute=i % 50) for i in range(30)]
    expected: dict[str, TermWindow] = {}
    for h in hits:
        for term in split_terms(h):
            expected[term] = add_article(
                expected.get(term), article_id=h.article_id, feed_url=h.feed_url, title=h.title,
                published_at=h.published_at, k=3,
            )
    shuffled = hits[:]
    random.Random(4).shuffle(shuffled)
    assert count_hits(hits, 3) == expected == count_hits(shuffled, 3)


def test_by_term_bucket_partitions_the_terms() -> None:
    counts = count_hits([hit(W0, i, terms=(f"t{i}", "storm")) for i in range(20)], 1)
    grouped = by_term_bucket(counts, 4)
    assert set(grouped) <= set(bucket_keys(4))
    flat = [term for partial in grouped.values() for term, _ in partial]
    assert sorted(flat) == sorted(counts)


def test_article_counts_fire_only_due_windows_and_keep_the_rest() -> None:
    counts = ArticleCounts(H, 3, 4)
    assert counts.add(hit(W0, 1)) == fire_time(W0, H)
    assert counts.add(hit(W0, 2)) is None  # timer already asked for
    assert counts.add(hit(W0 + H, 3)) == fire_time(W0 + H, H)
    out, remaining = counts.fire(fire_time(W0, H))
    assert remaining == [hit(W0 + H, 3)]
    assert {ws for _, ws, _ in out} == {W0}
    merged = {term: agg for _, _, partial in out for term, agg in partial}
    assert merged["storm"].articles == 2
    # A late hit for the fired window starts a new partial with a timer that is due at once.
    assert counts.add(hit(W0, 4)) == fire_time(W0, H)
    out, remaining = counts.fire(fire_time(W0 + H, H))
    assert {ws for _, ws, _ in out} == {W0, W0 + H}
    assert remaining == []
    assert counts.fire(fire_time(W0 + 5 * H, H)) == ([], None)


def test_article_counts_restore_rebuilds_open_windows() -> None:
    counts = ArticleCounts(H, 3, 4)
    for i in range(5):
        counts.add(hit(W0, i))
    restored = ArticleCounts(H, 3, 4)
    restored.restore([hit(W0, i) for i in range(5)])
    assert restored.fire(fire_time(W0, H)) == counts.fire(fire_time(W0, H))


def _partial(ws: int, *hits: ArticleHit):
    return tuple(sorted(count_hits(list(hits), 3).items()))


def test_term_history_emits_on_fire_and_refreshes_later_fired_windows() -> None:
    history = TermHistory(H, 2 * H, n=2, k=3)
    _, timers = history.merge(W0 + H, _partial(W0 + H, hit(W0 + H, 1), hit(W0 + H, 2)))
    assert timers == [fire_time(W0 + H, H), expiry_time(W0 + H, H, 2 * H, 2)]
    assert history.fire(fire_time(W0, H))[0] == []  # not due yet
    emitted, _, done = history.fire(fire_time(W0 + H, H))
    assert [ws for ws, _ in emitted] == [W0 + H] and done == [W0 + H]
    storm = dict(emitted[0][1])["storm"]
    assert (storm.articles, storm.baseline) == (2, 0.0)
    # Late data for the earlier window: it and the fired window after it (baseline) are emitted again.
    history.merge(W0, _partial(W0, hit(W0, 3)))
    emitted, _, _ = history.fire(fire_time(W0, H), fire_time(W0 + H, H) + 5)
    assert [ws for ws, _ in emitted] == [W0, W0 + H]
    assert dict(emitted[1][1])["storm"].baseline == 0.5
    assert history.fire(fire_time(W0 + 2 * H, H)) == ([], [], [])


def test_term_history_expires_counts_and_restores() -> None:
    history = TermHistory(H, 0, n=1, k=3)
    updates, _ = history.merge(W0, _partial(W0, hit(W0, 1)))
    copy = TermHistory(H, 0, n=1, k=3)
    copy.restore(list(updates.items()), [(W0, t) for t in history.changed[W0]], None)
    assert copy.fire(fire_time(W0, H)) == history.fire(fire_time(W0, H))
    _, removed, _ = history.fire(expiry_time(W0, H, 0, 1))
    assert sorted(removed) == sorted(updates)
    assert history.by_term == {} and history.by_window == {}


def test_intake_gives_a_dead_letter_or_the_article_columns() -> None:
    import json

    from tests.eventgen import encode, event
    from udfs.intake import intake, late_output

    bad = intake(b"{oops", "t", 1, 7, include_summary=False, buckets=4)
    assert bad.dlq is not None and bad.article_id is None
    assert json.loads(bad.dlq)["reason_code"] == "malformed_json"
    assert (json.loads(bad.dlq)["partition"], json.loads(bad.dlq)["offset"]) == (1, 7)
    value = encode(event("url:a1", feed_url=F1, title="Storm hits coast", published_at=W0 + 5))
    good = intake(value, "t", 0, 3, include_summary=False, buckets=4)
    assert good.dlq is None and good.key in bucket_keys(4)
    assert (good.article_id, good.feed_url, good.published_at) == ("url:a1", F1, W0 + 5)
    assert set(split_terms(ArticleHit(W0, "url:a1", F1, "", W0, good.terms))) >= {"storm", "coast", "feed:" + F1}
    late = json.loads(late_output(value, 12, W0 + 2 * H, W0, "t", 0, 3))
    assert (late["late_by_ms"], late["window_start"], late["event"]["article_id"]) == (12, W0, "url:a1")
