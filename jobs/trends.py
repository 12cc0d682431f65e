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
                        bad input -> its DLQ JSON, passed on to count-articles' side output
      -> max published_at per Kafka partition (OVER aggregate)  JVM: the partition's own
                        watermark before the record, restored with the checkpoint
      -> first copy per article_id (ROW_NUMBER = 1)             JVM: Flink's Deduplicate,
                        state TTL = dedup TTL
      -> late split     JVM: marks late beyond lateness on the partition watermark;
                        count-articles turns those into late-output JSON
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
from pyflink.datastream import DataStream, KeyedProcessFunction, OutputTag, RuntimeContext, StreamExecutionEnvironment
from pyflink.datastream.state import ListStateDescriptor, MapStateDescriptor, ValueStateDescriptor
from pyflink.table import DataTypes, StreamTableEnvironment
from pyflink.table.udf import ScalarFunction, udf

from connectors.flink_io import SIDE_TYPE, TREND_TYPE, KafkaRecordSource, SourceFactory, TrendSinks
from feedtrends.config import Config, load_config
from udfs.buckets import MAX_PARALLELISM
from udfs.counting import ArticleCounts, ArticleHit, TermHistory
from udfs.intake import intake, late_output
from udfs.trend import revise
from udfs.trend_row import TrendRow, utc_date
from udfs.windows import MAX_WATERMARK, TermWindow, cleanup_time, fire_time, window_end

# What a row into count-articles is (its first column).
ARTICLE, DEAD_LETTER, LATE = 0, 1, 2
DLQ_TAG = OutputTag("dead-letters", SIDE_TYPE)
LATE_TAG = OutputTag("late-events", SIDE_TYPE)

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
    """Raw record -> `udfs.intake.Intake` columns."""

    def __init__(self, config: Config):
        self.include_summary = config.include_summary
        self.buckets = config.term_buckets

    def eval(self, value, topic, partition, offset):
        # No counters here: a scalar function's metrics are not reported in thread mode.
        return Row(*intake(value, topic, partition, offset, include_summary=self.include_summary, buckets=self.buckets))


class CountArticles(KeyedProcessFunction):
    """Keyed by article bucket: `udfs.counting.ArticleCounts` per key.

    Dead letters pass through to their side output; a record the JVM found late
    beyond lateness becomes its late-output JSON (parsed again: they are few).

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
        metrics = runtime_context.get_metrics_group()
        self.articles = metrics.counter("articles_counted")
        self.late = metrics.counter("late_beyond_lateness")
        self.dead_letters = metrics.counter("dead_letters")

    def _counts(self, key: int) -> ArticleCounts:
        counts = self.by_key.get(key)
        if counts is None:
            counts = self.by_key[key] = ArticleCounts(self.size_ms, self.k, self.buckets)
            counts.restore([ArticleHit(*hit) for hit in (self.hits.get() or ())])
        return counts

    def process_element(self, value, ctx: KeyedProcessFunction.Context) -> Iterator:
        # value: see build(), "-> (kind, key, ...": an article, a dead letter or a late record
        kind = value[0]
        if kind == DEAD_LETTER:
            self.dead_letters.inc()
            yield DLQ_TAG, Row(None, value[8])
            return
        if kind == LATE:
            self.late.inc()
            late_by, watermark = value[14], value[13]
            record = late_output(value[9], late_by, watermark, value[2], value[10], value[11], value[12])
            yield LATE_TAG, Row(value[3], record)
            return
        hit = ArticleHit(value[2], value[3], value[4], value[5], value[6], value[7])
        counts = self._counts(ctx.get_current_key())
        self.articles.inc()
        self.hits.add(tuple(hit))  # a plain tuple pickles faster than the NamedTuple
        due = counts.add(hit)
        if due is not None:
            ctx.timer_service().register_event_time_timer(due)

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
    dead_letters: DataStream  # SIDE_TYPE rows
    late: DataStream  # SIDE_TYPE rows


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

    # (value, topic, partition, offset, proc, e: Intake)
    t_env.create_temporary_view(
        "parsed",
        t_env.sql_query(
            "SELECT `value`, `topic`, `partition`, `offset`, proc,"
            " parse_record(`value`, `topic`, `partition`, `offset`) AS e FROM records"
        ),
    )
    # One straight line of JVM operators, which every record passes (bad input too):
    # split into branches, the planner would plan each on its own, with its own
    # Python function and dedup.
    #
    # Each partition's largest published_at so far (this record included: a record
    # that raises the maximum is on time either way, so lateness is the same as
    # against the watermark before it; bad input has published_at 0 and counts for
    # nothing).  Then the first copy per article (all copies share a Kafka partition,
    # so "first" is that partition's order; a dead letter is its own key).
    t_env.create_temporary_view(
        "first_copies",
        t_env.sql_query(
            "SELECT * FROM ("
            "  SELECT *, ROW_NUMBER() OVER (PARTITION BY dedup_key ORDER BY proc) AS copy FROM ("
            "    SELECT `value`, `topic`, `partition`, `offset`, proc, e.dlq AS dlq, e.key AS bucket,"
            "      e.article_id AS article_id, e.feed_url AS feed_url, e.title AS title,"
            "      e.published_at AS published_at, e.terms AS terms,"
            "      COALESCE(e.article_id, CONCAT(' dead letter ', CAST(`partition` AS STRING), ' ',"
            "        CAST(`offset` AS STRING))) AS dedup_key,"
            "      MAX(e.published_at) OVER (PARTITION BY `partition` ORDER BY proc"
            "        ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS max_published"
            "    FROM parsed))"
            " WHERE copy = 1"
        ),
    )
    # Where each first copy falls against its partition's watermark.
    wm = f"(max_published - {config.out_of_orderness_ms + 1})"
    ws = f"(published_at - MOD(published_at, {size}))"
    late_by = f"({wm} - ({ws} + {size - 1 + lateness}))"
    # -> (kind, key, window_start, article_id, feed_url, title, published_at, terms,
    #     dlq, and for a late record: value, topic, partition, offset, watermark, late_by)
    rows = t_env.to_data_stream(
        t_env.sql_query(
            f"SELECT CASE WHEN dlq IS NOT NULL THEN {DEAD_LETTER} WHEN {late_by} >= 0 THEN {LATE} ELSE {ARTICLE} END,"
            f" bucket, {ws}, article_id, feed_url, title, published_at, terms, dlq,"
            f" CASE WHEN dlq IS NULL AND {late_by} >= 0 THEN `value` END, `topic`, `partition`, `offset`,"
            f" {wm}, {late_by}"
            " FROM first_copies"
        )
    )

    # -> (term bucket key, window_start, ((term, TermWindow state), ...)) per fired window;
    #    dead letters and late records to side outputs
    partials = (
        rows.key_by(lambda r: r[1], key_type=Types.INT())
        .process(CountArticles(config))
        .name("count-articles")
        .uid("count-articles")
        .set_parallelism(p)
    )

    # -> (term bucket key, window_start, ((term, TermWindow state), ...)) per fired window
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
    return JobOutputs(trends, partials.get_side_output(DLQ_TAG), partials.get_side_output(LATE_TAG))


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
