"""A single-threaded simulation of the trends job's operators, for property tests.

It mirrors the Flink wiring one operator per class, with the state each keeps and
the timers each sets, so `jobs/trends.py` can follow it line by line:

    records
      -> validate          (stateless)  Rejection -> DLQ side output
      -> DedupOperator     keyed by article_id; state: seen (bool);
                           first copy passes, then the lateness check against the
                           operator's current watermark -> late side output
      -> explode terms     (stateless)  article -> (term, window_start, example fields)
      -> TermOperator      keyed by term; state: counts {window_start: TermWindow};
                           timers: fire_time(ws) to emit the window's candidate,
                           expiry_time(ws) to drop counts no longer needed
      -> RankOperator      keyed by window_start; state: previous {term: TrendRow},
                           pending {term: Candidate}; timers: a "revise" timer at
                           max(fire_time(ws), watermark + 1) and cleanup_time(ws)
      -> rows (upsert by key)

Watermarks: one watermark for the whole pipeline, advanced after every record like
a bounded-out-of-orderness generator with emission after each event.  When it
advances, operators fire their timers in pipeline order (term operator first, then
the ranker), like Flink does as the watermark travels downstream: candidates a
term operator emits while firing reach the ranker before the ranker sees the new
watermark, hence the ranker's revise timer at max(fire_time, its watermark + 1).
Timers are de-duplicated per (key, timestamp) like Flink's timer service, so one
callback may have to do both a fire and a cleanup.
"""

from __future__ import annotations

import heapq
import json
from collections.abc import Iterable
from typing import Any

from tests.oracle import Record, TrendParams, Watermark
from udfs.dead_letter import dlq_record, late_record
from udfs.dedup import dedup_step
from udfs.terms import article_terms
from udfs.trend import Candidate, revise, rows_to_refresh, term_candidate
from udfs.trend_row import TrendRow
from udfs.validate import Article, Rejection, parse_event
from udfs.windows import (
    MAX_WATERMARK,
    TermWindow,
    add_article,
    classify_lateness,
    cleanup_time,
    expiry_time,
    fire_time,
    last_fired_window_start,
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


class DedupOperator:
    def __init__(self, params: TrendParams) -> None:
        self.params = params
        self.seen: dict[str, bool] = {}  # ValueState[bool] per article_id (TTL in Flink)

    def process(self, article: Article, watermark: int) -> tuple[str, int]:
        """Returns ("duplicate", 0), ("late", late_by_ms) or ("ok", 0)."""
        new_seen, emit = dedup_step(self.seen.get(article.article_id, False), article)
        self.seen[article.article_id] = new_seen
        if not emit:
            return "duplicate", 0
        is_late, late_by = classify_lateness(
            article.published_at, watermark, self.params.size_ms, self.params.lateness_ms
        )
        return ("late", late_by) if is_late else ("ok", 0)


class TermOperator:
    """Keyed by term.  Emits (window_start, term, Candidate)."""

    def __init__(self, params: TrendParams) -> None:
        self.params = params
        self.counts: dict[str, dict[int, TermWindow]] = {}  # MapState[ws -> TermWindow] per term
        self.timers = Timers()

    def process(self, term: str, ws: int, article: Article, watermark: int) -> list[tuple[int, str, Candidate]]:
        p = self.params
        counts = self.counts.setdefault(term, {})
        counts[ws] = add_article(
            counts.get(ws),
            article_id=article.article_id,
            feed_url=article.feed_url,
            title=article.title,
            published_at=article.published_at,
            k=p.k,
        )
        self.timers.register(term, expiry_time(ws, p.size_ms, p.lateness_ms, p.n))
        fired_upto = last_fired_window_start(watermark, p.size_ms)
        if ws > fired_upto:
            self.timers.register(term, fire_time(ws, p.size_ms))
            return []
        # Late but within lateness: this window and the later fired windows whose
        # baseline includes it get a fresh candidate.
        return [
            (w, term, term_candidate(counts, w, p.size_ms, p.n))
            for w in rows_to_refresh(counts, ws, fired_upto, p.size_ms, p.n)
        ]

    def on_timer(self, term: str, ts: int) -> list[tuple[int, str, Candidate]]:
        p = self.params
        counts = self.counts.get(term, {})
        out = [
            (ws, term, term_candidate(counts, ws, p.size_ms, p.n))
            for ws in sorted(counts)
            if fire_time(ws, p.size_ms) == ts
        ]
        for ws in [w for w in counts if expiry_time(w, p.size_ms, p.lateness_ms, p.n) <= ts]:
            del counts[ws]
        if not counts:
            self.counts.pop(term, None)
        return out


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

    def __init__(self, params: TrendParams) -> None:
        self.params = params
        self.watermark = Watermark(params.out_of_orderness_ms)
        self.current_watermark = self.watermark.current
        self.dedup = DedupOperator(params)
        self.terms = TermOperator(params)
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
        partition, offset, timestamp_ms, value = record
        wm = self.current_watermark
        parsed = parse_event(value)
        if self.params.watermark_source == "all_records":
            self.watermark.observe(timestamp_ms)
        if isinstance(parsed, Rejection):
            self.dlq[(partition, offset)] = parsed.reason
            self.dlq_records.append(dlq_record(value, parsed.reason, TOPIC, partition, offset, detail=parsed.detail))
        else:
            if self.params.watermark_source == "valid_events":
                self.watermark.observe(parsed.published_at)
            self._article(parsed, partition, offset, wm)
        self._advance(self.watermark.current)

    def _article(self, article: Article, partition: int, offset: int, wm: int) -> None:
        p = self.params
        verdict, late_by = self.dedup.process(article, wm)
        if verdict == "duplicate":
            self.duplicates.add((partition, offset))
            return
        ws = window_start(article.published_at, p.size_ms)
        if verdict == "late":
            self.late[(partition, offset)] = late_by
            self.late_records.append(late_record(article, late_by, wm, TOPIC, partition, offset, window_start=ws))
            return
        # article -> (term, window_start, article) for each term
        for term in article_terms(article, include_summary=p.include_summary, max_terms=p.max_terms):
            # (term) -> (window_start, term, Candidate)
            for ws_out, t, candidate in self.terms.process(term, ws, article, wm):
                self.ranker.process(ws_out, t, candidate, wm)

    def _advance(self, new_watermark: int) -> None:
        if new_watermark <= self.current_watermark:
            return
        old = self.current_watermark
        for ts, term in self.terms.timers.due(new_watermark):
            for ws, t, candidate in self.terms.on_timer(term, ts):
                # the ranker still has the old watermark: it has not seen new_watermark yet
                self.ranker.process(ws, t, candidate, old)
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
            "dedup": len(self.dedup.seen),
            "term_counts": sum(len(c) for c in self.terms.counts.values()),
            "ranker_previous": len(self.ranker.previous),
            "ranker_pending": len(self.ranker.pending),
        }


def decode(record: bytes) -> dict[str, Any]:
    return json.loads(record)
