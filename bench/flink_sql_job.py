"""The Flink SQL baseline: the same topic, dedup and tumbling counts, JVM only (no Python UDF).

Submitted like the trends job (`flink run -py`, config from FEEDTRENDS_* env):

    Kafka (json) -> dedup: ROW_NUMBER() OVER (PARTITION BY article_id ORDER BY proctime) = 1
                 -> TUMBLE(published_at, window_ms) counts per (window, feed_url),
                    per (window, tag) via UNNEST(tags), and per (window, title word)
                    via UNNEST(SPLIT(LOWER(title), ' ')) (a crude stand-in for terms)
                 -> blackhole

Offsets are committed to the consumer group `config.job_name` on each checkpoint,
so the harness detects the end exactly as for feedtrends.
"""

from __future__ import annotations

from pyflink.table import EnvironmentSettings, TableEnvironment

from connectors.flink_io import sql_interval
from core.config import load_config


def main() -> None:
    c = load_config()
    t_env = TableEnvironment.create(EnvironmentSettings.in_streaming_mode())
    conf = t_env.get_config()
    conf.set("parallelism.default", str(c.parallelism))
    conf.set("pipeline.name", c.job_name)
    conf.set("table.exec.source.idle-timeout", f"{c.idleness_ms} ms")
    # Dedup state lives as long as feedtrends' dedup TTL.
    conf.set("table.exec.state.ttl", f"{c.dedup_ttl_ms} ms")
    t_env.execute_sql(f"""
        CREATE TABLE events (
          article_id STRING,
          feed_url STRING,
          title STRING,
          tags ARRAY<STRING>,
          published_at BIGINT,
          ts AS TO_TIMESTAMP_LTZ(published_at, 3),
          pt AS PROCTIME(),
          WATERMARK FOR ts AS ts - {sql_interval(c.out_of_orderness_ms + 1)}
        ) WITH (
          'connector' = 'kafka',
          'topic' = '{c.events_topic}',
          'properties.bootstrap.servers' = '{c.kafka_bootstrap}',
          'properties.group.id' = '{c.job_name}',
          'properties.isolation.level' = 'read_committed',
          'scan.startup.mode' = 'earliest-offset',
          'format' = 'json',
          'json.ignore-parse-errors' = 'true',
          'json.fail-on-missing-field' = 'false'
        )""")
    t_env.execute_sql("""
        CREATE TEMPORARY VIEW articles AS
        SELECT article_id, feed_url, title, tags, ts FROM (
          SELECT *, ROW_NUMBER() OVER (PARTITION BY article_id ORDER BY pt ASC) AS rn FROM events
          WHERE article_id IS NOT NULL AND published_at IS NOT NULL
        ) WHERE rn = 1""")
    for name in ("feed_counts", "tag_counts", "word_counts"):
        t_env.execute_sql(
            f"CREATE TABLE {name} (window_start TIMESTAMP(3), term STRING, articles BIGINT) WITH ('connector' = 'blackhole')"
        )
    size = sql_interval(c.window_ms)
    statements = t_env.create_statement_set()
    statements.add_insert_sql(f"""
        INSERT INTO feed_counts
        SELECT window_start, feed_url, COUNT(*) FROM TABLE(TUMBLE(TABLE articles, DESCRIPTOR(ts), {size}))
        GROUP BY window_start, window_end, feed_url""")
    statements.add_insert_sql(f"""
        INSERT INTO tag_counts
        SELECT window_start, tag, COUNT(*) FROM TABLE(TUMBLE(TABLE articles, DESCRIPTOR(ts), {size}))
        CROSS JOIN UNNEST(tags) AS t (tag)
        GROUP BY window_start, window_end, tag""")
    statements.add_insert_sql(f"""
        INSERT INTO word_counts
        SELECT window_start, word, COUNT(DISTINCT article_id) FROM TABLE(TUMBLE(TABLE articles, DESCRIPTOR(ts), {size}))
        CROSS JOIN UNNEST(SPLIT(LOWER(title), ' ')) AS w (word)
        WHERE CHAR_LENGTH(word) > 1
        GROUP BY window_start, window_end, word""")
    statements.execute()


if __name__ == "__main__":
    main()
