"""A single-threaded run of the trends job's operators, for property tests.

It drives the step functions of `udfs/operators.py`, the same ones the Flink
operators in `jobs/trends.py` are shells over (or, for the JVM operators, what
their SQL computes), with dicts for keyed state and a heap for each operator's
timers.  Every article reaches term-windows one by one here; the job counts a
window's on-time articles in the JVM and merges them in (`BucketWindows.add_counted`),
which tests/unit/test_windows.py shows gives the same aggregates in any order and split:

    records
      -> parse-validate    keyed by partition: parse_event; partition_watermark
                           (lateness watermark: each partition's own, or one for all
                           with watermark_scope="global")    Rejection -> DLQ
      -> dedup             keyed by article_id: dedup_verdict -> late side output
      -> explode terms     article -> one record per term bucket (group_by_bucket)
      -> term-windows      keyed by bucket: BucketWindows.add / .on_timer
      -> rank              keyed by window_start: rank_timers / rank_fire
      -> rows (upsert by key)

Two watermarks, as in the job.  Lateness is decided on the partition watermark
the record carries (from valid events, or all records: `watermark_source`).
Timers fire on the operators' watermark, which Flink's source makes from every
record's timestamp per partition and takes the minimum over `partitions` (one
not read yet holds it back; with watermark_scope="global", one watermark over
all records).  So a record's partition watermark can be ahead of the operators'
watermark (a slow partition holds it) or behind it (a bad record's timestamp
moved it on).  When it advances, term-windows fire first and their candidates
reach the ranker before the ranker's own timers, as the watermark travels
downstream in Flink.  Timers are de-duplicated per (key, timestamp) like Flink's
timer service.  Not modelled: idleness (a partition quiet for `idleness_ms`
stops holding the watermark, see README).
"""

from __future__ import annotations

import heapq
import json
from collections.abc import Iterable
from typing import Any

from tests.oracle import Record, TrendParams, Watermark
from udfs.buckets import group_by_bucket
from udfs.dead_letter import dlq_record, late_record
from udfs.operators import (
    BucketWindows, dedup_verdict, partition_watermark, rank_fire, rank_rows, rank_state, rank_timers,
)
from udfs.terms import article_terms
from udfs.trend_row import TrendRow
from udfs.validate import Article, Rejection, parse_event
from udfs.windows import MAX_WATERMARK, NO_WATERMARK, window_start

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


class StreamingSim:
    """Feed records one by one with `process`, then `finish()`; read the outputs."""

    def __init__(self, params: TrendParams, *, partitions: tuple[int, ...] = (0, 1, 2), buckets: int = 4) -> None:
        self.params = params
        self.partitions = partitions if params.watermark_scope == "partition" else (-1,)
        self.buckets = buckets
        # parse-validate: ValueState max_published_at per partition (or one, "global")
        self.max_published_at: dict[int, int | None] = {}
        # the operators' watermark: per partition from every record, min over the partitions
        self.source_watermarks = {part: Watermark(params.out_of_orderness_ms) for part in self.partitions}
        self.current_watermark = NO_WATERMARK
        self.seen: dict[str, bool] = {}  # dedup: ValueState[bool] per article_id (TTL in Flink)
        self.windows: dict[int, BucketWindows] = {}  # term-windows: state per bucket key
        self.window_timers = Timers()
        self.previous: dict[int, dict[str, tuple]] = {}  # rank: the window's rows, as rank_state keeps them
        self.pending: dict[int, dict[str, Any]] = {}  # rank: its pending batches, merged in arrival order
        self.rank_timers = Timers()
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
        p = self.params
        lateness_key = partition if p.watermark_scope == "partition" else -1
        parsed = parse_event(value)
        if isinstance(parsed, Rejection):
            self.dlq[(partition, offset)] = parsed.reason
            self.dlq_records.append(dlq_record(value, parsed.reason, TOPIC, partition, offset, detail=parsed.detail))
            if p.watermark_source == "all_records":
                self._observe_lateness(lateness_key, timestamp_ms)
        else:
            observed = timestamp_ms if p.watermark_source == "all_records" else parsed.published_at
            max_ts = self.max_published_at.get(lateness_key)
            watermark, new_max = partition_watermark(max_ts, observed, p.out_of_orderness_ms)
            if new_max is not None:
                self.max_published_at[lateness_key] = new_max
            self._article(parsed, partition, offset, watermark)
        self._observe_source(lateness_key, timestamp_ms)

    def _observe_lateness(self, key: int, ts: int) -> None:
        _, new_max = partition_watermark(self.max_published_at.get(key), ts, self.params.out_of_orderness_ms)
        if new_max is not None:
            self.max_published_at[key] = new_max

    def _observe_source(self, partition: int, ts: int) -> None:
        """`partition`: the record's, or -1 for every record (watermark_scope=\"global\")."""
        self.source_watermarks[partition].observe(ts)
        self._advance(min(wm.current for wm in self.source_watermarks.values()))

    def _article(self, article: Article, partition: int, offset: int, watermark: int) -> None:
        p = self.params
        verdict = dedup_verdict(
            self.seen.get(article.article_id, False), article, watermark, p.size_ms, p.lateness_ms
        )
        if verdict.write_seen:
            self.seen[article.article_id] = True
        if verdict.kind == "duplicate":
            self.duplicates.add((partition, offset))
            return
        ws = window_start(article.published_at, p.size_ms)
        if verdict.kind == "late":
            self.late[(partition, offset)] = verdict.late_by_ms
            self.late_records.append(
                late_record(article, verdict.late_by_ms, watermark, TOPIC, partition, offset, window_start=ws)
            )
            return
        terms = article_terms(article, include_summary=p.include_summary, max_terms=p.max_terms)
        for key, bucket_terms in group_by_bucket(terms, self.buckets).items():
            bucket = self.windows.setdefault(key, BucketWindows(p.size_ms, p.lateness_ms, p.n, p.k))
            step = bucket.add(
                ws, bucket_terms, article_id=article.article_id, feed_url=article.feed_url, title=article.title,
                published_at=article.published_at,
            )
            for ts in step.timers:
                self.window_timers.register(key, ts)
            for w, candidates in step.out:
                self._to_ranker(w, candidates, step.watermark)

    def _to_ranker(self, ws: int, candidates, watermark: int) -> None:
        p = self.params
        self.pending.setdefault(ws, {}).update({term: tuple(c) for term, c in candidates})
        for ts in rank_timers(ws, watermark, p.size_ms, p.lateness_ms, p.n):
            self.rank_timers.register(ws, ts)

    def _advance(self, new_watermark: int) -> None:
        if new_watermark <= self.current_watermark:
            return
        p = self.params
        for ts, key in self.window_timers.due(new_watermark):
            step = self.windows[key].on_timer(ts)
            for t in step.timers:
                self.window_timers.register(key, t)
            for ws, candidates in step.out:
                self._to_ranker(ws, candidates, ts)
        for ts, ws in self.rank_timers.due(new_watermark):
            pending = self.pending.pop(ws, {})
            step = rank_fire(
                rank_rows(self.previous.get(ws, {}), ws, p.size_ms), pending, ts, ws,
                size_ms=p.size_ms, lateness_ms=p.lateness_ms, n=p.n, min_support=p.min_support, emitted_at=ts,
            )
            if step.changed:
                self.previous.setdefault(ws, {}).update(rank_state(step.changed))
            for row in step.rows:
                self._emit(row)
            if step.clear:
                self.previous.pop(ws, None)
                self.pending.pop(ws, None)
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
            "term_counts": sum(bucket.size() for bucket in self.windows.values()),
            "ranker_previous": len(self.previous),
            "ranker_pending": len(self.pending),
        }


def decode(record: bytes) -> dict[str, Any]:
    return json.loads(record)
