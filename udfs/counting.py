"""Term counting in two keyed steps, as pure state machines the job's operators wrap.

An accepted article reaches Python once, as an `ArticleHit`, and is counted in two
steps so that no step handles one record per (article, term):

    ArticleHit  --ArticleCounts (keyed by article bucket)-->  per-window partial counts
                --TermHistory (keyed by term bucket)------->  candidates per fired window

`ArticleCounts` keeps the hits of each window that has not fired yet (a plain list:
appending is the only per-article work) and, when the watermark reaches the
window's end, folds them into one `TermWindow` per term, grouped by the bucket of
the term.  An article for a window that has already fired (late, within the
lateness) starts a new list whose timer is already due: it goes out with the next
watermark, as a partial of its own.  Partials of one (window, term) are counts of
disjoint article sets (dedup ran before), so the next step merges them.

`TermHistory` merges partials into each term's per-window counts, which it keeps as
baseline history for the next n windows, and marks the (window, term)s it changed.
When the watermark reaches a changed window's end (at once, for a window that has
fired already) it emits the candidates of that window and of the later fired
windows whose baseline includes it.  It drops a window's counts once no window
can use them any more (`udfs.windows.expiry_time`).

Both classes do no I/O and know nothing of Flink: their methods return what the
operator must write to state, emit and register as timers, so the property tests
drive the very same code as the job.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field
from typing import NamedTuple

from udfs.buckets import bucket_keys, term_bucket
from udfs.terms import FEED_PREFIX
from udfs.trend import Candidate, rows_to_refresh, term_candidate
from udfs.windows import NO_WATERMARK, TermWindow, expiry_time, fire_time, last_fired_window_start, merge

# Terms travel from the parse function to the counting step as one string: a Flink
# ARRAY<STRING> out of a Python function does not survive the trip into a DataStream.
# The unit separator cannot occur in a term other than the feed term (tokens are
# letters and digits, tag whitespace is collapsed to " "), and the feed term is not
# sent: it is rebuilt from feed_url.
TERM_SEPARATOR = "\x1f"


class ArticleHit(NamedTuple):
    """One accepted article as the counting step needs it."""

    window_start: int
    article_id: str
    feed_url: str
    title: str
    published_at: int
    terms: str  # non-feed terms joined by TERM_SEPARATOR ("" for none)


def join_terms(terms: tuple[str, ...]) -> str:
    """The article's terms without its feed term, as one string (see TERM_SEPARATOR)."""
    return TERM_SEPARATOR.join(t for t in terms if not t.startswith(FEED_PREFIX))


def split_terms(hit: ArticleHit) -> list[str]:
    """The article's terms again, feed term included."""
    terms = [FEED_PREFIX + hit.feed_url]
    if hit.terms:
        terms.extend(hit.terms.split(TERM_SEPARATOR))
    return terms


def article_bucket_key(article_id: str, buckets: int) -> int:
    """The key label of the counting subtask an article goes to (spread evenly, stable)."""
    return bucket_keys(buckets)[term_bucket(article_id, buckets)]


Partial = tuple[tuple[str, TermWindow], ...]  # (term, counts of some articles), sorted by term


def count_hits(hits: list[ArticleHit], k: int) -> dict[str, TermWindow]:
    """term -> TermWindow over `hits` (one window's articles); independent of their order."""
    aggs: dict[str, list] = {}  # term -> [articles, feeds set, examples list]
    for hit in hits:
        example = (hit.published_at, hit.article_id, hit.title)
        for term in split_terms(hit):
            agg = aggs.get(term)
            if agg is None:
                aggs[term] = [1, {hit.feed_url}, [example]]
            else:
                agg[0] += 1
                agg[1].add(hit.feed_url)
                agg[2].append(example)
    return {
        term: TermWindow(articles, tuple(sorted(feeds)), tuple(heapq.nsmallest(k, examples)) if k > 0 else ())
        for term, (articles, feeds, examples) in aggs.items()
    }


def by_term_bucket(counts: dict[str, TermWindow], buckets: int) -> dict[int, Partial]:
    """Group one window's counts by the key label of each term's bucket."""
    keys = bucket_keys(buckets)
    grouped: dict[int, list[tuple[str, TermWindow]]] = {}
    for term in sorted(counts):
        grouped.setdefault(keys[term_bucket(term, buckets)], []).append((term, counts[term]))
    return {key: tuple(group) for key, group in grouped.items()}


@dataclass
class ArticleCounts:
    """One article bucket's hits of the windows that have not been counted out yet."""

    size_ms: int
    k: int
    buckets: int
    windows: dict[int, list[ArticleHit]] = field(default_factory=dict)
    # Fire timers this instance registered (Flink de-duplicates them too; this saves the calls).
    timers: set[int] = field(default_factory=set)

    def restore(self, hits: list[ArticleHit]) -> None:
        """Rebuild from the hits kept in state (after a restart)."""
        for hit in hits:
            self.windows.setdefault(hit.window_start, []).append(hit)

    def add(self, hit: ArticleHit) -> int | None:
        """Keep a hit; returns a timer to register, or None when one is registered already."""
        self.windows.setdefault(hit.window_start, []).append(hit)
        due = fire_time(hit.window_start, self.size_ms)
        if due in self.timers:
            return None
        self.timers.add(due)
        return due

    def fire(self, timestamp: int) -> tuple[list[tuple[int, int, Partial]], list[ArticleHit] | None]:
        """Count out every window due at `timestamp`.

        Returns ([(term bucket key, window_start, partial)], hits to keep in state,
        or None when no window was due and the state stays as it is).
        """
        self.timers.discard(timestamp)
        due = sorted(ws for ws in self.windows if fire_time(ws, self.size_ms) <= timestamp)
        if not due:
            return [], None
        out: list[tuple[int, int, Partial]] = []
        for ws in due:
            counts = count_hits(self.windows.pop(ws), self.k)
            for key, partial in sorted(by_term_bucket(counts, self.buckets).items()):
                out.append((key, ws, partial))
        remaining = [hit for ws in sorted(self.windows) for hit in self.windows[ws]]
        return out, remaining


@dataclass
class TermHistory:
    """One term bucket's counts per (term, window), kept as baseline history."""

    size_ms: int
    lateness_ms: int
    n: int
    k: int
    by_term: dict[str, dict[int, TermWindow]] = field(default_factory=dict)  # term -> ws -> counts
    by_window: dict[int, set[str]] = field(default_factory=dict)  # ws -> terms with counts in it
    changed: dict[int, set[str]] = field(default_factory=dict)  # ws -> terms changed since emitted
    # The highest watermark a timer of this key has fired at: every window ending
    # before it has fired, and a change to one refreshes the later ones.
    watermark: int = NO_WATERMARK
    timers: set[int] = field(default_factory=set)

    @staticmethod
    def state_key(ws: int, term: str) -> str:
        # A term may hold spaces; the number never does.
        return f"{ws} {term}"

    def restore(
        self, entries: list[tuple[str, TermWindow]], changed: list[tuple[int, str]], watermark: int | None
    ) -> None:
        """Rebuild from state: counts by state_key, the (window, term)s not emitted yet, the watermark."""
        if watermark is not None:
            self.watermark = watermark
        for state_key, agg in entries:
            ws, term = state_key.split(" ", 1)
            self._put(int(ws), term, agg)
        for ws, term in changed:
            self.changed.setdefault(ws, set()).add(term)

    def _put(self, ws: int, term: str, agg: TermWindow) -> None:
        self.by_term.setdefault(term, {})[ws] = agg
        self.by_window.setdefault(ws, set()).add(term)

    def merge(self, ws: int, partial: Partial) -> tuple[dict[str, TermWindow], list[int]]:
        """Add a partial of window `ws`; returns (state updates by state_key, timers to register).

        The window's changed terms (`self.changed[ws]`) must be saved too: they are
        what the next `fire` emits, also after a restart in between.
        """
        updates: dict[str, TermWindow] = {}
        changed = self.changed.setdefault(ws, set())
        history = self.by_term
        for term, agg in partial:
            merged = merge(history.get(term, {}).get(ws), agg, self.k)
            self._put(ws, term, merged)
            changed.add(term)
            updates[self.state_key(ws, term)] = merged
        timers = []
        for due in (fire_time(ws, self.size_ms), expiry_time(ws, self.size_ms, self.lateness_ms, self.n)):
            if due not in self.timers:
                self.timers.add(due)
                timers.append(due)
        return updates, timers

    def fire(
        self, timestamp: int, watermark: int | None = None
    ) -> tuple[list[tuple[int, tuple[tuple[str, Candidate], ...]]], list[str], list[int]]:
        """A timer at `timestamp` fires; `watermark` is the operator's current one, if known.

        Returns (candidates per window, ascending; count state keys to delete; windows
        whose changed terms are emitted or dropped, to delete from state).  The
        caller saves `self.watermark` afterwards.
        """
        self.timers.discard(timestamp)
        self.watermark = max(self.watermark, timestamp, watermark if watermark is not None else timestamp)
        fired_upto = last_fired_window_start(self.watermark, self.size_ms)
        out: dict[int, dict[str, Candidate]] = {}
        done = sorted(w for w in self.changed if w <= fired_upto)
        for ws in done:
            for term in self.changed.pop(ws):
                history = self.by_term[term]
                for w in rows_to_refresh(history, ws, fired_upto, self.size_ms, self.n):
                    out.setdefault(w, {})[term] = term_candidate(history, w, self.size_ms, self.n)
        emitted = [(w, tuple(sorted(out[w].items()))) for w in sorted(out)]
        removed: list[str] = []
        for ws in [w for w in self.by_window if expiry_time(w, self.size_ms, self.lateness_ms, self.n) <= timestamp]:
            for term in self.by_window.pop(ws):
                removed.append(self.state_key(ws, term))
                history = self.by_term[term]
                del history[ws]
                if not history:
                    del self.by_term[term]
            if self.changed.pop(ws, None) is not None:
                done.append(ws)
        return emitted, removed, done
