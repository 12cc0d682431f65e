"""Flink sources and sinks of the trends job (all of the job's I/O lives here).

Source: the Kafka topic of events, read through Flink's Kafka *table* connector as
a table the job's first operators query.  The table connector gives what the
Python DataStream Kafka source cannot: the record's topic/partition/offset (the
dead-letter record names them) and watermarks generated per Kafka partition
inside the JVM from the record timestamp, which our producer sets to the event's
`published_at`.

Sinks: Flink's Kafka and filesystem table connectors, fed from DataStreams.  The
Kafka sinks run with `sink.delivery-guarantee = exactly-once` (Flink's
`KafkaSink` with `DeliveryGuarantee.EXACTLY_ONCE`: one Kafka transaction per
checkpoint); the Parquet sink is Flink's `FileSink` in bulk mode (files roll on
every checkpoint and are committed when it completes), partitioned by window
date.  Readers of the Kafka topics must use `isolation.level=read_committed`.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import reduce
from typing import Protocol

from pyflink.common import Row, Types
from pyflink.datastream import DataStream, StreamExecutionEnvironment
from pyflink.table import DataTypes, Schema, StatementSet, StreamTableEnvironment, Table
from pyflink.table.expressions import col

from connectors.flink_cluster import SOURCE_TABLE
from core.config import Config
from udfs.event import MIN_PUBLISHED_AT_MS
from udfs.trend_row import COLUMNS

# A Kafka record reaches the job as Row(value, topic, partition, offset, pt, event_time):
# pt its processing time (what "first copy" and "the partition's max so far" are
# ordered by), event_time the record timestamp, which makes the watermarks in the
# source and windows the JVM's counts; it never reaches Python.

# Flink's SQL type and row type of each column kind of udfs/trend_row.COLUMNS.
_FLINK_KINDS = {
    "int64": ("BIGINT", Types.LONG()),
    "int32": ("INT", Types.INT()),
    "double": ("DOUBLE", Types.DOUBLE()),
    "string": ("STRING", Types.STRING()),
    "list<string>": ("ARRAY<STRING>", Types.BASIC_ARRAY(Types.STRING())),
}

# One output row as the sinks take it: the row's columns (Parquet) plus the Kafka key
# and JSON value, all derived from the one spec of the row.  The ranker hands over a
# batch of rows as one string (`udfs.trend_row.batch_json`); `unpack_trend_rows` makes
# these rows of it in the JVM.
TREND_COLUMNS = [(c.name, *_FLINK_KINDS[c.kind]) for c in COLUMNS] + [
    ("kafka_key", "STRING", Types.STRING()),
    ("kafka_value", "STRING", Types.STRING()),
]
TREND_TYPE = Types.ROW_NAMED([name for name, _, _ in TREND_COLUMNS], [t for _, _, t in TREND_COLUMNS])
PARQUET_COLUMNS = TREND_COLUMNS[: len(COLUMNS)]


# How often the readers of an aligned source tell each other their watermarks (Flink's
# default is 1 s).  A reader that is ahead pauses until an update lets it go on, so the
# drift (config.max_source_drift_ms) must be read in many updates, not in one.
SOURCE_ALIGNMENT_UPDATE_MS = 200

# Dead-letter and late records: a key (may be None) and a JSON value.
SIDE_TYPE = Types.ROW_NAMED(["kafka_key", "kafka_value"], [Types.STRING(), Types.STRING()])


# Watermarks are "max timestamp - out-of-orderness - 1", as in Flink's
# BoundedOutOfOrderness generator (SQL's `ts - INTERVAL` has no "- 1": we add 1 ms).
def sql_interval(ms: int) -> str:
    """A SQL interval literal of exactly `ms` milliseconds (day precision 2: < 100 days)."""
    days, rest = divmod(ms, 86_400_000)
    hours, rest = divmod(rest, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    seconds, millis = divmod(rest, 1000)
    return f"INTERVAL '{days} {hours:02d}:{minutes:02d}:{seconds:02d}.{millis:03d}' DAY TO SECOND(3)"


def _sql_str(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _with(options: dict[str, str]) -> str:
    return ",\n  ".join(f"{_sql_str(k)} = {_sql_str(v)}" for k, v in options.items())


def _record_columns() -> Schema.Builder:
    """A schema builder with a Kafka record's physical columns: value, topic, partition, offset."""
    return (
        Schema.new_builder()
        .column("value", DataTypes.BYTES())
        .column("topic", DataTypes.STRING())
        .column("partition", DataTypes.INT())
        .column("offset", DataTypes.BIGINT())
    )


@dataclass(frozen=True)
class KafkaRecordSource:
    """Reads `config.events_topic` from the earliest offset (a restored job continues from its checkpoint)."""

    config: Config

    @property
    def group_id(self) -> str:
        # Offsets are committed to this group on every checkpoint: `status` reads
        # the lag from it (the job's progress lives in its checkpoints, not here).
        return self.config.job_name

    def options(self) -> dict[str, str]:
        """The source table's WITH options."""
        c = self.config
        options = {
            "connector": "kafka",
            "topic": c.events_topic,
            "properties.bootstrap.servers": c.kafka_bootstrap,
            "properties.group.id": self.group_id,
            "properties.isolation.level": "read_committed",
            "scan.startup.mode": "earliest-offset",
            # A watermark after every record, not on a wall-clock timer: lateness
            # then depends on the partition's data, not on how fast it is read.
            "scan.watermark.emit.strategy": "on-event",
            "format": "raw",
        }
        if c.max_source_drift_ms:
            # No partition is read more than this far (event time) ahead of the slowest one: its
            # reader pauses until the others catch up.  Flink's watermark is the minimum over the
            # partitions, so every window between the slowest and the fastest stays open, each
            # with its state: in a rebuild whose readers drifted apart the window aggregation's
            # state grew with the drift.  Idle partitions do not count.
            options.update({
                "scan.watermark.alignment.group": f"{c.job_name}-events",
                "scan.watermark.alignment.max-drift": f"{c.max_source_drift_ms} ms",
                "scan.watermark.alignment.update-interval": f"{SOURCE_ALIGNMENT_UPDATE_MS} ms",
            })
        return options

    def __call__(self, env: StreamExecutionEnvironment, t_env: StreamTableEnvironment) -> Table:
        c = self.config
        # A quiet partition must not hold back the watermark of the others.
        t_env.get_config().set("table.exec.source.idle-timeout", f"{c.idleness_ms} ms")
        options = self.options()
        t_env.execute_sql(
            f"""
            CREATE TEMPORARY TABLE {SOURCE_TABLE} (
              `value` BYTES,
              `topic` STRING METADATA VIRTUAL,
              `partition` INT METADATA VIRTUAL,
              `offset` BIGINT METADATA VIRTUAL,
              `record_ts` TIMESTAMP_LTZ(3) METADATA FROM 'timestamp' VIRTUAL,
              `pt` AS PROCTIME(),
              -- Event time is the record timestamp (= published_at).  An absurd one
              -- (from a broken producer) is replaced by the epoch so it can never
              -- push the watermark ahead; the record itself goes to the DLQ.
              `event_time` AS CASE
                 WHEN `record_ts` < TO_TIMESTAMP_LTZ({MIN_PUBLISHED_AT_MS}, 3)
                   OR `record_ts` > CURRENT_TIMESTAMP + INTERVAL '1' DAY
                 THEN TO_TIMESTAMP_LTZ(0, 3) ELSE `record_ts` END,
              WATERMARK FOR `event_time` AS `event_time` - {sql_interval(c.out_of_orderness_ms + 1)}
            ) WITH (
              {_with(options)}
            )"""
        )
        return t_env.sql_query(f"SELECT `value`, `topic`, `partition`, `offset`, `pt`, `event_time` FROM {SOURCE_TABLE}")


@dataclass(frozen=True)
class CollectionRecordSource:
    """Kafka-like records from memory, for tests: (partition, offset, timestamp_ms, value bytes).

    Goes through the same table-side watermark generation as the Kafka source, so
    watermarks advance with the data, not with the wall clock; with a single
    input subtask they are exactly "max timestamp so far - out-of-orderness - 1".
    """

    records: tuple[tuple[int, int, int, bytes], ...]
    config: Config
    topic: str = "feed-events"

    def __call__(self, env: StreamExecutionEnvironment, t_env: StreamTableEnvironment) -> Table:
        with_ts = Types.ROW_NAMED(
            ["value", "topic", "partition", "offset", "ts_ms"],
            [Types.PRIMITIVE_ARRAY(Types.BYTE()), Types.STRING(), Types.INT(), Types.LONG(), Types.LONG()],
        )
        rows = [Row(value, self.topic, partition, offset, ts) for partition, offset, ts, value in self.records]
        stream = env.from_collection(rows, type_info=with_ts).set_parallelism(1)
        schema = (
            _record_columns()
            .column("ts_ms", DataTypes.BIGINT())
            .column_by_expression("event_time", "TO_TIMESTAMP_LTZ(ts_ms, 3)")
            .column_by_expression("pt", "PROCTIME()")
            .watermark("event_time", f"event_time - {sql_interval(self.config.out_of_orderness_ms + 1)}")
            .build()
        )
        # One subtask for all the job's table operators, so each partition's records
        # keep their order up to the keyed operators, as they would from Kafka.  (The
        # Python operators after them still run at the job's parallelism.)
        t_env.get_config().set("table.exec.resource.default-parallelism", "1")
        table = t_env.from_data_stream(stream, schema)
        return table.select(col("value"), col("topic"), col("partition"), col("offset"), col("pt"), col("event_time"))


@dataclass(frozen=True)
class TrendSinks:
    """Exactly-once Kafka topics for trends, dead letters and late events; Parquet for trends."""

    config: Config

    def _kafka_table(self, t_env: StreamTableEnvironment, name: str, topic: str, txn_suffix: str) -> None:
        c = self.config
        options = {
            "connector": "kafka",
            "topic": topic,
            "properties.bootstrap.servers": c.kafka_bootstrap,
            "key.format": "raw",
            "key.fields": "kafka_key",
            "value.format": "raw",
            "value.fields-include": "EXCEPT_KEY",
            "sink.delivery-guarantee": "exactly-once",
            # Explicit, though transactions imply it: a commit is acknowledged only once
            # min.insync.replicas replicas hold the rows, so a lost broker loses none.
            "properties.acks": "all",
            # One prefix per sink: transactions of different sinks must not fence each other.
            "sink.transactional-id-prefix": f"{c.transactional_id_prefix}-{txn_suffix}",
            # Must stay below the broker's transaction.max.timeout.ms (1 h on our stack).
            "properties.transaction.timeout.ms": str(15 * 60 * 1000),
        }
        t_env.execute_sql(
            f"""
            CREATE TEMPORARY TABLE {name} (
              `kafka_key` STRING,
              `kafka_value` STRING
            ) WITH (
              {_with(options)}
            )"""
        )

    def attach(
        self,
        t_env: StreamTableEnvironment,
        trends: DataStream,
        dlq: DataStream,
        late: DataStream,
    ) -> StatementSet:
        c = self.config
        self._kafka_table(t_env, "trends_kafka", c.trends_topic, "trends")
        self._kafka_table(t_env, "dlq_kafka", c.dlq_topic, "dlq")
        self._kafka_table(t_env, "late_kafka", c.late_topic, "late")
        columns = ",\n  ".join(f"`{name}` {sql}" for name, sql, _ in PARQUET_COLUMNS)
        parquet_options = {
            "connector": "filesystem",
            "path": c.parquet_path.as_uri(),
            "format": "parquet",
            # Bulk formats roll on every checkpoint; files become visible on commit.
            "sink.rolling-policy.file-size": "128MB",
            "sink.partition-commit.policy.kind": "success-file",
            "sink.partition-commit.trigger": "process-time",
            "sink.partition-commit.delay": "0 s",
            # One writer, always chained with the parallelism-1 partition committer:
            # the chain (and the committer's max parallelism in a savepoint) is the same
            # at any job parallelism, so a savepoint taken at p=1 restores at p=2.
            "sink.parallelism": "1",
        }
        t_env.execute_sql(
            f"""
            CREATE TEMPORARY TABLE trends_parquet (
              {columns}
            ) PARTITIONED BY (`window_date`) WITH (
              {_with(parquet_options)}
            )"""
        )
        # `trends` is the ranker's batches of rows (one JSON string each).
        t_env.create_temporary_view("trend_rows", t_env.from_data_stream(unpack_trend_rows(trends)))
        t_env.create_temporary_view("dlq_rows", t_env.from_data_stream(dlq))
        t_env.create_temporary_view("late_rows", t_env.from_data_stream(late))
        parquet_cols = ", ".join(f"`{name}`" for name, _, _ in PARQUET_COLUMNS)
        statements = t_env.create_statement_set()
        statements.add_insert_sql("INSERT INTO trends_kafka SELECT kafka_key, kafka_value FROM trend_rows")
        statements.add_insert_sql(f"INSERT INTO trends_parquet SELECT {parquet_cols} FROM trend_rows")
        statements.add_insert_sql("INSERT INTO dlq_kafka SELECT kafka_key, kafka_value FROM dlq_rows")
        statements.add_insert_sql("INSERT INTO late_kafka SELECT kafka_key, kafka_value FROM late_rows")
        return statements


# The job's own JVM operator and function (connectors/jvm), in the jar `make install` builds into the jar dir.
WATERMARK_RESTORER = "feedtrends.flink.WatermarkRestorer"
TERM_BUCKET_KEY = "feedtrends.flink.TermBucketKey"
FOLD_TERM_HITS = "feedtrends.flink.FoldTermHits"
TREND_ROWS = "feedtrends.flink.TrendRows"


def _jvm_class(name: str):
    """A class of the job's jar on the gateway, by its one dotted name."""
    from pyflink.java_gateway import get_gateway

    return reduce(getattr, name.split("."), get_gateway().jvm)


def register_jvm_functions(t_env: StreamTableEnvironment) -> None:
    """SQL functions the job's queries call, from the job's own jar: `term_bucket_key(term, keys)`,
    `fold_term_hits(term, published_at, article_id, title, feed_url, k)` (an aggregate)."""
    t_env.create_java_temporary_function("term_bucket_key", TERM_BUCKET_KEY)
    t_env.create_java_temporary_function("fold_term_hits", FOLD_TERM_HITS)


def unpack_trend_rows(batches: DataStream) -> DataStream:
    """The ranker's batches (JSON strings) -> one TREND_TYPE row per trend row, in the JVM
    (`TrendRows`, the job's jar), chained to the ranker at its parallelism."""
    j_in = batches._j_data_stream
    j_out = (
        j_in.flatMap(_jvm_class(TREND_ROWS)(), TREND_TYPE.get_java_type_info())
        .name("unpack-trend-rows")
        .uid("unpack-trend-rows")
        .setParallelism(j_in.getParallelism())
    )
    return DataStream(j_out)


def with_restored_watermarks(t_env: StreamTableEnvironment, records: Table, config: Config) -> Table:
    """The record table behind `WatermarkRestorer`: the same rows and watermarks, plus the
    watermark the source had reached before a restore, sent when the input goes idle.

    Without it a job restored after its last records were read never closes its last
    windows (Flink keeps no watermark in a checkpoint).  The operator runs at the source's
    parallelism, chained to it, so each partition's records keep their order.
    """
    lag = config.out_of_orderness_ms + 1
    stream = t_env.to_data_stream(records.select(
        col("value"), col("topic"), col("partition"), col("offset"), col("event_time")
    ))
    j_in = stream._j_data_stream
    operator = _jvm_class(WATERMARK_RESTORER)(lag)
    j_out = (
        j_in.transform("watermark-restore", j_in.getType(), operator)
        .uid("watermark-restore")
        .setParallelism(j_in.getParallelism())
    )
    schema = (
        _record_columns()
        .column("event_time", DataTypes.TIMESTAMP_LTZ(3))
        # The record timestamp is the event time; the watermarks are the operator's.
        .column_by_metadata("rowtime", DataTypes.TIMESTAMP_LTZ(3))
        .column_by_expression("pt", "PROCTIME()")
        .watermark("rowtime", "SOURCE_WATERMARK()")
        .build()
    )
    table = t_env.from_data_stream(DataStream(j_out), schema)
    return table.select(
        col("value"), col("topic"), col("partition"), col("offset"), col("pt"), col("rowtime").alias("event_time")
    )


class SourceFactory(Protocol):
    """Builds the record table: (value, topic, partition, offset, pt, event_time), watermarks from event_time."""

    def __call__(self, env: StreamExecutionEnvironment, t_env: StreamTableEnvironment) -> Table: ...
