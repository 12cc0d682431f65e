"""The trends job's stateful operators as step functions: (state, input) -> (outputs, state writes, timers).

Each keyed Python operator in `jobs/trends.py` is a thin shell over one model here:
it loads the key's state, calls the step, applies the writes to Flink state,
registers the timers and yields the outputs.  `tests/streaming_sim.py` drives the
very same steps with dicts for state and a heap for timers, so the property tests
against the batch oracle exercise this code, not a copy of it.

    parse_columns        parse-record, a Python scalar function (no state)
    partition_watermark  each Kafka partition's max published_at: a JVM OVER aggregate
    dedup_verdict        first copy per article_id: Flink's Deduplicate, then a JVM filter
    side_record          route: the DLQ and late records of the rows the JVM set aside
    BucketWindows        term-windows, keyed by term bucket
    rank_timers/rank_fire  rank, keyed by window_start (its state: rank_state/rank_rows)

The steps the JVM runs (`partition_watermark`, `dedup_verdict`) are written in
SQL in the job; the models here say what that SQL computes, and the simulation
and the integration tests hold the two to the same batch oracle.

Nothing here touches Flink; the only state kept in Python objects is a term
bucket's windows (`BucketWindows`), the operator's in-memory copy of its state.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from collections.abc import Callable, Iterable, Mapping
from typing import Literal

from udfs.dead_letter import dlq_record, late_record
from udfs.dedup import dedup_step
from udfs.terms import article_terms
from udfs.trend import (
    LONG_RUN_WINDOWS,
    Candidate,
    long_run_mean_of_total,
    long_run_windows,
    revise,
    rows_to_refresh,
    term_candidate,
)
from udfs.trend_row import TrendRow
from udfs.validate import Article, Rejection, parse_event
from udfs.windows import (
    MAX_WATERMARK,
    NO_WATERMARK,
    TermWindow,
    add_article,
    bounded_watermark,
    classify_lateness,
    expiry_time,
    fire_time,
    fold_hits,
    last_fired_window_start,
    merge_windows,
    window_end,
    window_start,
)

# (window_start, ((term, Candidate), ...)): one window's candidates of one term bucket.
WindowCandidates = tuple[int, tuple[tuple[str, Candidate], ...]]


# -- parse-record: what the JVM operators need of one record ----------------------------------

# (ok, article_id, feed_url, title, published_at, terms as a JSON array); a rejected
# record is (False, None, None, None, None, None) and its reason is found again by
# `side_record`, so valid records (nearly all) carry nothing they do not need.
ParsedColumns = tuple[bool, str | None, str | None, str | None, int | None, str | None]

REJECTED: ParsedColumns = (False, None, None, None, None, None)


def parse_columns(value: bytes, include_summary: bool) -> ParsedColumns:
    """A record value -> the columns the job's JVM operators work on.

    The terms travel as one JSON string: a Python function's ARRAY<STRING> result
    does not convert into a DataStream row, and JSON leaves no separator that a
    term (a feed URL, say) could contain.
    """
    parsed = parse_event(value)
    if isinstance(parsed, Rejection):
        return REJECTED
    terms = article_terms(parsed, include_summary=include_summary)
    return True, parsed.article_id, parsed.feed_url, parsed.title, parsed.published_at, json.dumps(terms)


def route_terms(terms_json: str) -> tuple[str, ...]:
    """`parse_columns`' terms column back as the article's sorted terms."""
    return tuple(json.loads(terms_json))


def counted_bucket(hits_json: str, size_ms: int, k: int) -> tuple[int, dict[str, TermWindow]]:
    """A (window, term bucket) the JVM collected: its term hits as a JSON array of [term, published_at,
    article_id, title, feed_url] -> (window_start, term -> the aggregate `add_article` one by one
    would have built), terms in sorted order."""
    by_term: dict[str, list] = {}
    for term, p, a, t, f in json.loads(hits_json):
        by_term.setdefault(term, []).append((int(p), a, t, f))
    ws = window_start(next(iter(by_term.values()))[0][0], size_ms)
    return ws, {term: fold_hits(by_term[term], k) for term in sorted(by_term)}


def folded_bucket(folded_json: str) -> dict[str, TermWindow]:
    """A (window, term bucket) the JVM folded (`fold_term_hits` in connectors/jvm: what `counted_bucket`
    computes from its hits), a JSON array of [term, articles, feed_counts, best, sketch] -> term -> aggregate."""
    return {term: TermWindow.from_state(state) for term, *state in json.loads(folded_json)}


# -- parse-validate: each partition's own watermark ---------------------------------------------


def partition_watermark(max_ts: int | None, published_at: int, out_of_orderness_ms: int) -> tuple[int, int | None]:
    """(partition's max published_at, a valid event) -> (the partition's watermark before it, new max or None).

    None means the max is unchanged (no state write).  Lateness is decided on the
    watermark *before* the event, as a watermark generator emitting after each
    event would have it.
    """
    watermark = bounded_watermark(max_ts, out_of_orderness_ms)
    if max_ts is None or published_at > max_ts:
        return watermark, published_at
    return watermark, None


# -- dedup: first copy wins, then the lateness check -------------------------------------------


@dataclass(frozen=True, slots=True)
class Verdict:
    kind: Literal["duplicate", "late", "ok"]
    write_seen: bool  # write the article's `seen` flag (a write also restarts its TTL)
    late_by_ms: int = 0


def dedup_verdict(seen: bool, article: Article, watermark: int, size_ms: int, lateness_ms: int) -> Verdict:
    """One copy of an article against its `seen` flag and its partition's watermark."""
    new_seen, emit = dedup_step(seen, article)
    if not emit:
        return Verdict("duplicate", new_seen)
    is_late, late_by_ms = classify_lateness(article.published_at, watermark, size_ms, lateness_ms)
    return Verdict("late", new_seen, late_by_ms) if is_late else Verdict("ok", new_seen)


def side_record(
    kind: Literal["late", "dlq"], value: bytes, topic: str | None, partition: int | None, offset: int | None, *,
    late_by_ms: int | None, watermark: int | None, size_ms: int,
) -> tuple[str | None, bytes]:
    """(Kafka key, JSON value) of a record the JVM set aside: late beyond lateness, or rejected.

    The record is parsed again here: these are a few per cent of the input, and
    the parse names the reason (DLQ) or rebuilds the event (late output).
    """
    parsed = parse_event(value)
    if kind == "dlq":
        if not isinstance(parsed, Rejection):  # the JVM rejected only what parse_columns did
            raise ValueError("a record routed to the DLQ parses as valid")
        return None, dlq_record(value, parsed.reason, topic, partition, offset, detail=parsed.detail)
    if isinstance(parsed, Rejection):
        raise ValueError(f"a record routed as late does not parse: {parsed.reason}")
    assert late_by_ms is not None and watermark is not None
    record = late_record(
        parsed, late_by_ms, watermark, topic, partition, offset,
        window_start=window_start(parsed.published_at, size_ms),
    )
    return parsed.article_id, record


# -- term-windows: one term bucket's counts per (term, window) ---------------------------------


def state_key(ws: int, term: str) -> str:
    """The MapState key of one (window, term): a term may hold spaces, the number never does."""
    return f"{ws} {term}"


def parse_state_key(key: str) -> tuple[int, str]:
    ws, term = key.split(" ", 1)
    return int(ws), term


# An expired window's article count per term, kept for the terms' long runs (udfs/trend.py),
# is kept in the same map state as the windows' counts, as one entry {term: articles} under
# "a<window_start>": it is written once and dropped once, so one entry per window, not per term.
ARCHIVE_PREFIX = "a"


def archive_key(ws: int) -> str:
    return f"{ARCHIVE_PREFIX}{ws}"


# A (window, term bucket) counted upstream, for a window the bucket held no counts of yet (nearly
# every window of a rebuild), is kept as one entry: the folded JSON as the JVM sent it, under
# "c<window_start>".  A term of it that changes later (a late article) gets its own entry, which
# wins over it on load.  One put and one remove per window instead of one per term: each state call
# cost more than the counting it stores.
COUNTED_PREFIX = "c"


def counted_key(ws: int) -> str:
    return f"{COUNTED_PREFIX}{ws}"


@dataclass
class Step:
    """What one call of a step asks the operator shell to do."""

    out: list[WindowCandidates] = field(default_factory=list)
    # state_key -> TermWindow.to_state(), counted_key -> the folded JSON, archive_key -> {term: articles}
    puts: dict[str, object] = field(default_factory=dict)
    removes: list[str] = field(default_factory=list)
    timers: list[int] = field(default_factory=list)  # event-time timers to register
    # add: the watermark the step went by (for the ranker); on_timer: the bucket's new
    # `timer_watermark`, to keep in state
    watermark: int = NO_WATERMARK


class BucketWindows:
    """One term bucket's windows: the keyed state of term-windows, held in Python.

    The operator is the only writer of its state and a restore (failure, rescale,
    savepoint) builds a new operator instance, so this copy is always what Flink's
    state holds: reads come from here, only writes go to Flink (`Step.puts`,
    `Step.removes`).  The timer sets remember which timers this instance has
    registered, so each is registered once per (bucket, window); after a restore
    they start empty and a timer may be registered again, which Flink's timer
    service de-duplicates.

    Whether a window has fired is decided by this bucket's own timers, never by
    the watermark a record carries: `timer_watermark` is the latest timer that
    fired for the bucket (kept in state too), and the operator's watermark has
    passed it.  A record's partition watermark can be ahead of it (the operator's
    watermark is the minimum over partitions: a window of a slow partition's time
    has not fired yet, and firing it later must still see the counts its later
    windows' baselines were computed from) or behind it (a bad record's timestamp
    moved Flink's watermark on); either would leave a row out of date.

    The long run of a window (udfs/trend.py) spans the bucket's last LONG_RUN_WINDOWS
    windows with data that ended at least max(one window, the lateness) before it.
    Those can no longer change when it fires, so late data never changes a long run
    already emitted.  A window's counts are deleted at its expiry; its terms' article
    counts (one int each) move to the archive, which keeps the bucket's last
    LONG_RUN_WINDOWS expired windows with data (every window still held is later than
    all of them, so no long run still to be computed needs an older one) and is
    dropped at the end of input.  State: at most LONG_RUN_WINDOWS ints per term.

    A window counted upstream is kept in state as the one entry it came as (COUNTED_PREFIX);
    `counted_whole` remembers which windows are, and which of their terms have entries of their
    own since, so that expiry removes exactly the entries written.
    """

    def __init__(self, size_ms: int, lateness_ms: int, n: int, k: int) -> None:
        self.size_ms, self.lateness_ms, self.n, self.k = size_ms, lateness_ms, n, k
        self.by_term: dict[str, dict[int, TermWindow]] = {}  # term -> window_start -> counts
        self.by_window: dict[int, set[str]] = {}  # window_start -> terms with counts in it
        self.fire_timers: set[int] = set()
        self.expiry_timers: set[int] = set()
        self.timer_watermark = NO_WATERMARK
        self.archive: dict[str, dict[int, int]] = {}  # term -> expired window_start -> articles
        self.archive_by_window: dict[int, set[str]] = {}  # expired window_start -> terms in the archive
        # window_start kept as one counted entry -> its terms written since under their own keys
        self.counted_whole: dict[int, set[str]] = {}

    def load(self, items: Iterable[tuple[str, object]], timer_watermark: int | None = None) -> BucketWindows:
        """Rebuild from the state's entries (`Step.puts`, in any order) and its timer watermark."""
        if timer_watermark is not None:
            self.timer_watermark = timer_watermark
        own_entries: list[tuple[int, str, object]] = []
        for key, value in items:
            if key.startswith(ARCHIVE_PREFIX):
                ws = int(key[len(ARCHIVE_PREFIX):])
                for term, articles in value.items():
                    self._archive(ws, term, articles)
            elif key.startswith(COUNTED_PREFIX):
                ws = int(key[len(COUNTED_PREFIX):])
                self.counted_whole[ws] = set()
                for term, agg in folded_bucket(value).items():
                    self._put(ws, term, agg)
            else:
                own_entries.append((*parse_state_key(key), value))
        # After the counted entries: a term's own entry is newer than its window's counted one.
        for ws, term, agg_state in own_entries:
            self._put(ws, term, TermWindow.from_state(agg_state))
            if ws in self.counted_whole:
                self.counted_whole[ws].add(term)
        return self

    def _archive(self, ws: int, term: str, articles: int) -> None:
        self.archive.setdefault(term, {})[ws] = articles
        self.archive_by_window.setdefault(ws, set()).add(term)

    def _long_run(self, ws: int) -> frozenset[int]:
        """The windows window `ws`'s long run spans (udfs.trend.long_run_windows)."""
        return frozenset(long_run_windows(
            self.by_window.keys() | self.archive_by_window.keys(), ws, self.size_ms, self.lateness_ms
        ))

    def _candidate(self, term: str, ws: int, long_run: frozenset[int]) -> Candidate:
        history = self.by_term[term]
        archived = self.archive.get(term, {})
        # The term's articles over the long run, summed over the term's own windows (most terms are
        # counted in a few of the long run's LONG_RUN_WINDOWS); a window held is never also archived.
        total = 0
        for w, agg in history.items():
            if w in long_run:
                total += agg.articles
        for w, articles in archived.items():
            if w in long_run and w not in history:
                total += articles
        return term_candidate(history, ws, self.size_ms, self.n, long_run_mean_of_total(total, long_run))

    def _put(self, ws: int, term: str, agg: TermWindow) -> None:
        self.by_term.setdefault(term, {})[ws] = agg
        self.by_window.setdefault(ws, set()).add(term)

    def add(
        self, ws: int, terms: tuple[str, ...], *, article_id: str, feed_url: str, title: str, published_at: int,
    ) -> Step:
        """Count one article's terms of this bucket into window `ws`.

        A window whose time has passed this bucket's timers gets fresh candidates
        now, for itself and the later fired windows whose baseline includes it; a
        later one is counted and fires with its timer.
        """
        def fold(_term: str, agg: TermWindow | None) -> TermWindow:
            return add_article(
                agg, article_id=article_id, feed_url=feed_url, title=title, published_at=published_at, k=self.k,
            )

        return self._count(ws, terms, fold)

    def add_counted(self, ws: int, counted: Mapping[str, TermWindow], folded_json: str | None = None) -> Step:
        """Merge (window, term) aggregates counted upstream (the window's on-time articles of this
        bucket's terms) into window `ws`.

        The same rules as `add`: the articles they hold are never also added one by one.  With
        `folded_json` (what `folded_bucket` read `counted` from) and no counts of `ws` yet, the
        state keeps that JSON as one entry (COUNTED_PREFIX) instead of an entry per term.
        """
        whole = folded_json is not None and ws not in self.by_window
        step = self._count(
            ws, tuple(counted), lambda term, agg: merge_windows(agg, counted[term], self.k), write_terms=not whole,
        )
        if whole:
            step.puts[counted_key(ws)] = folded_json
            self.counted_whole[ws] = set()
        return step

    def _count(
        self, ws: int, terms: tuple[str, ...], fold: Callable[[str, TermWindow | None], TermWindow],
        write_terms: bool = True,
    ) -> Step:
        watermark = self.timer_watermark
        step = Step(watermark=watermark)
        if ws not in self.expiry_timers:
            step.timers.append(expiry_time(ws, self.size_ms, self.lateness_ms, self.n))
            self.expiry_timers.add(ws)
        fired_upto = last_fired_window_start(watermark, self.size_ms)
        if ws > fired_upto and ws not in self.fire_timers:
            step.timers.append(fire_time(ws, self.size_ms))
            self.fire_timers.add(ws)
        for term in terms:
            history = self.by_term.get(term, {})
            agg = fold(term, history.get(ws))
            self._put(ws, term, agg)
            if write_terms:
                step.puts[state_key(ws, term)] = agg.to_state()  # plain tuples pickle ~3x faster than the dataclass
        if write_terms and ws in self.counted_whole:
            self.counted_whole[ws].update(terms)
        if ws > fired_upto:
            return step
        refreshed: dict[int, list[tuple[str, Candidate]]] = {}
        long_runs: dict[int, frozenset[int]] = {}
        for term in terms:
            for w in rows_to_refresh(self.by_term[term], ws, fired_upto, self.size_ms, self.n):
                if w not in long_runs:
                    long_runs[w] = self._long_run(w)
                refreshed.setdefault(w, []).append((term, self._candidate(term, w, long_runs[w])))
        step.out = [(w, tuple(refreshed[w])) for w in sorted(refreshed)]
        return step

    def on_timer(self, timestamp: int) -> Step:
        """The watermark reached `timestamp`: fire the window ending there, drop windows past expiry."""
        self.timer_watermark = max(self.timer_watermark, timestamp)
        step = Step(watermark=self.timer_watermark)
        for ws in sorted(self.by_window):
            if fire_time(ws, self.size_ms) == timestamp:
                long_run = self._long_run(ws)
                step.out.append((ws, tuple(
                    (term, self._candidate(term, ws, long_run)) for term in sorted(self.by_window[ws])
                )))
        for ws in sorted(w for w in self.by_window if expiry_time(w, self.size_ms, self.lateness_ms, self.n) <= timestamp):
            archived: dict[str, int] = {}
            own_entries = self.counted_whole.pop(ws, None)
            if own_entries is not None:
                step.removes.append(counted_key(ws))
                step.removes.extend(state_key(ws, term) for term in own_entries)
            for term in self.by_window.pop(ws):
                if own_entries is None:
                    step.removes.append(state_key(ws, term))
                history = self.by_term[term]
                archived[term] = history.pop(ws).articles
                self._archive(ws, term, archived[term])
                if not history:
                    del self.by_term[term]
            step.puts[archive_key(ws)] = archived
            self.fire_timers.discard(ws)
            self.expiry_timers.discard(ws)
        # Only the last LONG_RUN_WINDOWS expired windows can still be in a long run; none after the input's end.
        keep = 0 if timestamp >= MAX_WATERMARK else LONG_RUN_WINDOWS
        for ws in sorted(self.archive_by_window)[: max(0, len(self.archive_by_window) - keep)]:
            step.puts.pop(archive_key(ws), None)
            step.removes.append(archive_key(ws))
            for term in self.archive_by_window.pop(ws):
                archived = self.archive[term]
                del archived[ws]
                if not archived:
                    del self.archive[term]
        return step

    def size(self) -> int:
        """(window, term) entries held."""
        return sum(len(terms) for terms in self.by_window.values())


# -- rank: one window's rows and revisions -----------------------------------------------------


def rank_timers(ws: int, watermark: int, size_ms: int, lateness_ms: int, n: int) -> tuple[int, int]:
    """Timers for candidates of window `ws` arriving at `watermark`: (revise, cleanup).

    Candidates wait until just after the current watermark, so all the updates one
    watermark step brings are ranked together.  Never past Long.MAX_VALUE: at the
    end of a bounded input the watermark is already there.

    The window's rows are kept as long as term-windows keeps its counts (its
    `expiry_time`), not only until its own lateness ends: an event of a partition
    behind Flink's watermark (back from idle) is accepted by its own watermark and
    revises the window, or the next n whose baselines it is in, until then; each
    revision must follow the window's last one.
    """
    revise_at = min(max(fire_time(ws, size_ms), watermark + 1), MAX_WATERMARK)
    return revise_at, expiry_time(ws, size_ms, lateness_ms, n)


def rank_flush_time(now_ms: int, wait_ms: int) -> int:
    """A processing-time timer for candidates arriving at wall-clock `now_ms`: the first whole
    second at least `wait_ms` later (whole seconds, so one timer serves a burst).

    The revise timer waits for the watermark after the one the candidates came with.
    When the input has stopped, no such watermark comes: the last windows' first rows,
    and the revisions that a partition back from idle (behind the watermark) brings,
    would wait for input that may never come.  This timer ranks them anyway.  The job
    waits the source's idleness timeout: a watermark that has not come by then is not
    coming, while in a flowing stream the revise timer is nearly always first.
    """
    return -(-(now_ms + wait_ms) // 1000) * 1000


@dataclass(frozen=True, slots=True)
class RankStep:
    changed: list[tuple[TrendRow, Candidate]]  # new revisions and their candidates: the state's new entries
    clear: bool  # the window is past its expiry: drop its state

    @property
    def rows(self) -> list[TrendRow]:
        return [row for row, _ in self.changed]


# The ranker's state of one window: term -> (revision, score, rank, aliases, candidate as a plain
# tuple).  A row's other fields are its window's and its candidate's (`udfs.trend.revise` builds
# them so), so the rows are rebuilt from these when a revision reads them.  Kept as TrendRows, their
# pickling cost three times as much, and every ranking with news writes the window's rows.
RankRows = dict[str, tuple]


def rank_state(changed: Iterable[tuple[TrendRow, Candidate]]) -> RankRows:
    """Rows (and their candidates) as the ranker's state keeps them."""
    return {row.term: (row.revision, row.score, row.rank, row.aliases, tuple(c)) for row, c in changed}


def rank_rows(state: Mapping[str, tuple], ws: int, size_ms: int) -> dict[str, tuple[TrendRow, Candidate]]:
    """The ranker's state of window `ws` back as `rank_fire`'s `previous`: each term's last row and its
    candidate.  `emitted_at` is not kept (no part of a row's content); an entry of the earlier layout,
    (TrendRow, candidate), is taken as it is."""
    end = window_end(ws, size_ms)
    rows: dict[str, tuple[TrendRow, Candidate]] = {}
    for term, entry in state.items():
        if isinstance(entry[0], TrendRow):
            rows[term] = (entry[0], Candidate(*entry[1]))
            continue
        revision, score, rank, aliases, c = entry
        c = Candidate(*c)
        rows[term] = (TrendRow(
            window_start=ws, window_end=end, term=term, articles=c.articles, feeds=c.feeds, baseline=c.baseline,
            score=score, rank=rank, revision=revision, emitted_at=0, examples=tuple(c.examples), aliases=aliases,
            links=tuple(c.links),
        ), c)
    return rows


def rank_fire(
    previous: Mapping[str, tuple[TrendRow, Candidate]], pending: Mapping[str, object], timestamp: int, ws: int, *,
    size_ms: int, lateness_ms: int, n: int, min_support: int, emitted_at: int,
) -> RankStep:
    """A rank timer of window `ws`: fold the pending candidates into the rows, re-rank, emit what changed."""
    changed: list[tuple[TrendRow, Candidate]] = []
    if pending:
        changed = revise(previous, pending, min_support, ws, window_end(ws, size_ms), emitted_at=emitted_at)
    return RankStep(changed, timestamp >= expiry_time(ws, size_ms, lateness_ms, n))
