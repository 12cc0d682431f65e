"""The per-event core of a job that counts in the JVM, without ranking or sinks.

Measures how fast the trends job's per-event path could run if Python only
parsed each record and found its terms, and the JVM did the rest.  Submitted
like the Flink SQL baseline (`flink run -py`, config from FEEDTRENDS_* env);
`BENCH_CORE_STAGE` says how far it goes:

    parse: Kafka (raw) -> Python scalar function (parse_event + article_terms) -> blackhole
    count: ... -> first copy per article_id (ROW_NUMBER = 1, state TTL = dedup TTL)
               -> UNNEST(terms) -> TUMBLE(record timestamp) per term, COUNT(*) and
                  COUNT(DISTINCT feed_url), revised for late rows within the allowed
                  lateness (the planner's late-fire emit strategy) -> blackhole
    tvf:   the same counts with the window table function (two-phase aggregation
           over slices, as the Flink SQL baseline): no revisions, late rows dropped
    tvf-examples: tvf, plus each (window, term)'s K earliest articles as examples
           (a window Top-N over the same rows, one plan thanks to sub-plan reuse)
    tvf-split: tvf-examples on the rows whose window had not fired where they are
           split off (CURRENT_WATERMARK); the rows for fired windows, which the
           window would drop, go to a blackhole of their own (the revision path)
    tvf-hits: tvf-split, but each (window, term) row carries all its hits (published_at,
           article_id, title, feed_url) as one JSON array from the window's own
           accumulator (JSON_ARRAYAGG) instead of a Top-N, and a Python scalar
           function folds them into the counting aggregate (articles, distinct
           feeds, K earliest examples), as term-windows would on receiving the row

Offsets are committed to the consumer group `config.job_name` on each checkpoint,
so the harness detects the end exactly as for feedtrends.
"""

from __future__ import annotations

import heapq
import json
import os

from pyflink.common import Row
from pyflink.table import DataTypes, EnvironmentSettings, TableEnvironment
from pyflink.table.udf import ScalarFunction, udf

from connectors.flink_io import sql_interval
from core.config import load_config
from udfs.terms import article_terms
from udfs.validate import Rejection, parse_event

# Terms travel as one string: an ARRAY<STRING> result of a Python function is
# costlier to convert, and SPLIT in the JVM undoes the join.
TERM_SEPARATOR = "\x1f"

PARSED = DataTypes.ROW([
    DataTypes.FIELD("ok", DataTypes.BOOLEAN()),
    DataTypes.FIELD("article_id", DataTypes.STRING()),
    DataTypes.FIELD("feed_url", DataTypes.STRING()),
    DataTypes.FIELD("title", DataTypes.STRING()),
    DataTypes.FIELD("published_at", DataTypes.BIGINT()),
    DataTypes.FIELD("terms", DataTypes.STRING()),
])


class ParseRecord(ScalarFunction):
    """Record value -> (ok, article_id, feed_url, title, published_at, terms); bad input is ok = false (no DLQ here)."""

    def eval(self, value):
        parsed = parse_event(value)
        if isinstance(parsed, Rejection):
            return Row(False, "", "", "", 0, "")
        return Row(True, parsed.article_id, parsed.feed_url, parsed.title, parsed.published_at,
                   TERM_SEPARATOR.join(article_terms(parsed, include_summary=False)))


class FoldHits(ScalarFunction):
    """A (window, term)'s hits as JSON -> (articles, feeds, examples): the fold term-windows would do per row."""

    def __init__(self, k: int):
        self.k = k

    def eval(self, hits_json):
        hits = json.loads(hits_json)
        best = heapq.nsmallest(self.k, ((p, a, t) for p, a, t, _ in hits))
        return Row(len(hits), len({f for _, _, _, f in hits}), json.dumps([t for _, _, t in best]))


FOLDED = DataTypes.ROW([
    DataTypes.FIELD("articles", DataTypes.BIGINT()),
    DataTypes.FIELD("feeds", DataTypes.BIGINT()),
    DataTypes.FIELD("examples", DataTypes.STRING()),
])


def main() -> None:
    c = load_config()
    stage = os.environ.get("BENCH_CORE_STAGE", "count")
    t_env = TableEnvironment.create(EnvironmentSettings.in_streaming_mode())
    conf = t_env.get_config()
    conf.set("parallelism.default", str(c.parallelism))
    conf.set("pipeline.name", c.job_name)
    conf.set("python.execution-mode", "thread")
    conf.set("table.exec.source.idle-timeout", f"{c.idleness_ms} ms")
    conf.set("table.exec.state.ttl", f"{c.dedup_ttl_ms} ms")
    if stage == "count":
        # A fired window is revised by every late row until the watermark passes its
        # end + lateness, as the trends job revises its rows (the window table
        # function refuses these options).
        conf.set("table.exec.emit.late-fire.enabled", "true")
        conf.set("table.exec.emit.late-fire.delay", "0 s")
        conf.set("table.exec.emit.allow-lateness", f"{c.allowed_lateness_ms} ms")
    t_env.create_temporary_function("parse_record", udf(ParseRecord(), result_type=PARSED))
    t_env.execute_sql(f"""
        CREATE TABLE events (
          `value` BYTES,
          `record_ts` TIMESTAMP_LTZ(3) METADATA FROM 'timestamp' VIRTUAL,
          pt AS PROCTIME(),
          WATERMARK FOR record_ts AS record_ts - {sql_interval(c.out_of_orderness_ms + 1)}
        ) WITH (
          'connector' = 'kafka',
          'topic' = '{c.events_topic}',
          'properties.bootstrap.servers' = '{c.kafka_bootstrap}',
          'properties.group.id' = '{c.job_name}',
          'properties.isolation.level' = 'read_committed',
          'scan.startup.mode' = 'earliest-offset',
          'format' = 'raw'
        )""")
    t_env.execute_sql("""
        CREATE TEMPORARY VIEW parsed AS
        SELECT p.ok AS ok, p.article_id AS article_id, p.feed_url AS feed_url, p.title AS title,
          p.published_at AS published_at, p.terms AS terms, record_ts, pt
        FROM (SELECT parse_record(`value`) AS p, record_ts, pt FROM events)""")
    if stage == "parse":
        t_env.execute_sql("CREATE TABLE parsed_sink (article_id STRING, terms STRING) WITH ('connector' = 'blackhole')")
        t_env.execute_sql("INSERT INTO parsed_sink SELECT article_id, terms FROM parsed WHERE ok")
        return
    t_env.execute_sql("""
        CREATE TEMPORARY VIEW articles AS
        SELECT article_id, feed_url, title, published_at, terms, record_ts FROM (
          SELECT *, ROW_NUMBER() OVER (PARTITION BY article_id ORDER BY pt ASC) AS rn FROM parsed WHERE ok
        ) WHERE rn = 1""")
    t_env.execute_sql(
        "CREATE TABLE term_counts (window_start TIMESTAMP(3), term STRING, articles BIGINT, feeds BIGINT) "
        "WITH ('connector' = 'blackhole')")
    size = sql_interval(c.window_ms)
    if stage in ("tvf", "tvf-examples", "tvf-split", "tvf-hits"):
        conf.set("table.optimizer.reuse-optimize-block-with-digest-enabled", "true")
        statements = t_env.create_statement_set()
        counted = "articles"
        if stage in ("tvf-split", "tvf-hits"):
            fired = (f"COALESCE(CURRENT_WATERMARK(record_ts) >= TO_TIMESTAMP_LTZ("
                     f"published_at - MOD(published_at, {c.window_ms}) + {c.window_ms - 1}, 3), FALSE)")
            t_env.execute_sql(f"CREATE TEMPORARY VIEW split AS SELECT *, {fired} AS fired FROM articles")
            t_env.execute_sql("CREATE TEMPORARY VIEW on_time AS SELECT * FROM split WHERE NOT fired")
            t_env.execute_sql(
                "CREATE TABLE revisions (article_id STRING, published_at BIGINT, terms STRING)"
                " WITH ('connector' = 'blackhole')")
            statements.add_insert_sql("INSERT INTO revisions SELECT article_id, published_at, terms FROM split WHERE fired")
            counted = "on_time"
        t_env.execute_sql(f"""
            CREATE TEMPORARY VIEW hits AS
            SELECT window_start, window_end, term, article_id, feed_url, title, published_at
            FROM TABLE(TUMBLE(TABLE {counted}, DESCRIPTOR(record_ts), {size}))
            CROSS JOIN UNNEST(SPLIT(terms, U&'\\001F')) AS t (term)""")
        if stage == "tvf-hits":
            t_env.create_temporary_function("fold_hits", udf(FoldHits(c.examples), result_type=FOLDED))
            t_env.execute_sql(
                "CREATE TABLE term_folds (window_start TIMESTAMP(3), term STRING, articles BIGINT, feeds BIGINT,"
                " examples STRING) WITH ('connector' = 'blackhole')")
            statements.add_insert_sql("""
                INSERT INTO term_folds
                SELECT window_start, term, f.articles, f.feeds, f.examples FROM (
                  SELECT window_start, term, fold_hits(hits) AS f FROM (
                    SELECT window_start, term,
                      JSON_ARRAYAGG(JSON_ARRAY(published_at, article_id, title, feed_url)) AS hits
                    FROM hits GROUP BY window_start, window_end, term))""")
            statements.execute()
            return
        statements.add_insert_sql("""
            INSERT INTO term_counts
            SELECT window_start, term, COUNT(*), COUNT(DISTINCT feed_url) FROM hits
            GROUP BY window_start, window_end, term""")
        if stage in ("tvf-examples", "tvf-split"):
            t_env.execute_sql(
                "CREATE TABLE term_examples (window_start TIMESTAMP(3), term STRING, published_at BIGINT,"
                " article_id STRING, title STRING) WITH ('connector' = 'blackhole')")
            statements.add_insert_sql(f"""
                INSERT INTO term_examples
                SELECT window_start, term, published_at, article_id, title FROM (
                  SELECT *, ROW_NUMBER() OVER (PARTITION BY window_start, window_end, term
                                               ORDER BY published_at, article_id) AS rn
                  FROM hits)
                WHERE rn <= {c.examples}""")
        statements.execute()
        return
    t_env.execute_sql(f"""
        INSERT INTO term_counts
        SELECT TUMBLE_START(record_ts, {size}), term, COUNT(*), COUNT(DISTINCT feed_url)
        FROM articles CROSS JOIN UNNEST(SPLIT(terms, U&'\\001F')) AS t (term)
        GROUP BY TUMBLE(record_ts, {size}), term""")


if __name__ == "__main__":
    main()
