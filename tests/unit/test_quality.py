"""The quality figures (udfs/quality.py) on small crafted days."""

from __future__ import annotations

import pytest

from udfs.quality import (
    Entry,
    QualityArticle,
    decided_by_spelling,
    figures,
    is_boilerplate,
    same_story_flags,
    spread_inversions,
    standing_vocabulary,
)

DAY = 86_400_000


def art(i: int, feed: str, *terms: str, day: int = 0) -> QualityArticle:
    return QualityArticle(f"a{i}", feed, day * DAY, frozenset(terms))


def test_standing_vocabulary_is_a_term_on_half_a_feeds_articles() -> None:
    articles = [art(i, "f", "tag:home", *(["pope"] if i < 3 else [])) for i in range(10)]
    articles += [art(100 + i, "g", *(["tag:home"] if i < 4 else [])) for i in range(10)]
    standing = standing_vocabulary(articles)
    assert standing["f"] == {"tag:home"}
    assert standing["g"] == frozenset()  # 4 of 10 < half


def test_a_small_feed_has_no_standing_vocabulary() -> None:
    assert standing_vocabulary([art(i, "f", "tag:home") for i in range(9)]) == {}


@pytest.mark.parametrize("members, expected", [
    ({"a1": "f", "a2": "f", "a3": "g"}, True),  # 2 of 3 from f, where it is standing
    ({"a1": "f", "a2": "g", "a3": "g"}, False),
    ({"a1": "f", "a2": "g"}, False),  # exactly half is not most
])
def test_boilerplate_is_most_articles_from_standing_feeds(members, expected) -> None:
    assert is_boilerplate("tag:home", members, {"f": frozenset({"tag:home"}), "g": frozenset()}) is expected


def test_same_story_flags_both_sides_of_an_overlap() -> None:
    storm, bram, other = {"a1", "a2", "a3"}, {"a1", "a2", "a3", "a4"}, {"a5", "a6"}
    assert same_story_flags([storm, bram, other]) == [True, True, False]
    assert same_story_flags([{"a1", "a2"}, {"a2", "a3"}]) == [False, False]  # 1/3


def e(rank: int, term: str, score: float, articles: int, feeds: int) -> Entry:
    return Entry(0, rank, term, score, articles, feeds)


def test_spelling_decides_only_when_score_feeds_and_articles_tie() -> None:
    assert decided_by_spelling([e(1, "announces", 2.0, 4, 1), e(2, "nvidia", 2.0, 4, 1)])
    assert not decided_by_spelling([e(1, "a", 2.0, 4, 2), e(2, "b", 2.0, 4, 1)])
    assert not decided_by_spelling([e(1, "a", 2.0, 4, 1)])


def test_spread_inversions_count_single_feed_bursts_above_stories() -> None:
    ranked = [e(1, "burst", 3.0, 4, 1), e(2, "story", 2.9, 4, 3), e(3, "other", 1.0, 5, 2)]
    assert spread_inversions(ranked, top=10) == (1, [(ranked[0], ranked[1])])
    assert spread_inversions(list(reversed(ranked)), top=10) == (1, [(ranked[0], ranked[1])])  # input order
    fixed = [e(1, "story", 3.0, 4, 3), e(2, "burst", 2.9, 4, 1)]
    assert spread_inversions(fixed, top=10) == (1, [])
    assert spread_inversions([e(11, "x", 1, 4, 1), e(12, "y", 1, 4, 2)], top=10) == (0, [])


def test_figures_over_two_days() -> None:
    articles = [art(i, "f", "tag:home", "storm", "bram") for i in range(4)]
    articles += [art(10 + i, "f", "tag:home") for i in range(8)]
    articles += [art(20 + i, "g", "pope", day=1) for i in range(3)]
    articles += [art(30, "h", "pope", "vote", day=1), art(31, "h", "vote", day=1)]
    ranked = {
        0: [Entry(0, 1, "tag:home", 5.0, 12, 1), Entry(0, 2, "storm", 2.0, 4, 1), Entry(0, 3, "bram", 2.0, 4, 1)],
        DAY: [Entry(DAY, 1, "pope", 3.0, 4, 2), Entry(DAY, 2, "vote", 1.0, 2, 1)],
    }
    got = figures(ranked, articles, top=10)
    assert got["days"] == 2 and got["entries"] == 5
    assert got["boilerplate_share"] == 0.2  # tag:home
    assert got["same_story_share"] == 0.4  # storm, bram
    assert got["spelling_days_share"] == 0.0
    assert got["multi_feed_share"] == 0.2
    assert got["flagged"]["boilerplate"] == ["0 tag:home"]
