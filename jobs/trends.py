"""The trends job: Kafka events -> dedup -> tumbling term windows -> trend scores.

Wiring only.  Per-event work runs in the JVM wherever Flink has the operator, and
Python is called where our logic is: once per record to parse it and find its
terms, once per accepted article to count it, then per window.  Every decision is
made by a pure function in `udfs/`; each Python operator below loads its state,
calls that step, stores the result and sets timers (tests/streaming_sim.py drives
the same steps as plain Python, for the property tests).  Sources and sinks come
from `connectors/`, so tests can hand `build()` a collection source.

    records (value, topic, partition, offset, proc)            JVM: Kafka table source,
                                                                    per-partition watermarks
      -> parse-record   Python scalar function: parse, validate, terms
                        bad input -> DLQ (JSON made in Python, written by the JVM)
      -> max published_at per Kafka partition (OVER aggregate)  JVM: the partition's own
                        watermark before the record, restored with the checkpoint
      -> first copy per article_id (ROW_NUMBER = 1)             JVM: Flink's Deduplicate,
                        state TTL = dedup TTL
      -> late split     late beyond lateness on the partition watermark -> late output
      -> count-articles Python, keyed by article bucket: hits per open window, counted
                        out when the watermark passes the window's end
      -> term-windows   Python, keyed by term bucket: counts per (term, window) and the
                        term's history; candidates when a window fires or changes
      -> rank           Python, keyed by window: ranks, revisions -> trend rows
"""

from __future__ import annotations

import sys
import time
from typing import Iterator, NamedTuple

from pyflink.common import Row, Types
from pyflink.datastream import DataStream, KeyedProcessFunction, RuntimeContext, StreamExecutionEnvironment
from pyflink.datastream.state import ListStateDescriptor, MapStateDescriptor, ValueStateDescriptor
from pyflink.table import DataTypes, StreamTableEnvironment, Table
from pyflink.table.udf import FunctionContext, ScalarFunction, udf

from connectors.flink_io import TREND_TYPE, KafkaRecordSource, SourceFactory, TrendSinks
from feedtrends.config import Config, load_config
from udfs.buckets import MAX_PARALLELISM
from udfs.counting import ArticleCounts, ArticleHit, TermHistory
from udfs.intake import intake, late_output
from udfs.trend import revise
from udfs.trend_row import TrendRow, utc_date
from udfs.windows import TermWindow, cleanup_time, fire_time, window_end

MAX_WATERMARK = 2**63 - 1

INTAKE_TYPE = DataTypes.ROW(
    [
        DataTypes.FIELD("dlq", DataTypes.STRING()),
        DataTypes.FIELD("key", DataTypes.INT()),
        DataTypes.FIELD("article_id", DataTypes.STRING()),
        DataTypes.FIELD("feed_url", DataTypes.STRING()),
        DataTypes.FIELD("title", DataTypes.STRING()),
        DataTypes.FIELD("published_at", DataTypes.BIGINT()),
        DataTypes.FIELD("terms", DataTypes.STRING()),
    ]
)


class ParseRecord(ScalarFunction):
    """Raw record -> `udfs.intake.Intake` columns; counts records in and dead letters."""

    def __init__(self, config: Config):
        self.include_summary = config.include_summary
        self.buckets = config.term_buckets

    def open(self, function_context: FunctionContext) -> None:
        metrics = function_context.get_metric_group()
        self.events_in = metrics.counter("events_in")
        self.dead_letters = metrics.counter("dead_letters")

    def eval(self, value, topic, partition, offset):
        self.events_in.inc()
        result = intake(value, topic, partition, offset, include_summary=self.include_summary, buckets=self.buckets)
        if result.dlq is not None:
            self.dead_letters.inc()
        return Row(*result)


class LateRecord(ScalarFunction):
    """The late-output JSON of a record the JVM found late beyond lateness; counts them."""

    def open(self, function_context: FunctionContext) -> None:
        self.late = function_context.get_metric_group().counter("late_beyond_lateness")

    def eval(self, value, late_by_ms, watermark, window_start, topic, partition, offset):
        self.late.inc()
        return late_output(value, late_by_ms, watermark, window_start, topic, partition, offset)


class CountArticles(KeyedProcessFunction):
    """Keyed by article bucket: `udfs.counting.ArticleCounts` per key.

    State: the hits of the windows not counted out yet, one list entry per article
    (the only state write per article).  The in-memory copy is what the state holds:
    this operator is its only writer and a restore builds a new instance.
    """

    def __init__(self, config: Config):
        self.size_ms = config.window_ms
        self.k = config.examples
        self.buckets = config.term_buckets

    def open(self, runtime_context: RuntimeContext) -> None:
        self.hits = runtime_context.get_list_state(ListStateDescriptor("hits", Types.PICKLED_BYTE_ARRAY()))
        self.by_key: dict[int, ArticleCounts] = {}
        self.articles = runtime_context.get_metrics_group().counter("articles_counted")

    def _counts(self, key: int) -> ArticleCounts:
        counts = self.by_key.get(key)
        if counts is None:
            counts = self.by_key[key] = ArticleCounts(self.size_ms, self.k, self.buckets)
            counts.restore([ArticleHit(*hit) for hit in (self.hits.get() or ())])
        return counts

    def process_element(self, value, ctx: KeyedProcessFunction.Context) -> Iterator:
        # value: (key, window_start, article_id, feed_url, title, published_at, terms)
        hit = ArticleHit(value[1], value[2], value[3], value[4], value[5], value[6])
        counts = self._counts(ctx.get_current_key())
        self.articles.inc()
        self.hits.add(tuple(hit))  # a plain tuple pickles faster than the NamedTuple
        due = counts.add(hit)
        if due is not None:
            ctx.timer_service().register_event_time_timer(due)
        return iter(())

    def on_timer(self, timestamp: int, ctx: KeyedProcessFunction.OnTimerContext) -> Iterator:
        out, remaining = self._counts(ctx.get_current_key()).fire(timestamp)
        if remaining is not None:
            if remaining:
                self.hits.update([tuple(hit) for hit in remaining])
            else:
                self.hits.clear()
        for key, ws, partial in out:
            yield key, ws, tuple((term, agg.to_state()) for term, agg in partial)


class TermWindows(KeyedProcessFunction):
    """Keyed by term bucket (udfs/buckets.py): `udfs.counting.TermHistory` per key.

    Emits (window_start, ((term, Candidate), ...), watermark) when a window fires,
    and again for a fired window (and the later fired windows whose baseline
    includes it) when late data within the allowed lateness changes it.
    """

    def __init__(self, config: Config):
        self.size_ms = config.window_ms
        self.lateness_ms = config.lateness_ms
        self.n = config.baseline_windows
        self.k = config.examples

    def open(self, runtime_context: RuntimeContext) -> None:
        # "<window_start> <term>" -> TermWindow.to_state(); window_start -> terms not emitted yet
        self.counts = runtime_context.get_map_state(
            MapStateDescriptor("counts", Types.STRING(), Types.PICKLED_BYTE_ARRAY())
        )
        self.changed = runtime_context.get_map_state(
            MapStateDescriptor("changed", Types.LONG(), Types.PICKLED_BYTE_ARRAY())
        )
        self.watermark = runtime_context.get_state(ValueStateDescriptor("watermark", Types.LONG()))
        self.by_key: dict[int, TermHistory] = {}

    def _history(self, key: int) -> TermHistory:
        history = self.by_key.get(key)
        if history is None:
            history = self.by_key[key] = TermHistory(self.size_ms, self.lateness_ms, self.n, self.k)
            history.restore(
                [(state_key, TermWindow.from_state(agg)) for state_key, agg in self.counts.items()],
                [(ws, term) for ws, terms in self.changed.items() for term in terms],
                self.watermark.value(),
            )
        return history

    def process_element(self, value, ctx: KeyedProcessFunction.Context) -> Iterator:
        _, ws, partial = value
        history = self._history(ctx.get_current_key())
        updates, timers = history.merge(ws, tuple((term, TermWindow.from_state(agg)) for term, agg in partial))
        # One call into the JVM for all the partial's terms.
        self.counts.put_all({state_key: agg.to_state() for state_key, agg in updates.items()})
        self.changed.put(ws, sorted(history.changed[ws]))
        for due in timers:
            ctx.timer_service().register_event_time_timer(due)
        return iter(())

    def on_timer(self, timestamp: int, ctx: KeyedProcessFunction.OnTimerContext) -> Iterator:
        history = self._history(ctx.get_current_key())
        before = history.watermark
        emitted, removed, done = history.fire(timestamp, ctx.timer_service().current_watermark())
        if history.watermark != before:
            self.watermark.update(history.watermark)
        for state_key in removed:
            self.counts.remove(state_key)
        for ws in done:
            self.changed.remove(ws)
        # The watermark has reached the timer: it is at least `timestamp`.
        for ws, candidates in emitted:
            yield ws, candidates, timestamp


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
        ws, candidates, watermark = value
        self.pending.put_all({term: tuple(candidate) for term, candidate in candidates})
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
            if rows:
                self.previous.put_all({row.term: row for row in rows})
                self.rows_out.inc(len(rows))
            for row in rows:
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
    dead_letters: Table  # (kafka_key, kafka_value)
    late: Table  # (kafka_key, kafka_value)


def build(
    env: StreamExecutionEnvironment, t_env: StreamTableEnvironment, config: Config, source: SourceFactory
) -> JobOutputs:
    """Wire the pipeline on `source`; the caller attaches sinks and executes."""
    p = config.parallelism
    size, lateness = config.window_ms, config.lateness_ms
    # Every operator at the job's parallelism: a subtask that never gets data
    # would hold the watermark (and so every window) back.
    env.set_parallelism(p)
    # Fixed, so key groups (and the buckets' key labels) never depend on p.
    env.set_max_parallelism(MAX_PARALLELISM)
    table_config = t_env.get_config()
    # The parsed records feed the DLQ and the articles: without this the planner
    # runs the Python function (and everything before it) once per consumer.
    table_config.set("table.optimizer.reuse-optimize-block-with-digest-enabled", "true")
    # The JVM's keyed state (partition maxima, the dedup's seen ids) expires after the
    # dedup TTL without an update (processing time, as Flink's TTL is).
    table_config.set("table.exec.state.ttl", f"{config.dedup_ttl_ms} ms")

    t_env.create_temporary_view("records", source(env, t_env))
    t_env.create_temporary_function("parse_record", udf(ParseRecord(config), result_type=INTAKE_TYPE))
    t_env.create_temporary_function(
        "late_record", udf(LateRecord(), result_type=DataTypes.STRING())
    )

    # (value, topic, partition, offset, proc, e: Intake)
    t_env.create_temporary_view(
        "parsed",
        t_env.sql_query(
            "SELECT `value`, `topic`, `partition`, `offset`, proc,"
            " parse_record(`value`, `topic`, `partition`, `offset`) AS e FROM records"
        ),
    )
    dead_letters = t_env.sql_query(
        "SELECT CAST(NULL AS STRING) AS kafka_key, e.dlq AS kafka_value FROM parsed WHERE e.dlq IS NOT NULL"
    )

    # Valid events with their partition's largest published_at so far (this record
    # included: a record that raises the maximum is on time either way, so lateness is
    # the same as against the watermark before it).
    t_env.create_temporary_view(
        "valid",
        t_env.sql_query(
            "SELECT `value`, `topic`, `partition`, `offset`, proc, e.key AS bucket, e.article_id AS article_id,"
            " e.feed_url AS feed_url, e.title AS title, e.published_at AS published_at, e.terms AS terms,"
            " MAX(e.published_at) OVER (PARTITION BY `partition` ORDER BY proc"
            "   ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS max_published"
            " FROM parsed WHERE e.dlq IS NULL"
        ),
    )
    # First copy per article (all copies share a Kafka partition, so "first" is that
    # partition's order), then where it falls against the partition watermark.
    wm = f"(max_published - {config.out_of_orderness_ms + 1})"
    ws = f"(published_at - MOD(published_at, {size}))"
    t_env.create_temporary_view(
        "first_copies",
        t_env.sql_query(
            f"SELECT `value`, `topic`, `partition`, `offset`, bucket, article_id, feed_url, title, published_at,"
            f" terms, {wm} AS wm, {ws} AS ws, {wm} - ({ws} + {size - 1 + lateness}) AS late_by"
            " FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY article_id ORDER BY proc) AS copy FROM valid)"
            " WHERE copy = 1"
        ),
    )
    late = t_env.sql_query(
        "SELECT article_id AS kafka_key,"
        " late_record(`value`, late_by, wm, ws, `topic`, `partition`, `offset`) AS kafka_value"
        " FROM first_copies WHERE late_by >= 0"
    )
    # -> (article bucket key, window_start, article_id, feed_url, title, published_at, terms)
    on_time = t_env.to_data_stream(
        t_env.sql_query(
            "SELECT bucket, ws, article_id, feed_url, title, published_at, terms FROM first_copies WHERE late_by < 0"
        )
    )

    # -> (term bucket key, window_start, ((term, TermWindow state), ...)) per fired window
    partials = (
        on_time.key_by(lambda r: r[0], key_type=Types.INT())
        .process(CountArticles(config))
        .name("count-articles")
        .uid("count-articles")
        .set_parallelism(p)
    )

    # -> (window_start, ((term, Candidate), ...), watermark)
    # The uid names the state layout (partials merged per "<window_start> <term>"):
    # earlier layouts do not map onto it, so an upgrade is a replay.
    candidates = (
        partials.key_by(lambda v: v[0], key_type=Types.INT())
        .process(TermWindows(config))
        .name("term-windows")
        .uid("term-windows-partials")
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
    return JobOutputs(trends, dead_letters, late)


def main(argv: list[str] | None = None) -> None:
    config = load_config()
    env = StreamExecutionEnvironment.get_execution_environment()
    t_env = StreamTableEnvironment.create(env)
    # The table operators (Kafka source, dedup, Kafka and Parquet sinks) get planner
    # uids, so their state maps onto the job at another parallelism; derived ids would
    # depend on the job's shape (the Parquet writer chains with its committer only at p = 1).
    t_env.get_config().set("table.exec.uid.generation", "ALWAYS")
    outputs = build(env, t_env, config, KafkaRecordSource(config))
    TrendSinks(config).attach(t_env, *outputs).attach_as_datastream()
    env.execute(config.job_name)


if __name__ == "__main__":
    main(sys.argv[1:])
