"""Batch oracle for the trends job: what the streaming job must end up with.

Given Kafka-like records `(partition, offset, timestamp_ms, value)` in the order
they were produced, compute with the same pure functions as the job:

* dlq:        (partition, offset) -> reason ("missing_field:title", ...)
* late:       (partition, offset) -> late_by_ms, for articles late beyond lateness
* duplicates: (partition, offset) of copies dropped by dedup
* rows:       "window_start|term" -> TrendRow.content(), the final state a consumer
              upserting by key would hold

Lateness model (the streaming job's, with a per-record watermark): records are
processed in the given order; before each record the watermark is
`max(timestamp seen so far) - out_of_orderness_ms - 1` (Flink's
BoundedOutOfOrderness formula; NO_WATERMARK before anything was seen).  "Seen" is
the published_at of every valid event, duplicates included (they still carry a
timestamp), or with `watermark_source="all_records"` the Kafka timestamp of every
record, bad ones included, which is what a watermark strategy on the JVM side
derives.  A record is checked against the watermark *before* its own timestamp
is counted.

Order of decisions per record: validate -> dedup (first copy by arrival wins) ->
lateness.  A later copy of a late article is a duplicate, not late.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from udfs.dedup import dedup_step
from udfs.terms import DEFAULT_MAX_TERMS, article_terms
from udfs.buckets import bucket_key
from udfs.trend import long_run_mean, long_run_windows, rank_window, term_candidate
from udfs.trend_row import TrendRow
from udfs.validate import Article, Rejection, parse_event
from udfs.windows import NO_WATERMARK, TermWindow, add_article, classify_lateness, window_end, window_start

Record = tuple[int, int, int, bytes]  # (partition, offset, timestamp_ms, value)
WatermarkSource = Literal["valid_events", "all_records"]


@dataclass(frozen=True)
class TrendParams:
    size_ms: int
    lateness_ms: int
    out_of_orderness_ms: int
    n: int
    min_support: int
    include_summary: bool = False
    k: int = 3
    max_terms: int = DEFAULT_MAX_TERMS
    watermark_source: WatermarkSource = "valid_events"
    # "partition": each Kafka partition has its own watermark (what the job uses to
    # decide lateness); "global": one watermark over the merged order.
    watermark_scope: Literal["global", "partition"] = "global"
    # The job's term buckets: a term's long run spans the windows in which its bucket counted anything.
    term_buckets: int = 4


@dataclass
class OracleResult:
    dlq: dict[tuple[int, int], str] = field(default_factory=dict)
    late: dict[tuple[int, int], int] = field(default_factory=dict)
    duplicates: set[tuple[int, int]] = field(default_factory=set)
    rows: dict[str, tuple[Any, ...]] = field(default_factory=dict)


class Watermark:
    """Bounded-out-of-orderness watermark, advanced one timestamp at a time."""

    def __init__(self, out_of_orderness_ms: int) -> None:
        self.out_of_orderness_ms = out_of_orderness_ms
        self.max_ts: int | None = None

    @property
    def current(self) -> int:
        if self.max_ts is None:
            return NO_WATERMARK
        return self.max_ts - self.out_of_orderness_ms - 1

    def observe(self, ts: int) -> None:
        if self.max_ts is None or ts > self.max_ts:
            self.max_ts = ts


def accept_articles(records: Iterable[Record], params: TrendParams) -> tuple[OracleResult, list[Article]]:
    """Validate, dedup and lateness-check records in order; return side outputs and survivors."""
    result = OracleResult()
    watermarks: dict[int, Watermark] = defaultdict(lambda: Watermark(params.out_of_orderness_ms))
    seen: dict[str, bool] = {}
    accepted: list[Article] = []
    for partition, offset, timestamp_ms, value in records:
        where = (partition, offset)
        watermark = watermarks[partition if params.watermark_scope == "partition" else -1]
        current = watermark.current
        parsed = parse_event(value)
        if params.watermark_source == "all_records":
            watermark.observe(timestamp_ms)
        if isinstance(parsed, Rejection):
            result.dlq[where] = parsed.reason
            continue
        if params.watermark_source == "valid_events":
            watermark.observe(parsed.published_at)
        new_seen, emit = dedup_step(seen.get(parsed.article_id, False), parsed)
        seen[parsed.article_id] = new_seen
        if not emit:
            result.duplicates.add(where)
            continue
        is_late, late_by = classify_lateness(parsed.published_at, current, params.size_ms, params.lateness_ms)
        if is_late:
            result.late[where] = late_by
            continue
        accepted.append(parsed)
    return result, accepted


def final_rows(articles: Iterable[Article], params: TrendParams) -> dict[str, tuple[Any, ...]]:
    """Batch computation of every (window, term) row's final content."""
    counts: dict[str, dict[int, TermWindow]] = defaultdict(dict)
    for article in articles:
        ws = window_start(article.published_at, params.size_ms)
        for term in article_terms(article, include_summary=params.include_summary, max_terms=params.max_terms):
            per_window = counts[term]
            per_window[ws] = add_article(
                per_window.get(ws),
                article_id=article.article_id,
                feed_url=article.feed_url,
                title=article.title,
                published_at=article.published_at,
                k=params.k,
            )
    bucket_windows: dict[int, set[int]] = defaultdict(set)
    for term, per_window in counts.items():
        bucket_windows[bucket_key(term, params.term_buckets)].update(per_window)
    by_window: dict[int, dict[str, Any]] = defaultdict(dict)
    for term, per_window in counts.items():
        data_windows = bucket_windows[bucket_key(term, params.term_buckets)]
        for ws in per_window:
            long_run = long_run_windows(data_windows, ws, params.size_ms, params.lateness_ms)
            longrun = long_run_mean(lambda w: per_window[w].articles if w in per_window else 0, long_run)
            by_window[ws][term] = term_candidate(per_window, ws, params.size_ms, params.n, longrun)
    rows: dict[str, tuple[Any, ...]] = {}
    for ws, candidates in by_window.items():
        ranked = rank_window(candidates, params.min_support)
        for term, c in candidates.items():
            row = TrendRow(
                window_start=ws,
                window_end=window_end(ws, params.size_ms),
                term=term,
                articles=c.articles,
                feeds=c.feeds,
                baseline=c.baseline,
                score=ranked[term].score,
                rank=ranked[term].rank,
                revision=1,
                emitted_at=0,
                examples=c.examples,
                aliases=ranked[term].aliases,
                links=c.links,
            )
            rows[row.key()] = row.content()
    return rows


def run_oracle(records: Iterable[Record], params: TrendParams) -> OracleResult:
    """Side outputs and final rows for a record log (see the module docstring)."""
    result, accepted = accept_articles(records, params)
    result.rows = final_rows(accepted, params)
    return result
