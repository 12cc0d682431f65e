"""The trends job: Kafka events -> dedup -> tumbling term windows -> trend scores.

Wiring only.  Each stateful Python operator below is a shell over a step function in
`udfs/operators.py`: it loads its state, calls the step, applies the state writes,
registers the timers and yields the outputs.  tests/streaming_sim.py drives the same
steps as plain Python, for the property tests.  Sources and sinks come from `connectors/`, so tests can hand
`build()` a collection source and collect the outputs.

    records (value bytes, topic, partition, offset)     -- JVM (create_routed_views):
      -> parse-record              Python scalar function: columns and terms, or rejected
      -> OVER       key partition  the partition's max published_at -> its watermark (state, TTL)
      -> Deduplicate key article_id  first copy wins (state: seen, TTL)
      -> lateness + split          dlq / late / count (window not fired) / article (fired, within lateness)
      -> count rows: window table function per (window, term bucket): its term hits, folded per
                                   term (fold_term_hits, before and after the exchange), as JSON, once
                                                         -- Python from here on:
      -> route                     counted (window, bucket) -> one record (its JSON); article -> one
                                   record per term bucket; rejected -> DLQ, late -> late side output
      -> term-windows key bucket   counts per (term, window) (merges a counted record's terms);
                                   fires at window end,
                                   refreshes fired windows on late data
      -> rank        key window    ranks, revisions -> trend rows, one batch (JSON) per ranking
                                                         -- JVM (connectors/flink_io.TrendSinks):
      -> unpack-trend-rows         a row per revision: columns, Kafka key and value -> Kafka, Parquet
"""

from __future__ import annotations

import gc
import pickle
import time
from typing import Iterator, NamedTuple

from pyflink.common import Row, Types
from pyflink.datastream import (
    DataStream,
    KeyedProcessFunction,
    OutputTag,
    ProcessFunction,
    RuntimeContext,
    StreamExecutionEnvironment,
)
from pyflink.datastream.state import ListStateDescriptor, MapStateDescriptor, ValueStateDescriptor
from pyflink.datastream.time_domain import TimeDomain
from pyflink.table import DataTypes, StreamTableEnvironment
from pyflink.table.udf import ScalarFunction, udf

from connectors.flink_io import (
    SIDE_TYPE,
    KafkaRecordSource,
    SourceFactory,
    TrendSinks,
    sql_interval,
    register_jvm_functions,
    with_restored_watermarks,
)
from core.config import Config, load_config
from udfs.buckets import MAX_PARALLELISM, bucket_keys, group_by_bucket
from udfs.operators import (
    BucketWindows,
    Step,
    folded_bucket,
    parse_columns,
    rank_fire,
    rank_flush_time,
    rank_rows,
    rank_state,
    rank_timers,
    route_terms,
    side_record,
)
from udfs.trend_row import batch_json
from udfs.windows import expiry_time, window_start

DLQ_TAG = OutputTag("dead-letters", SIDE_TYPE)
LATE_TAG = OutputTag("late-events", SIDE_TYPE)


class ParseRecord(ScalarFunction):
    """parse-record: a record value -> `udfs.operators.parse_columns`, the one Python call per event.

    A stateless scalar function, run in thread mode inside the JVM operator that
    calls it; everything keyed before term-windows (each partition's watermark,
    the first copy per article, the lateness check) is JVM operators on its columns.
    """

    # No counters here: a thread-mode scalar function's metric group reports nothing
    # (seen on the cluster); route counts what the JVM operators let through.

    def __init__(self, include_summary: bool):
        self.include_summary = include_summary

    def eval(self, value: bytes) -> Row:
        return Row(*parse_columns(value, self.include_summary))


PARSED_TYPE = DataTypes.ROW([
    DataTypes.FIELD("ok", DataTypes.BOOLEAN()),
    DataTypes.FIELD("article_id", DataTypes.STRING()),
    DataTypes.FIELD("feed_url", DataTypes.STRING()),
    DataTypes.FIELD("title", DataTypes.STRING()),
    DataTypes.FIELD("published_at", DataTypes.BIGINT()),
    DataTypes.FIELD("terms", DataTypes.STRING()),
])


def create_routed_views(t_env: StreamTableEnvironment, config: Config) -> str:
    """The JVM part of the job over `feed_records`; returns the query of what goes on to Python.

    `feed_rows`: every record once, with its kind.  Each partition's watermark is
    `udfs.operators.partition_watermark` as an OVER aggregate keyed by partition
    (JVM keyed state, restored with the checkpoint); MAX skips the NULL
    `published_at` of rejected records, so only valid events move it.  The OVER's
    max includes the row itself, which gives the same verdict as the max before
    it: an event that raises the max is never late, and a late one leaves the max
    as it was.  The first copy per article_id is Flink's Deduplicate; a rejected
    record is its own key (its partition and offset), so it always passes.
    Lateness is `udfs.windows.classify_lateness` on that watermark.

    Kinds: "dlq" (rejected), "late" (beyond the lateness), "count" (its window has
    not fired by Flink's watermark here), "article" (its window has fired, within
    the lateness: term-windows revises it).  "count" rows are collected per (window,
    term bucket) by the window table function, whose watermark is never ahead of
    the one here (watermarks travel behind the rows before them), so it drops none
    of them; each (window, bucket) leaves the JVM once, its term hits folded into
    one aggregate per term (`fold_term_hits`, connectors/jvm) as JSON.  The planner
    splits that aggregation into a local part before the exchange by bucket and a
    global part after it; the local part sends its partial aggregates before the
    watermark that fires their window, so the global part drops none either.
    Term-windows then takes one record per (window, bucket), not one per (window,
    term) (a keyed Python record costs far more than folding its terms).  The
    bucket is `udfs.buckets.bucket_key`, computed in the JVM by `term_bucket_key`
    (connectors/jvm), so an article routed one by one lands on the same key.  A
    row whose record timestamp is not its `published_at` (a foreign producer) is
    never "count": the window function windows by the record timestamp.

    The query is a UNION of two branches over `feed_rows`; sub-plan reuse keeps
    one parse, OVER and Deduplicate under both.  The operator after the UNION has
    forward inputs, which Flink checkpoints aligned; with the partial aggregates that
    is why the cluster runs aligned checkpoints (flink-conf/config.yaml).
    """
    size, lateness, lag = config.window_ms, config.allowed_lateness_ms, config.out_of_orderness_ms + 1
    keys = ", ".join(str(key) for key in bucket_keys(config.term_buckets))
    t_env.execute_sql(f"""
    CREATE TEMPORARY VIEW feed_rows AS
    WITH parsed AS (
      SELECT `value`, `topic`, `partition`, `offset`, pt, event_time,
        p.ok AS ok, p.article_id AS article_id, p.feed_url AS feed_url, p.title AS title,
        p.published_at AS published_at, p.terms AS terms
      FROM (SELECT *, parse_record(`value`) AS p FROM feed_records)
    ),
    watermarked AS (
      SELECT *, MAX(published_at) OVER (
          PARTITION BY `partition` ORDER BY pt ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW
        ) - {lag} AS `watermark`
      FROM parsed
    ),
    first_copies AS (
      SELECT *, `watermark` - (published_at - MOD(published_at, {size}) + {size - 1} + {lateness}) AS late_by,
        published_at - MOD(published_at, {size}) + {size - 1} AS fire_at
      FROM (
        SELECT *, ROW_NUMBER() OVER (
            PARTITION BY article_id, CASE WHEN ok THEN -1 ELSE `partition` END, CASE WHEN ok THEN -1 ELSE `offset` END
            ORDER BY pt
          ) AS copy
        FROM watermarked)
      WHERE copy = 1
    )
    SELECT CASE
        WHEN NOT ok THEN 'dlq'
        WHEN late_by >= 0 THEN 'late'
        WHEN event_time = TO_TIMESTAMP_LTZ(published_at, 3)
          AND COALESCE(CURRENT_WATERMARK(event_time) < TO_TIMESTAMP_LTZ(fire_at, 3), TRUE) THEN 'count'
        ELSE 'article' END AS kind,
      `value`, `topic`, `partition`, `offset`, event_time, late_by, `watermark`,
      article_id, feed_url, title, published_at, terms
    FROM first_copies""")
    t_env.execute_sql("CREATE TEMPORARY VIEW on_time_rows AS SELECT * FROM feed_rows WHERE kind = 'count'")
    return f"""
    SELECT kind,
      -- The record value only where the side record is built from it.
      CASE WHEN kind IN ('dlq', 'late') THEN `value` END AS `value`, `topic`, `partition`, `offset`,
      late_by, `watermark`, article_id, feed_url, title, published_at, terms,
      CAST(NULL AS INT) AS bucket, CAST(NULL AS STRING) AS hits
    FROM feed_rows WHERE kind <> 'count'
    UNION ALL
    SELECT 'counted', CAST(NULL AS BYTES), CAST(NULL AS STRING), CAST(NULL AS INT), CAST(NULL AS BIGINT),
      CAST(NULL AS BIGINT), CAST(NULL AS BIGINT), CAST(NULL AS STRING), CAST(NULL AS STRING), CAST(NULL AS STRING),
      first_published_at, CAST(NULL AS STRING), bucket, hits
    FROM (
      SELECT bucket, MIN(published_at) AS first_published_at,
        fold_term_hits(term, published_at, article_id, title, feed_url, {config.examples}) AS hits
      FROM (
        SELECT window_start, window_end, term, term_bucket_key(term, ARRAY[{keys}]) AS bucket,
          published_at, article_id, title, feed_url
        FROM TABLE(TUMBLE(TABLE on_time_rows, DESCRIPTOR(event_time), {sql_interval(size)}))
        CROSS JOIN UNNEST(JSON_QUERY(terms, '$' RETURNING ARRAY<STRING>)) AS t (term))
      GROUP BY window_start, window_end, bucket)"""


class Route(ProcessFunction):
    """route: the JVM's rows -> term-windows' records (by term bucket); DLQ and late to side outputs.

    A "counted" row (one (window, term bucket) of on-time articles) becomes one record; an
    "article" row (its window had fired) one record per term bucket of its terms.
    """

    def __init__(self, config: Config):
        self.size_ms = config.window_ms
        self.buckets = config.term_buckets

    def open(self, runtime_context: RuntimeContext) -> None:
        metrics = runtime_context.get_metrics_group()
        self.dead_letters = metrics.counter("dead_letters")
        self.late = metrics.counter("late_beyond_lateness")

    def process_element(self, row, ctx: ProcessFunction.Context) -> Iterator:
        (kind, value, topic, partition, offset, late_by, watermark,
         article_id, feed_url, title, published_at, terms, bucket) = row[:13]
        if kind == "counted":
            # -> (bucket key, "counted", (window_start, the folded terms' JSON)): term-windows decodes
            # it. One string crosses the key-by and the exchange far more cheaply than the aggregates.
            yield bucket, "counted", (window_start(published_at, self.size_ms), row[13])
            return
        if kind == "article":
            ws = window_start(published_at, self.size_ms)
            # -> (bucket key, "article", (window_start, terms, article_id, feed_url, title, published_at))
            for key, bucket_terms in group_by_bucket(route_terms(terms), self.buckets).items():
                yield key, "article", (ws, bucket_terms, article_id, feed_url, title, published_at)
            return
        key, record = side_record(
            kind, value, topic, partition, offset, late_by_ms=late_by, watermark=watermark, size_ms=self.size_ms
        )
        if kind == "dlq":
            self.dead_letters.inc()
            yield DLQ_TAG, Row(key, record.decode())
        else:
            self.late.inc()
            yield LATE_TAG, Row(key, record.decode())


# Python's cyclic garbage collector runs a young collection every 700 new container
# objects and, every hundred of those, scans every object the keyed operators hold (each
# bucket's windows, each window's rows): a large share of their time under a profiler.  Their
# objects are tuples and dicts without cycles, freed by reference counting; the collector
# only has to find the rare cycle, and may do so less often.  The interpreter is the
# TaskManager's, shared by the job's Python operators.
GC_YOUNG_THRESHOLD = 50_000


def _collect_garbage_less_often() -> None:
    young, *older = gc.get_threshold()
    if young < GC_YOUNG_THRESHOLD:
        gc.set_threshold(GC_YOUNG_THRESHOLD, *older)


class TermWindows(KeyedProcessFunction):
    """Keyed by term bucket (udfs/buckets.py): a shell over `udfs.operators.BucketWindows`.

    Emits (window_start, pickled ((term, Candidate), ...), watermark) when a window fires, and
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
        _collect_garbage_less_often()
        # state_key(window_start, term) -> TermWindow.to_state(); a window counted upstream as one
        # entry (counted_key); an expired window's article counts (archive_key)
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
        _, kind, payload = value
        bucket = self._bucket(ctx.get_current_key())
        if kind == "counted":
            ws, folded = payload
            step = bucket.add_counted(ws, folded_bucket(folded), folded)
        else:
            ws, terms, article_id, feed_url, title, published_at = payload
            step = bucket.add(
                ws, terms, article_id=article_id, feed_url=feed_url, title=title, published_at=published_at,
            )
        self._apply(step, ctx.timer_service())
        for w, candidates in step.out:
            yield w, _pickled(candidates), step.watermark

    def on_timer(self, timestamp: int, ctx: KeyedProcessFunction.OnTimerContext) -> Iterator:
        step = self._bucket(ctx.get_current_key()).on_timer(timestamp)
        self.timer_watermark.update(step.watermark)
        self._apply(step, ctx.timer_service())
        # The watermark has reached the timer: it is at least `timestamp`.
        for ws, candidates in step.out:
            yield ws, _pickled(candidates), timestamp


def _pickled(candidates) -> bytes:
    """A window's candidates as the ranker keeps them pending: ((term, candidate as a plain tuple), ...).

    Pickled once here, they cross the key-by, the exchange and the ranker's pending
    state as bytes, and are unpickled once when ranked; handed over as objects, each
    of those steps pickled or unpickled every candidate again."""
    return pickle.dumps(tuple((term, tuple(candidate)) for term, candidate in candidates), pickle.HIGHEST_PROTOCOL)


class Rank(KeyedProcessFunction):
    """Keyed by window_start: ranks the window's terms and emits changed rows as new revisions.

    Candidates wait in `pending` until a timer just after the current watermark,
    so that all the updates one watermark step brings are ranked together, or, if
    no watermark comes for as long as the source waits before it calls a partition
    idle, until a processing-time timer (`rank_flush_time`).
    """

    def __init__(self, config: Config):
        self.size_ms = config.window_ms
        self.lateness_ms = config.allowed_lateness_ms
        self.n = config.baseline_windows
        self.min_support = config.min_support
        self.flush_ms = config.idleness_ms

    def open(self, runtime_context: RuntimeContext) -> None:
        _collect_garbage_less_often()
        # The window's rows as one value (udfs.operators.rank_state: each term's last revision, score,
        # rank and aliases, and its candidate), and the batches of candidates not yet ranked, in
        # arrival order (a later one wins).  One state call per ranking and per batch: a map entry
        # per term cost more than ranking it, and every ranking with news reads all the window's
        # rows anyway.
        self.previous = runtime_context.get_state(ValueStateDescriptor("rows", Types.PICKLED_BYTE_ARRAY()))
        # Each batch as term-windows pickled it (`_pickled`): a bytes object, which the state's
        # own pickling copies as it is (a PRIMITIVE_ARRAY(BYTE) list state fails to convert
        # its elements back in thread mode).
        self.pending = runtime_context.get_list_state(
            ListStateDescriptor("pending-pickled", Types.PICKLED_BYTE_ARRAY())
        )
        self.rows_out = runtime_context.get_metrics_group().counter("rows_out")

    def process_element(self, value, ctx: KeyedProcessFunction.Context) -> Iterator:
        ws, candidates, watermark = value
        self.pending.add(candidates)
        timers = ctx.timer_service()
        for ts in rank_timers(ws, watermark, self.size_ms, self.lateness_ms, self.n):
            timers.register_event_time_timer(ts)
        timers.register_processing_time_timer(rank_flush_time(timers.current_processing_time(), self.flush_ms))
        return iter(())

    def on_timer(self, timestamp: int, ctx: KeyedProcessFunction.OnTimerContext) -> Iterator:
        ws = ctx.get_current_key()
        if ctx.time_domain() == TimeDomain.PROCESSING_TIME:
            # No watermark came since these candidates arrived: rank them at the current one.
            timestamp = ctx.timer_service().current_watermark()
        pending: dict = {}
        for batch in self.pending.get() or ():
            pending.update(pickle.loads(batch))
        if not pending and timestamp < expiry_time(ws, self.size_ms, self.lateness_ms, self.n):
            return
        stored = (self.previous.value() or {}) if pending else {}
        step = rank_fire(
            rank_rows(stored, ws, self.size_ms), pending, timestamp, ws,
            size_ms=self.size_ms, lateness_ms=self.lateness_ms, n=self.n, min_support=self.min_support,
            emitted_at=int(time.time() * 1000),
        )
        if pending:
            self.pending.clear()
        if step.clear:
            self.previous.clear()
        elif step.changed:
            stored.update(rank_state(step.changed))
            self.previous.update(stored)
        if step.changed:
            self.rows_out.inc(len(step.changed))
            # All the changed rows as one string: the JVM unpacks them for the sinks
            # (converting a Flink row per output row out of Python cost more than ranking it).
            yield batch_json(row for row, _ in step.changed)


class JobOutputs(NamedTuple):
    trends: DataStream  # strings: batches of trend rows (udfs.trend_row.batch_json)
    dead_letters: DataStream  # SIDE_TYPE rows
    late: DataStream  # SIDE_TYPE rows


def build(
    env: StreamExecutionEnvironment, t_env: StreamTableEnvironment, config: Config, source: SourceFactory
) -> JobOutputs:
    """Wire the pipeline on `source`; the caller attaches sinks and executes."""
    p = config.parallelism
    # Every operator at the job's parallelism: a subtask that never gets data
    # would hold the watermark (and so every window) back.
    env.set_parallelism(p)
    # Fixed, so key groups (and the term buckets' key labels) never depend on p.
    env.set_max_parallelism(MAX_PARALLELISM)
    # Chained operators hand records on without a deep copy.  Safe here: the table
    # runtime's operators copy what they buffer, the Python operators convert each
    # record into Python objects, and the job's Java operators (WatermarkRestorer,
    # TrendRows) neither keep nor change a record they have passed on.  Without it,
    # every term row of the window function was copied with its title at each hop.
    env.get_config().enable_object_reuse()

    # The JVM operators' state (each partition's max, the first copies) expires as
    # the dedup TTL says, on processing time from its last write.
    t_env.get_config().set("table.exec.state.ttl", f"{config.dedup_ttl_ms} ms")
    register_jvm_functions(t_env)
    t_env.create_temporary_function(
        "parse_record", udf(ParseRecord(config.include_summary), result_type=PARSED_TYPE)
    )
    # Row(value, topic, partition, offset, pt, event_time), watermarks per partition from event_time,
    # and after a restore the watermark the source had reached (sent when the input goes idle)
    t_env.create_temporary_view("feed_records", with_restored_watermarks(t_env, source(env, t_env), config))

    # -> Row(kind, value, topic, partition, offset, late_by, watermark, article_id, feed_url, title,
    #        published_at, terms, bucket, hits): kind "counted" (one (window, term bucket) of on-time articles),
    #        "article" (a first copy for a fired window, within the lateness), "late" or "dlq"
    routed = t_env.to_data_stream(t_env.sql_query(create_routed_views(t_env, config)))

    # -> (bucket key, "counted", (window_start, folded JSON)) | (bucket key, "article", (window_start, terms, article fields))
    term_hits = routed.process(Route(config)).name("route").uid("route").set_parallelism(p)

    # -> (window_start, pickled ((term, candidate), ...), watermark)
    # The uid names the state layout ("<window_start> <term>" keyed by bucket); the
    # earlier per-term layout ("term-windows") does not map onto it: upgrade by replay.
    candidates = (
        term_hits.key_by(lambda v: v[0], key_type=Types.INT())
        .process(TermWindows(config))
        .name("term-windows")
        .uid("term-windows-by-bucket")
        .set_parallelism(p)
    )

    # -> one batch of trend rows (a JSON array) per ranking, a row per changed (window, term) revision
    trends = (
        candidates.key_by(lambda v: v[0], key_type=Types.LONG())
        .process(Rank(config), output_type=Types.STRING())
        .name("rank")
        .uid("rank")
        .set_parallelism(p)
    )
    return JobOutputs(trends, term_hits.get_side_output(DLQ_TAG), term_hits.get_side_output(LATE_TAG))


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
