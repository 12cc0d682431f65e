"""Trend scoring, ranking, stories and revisions.

Score.  For a (window, term) with `articles` from `feeds` distinct feeds, two
expectations of its count:

    recent    b = the mean of the term's article counts over its previous n windows
              (missing windows count 0), times volume = the window's articles over the
              mean of its previous n windows' (a busy window lifts every count), in
              VOLUME_RANGE
    long run  r = the mean of the term's article counts over the last LONG_RUN_WINDOWS
              windows that had data (any term of its bucket counted in them; a window
              of no data, a gap in the stream, is skipped, not counted as 0) among those
              that cannot change any more when this window fires (ending at least
              max(one window, the lateness) before it), times long_volume = the
              window's articles over the same mean for its feeds, in LONG_VOLUME_RANGE

    spread   = sqrt(articles * feeds)          a story several outlets carry weighs
                                               more than one outlet's burst of it
    expected = max(b * volume, r * long_volume)
    score    = (spread - expected) / sqrt(expected + 1)

Counts of independent articles are roughly Poisson, whose standard deviation is
sqrt(mean), so (x - b) / sqrt(b) is a z-score: "how many standard deviations above
normal".  The +1 smooths it: a brand-new term (no history) scores its spread rather
than infinity.  The long run is what makes an everyday word (`new`, `despite`, a
language's particles) need far more than a few articles to trend: it is expected
every day, even when the recent baseline is empty.  Scores, baselines and long-run
means are rounded to 6 decimals so JSON round trips and the batch oracle compare
equal.

Rank.  Within one window, among terms with articles >= min_support that are not
`feed:` pseudo-terms and not boilerplate: score desc, then feeds desc, then
articles desc, then first appearance (earliest published_at), then the term.

Boilerplate.  A feed's standing vocabulary (a tag or word it puts on most of its
articles, now and over the baseline: `tag:home`, `tag:news`) is counted but never
ranked: a term is boilerplate when most of its articles come from feeds for which
it is standing vocabulary ("over the baseline": its usual count, the larger of b and r,
is at least half the feed's).

Stories.  Among the top STORY_DEPTH ranked terms, terms whose article sets nearly
coincide (Jaccard >= STORY_OVERLAP, from the sketches) are one story: it takes one
rank, under its most specific term (most words, among members with at least half
the story's articles), and lists the others as `aliases`; the others get no rank.

Two keyed operators use these functions:

* term-windows (keyed by term bucket, udfs/buckets.py): keeps each of its terms'
  `{window_start: TermWindow}`.  When a window fires it emits `term_candidate(...)`
  for every term of the bucket counted in it; when late data changes a window that
  has already fired, it re-emits the candidates for `rows_to_refresh(...)` (that
  window and the later fired ones whose baseline includes it).
* window-keyed (the ranker): keeps each term's last row and candidate; `revise(...)`
  folds new candidates in, re-ranks the window, and returns only changed rows.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from typing import NamedTuple

from udfs.terms import FEED_PREFIX, is_rankable
from udfs.trend_row import TrendRow
from udfs.windows import TermWindow, sketch_similarity

DECIMALS = 6


# Story rules: how far down the ranking stories are merged, and how much two terms'
# article sets must overlap to be one story.
STORY_DEPTH = 50
STORY_OVERLAP = 0.5
# Standing vocabulary: a feed puts the term on at least this share of its articles,
# in the window and over the baseline, and the feed has at least MIN_FEED_ARTICLES.
STANDING_SHARE = 0.5
MIN_FEED_ARTICLES = 3
VOLUME_RANGE = (0.5, 2.0)
# The long run: how many windows with data it spans, and the clip of its volume ratio
# (wider: windows with only a few old articles count as windows with data too).
LONG_RUN_WINDOWS = 30
LONG_VOLUME_RANGE = (0.25, 4.0)


class Candidate(NamedTuple):
    """What the term operator tells the ranker about one (window, term)."""

    articles: int
    feeds: int
    baseline: float
    examples: tuple[str, ...]
    feed_counts: tuple[tuple[str, int], ...]  # (feed_url, articles), sorted
    sketch: tuple[int, ...]  # udfs.windows.TermWindow.sketch
    first_seen: int  # earliest published_at counted
    longrun: float = 0.0  # r: mean articles per window with data over the long run (long_run_mean)
    links: tuple[str, ...] = ()  # each example's web address, "" where it has none (TermWindow.links)


def score(
    articles: int, baseline: float, feeds: int | None = None, volume: float = 1.0,
    longrun: float = 0.0, long_volume: float = 1.0,
) -> float:
    """The trend score (see the module docstring), rounded to 6 decimals.

    `feeds` None counts every article as its own feed (spread = articles)."""
    spread = float(articles) if feeds is None else math.sqrt(articles * feeds)
    expected = max(baseline * volume, longrun * long_volume)
    # "+ 0.0" turns a rounded -0.0 into 0.0 so equal rows serialize equally.
    return round((spread - expected) / math.sqrt(expected + 1.0), DECIMALS) + 0.0


def long_run_windows(data_windows: Iterable[int], window_start: int, size_ms: int, lateness_ms: int) -> list[int]:
    """The windows the long run of `window_start` spans: the last LONG_RUN_WINDOWS of `data_windows`
    (windows in which the term's bucket counted anything) that end at least max(one window, the
    lateness) before it, so that no accepted event can change them any more once it fires.  Ascending."""
    last = window_start - max(size_ms, lateness_ms)
    return sorted(w for w in data_windows if w <= last)[-LONG_RUN_WINDOWS:]


def long_run_mean(counts: Callable[[int], int], windows: Sequence[int]) -> float:
    """The term's mean articles over `windows` (long_run_windows), 0 without any; `counts(w)` is 0 where absent."""
    return long_run_mean_of_total(sum(counts(w) for w in windows), windows)


def long_run_mean_of_total(total: int, windows: Collection[int]) -> float:
    """`long_run_mean` from the total of the term's counts over `windows`."""
    if not windows:
        return 0.0
    return round(total / len(windows), DECIMALS)


def term_candidate(
    counts: Mapping[int, TermWindow], window_start: int, size_ms: int, n: int, longrun: float = 0.0,
) -> Candidate:
    """The row values of one term in one window, from that term's per-window counts and its long-run mean."""
    agg = counts[window_start]
    if n > 0:
        # Over the term's windows or the baseline's, whichever are fewer (most terms have few).
        total = 0
        if len(counts) <= n:
            earliest = window_start - n * size_ms
            for w, previous in counts.items():
                if earliest <= w < window_start:
                    total += previous.articles
        else:
            for i in range(1, n + 1):
                previous = counts.get(window_start - i * size_ms)
                if previous is not None:
                    total += previous.articles
        base = round(total / n, DECIMALS)
    else:
        base = 0.0
    return Candidate(
        agg.articles, len(agg.feed_counts), base, agg.examples, agg.feed_counts, agg.sketch, agg.first_seen,
        longrun, agg.links,
    )


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


class Ranked(NamedTuple):
    """One term's place in its window."""

    score: float
    rank: int | None
    aliases: tuple[str, ...]


def window_volume(candidates: Mapping[str, Candidate], long_run: bool = False) -> float:
    """The window's articles over its baseline's mean (clipped to VOLUME_RANGE), or with `long_run` over
    its long-run mean (clipped to LONG_VOLUME_RANGE); 1 without history.

    Every article counts its feed's `feed:` term once, so those terms' articles and
    baselines add up to the window's volume and its usual volume."""
    now = sum(c.articles for t, c in candidates.items() if not is_rankable(t))
    usual = sum(c.longrun if long_run else c.baseline for t, c in candidates.items() if not is_rankable(t))
    if usual <= 0 or now <= 0:
        return 1.0
    low, high = LONG_VOLUME_RANGE if long_run else VOLUME_RANGE
    return min(max(now / usual, low), high)


def is_boilerplate(candidate: Candidate, feed_terms: Mapping[str, Candidate]) -> bool:
    """Most of the term's articles come from feeds whose standing vocabulary it is."""
    standing = 0
    for feed, n in candidate.feed_counts:
        feed_c = feed_terms.get(feed)
        feed_usual = max(feed_c.baseline, feed_c.longrun) if feed_c is not None else 0.0
        if feed_c is None or feed_c.articles < MIN_FEED_ARTICLES or feed_usual <= 0:
            continue
        if n >= STANDING_SHARE * feed_c.articles and max(candidate.baseline, candidate.longrun) >= STANDING_SHARE * feed_usual:
            standing += n
    return standing * 2 > candidate.articles


def _words(term: str) -> int:
    return len(term.split(":", 1)[-1].split())


def rank_window(candidates: Mapping[str, Candidate], min_support: int) -> dict[str, Ranked]:
    """Every term of one window -> its score, rank (None: not ranked) and aliases."""
    volume, long_volume = window_volume(candidates), window_volume(candidates, long_run=True)
    feed_terms = {t[len(FEED_PREFIX):]: c for t, c in candidates.items() if t.startswith(FEED_PREFIX)}
    scores = {t: score(c.articles, c.baseline, c.feeds, volume, c.longrun, long_volume) for t, c in candidates.items()}
    eligible = [
        t for t, c in candidates.items()
        if c.articles >= min_support and is_rankable(t) and not is_boilerplate(c, feed_terms)
    ]
    eligible.sort(key=lambda t: (-scores[t], -candidates[t].feeds, -candidates[t].articles,
                                 candidates[t].first_seen, t))
    # Stories among the top: each term joins the first story whose leader it overlaps.
    stories: list[list[str]] = []
    for term in eligible[:STORY_DEPTH]:
        sketch = candidates[term].sketch
        for story in stories:
            if sketch_similarity(sketch, candidates[story[0]].sketch) >= STORY_OVERLAP:
                story.append(term)
                break
        else:
            stories.append([term])
    stories += [[term] for term in eligible[STORY_DEPTH:]]
    out = {t: Ranked(scores[t], None, ()) for t in candidates}
    for position, story in enumerate(stories, start=1):
        most = max(candidates[t].articles for t in story)
        # The most specific member with at least half the story's articles; the best-ranked on a tie.
        head = max((t for t in story if 2 * candidates[t].articles >= most),
                   key=lambda t: (_words(t), -story.index(t)))
        out[head] = Ranked(scores[head], position, tuple(t for t in story if t != head))
    return out


def revise(
    previous: Mapping[str, tuple[TrendRow, Candidate]],
    candidates: Mapping[str, Candidate | tuple],
    min_support: int,
    window_start: int,
    window_end: int,
    emitted_at: int,
) -> list[tuple[TrendRow, Candidate]]:
    """Fold new candidates into one window's rows, re-rank, and return what changed.

    `previous` is the last emitted row and its candidate per term of this window
    (the ranker's state).  `candidates` holds new values for some terms; terms
    absent from it keep their previous values (counts only grow, so a term never
    leaves a window).  Returns the (row, candidate) of every row whose content
    changed, with revision = previous revision + 1 (first revision is 1), sorted
    by term.
    """
    merged: dict[str, Candidate] = {term: Candidate(*c) for term, (_, c) in previous.items()}
    for term, candidate in candidates.items():
        merged[term] = Candidate(*candidate)
    ranked = rank_window(merged, min_support)
    emit: list[tuple[TrendRow, Candidate]] = []
    for term in sorted(merged):
        c, r = merged[term], ranked[term]
        old = previous.get(term)
        row = TrendRow(
            window_start=window_start,
            window_end=window_end,
            term=term,
            articles=c.articles,
            feeds=c.feeds,
            baseline=c.baseline,
            score=r.score,
            rank=r.rank,
            revision=1 if old is None else old[0].revision + 1,
            emitted_at=emitted_at,
            examples=tuple(c.examples),
            aliases=r.aliases,
            links=tuple(c.links),
        )
        if old is not None and old[0].content() == row.content():
            continue
        emit.append((row, c))
    return emit
