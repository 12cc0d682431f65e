"""The trends job: Kafka events -> dedup -> tumbling term windows -> trend scores.

Wiring only.  Each stateful operator below is a shell over a step function in
`udfs/operators.py`: it loads its state, calls the step, applies the state writes,
registers the timers and yields the outputs.  tests/streaming_sim.py drives the same
steps as plain Python, for the property tests.  Sources and sinks come from `connectors/`, so tests can hand
`build()` a collection source and collect the outputs.

    records (value bytes, topic, partition, offset)
      -> parse-validate            Rejection -> DLQ side output
      -> dedup      key article_id first copy wins (state: seen, TTL)
                                   late beyond lateness -> late side output
      -> explode-terms             article -> one record per term bucket:
                                   (bucket, terms, window_start, example fields)
      -> term-windows key bucket   counts per (term, window); fires at window end,
                                   refreshes fired windows on late data
      -> rank        key window    ranks, revisions -> trend rows
"""

from __future__ import annotations

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

from connectors.flink_io import SIDE_TYPE, TREND_TYPE, KafkaRecordSource, SourceFactory, TrendSinks, to_sink_row
from core.config import Config, load_config
from udfs.dead_letter import dlq_record, late_record
from udfs.buckets import MAX_PARALLELISM, group_by_bucket
from udfs.operators import BucketWindows, Step, dedup_verdict, partition_watermark, rank_fire, rank_timers
from udfs.terms import article_terms
from udfs.validate import Rejection, parse_event
from udfs.windows import window_start

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
    failure, which the run without failure had rejected.  Whether a window has
    fired is decided downstream by term-windows' own timers, not by this watermark.
    """

    def __init__(self, config: Config):
        self.out_of_orderness_ms = config.out_of_orderness_ms

    def open(self, runtime_context: RuntimeContext) -> None:
        self.max_published_at = runtime_context.get_state(ValueStateDescriptor("max_published_at", Types.LONG()))
        # partition -> max_published_at: this operator is the state's only writer and a
        # restore builds a new instance, so the copy saves a state read per record.
        self.max_seen: dict[int, int | None] = {}
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
        if partition in self.max_seen:
            max_ts = self.max_seen[partition]
        else:
            max_ts = self.max_seen[partition] = self.max_published_at.value()
        watermark, new_max = partition_watermark(max_ts, parsed.published_at, self.out_of_orderness_ms)
        if new_max is not None:
            self.max_published_at.update(new_max)
            self.max_seen[partition] = new_max
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
        self.lateness_ms = config.allowed_lateness_ms

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
            # The heap backend's strategy (RocksDB ignores it): expired entries are
            # dropped a few at a time as state is touched.
            .cleanup_incrementally(10, False)
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
        verdict = dedup_verdict(bool(self.seen.value()), article, watermark, self.size_ms, self.lateness_ms)
        if verdict.write_seen:
            self.seen.update(True)
        if verdict.kind == "duplicate":
            self.duplicates.inc()
            return
        if verdict.kind == "late":
            self.late.inc()
            record = late_record(
                article, verdict.late_by_ms, watermark, topic, partition, offset,
                window_start=window_start(article.published_at, self.size_ms),
            )
            yield LATE_TAG, Row(article.article_id, record.decode())
            return
        yield article


class TermWindows(KeyedProcessFunction):
    """Keyed by term bucket (udfs/buckets.py): a shell over `udfs.operators.BucketWindows`.

    Emits (window_start, ((term, Candidate), ...), watermark) when a window fires, and
    again for a fired window (and the later fired windows whose baseline includes
    it) when late data within the allowed lateness changes it.  One record in
    carries all of an article's terms in the bucket, one record out all of a
    window's candidates in the bucket; timers are per (bucket, window).
    """

    def __init__(self, config: Config):
        self.size_ms = config.window_ms
        self.lateness_ms = config.allowed_lateness_ms
        self.n = config.baseline_windows
        self.k = config.examples

    def open(self, runtime_context: RuntimeContext) -> None:
        # state_key(window_start, term) -> TermWindow.to_state()
        self.counts = runtime_context.get_map_state(
            MapStateDescriptor("counts", Types.STRING(), Types.PICKLED_BYTE_ARRAY())
        )
        # the latest timer that fired for the bucket (BucketWindows.timer_watermark)
        self.timer_watermark = runtime_context.get_state(ValueStateDescriptor("timer_watermark", Types.LONG()))
        self.buckets: dict[int, BucketWindows] = {}

    def _bucket(self, key: int) -> BucketWindows:
        bucket = self.buckets.get(key)
        if bucket is None:
            # First touch of this key since the operator started: load its state once.
            bucket = self.buckets[key] = BucketWindows(self.size_ms, self.lateness_ms, self.n, self.k).load(
                self.counts.items(), self.timer_watermark.value()
            )
        return bucket

    def _apply(self, step: Step, timers) -> None:
        for ts in step.timers:
            timers.register_event_time_timer(ts)
        if step.puts:
            # One call into the JVM for all the record's terms (a call per term cost more than the counting).
            self.counts.put_all(step.puts)
        for key in step.removes:
            self.counts.remove(key)

    def process_element(self, value, ctx: KeyedProcessFunction.Context) -> Iterator:
        _, terms, ws, article_id, feed_url, title, published_at = value
        step = self._bucket(ctx.get_current_key()).add(
            ws, terms, article_id=article_id, feed_url=feed_url, title=title, published_at=published_at,
        )
        self._apply(step, ctx.timer_service())
        for w, candidates in step.out:
            yield w, candidates, step.watermark

    def on_timer(self, timestamp: int, ctx: KeyedProcessFunction.OnTimerContext) -> Iterator:
        step = self._bucket(ctx.get_current_key()).on_timer(timestamp)
        self.timer_watermark.update(step.watermark)
        self._apply(step, ctx.timer_service())
        # The watermark has reached the timer: it is at least `timestamp`.
        for ws, candidates in step.out:
            yield ws, candidates, timestamp


class Rank(KeyedProcessFunction):
    """Keyed by window_start: ranks the window's terms and emits changed rows as new revisions.

    Candidates wait in `pending` until a timer just after the current watermark,
    so that all the updates one watermark step brings are ranked together.
    """

    def __init__(self, config: Config):
        self.size_ms = config.window_ms
        self.lateness_ms = config.allowed_lateness_ms
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
        ws, candidates, watermark = value
        self.pending.put_all({term: tuple(candidate) for term, candidate in candidates})
        timers = ctx.timer_service()
        for ts in rank_timers(ws, watermark, self.size_ms, self.lateness_ms):
            timers.register_event_time_timer(ts)
        return iter(())

    def on_timer(self, timestamp: int, ctx: KeyedProcessFunction.OnTimerContext) -> Iterator:
        ws = ctx.get_current_key()
        pending = dict(self.pending.items())
        step = rank_fire(
            dict(self.previous.items()) if pending else {}, pending, timestamp, ws,
            size_ms=self.size_ms, lateness_ms=self.lateness_ms, min_support=self.min_support,
            emitted_at=int(time.time() * 1000),
        )
        if pending:
            self.pending.clear()
        if step.rows:
            self.previous.put_all({row.term: row for row in step.rows})
            self.rows_out.inc(len(step.rows))
        for row in step.rows:
            yield to_sink_row(row)
        if step.clear:
            self.previous.clear()
            self.pending.clear()


class JobOutputs(NamedTuple):
    trends: DataStream  # TREND_TYPE rows
    dead_letters: DataStream  # SIDE_TYPE rows
    late: DataStream  # SIDE_TYPE rows


def build(
    env: StreamExecutionEnvironment, t_env: StreamTableEnvironment, config: Config, source: SourceFactory
) -> JobOutputs:
    """Wire the pipeline on `source`; the caller attaches sinks and executes."""
    size_ms, include_summary, buckets = config.window_ms, config.include_summary, config.term_buckets
    p = config.parallelism
    # Every operator at the job's parallelism: a subtask that never gets data
    # would hold the watermark (and so every window) back.
    env.set_parallelism(p)
    # Fixed, so key groups (and the term buckets' key labels) never depend on p.
    env.set_max_parallelism(MAX_PARALLELISM)

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

    # -> Article: first copy only, not late beyond lateness
    articles = (
        parsed.key_by(lambda v: v[0].article_id, key_type=Types.STRING())
        .process(Dedup(config))
        .name("dedup")
        .uid("dedup")
        .set_parallelism(p)
    )

    # -> (bucket key, terms, window_start, article_id, feed_url, title, published_at):
    # one record per term bucket the article's terms fall into (udfs/buckets.py).
    def explode(article):
        ws = window_start(article.published_at, size_ms)
        terms = article_terms(article, include_summary=include_summary)
        for key, bucket_terms in group_by_bucket(terms, buckets).items():
            yield key, bucket_terms, ws, article.article_id, article.feed_url, article.title, article.published_at

    term_hits = articles.flat_map(explode).name("explode-terms").uid("explode-terms").set_parallelism(p)

    # -> (window_start, ((term, Candidate), ...), watermark)
    # The uid names the state layout ("<window_start> <term>" keyed by bucket); the
    # earlier per-term layout ("term-windows") does not map onto it: upgrade by replay.
    candidates = (
        term_hits.key_by(lambda v: v[0], key_type=Types.INT())
        .process(TermWindows(config))
        .name("term-windows")
        .uid("term-windows-by-bucket")
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


def main() -> None:
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
    main()
