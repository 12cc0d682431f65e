"""A single-threaded simulation of the trends job, driving the job's own step functions.

It follows jobs/trends.py operator by operator; the Python operators' logic is not
copied here but called: `udfs.intake` (the per-record function), and the state
machines `udfs.counting.ArticleCounts` / `TermHistory` one instance per key, with
the timers each asks for.  What the job does in the JVM is modelled in plain
Python:

    records
      -> intake            (stateless)  bad input -> DLQ side output
      -> dedup             keyed by article_id: first copy passes (Flink's Deduplicate)
      -> late split        against the watermark before the record -> late side output
      -> ArticleCounts     keyed by article bucket: hits per open window; timer fire_time(ws)
      -> TermHistory       keyed by term bucket: partials merged; timers fire_time(ws),
                           expiry_time(ws)
      -> RankOperator      keyed by window_start: a "revise" timer at
                           max(fire_time(ws), watermark + 1) and cleanup_time(ws)
      -> rows (upsert by key)

Watermarks: one watermark for the whole pipeline, advanced after every record like
a bounded-out-of-orderness generator with emission after each event.  When it
advances, operators fire their due timers in pipeline order, like Flink does as
the watermark travels downstream: what an operator emits while firing reaches the
next one before that one sees the new watermark.  A timer registered at or below
an operator's current watermark fires at its next advance, as in Flink.  Timers
are de-duplicated per (key, timestamp) like Flink's timer service.
"""

from __future__ import annotations

import heapq
import json
from collections.abc import Iterable
from typing import Any

from tests.oracle import Record, TrendParams, Watermark
from udfs.buckets import DEFAULT_BUCKETS
from udfs.counting import ArticleCounts, ArticleHit, TermHistory
from udfs.dead_letter import late_record
from udfs.dedup import dedup_step
from udfs.intake import intake
from udfs.trend import Candidate, revise
from udfs.trend_row import TrendRow
from udfs.validate import Article, parse_event
from udfs.windows import (
    MAX_WATERMARK,
    classify_lateness,
    cleanup_time,
    fire_time,
    window_end,
    window_start,
)

TOPIC = "feed-events"


class Timers:
    """Event-time timers of one keyed operator: fire in timestamp order, one per (key, ts)."""

    def __init__(self) -> None:
        self._heap: list[tuple[int, Any]] = []
        self._registered: set[tuple[int, Any]] = set()

    def register(self, key: Any, ts: int) -> None:
        if (ts, key) not in self._registered:
            self._registered.add((ts, key))
            heapq.heappush(self._heap, (ts, key))

    def due(self, watermark: int) -> Iterable[tuple[int, Any]]:
        while self._heap and self._heap[0][0] <= watermark:
            ts, key = heapq.heappop(self._heap)
            self._registered.discard((ts, key))
            yield ts, key


class RankOperator:
    """Keyed by window_start.  Emits TrendRows (only the changed ones)."""

    def __init__(self, params: TrendParams) -> None:
        self.params = params
        self.previous: dict[int, dict[str, TrendRow]] = {}  # MapState[term -> TrendRow] per window
        self.pending: dict[int, dict[str, Candidate]] = {}  # MapState[term -> Candidate] per window
        self.timers = Timers()

    def process(self, ws: int, term: str, candidate: Candidate, watermark: int) -> None:
        p = self.params
        self.pending.setdefault(ws, {})[term] = candidate
        self.timers.register(ws, max(fire_time(ws, p.size_ms), watermark + 1))
        self.timers.register(ws, cleanup_time(ws, p.size_ms, p.lateness_ms))

    def on_timer(self, ws: int, ts: int) -> list[TrendRow]:
        p = self.params
        rows: list[TrendRow] = []
        pending = self.pending.pop(ws, None)
        if pending:
            new_previous, rows = revise(
                self.previous.get(ws, {}),
                pending,
                p.min_support,
                ws,
                window_end(ws, p.size_ms),
                emitted_at=ts,
            )
            self.previous[ws] = new_previous
        if ts >= cleanup_time(ws, p.size_ms, p.lateness_ms):
            self.previous.pop(ws, None)
        return rows


class StreamingSim:
    """Feed records one by one with `process`, then `finish()`; read the outputs."""

    def __init__(self, params: TrendParams, buckets: int = DEFAULT_BUCKETS) -> None:
        self.params = params
        self.buckets = buckets
        self.watermark = Watermark(params.out_of_orderness_ms)
        self.current_watermark = self.watermark.current
        self.seen: dict[str, bool] = {}  # the dedup's state per article_id (TTL in Flink)
        self.counts: dict[int, ArticleCounts] = {}  # per article bucket key
        self.count_timers = Timers()
        self.histories: dict[int, TermHistory] = {}  # per term bucket key
        self.history_timers = Timers()
        self.ranker = RankOperator(params)
        # outputs
        self.emitted: list[TrendRow] = []
        self.latest: dict[str, TrendRow] = {}
        self.dlq: dict[tuple[int, int], str] = {}
        self.dlq_records: list[bytes] = []
        self.late: dict[tuple[int, int], int] = {}
        self.late_records: list[bytes] = []
        self.duplicates: set[tuple[int, int]] = set()

    # -- pipeline -------------------------------------------------------------
    def process(self, record: Record) -> None:
        p = self.params
        partition, offset, timestamp_ms, value = record
        wm = self.current_watermark
        row = intake(
            value, TOPIC, partition, offset, include_summary=p.include_summary, buckets=self.buckets, max_terms=p.max_terms
        )
        if p.watermark_source == "all_records":
            self.watermark.observe(timestamp_ms)
        if row.dlq is not None:
            self.dlq[(partition, offset)] = json.loads(row.dlq)["reason"]
            self.dlq_records.append(row.dlq.encode())
        else:
            if p.watermark_source == "valid_events":
                self.watermark.observe(row.published_at)
            self._article(row, partition, offset, value, wm)
        self._advance(self.watermark.current)

    def _article(self, row, partition: int, offset: int, value: bytes, wm: int) -> None:
        p = self.params
        article: Article = parse_event(value)  # type: ignore[assignment]
        new_seen, emit = dedup_step(self.seen.get(row.article_id, False), article)
        self.seen[row.article_id] = new_seen
        if not emit:
            self.duplicates.add((partition, offset))
            return
        ws = window_start(row.published_at, p.size_ms)
        is_late, late_by = classify_lateness(row.published_at, wm, p.size_ms, p.lateness_ms)
        if is_late:
            self.late[(partition, offset)] = late_by
            self.late_records.append(late_record(article, late_by, wm, TOPIC, partition, offset, window_start=ws))
            return
        counts = self.counts.setdefault(row.key, ArticleCounts(p.size_ms, p.k, self.buckets))
        due = counts.add(ArticleHit(ws, row.article_id, row.feed_url, row.title, row.published_at, row.terms))
        if due is not None:
            self.count_timers.register(row.key, due)

    def _advance(self, new_watermark: int) -> None:
        if new_watermark <= self.current_watermark:
            return
        p = self.params
        for ts, key in self.count_timers.due(new_watermark):
            partials, _ = self.counts[key].fire(ts)
            for term_key, ws, partial in partials:
                history = self.histories.setdefault(term_key, TermHistory(p.size_ms, p.lateness_ms, p.n, p.k))
                _, timers = history.merge(ws, partial)
                for due in timers:
                    self.history_timers.register(term_key, due)
        for ts, term_key in self.history_timers.due(new_watermark):
            # Flink fires timers with the operator's watermark already at the new value.
            emitted, _, _ = self.histories[term_key].fire(ts, new_watermark)
            for ws, candidates in emitted:
                for term, candidate in candidates:
                    self.ranker.process(ws, term, candidate, ts)
        for ts, ws in self.ranker.timers.due(new_watermark):
            for row in self.ranker.on_timer(ws, ts):
                self._emit(row)
        self.current_watermark = new_watermark

    def _emit(self, row: TrendRow) -> None:
        # Rows travel as JSON; round-trip them so the sim also checks serialization.
        row = TrendRow.from_json(row.to_json())
        previous = self.latest.get(row.key())
        if previous is not None:
            assert row.revision == previous.revision + 1, (previous, row)
            assert row.content() != previous.content(), row
        else:
            assert row.revision == 1, row
        self.latest[row.key()] = row
        self.emitted.append(row)

    def finish(self) -> None:
        """End of a bounded input: Flink sends MAX_WATERMARK, firing every timer."""
        self._advance(MAX_WATERMARK)

    def run(self, records: Iterable[Record]) -> StreamingSim:
        for record in records:
            self.process(record)
        self.finish()
        return self

    # -- results --------------------------------------------------------------
    @property
    def rows(self) -> dict[str, tuple[Any, ...]]:
        return {key: row.content() for key, row in self.latest.items()}

    def state_sizes(self) -> dict[str, int]:
        """How much keyed state is left (after finish() everything but dedup should be empty)."""
        return {
            "dedup": len(self.seen),
            "open_hits": sum(len(hits) for c in self.counts.values() for hits in c.windows.values()),
            "term_counts": sum(len(w) for h in self.histories.values() for w in h.by_term.values()),
            "term_changed": sum(len(h.changed) for h in self.histories.values()),
            "ranker_previous": len(self.ranker.previous),
            "ranker_pending": len(self.ranker.pending),
        }


def decode(record: bytes) -> dict[str, Any]:
    return json.loads(record)
