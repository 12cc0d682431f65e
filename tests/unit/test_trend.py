from __future__ import annotations

import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from udfs.trend import Candidate, rank_terms, revise, rows_to_refresh, score, term_candidate
from udfs.windows import TermWindow

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


def test_score_has_no_negative_zero() -> None:
    assert math.copysign(1.0, score(1, 1.0)) == 1.0


def _tw(articles: int, feeds: tuple[str, ...] = ("f",), titles: tuple[str, ...] = ("t",)) -> TermWindow:
    return TermWindow(articles, feeds, tuple((i, f"id{i}", t) for i, t in enumerate(titles)))


def test_term_candidate() -> None:
    counts = {0: _tw(2), -H: _tw(4), 3 * H: _tw(9), H: _tw(7, ("a", "b"), ("x", "y"))}
    assert term_candidate(counts, H, H, 2) == Candidate(7, 2, 3.0, 2.0, ("x", "y"))
    assert term_candidate(counts, 3 * H, H, 2) == Candidate(9, 1, 3.5, round(5.5 / math.sqrt(4.5), 6), ("t",))


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


def test_rank_terms_orders_and_excludes() -> None:
    rows = {
        "b": (2.0, 5),
        "a": (2.0, 5),  # tie on score and articles: term asc
        "c": (2.0, 6),  # tie on score: more articles first
        "d": (9.0, 1),  # below min_support
        "feed:x": (50.0, 50),  # never ranked
        "tag:ai": (1.0, 3),
        "e": (-1.0, 2),
    }
    assert rank_terms(rows, min_support=2) == {
        "c": 1,
        "a": 2,
        "b": 3,
        "tag:ai": 4,
        "e": 5,
        "d": None,
        "feed:x": None,
    }
    assert rank_terms({}, 1) == {}


rows_strategy = st.dictionaries(
    st.text(alphabet="abcf:", min_size=1, max_size=6),
    st.tuples(st.floats(-5, 5, allow_nan=False).map(lambda x: round(x, 2)), st.integers(1, 5)),
    max_size=30,
)


@settings(max_examples=200, deadline=None)
@given(rows_strategy, st.integers(1, 4), st.randoms(use_true_random=False))
def test_ranks_are_a_deterministic_permutation(rows: dict[str, tuple[float, int]], min_support: int, rnd: random.Random) -> None:
    ranks = rank_terms(rows, min_support)
    assert set(ranks) == set(rows)
    eligible = {t for t, (_, a) in rows.items() if a >= min_support and not t.startswith("feed:")}
    ranked = {t: r for t, r in ranks.items() if r is not None}
    assert set(ranked) == eligible
    assert sorted(ranked.values()) == list(range(1, len(eligible) + 1))
    by_rank = sorted(ranked, key=ranked.__getitem__)
    keys = [(-rows[t][0], -rows[t][1], t) for t in by_rank]
    assert keys == sorted(keys)
    items = list(rows.items())
    rnd.shuffle(items)
    assert rank_terms(dict(items), min_support) == ranks


def test_revise_emits_only_changes_with_revisions() -> None:
    c = {"alpha": Candidate(3, 2, 0.0, 3.0, ("A",)), "beta": Candidate(1, 1, 0.0, 1.0, ("B",))}
    state, rows = revise({}, c, 2, 0, H, emitted_at=10)
    assert [(r.term, r.rank, r.revision, r.emitted_at) for r in rows] == [("alpha", 1, 1, 10), ("beta", None, 1, 10)]
    assert set(state) == {"alpha", "beta"}

    # same values again: nothing to emit
    state2, rows2 = revise(state, c, 2, 0, H, emitted_at=11)
    assert rows2 == [] and state2 == state

    # beta overtakes alpha: both rows change (beta's counts, alpha's rank)
    state3, rows3 = revise(state, {"beta": Candidate(5, 1, 0.0, 5.0, ("B",))}, 2, 0, H, emitted_at=12)
    assert [(r.term, r.articles, r.rank, r.revision) for r in rows3] == [("alpha", 3, 2, 2), ("beta", 5, 1, 2)]
    assert state3["alpha"].revision == 2 and state3["alpha"].window_end == H

    # a new term that does not change other ranks emits just itself
    _, rows4 = revise(state3, {"gamma": (1, 1, 0.0, 1.0, ("G",))}, 2, 0, H, emitted_at=13)
    assert [(r.term, r.rank, r.revision) for r in rows4] == [("gamma", None, 1)]


def test_revise_does_not_mutate_previous() -> None:
    state, _ = revise({}, {"a": Candidate(1, 1, 0.0, 1.0, ())}, 1, 0, H, 0)
    snapshot = dict(state)
    revise(state, {"a": Candidate(2, 1, 0.0, 2.0, ())}, 1, 0, H, 0)
    assert state == snapshot
