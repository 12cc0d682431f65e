"""The trends job: Kafka events -> dedup -> tumbling term windows -> trend scores.

Wiring only.  Every decision is made by a pure function in `udfs/`; each stateful
operator below loads its state, calls that function, stores the result and sets
timers (tests/streaming_sim.py is the same pipeline as plain Python, used by the
property tests).  Sources and sinks come from `connectors/`, so tests can hand
`build()` a collection source and collect the outputs.

    records (value bytes, topic, partition, offset; timestamp = published_at)
      -> parse-validate            Rejection -> DLQ side output
      -> dedup      key article_id first copy wins (state: seen, TTL)
                                   late beyond lateness -> late side output
      -> explode-terms             article -> (term, window_start, example fields)
      -> term-windows key term     counts per window; fires at window end,
                                   refreshes fired windows on late data
      -> rank        key window    ranks, revisions -> trend rows
"""

from __future__ import annotations

import sys
import time
from typing import Iterator, NamedTuple

from pyflink.common import Row, Time, Types
from pyflink.datastream import (
    DataStream,
    KeyedProcessFunction,
    OutputTag,
    RuntimeContext,
    StreamExecutionEnvironment,
)
from pyflink.datastream.state import MapStateDescriptor, StateTtlConfig, ValueStateDescriptor
from pyflink.table import StreamTableEnvironment

from connectors.flink_io import SIDE_TYPE, TREND_TYPE, KafkaRecordSource, SourceFactory, TrendSinks
from feedtrends.config import Config, load_config
from udfs.dead_letter import dlq_record, late_record
from udfs.dedup import dedup_step
from udfs.terms import article_terms
from udfs.trend import revise, rows_to_refresh, term_candidate
from udfs.trend_row import TrendRow, utc_date
from udfs.validate import Rejection, parse_event
from udfs.windows import (
    add_article,
    bounded_watermark,
    classify_lateness,
    cleanup_time,
    expiry_time,
    fire_time,
    last_fired_window_start,
    window_end,
    window_start,
)

MAX_WATERMARK = 2**63 - 1

DLQ_TAG = OutputTag("dead-letters", SIDE_TYPE)
LATE_TAG = OutputTag("late-events", SIDE_TYPE)


class ParseValidate(KeyedProcessFunction):
    """Keyed by Kafka partition: raw record -> (Article, topic, partition, offset, watermark).

    Bad input goes to the DLQ with the reason.  `watermark` is this partition's
    own bounded-out-of-orderness watermark before the record, made from the valid
    events' `published_at` and kept in keyed state, so it survives a restart.
    Lateness is decided on it: Flink's own watermark starts again from nothing
    after a restore, and PyFlink hands keyed Python functions a watermark that
    lags while a bundle is open; either would let a late event through after a
    failure, which the run without failure had rejected.  Downstream watermarks are
    never ahead of it, so a window judged still open here is still open there.
    """

    def __init__(self, config: Config):
        self.out_of_orderness_ms = config.out_of_orderness_ms

    def open(self, runtime_context: RuntimeContext) -> None:
        self.max_published_at = runtime_context.get_state(ValueStateDescriptor("max_published_at", Types.LONG()))
        metrics = runtime_context.get_metrics_group()
        self.events_in = metrics.counter("events_in")
        self.dead_letters = metrics.counter("dead_letters")

    def process_element(self, record, ctx: KeyedProcessFunction.Context) -> Iterator:
        value, topic, partition, offset = record
        self.events_in.inc()
        parsed = parse_event(value)
        if isinstance(parsed, Rejection):
            self.dead_letters.inc()
            yield DLQ_TAG, Row(
                None, dlq_record(value, parsed.reason, topic, partition, offset, detail=parsed.detail).decode()
            )
            return
        max_ts = self.max_published_at.value()
        watermark = bounded_watermark(max_ts, self.out_of_orderness_ms)
        if max_ts is None or parsed.published_at > max_ts:
            self.max_published_at.update(parsed.published_at)
        yield parsed, topic, partition, offset, watermark


class Dedup(KeyedProcessFunction):
    """Keyed by article_id: the first copy passes, later copies are counted and dropped.

    All copies of an article share a Kafka partition (the key is the article id),
    so "first" is that partition's order: deterministic on replay.  Dedup comes
    before the lateness check, so a late copy of a known article is a duplicate.
    """

    def __init__(self, config: Config):
        self.ttl_ms = config.dedup_ttl_ms
        self.size_ms = config.window_ms
        self.lateness_ms = config.lateness_ms

    def open(self, runtime_context: RuntimeContext) -> None:
        # TTL keeps memory bounded; Flink's TTL runs on processing time.
        ttl = (
            StateTtlConfig.new_builder(Time.milliseconds(self.ttl_ms))
            .set_update_type(StateTtlConfig.UpdateType.OnCreateAndWrite)
            .set_state_visibility(StateTtlConfig.StateVisibility.NeverReturnExpired)
            # The RocksDB compaction-filter cleanup, named explicitly instead of
            # left as the background default: PyFlink builds that default with a
            # py4j call, which fails inside a TaskManager running Python in thread
            # mode (there is no gateway there).  The embedded runtime reads only
            # the entry count; the compaction period is a plain-Python placeholder.
            .disable_cleanup_in_background()
            .cleanup_in_rocksdb_compact_filter(1000, Time.days(30))
            .build()
        )
        seen = ValueStateDescriptor("seen", Types.BOOLEAN())
        seen.enable_time_to_live(ttl)
        self.seen = runtime_context.get_state(seen)
        metrics = runtime_context.get_metrics_group()
        self.duplicates = metrics.counter("duplicates")
        self.late = metrics.counter("late_beyond_lateness")

    def process_element(self, value, ctx: KeyedProcessFunction.Context) -> Iterator:
        article, topic, partition, offset, watermark = value
        new_seen, emit = dedup_step(bool(self.seen.value()), article)
        if new_seen:
            self.seen.update(True)
        if not emit:
            self.duplicates.inc()
            return
        is_late, late_by_ms = classify_lateness(article.published_at, watermark, self.size_ms, self.lateness_ms)
        if is_late:
            self.late.inc()
            record = late_record(
                article, late_by_ms, watermark, topic, partition, offset,
                window_start=window_start(article.published_at, self.size_ms),
            )
            yield LATE_TAG, Row(article.article_id, record.decode())
            return
        yield article, watermark


class TermWindows(KeyedProcessFunction):
    """Keyed by term: article counts per tumbling window, and the term's own history.

    Emits (window_start, term, Candidate, watermark) when a window fires, and again for a fired
    window (and the later fired windows whose baseline includes it) when late data
    within the allowed lateness changes it.
    """

    def __init__(self, config: Config):
        self.size_ms = config.window_ms
        self.lateness_ms = config.lateness_ms
        self.n = config.baseline_windows
        self.k = config.examples

    def open(self, runtime_context: RuntimeContext) -> None:
        # window_start -> TermWindow
        self.counts = runtime_context.get_map_state(
            MapStateDescriptor("counts", Types.LONG(), Types.PICKLED_BYTE_ARRAY())
        )

    def process_element(self, value, ctx: KeyedProcessFunction.Context) -> Iterator:
        term, ws, article_id, feed_url, title, published_at, watermark = value
        agg = add_article(
            self.counts.get(ws), article_id=article_id, feed_url=feed_url, title=title, published_at=published_at, k=self.k
        )
        self.counts.put(ws, agg)
        timers = ctx.timer_service()
        timers.register_event_time_timer(expiry_time(ws, self.size_ms, self.lateness_ms, self.n))
        fired_upto = last_fired_window_start(watermark, self.size_ms)
        if ws > fired_upto:
            timers.register_event_time_timer(fire_time(ws, self.size_ms))
            return
        counts = dict(self.counts.items())
        for w in rows_to_refresh(counts, ws, fired_upto, self.size_ms, self.n):
            yield w, term, term_candidate(counts, w, self.size_ms, self.n), watermark

    def on_timer(self, timestamp: int, ctx: KeyedProcessFunction.OnTimerContext) -> Iterator:
        term = ctx.get_current_key()
        counts = dict(self.counts.items())
        for ws in sorted(counts):
            if fire_time(ws, self.size_ms) == timestamp:
                # The watermark has reached the timer: it is at least `timestamp`.
                yield ws, term, term_candidate(counts, ws, self.size_ms, self.n), timestamp
        for ws in counts:
            if expiry_time(ws, self.size_ms, self.lateness_ms, self.n) <= timestamp:
                self.counts.remove(ws)


class Rank(KeyedProcessFunction):
    """Keyed by window_start: ranks the window's terms and emits changed rows as new revisions.

    Candidates wait in `pending` until a timer just after the current watermark,
    so that all the updates one watermark step brings are ranked together.
    """

    def __init__(self, config: Config):
        self.size_ms = config.window_ms
        self.lateness_ms = config.lateness_ms
        self.min_support = config.min_support

    def open(self, runtime_context: RuntimeContext) -> None:
        # term -> last emitted TrendRow; term -> Candidate not yet ranked
        self.previous = runtime_context.get_map_state(
            MapStateDescriptor("previous", Types.STRING(), Types.PICKLED_BYTE_ARRAY())
        )
        self.pending = runtime_context.get_map_state(
            MapStateDescriptor("pending", Types.STRING(), Types.PICKLED_BYTE_ARRAY())
        )
        self.rows_out = runtime_context.get_metrics_group().counter("rows_out")

    def process_element(self, value, ctx: KeyedProcessFunction.Context) -> Iterator:
        ws, term, candidate, watermark = value
        self.pending.put(term, candidate)
        timers = ctx.timer_service()
        # Never past Long.MAX_VALUE: at the end of a bounded input the watermark is already there.
        revise_at = min(max(fire_time(ws, self.size_ms), watermark + 1), MAX_WATERMARK)
        timers.register_event_time_timer(revise_at)
        timers.register_event_time_timer(cleanup_time(ws, self.size_ms, self.lateness_ms))
        return iter(())

    def on_timer(self, timestamp: int, ctx: KeyedProcessFunction.OnTimerContext) -> Iterator:
        ws = ctx.get_current_key()
        pending = dict(self.pending.items())
        if pending:
            previous = dict(self.previous.items())
            _, rows = revise(
                previous, pending, self.min_support, ws, window_end(ws, self.size_ms), emitted_at=int(time.time() * 1000)
            )
            self.pending.clear()
            for row in rows:
                self.previous.put(row.term, row)
                self.rows_out.inc()
                yield to_output_row(row)
        if timestamp >= cleanup_time(ws, self.size_ms, self.lateness_ms):
            self.previous.clear()
            self.pending.clear()


def to_output_row(row: TrendRow) -> Row:
    """A trend row as the sinks take it: Parquet columns plus the Kafka key and JSON value."""
    return Row(
        row.window_start,
        row.window_end,
        row.term,
        row.articles,
        row.feeds,
        row.baseline,
        row.score,
        row.rank,
        row.revision,
        row.emitted_at,
        list(row.examples),
        utc_date(row.window_start),
        row.key(),
        row.to_json().decode(),
    )


class JobOutputs(NamedTuple):
    trends: DataStream  # TREND_TYPE rows
    dead_letters: DataStream  # SIDE_TYPE rows
    late: DataStream  # SIDE_TYPE rows


def build(
    env: StreamExecutionEnvironment, t_env: StreamTableEnvironment, config: Config, source: SourceFactory
) -> JobOutputs:
    """Wire the pipeline on `source`; the caller attaches sinks and executes."""
    size_ms, include_summary = config.window_ms, config.include_summary
    p = config.parallelism
    # Every operator at the job's parallelism: a subtask that never gets data
    # would hold the watermark (and so every window) back.
    env.set_parallelism(p)

    # (value, topic, partition, offset), timestamp = published_at
    records = source(env, t_env)

    # -> (Article, topic, partition, offset, watermark)
    # Keyed by partition: a partition's records keep their order, and its watermark state.
    parsed = (
        records.key_by(lambda r: r[2], key_type=Types.INT())
        .process(ParseValidate(config))
        .name("parse-validate")
        .uid("parse-validate")
        .set_parallelism(p)
    )

    # -> (Article, watermark): first copy only, not late beyond lateness
    articles = (
        parsed.key_by(lambda v: v[0].article_id, key_type=Types.STRING())
        .process(Dedup(config))
        .name("dedup")
        .uid("dedup")
        .set_parallelism(p)
    )

    # -> (term, window_start, article_id, feed_url, title, published_at, watermark)
    def explode(value):
        article, watermark = value
        ws = window_start(article.published_at, size_ms)
        for term in article_terms(article, include_summary=include_summary):
            yield term, ws, article.article_id, article.feed_url, article.title, article.published_at, watermark

    term_hits = articles.flat_map(explode).name("explode-terms").uid("explode-terms").set_parallelism(p)

    # -> (window_start, term, Candidate, watermark)
    candidates = (
        term_hits.key_by(lambda v: v[0], key_type=Types.STRING())
        .process(TermWindows(config))
        .name("term-windows")
        .uid("term-windows")
        .set_parallelism(p)
    )

    # -> trend rows (TREND_TYPE), one per changed (window, term) revision
    trends = (
        candidates.key_by(lambda v: v[0], key_type=Types.LONG())
        .process(Rank(config), output_type=TREND_TYPE)
        .name("rank")
        .uid("rank")
        .set_parallelism(p)
    )
    return JobOutputs(trends, parsed.get_side_output(DLQ_TAG), articles.get_side_output(LATE_TAG))


def main(argv: list[str] | None = None) -> None:
    config = load_config()
    env = StreamExecutionEnvironment.get_execution_environment()
    t_env = StreamTableEnvironment.create(env)
    # The table operators (Kafka source, Kafka and Parquet sinks) get planner uids, so
    # their state maps onto the job at another parallelism; derived ids would depend on
    # the job's shape (the Parquet writer chains with its committer only at p = 1).
    t_env.get_config().set("table.exec.uid.generation", "ALWAYS")
    outputs = build(env, t_env, config, KafkaRecordSource(config))
    TrendSinks(config).attach(t_env, *outputs).attach_as_datastream()
    env.execute(config.job_name)


if __name__ == "__main__":
    main(sys.argv[1:])
