from __future__ import annotations

import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from udfs.trend import (
    LONG_RUN_WINDOWS,
    STORY_DEPTH,
    Candidate,
    is_boilerplate,
    long_run_mean,
    long_run_windows,
    rank_window,
    revise,
    rows_to_refresh,
    score,
    term_candidate,
    window_volume,
)
from udfs.windows import TermWindow, article_hash

H = 3_600_000


@pytest.mark.parametrize(
    ("history", "n", "expected"),
    [
        ({}, 3, 0.0),
        ({-H: 3, -2 * H: 3, -3 * H: 3}, 3, 3.0),
        ({-H: 3}, 3, 1.0),  # missing windows count 0
        ({-H: 1}, 3, 0.333333),  # rounded to 6 decimals
        ({0: 99, H: 99, -4 * H: 99}, 3, 0.0),  # only the n previous windows count
        ({-H: 5}, 0, 0.0),
    ],
)
def test_baseline(history: dict[int, int], n: int, expected: float) -> None:
    counts = {w: _tw(a) for w, a in history.items()}
    counts.setdefault(0, _tw(1))
    assert term_candidate(counts, 0, H, n).baseline == expected


@pytest.mark.parametrize(
    ("articles", "base", "expected"),
    [
        (5, 0.0, 5.0),  # new term: score = articles
        (3, 3.0, 0.0),
        (1, 3.0, -1.0),
        (10, 3.0, 3.5),
        (2, 1.0, round(1 / math.sqrt(2), 6)),
    ],
)
def test_score(articles: int, base: float, expected: float) -> None:
    assert score(articles, base) == expected
    assert score(articles, base, feeds=articles) == expected  # one feed per article: spread = articles


def test_score_weighs_spread_and_volume() -> None:
    # The same six articles: from six outlets, from three, from one.
    assert score(6, 0.0, 6) > score(6, 0.0, 3) > score(6, 0.0, 1) == round(math.sqrt(6), 6)
    # A busy window expects more of every term.
    assert score(6, 2.0, 6, volume=2.0) < score(6, 2.0, 6) < score(6, 2.0, 6, volume=0.5)


def test_score_has_no_negative_zero() -> None:
    assert math.copysign(1.0, score(1, 1.0)) == 1.0


def _tw(articles: int, feeds: tuple[str, ...] = ("f",), titles: tuple[str, ...] = ("t",)) -> TermWindow:
    counts = tuple((f, articles // len(feeds) + (i < articles % len(feeds))) for i, f in enumerate(feeds))
    return TermWindow(articles, counts, tuple((i, f"url:https://x.example/{t}", t) for i, t in enumerate(titles)), (1, 2))


def test_term_candidate() -> None:
    counts = {0: _tw(2), -H: _tw(4), 3 * H: _tw(9), H: _tw(7, ("a", "b"), ("x", "y"))}
    assert term_candidate(counts, H, H, 2) == Candidate(
        7, 2, 3.0, ("x", "y"), (("a", 4), ("b", 3)), (1, 2), 0, links=("https://x.example/x", "https://x.example/y"),
    )
    assert term_candidate(counts, 3 * H, H, 2) == Candidate(
        9, 1, 3.5, ("t",), (("f", 9),), (1, 2), 0, links=("https://x.example/t",),
    )


def cand(
    articles: int, baseline: float = 0.0, *, feeds: dict[str, int] | None = None, ids: range | list[str] | None = None,
    first_seen: int = 0,
) -> Candidate:
    """A candidate with `articles` articles (ids `a0..`, or `ids`) from `feeds` (default: one feed each)."""
    feeds = feeds or {f"f{i}": 1 for i in range(articles)}
    assert sum(feeds.values()) == articles
    names = [f"a{i}" for i in (ids if ids is not None else range(articles))]
    sketch = tuple(sorted(article_hash(a) for a in names))[:16]
    return Candidate(articles, len(feeds), baseline, ("t",), tuple(sorted(feeds.items())), sketch, first_seen)


def test_rank_window_orders_and_breaks_ties_by_feeds_articles_first_seen() -> None:
    c = {
        "zeta": cand(4, ids=range(0, 4), first_seen=5),
        "alpha": cand(4, ids=range(10, 14), first_seen=9),  # same score and counts: zeta appeared first
        "mono": cand(4, feeds={"f": 4}, ids=range(20, 24)),  # same articles, one feed: lower score
        "tiny": cand(1, ids=range(30, 31)),  # below min_support
        "feed:x": cand(9, feeds={"x": 9}, ids=range(40, 49)),  # never ranked
    }
    ranked = rank_window(c, min_support=2)
    assert [t for t in sorted(ranked, key=lambda t: ranked[t].rank or 99) if ranked[t].rank] == ["zeta", "alpha", "mono"]
    assert ranked["tiny"].rank is None and ranked["feed:x"].rank is None
    assert ranked["zeta"].score == ranked["alpha"].score > ranked["mono"].score


def test_a_feeds_standing_vocabulary_never_ranks() -> None:
    # Feed "h" puts tag:home on all its articles, today and before; "storm" is news in it.
    c = {
        "feed:h": cand(8, 6.0, feeds={"h": 8}, ids=range(0, 8)),
        "feed:g": cand(3, 3.0, feeds={"g": 3}, ids=range(20, 23)),
        "tag:home": cand(8, 6.0, feeds={"h": 8}, ids=range(0, 8)),
        "storm": cand(5, 0.0, feeds={"h": 4, "g": 1}, ids=[0, 1, 2, 3, 20]),
    }
    feeds = {"h": c["feed:h"], "g": c["feed:g"]}
    assert is_boilerplate(c["tag:home"], feeds) and not is_boilerplate(c["storm"], feeds)
    ranked = rank_window(c, min_support=2)
    assert ranked["tag:home"].rank is None and ranked["storm"].rank == 1
    # A small feed whose day is one story: not standing vocabulary (no baseline for the term).
    assert not is_boilerplate(cand(3, 0.0, feeds={"g": 3}, ids=range(20, 23)), feeds)


def test_a_story_ranks_once_under_its_most_specific_term_with_aliases() -> None:
    c = {
        "storm": cand(6, ids=range(0, 6)),
        "bram": cand(5, ids=range(0, 5)),
        "storm bram": cand(5, ids=range(0, 5)),
        "cup final": cand(3, ids=range(50, 53)),
        "rain": cand(3, ids=[0, 60, 61]),  # shares one article with the story: its own entry
    }
    ranked = rank_window(c, min_support=2)
    assert ranked["storm bram"].rank == 1 and ranked["storm bram"].aliases == ("storm", "bram")
    assert ranked["storm"].rank is None and ranked["bram"].rank is None
    assert {ranked["cup final"].rank, ranked["rain"].rank} == {2, 3}
    assert ranked["cup final"].aliases == () and ranked["rain"].aliases == ()


def test_stories_are_merged_only_near_the_top() -> None:
    c = {f"t{i:03d}": cand(2, ids=[0, 1]) for i in range(STORY_DEPTH + 3)}
    ranked = rank_window(c, min_support=1)
    heads = [t for t, r in ranked.items() if r.rank is not None]
    # The top STORY_DEPTH are one story; the rest rank on their own.
    assert sorted(ranked[t].rank for t in heads) == [1, 2, 3, 4]
    assert len(next(ranked[t].aliases for t in heads if ranked[t].rank == 1)) == STORY_DEPTH - 1


def test_window_volume() -> None:
    assert window_volume({"a": cand(2)}) == 1.0  # no feed terms: no volume known
    assert window_volume({"feed:x": cand(8, 4.0, feeds={"x": 8})}) == 2.0
    assert window_volume({"feed:x": cand(9, 1.0, feeds={"x": 9})}) == 2.0  # clipped
    assert window_volume({"feed:x": cand(2, 8.0, feeds={"x": 2})}) == 0.5


@pytest.mark.parametrize(
    ("windows", "changed", "fired_upto", "n", "expected"),
    [
        ([0, H, 2 * H, 3 * H], 0, 3 * H, 2, [0, H, 2 * H]),
        ([0, H, 2 * H, 3 * H], 0, H, 2, [0, H]),  # 2H has not fired: computed when it fires
        ([0, 2 * H, 3 * H], 0, 3 * H, 2, [0, 2 * H]),  # no counts in H: no row there
        ([0, H], 0, 3 * H, 0, [0]),
        ([0, H], H, 0, 2, []),  # changed window not fired yet
    ],
)
def test_rows_to_refresh(windows: list[int], changed: int, fired_upto: int, n: int, expected: list[int]) -> None:
    counts = {w: _tw(1) for w in windows}
    assert rows_to_refresh(counts, changed, fired_upto, H, n) == expected


rows_strategy = st.dictionaries(
    st.text(alphabet="abcf:", min_size=1, max_size=6),
    st.tuples(st.integers(1, 5), st.integers(1, 5), st.integers(0, 3), st.integers(0, 40)),
    max_size=30,
)


@settings(max_examples=200, deadline=None)
@given(rows_strategy, st.integers(1, 4), st.randoms(use_true_random=False))
def test_ranks_are_a_deterministic_permutation(rows, min_support: int, rnd: random.Random) -> None:
    c = {
        t: cand(a, float(b), feeds={f"f{i}": 1 for i in range(a)}, ids=range(start, start + a))
        for t, (a, _, b, start) in rows.items()
    }
    ranked = rank_window(c, min_support)
    assert set(ranked) == set(c)
    positions = sorted(r.rank for r in ranked.values() if r.rank is not None)
    assert positions == list(range(1, len(positions) + 1))
    # Every eligible term is ranked or an alias of a ranked one, exactly once.
    eligible = {t for t, x in c.items() if x.articles >= min_support and not t.startswith("feed:")}
    covered = [t for r in ranked.values() if r.rank is not None for t in r.aliases]
    covered += [t for t, r in ranked.items() if r.rank is not None]
    assert sorted(covered) == sorted(eligible)
    items = list(c.items())
    rnd.shuffle(items)
    assert rank_window(dict(items), min_support) == ranked


def test_revise_emits_only_changes_with_revisions() -> None:
    c = {"alpha": cand(3, ids=range(0, 3)), "beta": cand(1, ids=range(10, 11))}
    changed = revise({}, c, 2, 0, H, emitted_at=10)
    assert [(r.term, r.rank, r.revision, r.emitted_at) for r, _ in changed] == [("alpha", 1, 1, 10), ("beta", None, 1, 10)]
    state = {r.term: (r, x) for r, x in changed}

    # same values again: nothing to emit
    assert revise(state, c, 2, 0, H, emitted_at=11) == []

    # beta overtakes alpha: both rows change (beta's counts, alpha's rank)
    changed3 = revise(state, {"beta": cand(5, ids=range(10, 15))}, 2, 0, H, emitted_at=12)
    assert [(r.term, r.articles, r.rank, r.revision) for r, _ in changed3] == [("alpha", 3, 2, 2), ("beta", 5, 1, 2)]
    state3 = {**state, **{r.term: (r, x) for r, x in changed3}}
    assert state3["alpha"][0].revision == 2 and state3["alpha"][0].window_end == H

    # a new term that does not change other ranks emits just itself
    changed4 = revise(state3, {"gamma": tuple(cand(1, ids=range(20, 21)))}, 2, 0, H, emitted_at=13)
    assert [(r.term, r.rank, r.revision) for r, _ in changed4] == [("gamma", None, 1)]


def test_revise_does_not_mutate_previous() -> None:
    state = {r.term: (r, x) for r, x in revise({}, {"a": cand(1)}, 1, 0, H, 0)}
    snapshot = dict(state)
    revise(state, {"a": cand(2)}, 1, 0, H, 0)
    assert state == snapshot


# -- the long run ------------------------------------------------------------------------------

D = 24 * H


@pytest.mark.parametrize(
    ("data_windows", "window", "lateness", "expected"),
    [
        ([], 10 * D, D, []),
        # Gaps are skipped, not counted: the last windows with data, however far back.
        ([0, 100 * D, 200 * D], 300 * D, D, [0, 100 * D, 200 * D]),
        # Never the window itself, nor one that can still change when it fires.
        ([8 * D, 9 * D, 10 * D], 10 * D, D, [8 * D, 9 * D]),
        ([8 * D, 9 * D, 10 * D], 10 * D, 2 * D, [8 * D]),
        ([8 * D, 9 * D, 10 * D], 10 * D, 0, [8 * D, 9 * D]),
        (list(range(0, 100 * D, D)), 100 * D, D, list(range(70 * D, 100 * D, D))),  # at most LONG_RUN_WINDOWS
    ],
)
def test_long_run_windows(data_windows: list[int], window: int, lateness: int, expected: list[int]) -> None:
    assert long_run_windows(set(data_windows), window, D, lateness) == expected
    assert len(expected) <= LONG_RUN_WINDOWS


def test_long_run_mean_counts_absent_windows_as_zero() -> None:
    counts = {0: 3, 2 * D: 1}
    assert long_run_mean(lambda w: counts.get(w, 0), [0, D, 2 * D]) == round(4 / 3, 6)
    assert long_run_mean(lambda w: 9, []) == 0.0


def test_an_everyday_word_needs_far_more_than_small_counts() -> None:
    # "despite" is in about 3 articles of every day with data; "pope" never was.  The same
    # five articles from five outlets: the new term trends, the everyday word does not.
    c = {
        "feed:x": cand(50, feeds={"x": 50}, ids=range(100, 150))._replace(longrun=50.0),
        "despite": cand(5, ids=range(0, 5))._replace(longrun=3.0),
        "pope": cand(5, ids=range(10, 15)),
    }
    ranked = rank_window(c, min_support=2)
    assert ranked["pope"].rank == 1 and ranked["despite"].rank == 2
    assert ranked["pope"].score == round(5.0, 6)
    assert ranked["despite"].score == round((5 - 3) / math.sqrt(4), 6)
    # A day twice as busy as the long run expects twice the everyday word.
    busy = {**c, "feed:x": c["feed:x"]._replace(articles=100)}
    assert rank_window(busy, min_support=2)["despite"].score == round((5 - 6) / math.sqrt(7), 6)
    # The recent baseline still counts when it is the larger expectation.
    assert score(5, 4.0, 5, longrun=1.0) == score(5, 4.0, 5) < score(5, 0.0, 5, longrun=1.0)


def test_a_story_of_several_outlets_ranks_above_one_outlets_burst_of_the_same_size() -> None:
    c = {
        "burst": cand(6, feeds={"f": 6}, ids=range(0, 6)),
        "story": cand(6, feeds={"a": 2, "b": 2, "c": 2}, ids=range(10, 16)),
    }
    ranked = rank_window(c, min_support=2)
    assert ranked["story"].rank == 1 and ranked["burst"].rank == 2


def test_standing_vocabulary_is_found_over_the_long_run_when_the_baseline_is_empty() -> None:
    # After a gap the 6-window baseline is empty; tag:home is still on all of h's articles in the long run.
    c = {
        "feed:h": cand(8, feeds={"h": 8}, ids=range(0, 8))._replace(longrun=7.0),
        "tag:home": cand(8, feeds={"h": 8}, ids=range(0, 8))._replace(longrun=7.0),
        "storm": cand(4, feeds={"h": 4}, ids=range(0, 4)),
    }
    ranked = rank_window(c, min_support=2)
    assert ranked["tag:home"].rank is None and ranked["storm"].rank == 1
