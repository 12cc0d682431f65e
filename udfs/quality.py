"""Trend quality figures: how each day's top list reads to an editor, measured apart from the job's own rules.

Everything is computed from the articles the job accepted (re-tokenized with the
job's `article_terms`) and the final ranked rows, so a figure never repeats the
rule it is checking:

    boilerplate   a top entry whose articles mostly come from feeds that attach its
                  term to at least STANDING_SHARE of their articles over the whole set
    same story    a top entry whose article set overlaps another entry of the same
                  day's top list with Jaccard >= SAME_STORY_JACCARD
    by spelling   a day whose #1 and #2 are equal in score, feeds and articles (only
                  the first appearance or the term's spelling tells them apart)
    multi-feed    a top entry seen in >= 2 feeds
    spread        pairs of a day's ranked entries with the same articles, one from a
                  single feed and one from several, where the single feed ranks higher

`make quality` (bench/quality.py) does the I/O; these functions are plain data in, numbers out.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import NamedTuple

STANDING_SHARE = 0.5
STANDING_MIN_ARTICLES = 10  # a feed with fewer articles over the set has no standing vocabulary
SAME_STORY_JACCARD = 0.5


class QualityArticle(NamedTuple):
    article_id: str
    feed_url: str
    window_start: int
    terms: frozenset[str]


class Entry(NamedTuple):
    """One ranked row of a day, as the job emitted it."""

    window_start: int
    rank: int
    term: str
    score: float
    articles: int
    feeds: int
    aliases: tuple[str, ...] = ()


def standing_vocabulary(
    articles: Iterable[QualityArticle], share: float = STANDING_SHARE, min_articles: int = STANDING_MIN_ARTICLES,
) -> dict[str, frozenset[str]]:
    """feed_url -> the terms it attaches to at least `share` of its articles over the whole set."""
    per_feed: dict[str, int] = defaultdict(int)
    per_feed_term: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for a in articles:
        per_feed[a.feed_url] += 1
        for term in a.terms:
            per_feed_term[a.feed_url][term] += 1
    return {
        feed: frozenset(t for t, n in per_feed_term[feed].items() if n >= share * total)
        for feed, total in per_feed.items()
        if total >= min_articles
    }


def articles_by_window_term(articles: Iterable[QualityArticle]) -> dict[tuple[int, str], dict[str, str]]:
    """(window_start, term) -> {article_id: feed_url} of the articles that carry the term in that window."""
    out: dict[tuple[int, str], dict[str, str]] = defaultdict(dict)
    for a in articles:
        for term in a.terms:
            out[(a.window_start, term)][a.article_id] = a.feed_url
    return out


def is_boilerplate(term: str, entry_articles: Mapping[str, str], standing: Mapping[str, frozenset[str]]) -> bool:
    """Most of the entry's articles come from feeds whose standing vocabulary the term is."""
    from_standing = sum(1 for feed in entry_articles.values() if term in standing.get(feed, ()))
    return from_standing * 2 > len(entry_articles)


def jaccard(a: set[str] | frozenset[str], b: set[str] | frozenset[str]) -> float:
    union = len(a | b)
    return len(a & b) / union if union else 0.0


def same_story_flags(article_sets: Sequence[set[str] | frozenset[str]], threshold: float = SAME_STORY_JACCARD) -> list[bool]:
    """For each entry of one day's top list: does its article set overlap another entry's at >= threshold?"""
    flags = [False] * len(article_sets)
    for i in range(len(article_sets)):
        for j in range(i + 1, len(article_sets)):
            if jaccard(article_sets[i], article_sets[j]) >= threshold:
                flags[i] = flags[j] = True
    return flags


def decided_by_spelling(top: Sequence[Entry]) -> bool:
    """#1 and #2 are equal in score, feeds and articles."""
    if len(top) < 2:
        return False
    first, second = top[0], top[1]
    return (first.score, first.feeds, first.articles) == (second.score, second.feeds, second.articles)


def spread_inversions(ranked: Sequence[Entry], top: int) -> tuple[int, list[tuple[Entry, Entry]]]:
    """(pairs, inversions) among one day's ranked entries: a pair is a single-feed entry and a
    several-feed entry with the same articles, at least one of them in the top `top`; an
    inversion is such a pair where the single-feed entry ranks higher: (single, several)."""
    pairs = 0
    inversions: list[tuple[Entry, Entry]] = []
    singles = [e for e in ranked if e.feeds == 1]
    multis = [e for e in ranked if e.feeds >= 2]
    for s in singles:
        for m in multis:
            if s.articles != m.articles or min(s.rank, m.rank) > top:
                continue
            pairs += 1
            if s.rank < m.rank:
                inversions.append((s, m))
    return pairs, inversions


def _share(n: int, d: int) -> float:
    return round(n / d, 4) if d else 0.0


def figures(
    ranked_by_day: Mapping[int, Sequence[Entry]],
    articles: Sequence[QualityArticle],
    top: int = 10,
) -> dict[str, object]:
    """The quality figures over all days.  `ranked_by_day`: window_start -> its ranked entries by rank."""
    standing = standing_vocabulary(articles)
    sets = articles_by_window_term(articles)
    entries = boilerplate = same_story = multi_feed = spelling_days = days = 0
    pairs = inversions = 0
    flagged: dict[str, list[str]] = {"boilerplate": [], "same_story": [], "by_spelling": [], "inversions": []}
    for ws in sorted(ranked_by_day):
        ranked = sorted(ranked_by_day[ws], key=lambda e: e.rank)
        head = ranked[:top]
        if not head:
            continue
        days += 1
        entry_sets = [sets.get((ws, e.term), {}) for e in head]
        for e, members in zip(head, entry_sets):
            entries += 1
            multi_feed += e.feeds >= 2
            if is_boilerplate(e.term, members, standing):
                boilerplate += 1
                flagged["boilerplate"].append(f"{ws} {e.term}")
        for e, flag in zip(head, same_story_flags([set(m) for m in entry_sets])):
            if flag:
                same_story += 1
                flagged["same_story"].append(f"{ws} {e.term}")
        if decided_by_spelling(head):
            spelling_days += 1
            flagged["by_spelling"].append(f"{ws} {head[0].term} / {head[1].term}")
        p, inverted = spread_inversions(ranked, top)
        pairs, inversions = pairs + p, inversions + len(inverted)
        flagged["inversions"] += [
            f"{ws} {s.term} (#{s.rank}, {s.articles} in 1 feed, {s.score}) above {m.term} "
            f"(#{m.rank}, {m.articles} in {m.feeds}, {m.score})" for s, m in inverted
        ]
    return {
        "days": days,
        "entries": entries,
        "boilerplate_share": _share(boilerplate, entries),
        "same_story_share": _share(same_story, entries),
        "spelling_days_share": _share(spelling_days, days),
        "multi_feed_share": _share(multi_feed, entries),
        "spread_pairs": pairs,
        "spread_inversions": inversions,
        "flagged": flagged,
    }
