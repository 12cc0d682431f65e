"""Trend scoring, ranking and revisions.

Score.  For a (window, term) with `articles` and a baseline b = the mean of the
term's article counts over its previous n windows (missing windows count 0):

    score = (articles - b) / sqrt(b + 1)

Counts of independent articles are roughly Poisson, whose standard deviation is
sqrt(mean), so (x - b) / sqrt(b) is a z-score: "how many standard deviations above
normal".  The +1 smooths it: a brand-new term (b = 0) scores `articles` rather than
infinity, and small baselines cannot turn one extra article into a huge score.
Scores and baselines are rounded to 6 decimals so JSON round trips and the batch
oracle compare equal.

Rank.  Within one window, among terms with articles >= min_support that are not
`feed:` pseudo-terms: score desc, then articles desc, then term asc; ranks 1..M.
Everything else has rank None (still emitted: its counts are useful).

Two keyed operators use these functions:

* term-windows (keyed by term bucket, udfs/buckets.py): keeps each of its terms'
  `{window_start: TermWindow}`.  When a window fires it emits `term_candidate(...)`
  for every term of the bucket counted in it; when late data changes a window that
  has already fired, it re-emits the candidates for `rows_to_refresh(...)` (that
  window and the later fired ones whose baseline includes it).
* window-keyed (the ranker): keeps the last emitted TrendRow per term; `revise(...)`
  folds new candidates in, re-ranks the window, and returns only changed rows.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import NamedTuple

from udfs.terms import is_rankable
from udfs.trend_row import TrendRow
from udfs.windows import TermWindow

DECIMALS = 6


class Candidate(NamedTuple):
    """What the term operator tells the ranker about one (window, term)."""

    articles: int
    feeds: int
    baseline: float
    score: float
    examples: tuple[str, ...]


def score(articles: int, baseline: float) -> float:
    """Smoothed Poisson z-score, rounded to 6 decimals (see the module docstring)."""
    # "+ 0.0" turns a rounded -0.0 into 0.0 so equal rows serialize equally.
    return round((articles - baseline) / math.sqrt(baseline + 1.0), DECIMALS) + 0.0


def term_candidate(counts: Mapping[int, TermWindow], window_start: int, size_ms: int, n: int) -> Candidate:
    """The row values of one term in one window, from that term's per-window counts."""
    agg = counts[window_start]
    if n > 0:
        total = 0
        for i in range(1, n + 1):
            previous = counts.get(window_start - i * size_ms)
            if previous is not None:
                total += previous.articles
        base = round(total / n, DECIMALS)
    else:
        base = 0.0
    return Candidate(agg.articles, len(agg.feeds), base, score(agg.articles, base), agg.examples)


def rows_to_refresh(
    counts: Mapping[int, TermWindow],
    changed_window: int,
    fired_upto_window_start: int,
    size_ms: int,
    n: int,
) -> list[int]:
    """Fired windows whose row must be recomputed after `changed_window`'s counts changed.

    That is the changed window itself and the next n windows (their baseline
    includes it), limited to windows that have already fired (later ones are
    computed when they fire) and that hold counts for this term (a window without
    counts has no row).  Ascending.
    """
    last = min(changed_window + n * size_ms, fired_upto_window_start)
    return [w for w in range(changed_window, last + 1, size_ms) if w in counts]


def rank_terms(rows: Mapping[str, tuple[float, int]], min_support: int) -> dict[str, int | None]:
    """term -> (score, articles) gives term -> rank (1 = hottest) or None if not ranked."""
    eligible = [(-s, -a, t) for t, (s, a) in rows.items() if a >= min_support and is_rankable(t)]
    eligible.sort()
    ranks: dict[str, int | None] = dict.fromkeys(rows)
    for position, (_, _, term) in enumerate(eligible, start=1):
        ranks[term] = position
    return ranks


def revise(
    previous: Mapping[str, TrendRow],
    candidates: Mapping[str, Candidate | tuple[int, int, float, float, tuple[str, ...]]],
    min_support: int,
    window_start: int,
    window_end: int,
    emitted_at: int,
) -> tuple[dict[str, TrendRow], list[TrendRow]]:
    """Fold new candidates into one window's rows, re-rank, and return what changed.

    `previous` is the last emitted row per term of this window (the ranker's
    state).  `candidates` holds new values for some terms; terms absent from it keep
    their previous values (counts only grow, so a term never leaves a window).
    Returns (new_previous, rows_to_emit): rows whose content changed, with
    revision = previous revision + 1 (first revision is 1), sorted by term.
    """
    merged: dict[str, tuple[int, int, float, float, tuple[str, ...]]] = {
        term: (row.articles, row.feeds, row.baseline, row.score, row.examples) for term, row in previous.items()
    }
    for term, candidate in candidates.items():
        merged[term] = tuple(candidate)  # type: ignore[assignment]
    ranks = rank_terms({term: (values[3], values[0]) for term, values in merged.items()}, min_support)
    new_previous: dict[str, TrendRow] = dict(previous)
    emit: list[TrendRow] = []
    for term in sorted(merged):
        articles, feeds, base, sc, examples = merged[term]
        rank = ranks[term]
        old = previous.get(term)
        if (
            old is not None
            and old.articles == articles
            and old.feeds == feeds
            and old.baseline == base
            and old.score == sc
            and old.rank == rank
            and old.examples == examples
        ):
            continue
        row = TrendRow(
            window_start=window_start,
            window_end=window_end,
            term=term,
            articles=articles,
            feeds=feeds,
            baseline=base,
            score=sc,
            rank=rank,
            revision=1 if old is None else old.revision + 1,
            emitted_at=emitted_at,
            examples=tuple(examples),
        )
        new_previous[term] = row
        emit.append(row)
    return new_previous, emit
