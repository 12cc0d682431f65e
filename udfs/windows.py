"""Tumbling event-time windows: assignment, the per-(window, term) fold, and time rules.

Time rules follow Flink's own event-time conventions so the operators' timers can
use these numbers directly:

* A window is [start, end); its last timestamp is end - 1.
* It *fires* when the watermark reaches `fire_time = end - 1` (a watermark W says
  "no more events with timestamp <= W").
* It accepts late events until the watermark reaches
  `cleanup_time = end - 1 + lateness_ms` (Flink's WindowOperator: an element is
  dropped iff `window.maxTimestamp() + allowedLateness <= currentWatermark`).
  With lateness 0 a window accepts nothing after it fired.
* Its term counts are still needed as *baseline history* by the next n windows,
  so they may be deleted only once the last of those is past its own cleanup time:
  `expiry_time = cleanup_time(start + n * size)`.
"""

from __future__ import annotations

import bisect
import heapq
import zlib
from dataclasses import dataclass

from udfs.canonical import article_link

# Flink's watermark before the first watermark arrives (Long.MIN_VALUE).
NO_WATERMARK = -(2**63)
# Flink's final watermark at the end of a bounded input (Long.MAX_VALUE).
MAX_WATERMARK = 2**63 - 1

Example = tuple[int, str, str]  # (published_at, article_id, title)


def window_start(ts: int, size_ms: int) -> int:
    """Start of the tumbling window holding `ts` (floor division, so negative ts work too)."""
    return ts - ts % size_ms


def window_end(start: int, size_ms: int) -> int:
    """Exclusive end of the window starting at `start`."""
    return start + size_ms


def fire_time(start: int, size_ms: int) -> int:
    """Watermark at which the window's first result is due (Flink: window.maxTimestamp())."""
    return start + size_ms - 1


def cleanup_time(start: int, size_ms: int, lateness_ms: int) -> int:
    """Watermark from which events for this window are late beyond lateness."""
    return start + size_ms - 1 + lateness_ms


def expiry_time(start: int, size_ms: int, lateness_ms: int, n: int) -> int:
    """Watermark from which this window's counts are no longer needed, even as baseline."""
    return cleanup_time(start + n * size_ms, size_ms, lateness_ms)


def last_fired_window_start(watermark: int, size_ms: int) -> int:
    """The latest window start that has fired at `watermark` (every earlier one has too)."""
    # fired  <=>  start + size - 1 <= watermark  <=>  start <= watermark - size + 1
    return window_start(watermark - size_ms + 1, size_ms)


def bounded_watermark(max_timestamp: int | None, out_of_orderness_ms: int) -> int:
    """Watermark after events up to `max_timestamp`: Flink's BoundedOutOfOrderness formula."""
    if max_timestamp is None:
        return NO_WATERMARK
    return max_timestamp - out_of_orderness_ms - 1


def classify_lateness(ts: int, watermark: int, size_ms: int, lateness_ms: int) -> tuple[bool, int]:
    """(is_late, late_by_ms) for an event at `ts` arriving when the watermark is `watermark`.

    Late beyond lateness iff watermark >= cleanup_time(window of ts).  `late_by_ms`
    is how far the watermark had moved past that cleanup time (0 = arrived exactly
    as the window's final firing happened); it is negative (time to spare) when
    not late.  Before the first watermark (NO_WATERMARK) nothing is late.
    """
    late_by = watermark - cleanup_time(window_start(ts, size_ms), size_ms, lateness_ms)
    return late_by >= 0, late_by


# Each (window, term) keeps the SKETCH_SIZE smallest hashes of its articles' ids: two
# terms' article sets can then be compared (Jaccard) without keeping the sets, and the
# comparison is exact while both have at most this many articles (most trending terms).
SKETCH_SIZE = 16


def article_hash(article_id: str) -> int:
    """A stable 32-bit hash of an article id (the same in every process and run)."""
    return zlib.crc32(article_id.encode("utf-8"))


def _bottom(hashes, k: int) -> tuple[int, ...]:
    return tuple(heapq.nsmallest(k, set(hashes)))


@dataclass(frozen=True, slots=True)
class TermWindow:
    """Aggregate for one (window, term).

    articles     how many distinct articles counted the term in the window
    feed_counts  (feed_url, articles from it), sorted by feed_url
    best         the K smallest (published_at, article_id, title) triples, ascending;
                 kept instead of just titles so that folding stays independent of
                 arrival order (article_id breaks published_at ties; ids are unique
                 after dedup)
    sketch       the SKETCH_SIZE smallest `article_hash`es of its articles, ascending
    """

    articles: int
    feed_counts: tuple[tuple[str, int], ...]
    best: tuple[Example, ...]
    sketch: tuple[int, ...] = ()

    @property
    def feeds(self) -> tuple[str, ...]:
        """The distinct feeds, sorted."""
        return tuple(feed for feed, _ in self.feed_counts)

    @property
    def examples(self) -> tuple[str, ...]:
        """Up to K example titles, earliest published first."""
        return tuple(title for _, _, title in self.best)

    @property
    def links(self) -> tuple[str, ...]:
        """Each example's web address (udfs.canonical.article_link), "" where it has none."""
        return tuple(article_link(article_id) for _, article_id, _ in self.best)

    @property
    def first_seen(self) -> int:
        """The earliest published_at counted (the first example's)."""
        return self.best[0][0] if self.best else 0

    def to_state(self) -> tuple[int, tuple[tuple[str, int], ...], tuple[Example, ...], tuple[int, ...]]:
        """The fields as plain tuples, for operator state that should not pickle a class.

        The fields are already tuples of plain values: copying them into lists (as the
        state once held them; `from_state` reads both) cost more than the state write."""
        return self.articles, self.feed_counts, self.best, self.sketch

    @classmethod
    def from_state(cls, state) -> TermWindow:
        """From `to_state()`'s layout, as tuples or as lists (older state, JSON): the values are
        already plain ints and strs, so only the containers become tuples."""
        articles, feed_counts, best, sketch = state
        return cls(articles, tuple(map(tuple, feed_counts)), tuple(map(tuple, best)), tuple(sketch))


def add_article(
    agg: TermWindow | None,
    *,
    article_id: str,
    feed_url: str,
    title: str,
    published_at: int,
    k: int,
) -> TermWindow:
    """Fold one article into a (window, term) aggregate; the result never depends on arrival order."""
    h = article_hash(article_id)
    if agg is None:
        return TermWindow(1, ((feed_url, 1),), ((published_at, article_id, title),) if k > 0 else (), (h,))
    counts = dict(agg.feed_counts)
    counts[feed_url] = counts.get(feed_url, 0) + 1
    best = agg.best
    example = (published_at, article_id, title)
    # Only touch `best` when the new triple beats the current K-th (the common case
    # for a busy term once its K slots are full is a single comparison).
    if len(best) < k or (best and example < best[-1]):
        j = bisect.bisect_left(best, example)
        best = (best[:j] + (example,) + best[j:])[:k]
    sketch = agg.sketch
    if len(sketch) < SKETCH_SIZE or h < sketch[-1]:
        sketch = _bottom(sketch + (h,), SKETCH_SIZE)
    return TermWindow(agg.articles + 1, tuple(sorted(counts.items())), best, sketch)


def merge_windows(agg: TermWindow | None, other: TermWindow, k: int) -> TermWindow:
    """Two aggregates of one (window, term) over disjoint sets of articles, as one.

    Order-independent like `add_article`: the job counts most articles in the JVM
    (a window's on-time rows, pre-counted) and folds the rest in one at a time
    (rows for a window that had already fired), in whatever order they arrive.
    """
    if agg is None:
        return other
    counts = dict(agg.feed_counts)
    for feed, n in other.feed_counts:
        counts[feed] = counts.get(feed, 0) + n
    best = tuple(heapq.nsmallest(k, agg.best + other.best))
    return TermWindow(
        agg.articles + other.articles, tuple(sorted(counts.items())), best,
        _bottom(agg.sketch + other.sketch, SKETCH_SIZE),
    )


Hit = tuple[int, str, str, str]  # (published_at, article_id, title, feed_url)


def fold_hits(hits: list[Hit], k: int) -> TermWindow:
    """One (window, term)'s articles, in any order, as its aggregate (as `add_article` one by one would give)."""
    counts: dict[str, int] = {}
    for _, _, _, feed in hits:
        counts[feed] = counts.get(feed, 0) + 1
    best = tuple(heapq.nsmallest(k, ((p, a, t) for p, a, t, _ in hits)))
    sketch = _bottom((article_hash(a) for _, a, _, _ in hits), SKETCH_SIZE)
    return TermWindow(len(hits), tuple(sorted(counts.items())), best, sketch)


def sketch_similarity(a: tuple[int, ...], b: tuple[int, ...]) -> float:
    """Estimated Jaccard similarity of two article sets from their sketches (exact when both
    sets are at most SKETCH_SIZE): the share of the union's smallest hashes found in both."""
    union = _bottom(a + b, SKETCH_SIZE)
    if not union:
        return 0.0
    sa, sb = set(a), set(b)
    # A hash below both sketches' largest is known to be in or out of each set.
    both = sum(1 for h in union if h in sa and h in sb)
    return both / len(union)
