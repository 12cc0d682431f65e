"""The JVM's fold of a (window, term bucket)'s hits (`fold_term_hits`) is Python's (`counted_bucket`)."""

from __future__ import annotations

import json
import random

from udfs.operators import counted_bucket, folded_bucket

H = 3_600_000

# Strings whose order differs by code point and by UTF-16 unit (U+1D518 against U+FB01),
# quotes, and ids whose CRC-32s fill more than one sketch.
TERMS = ["storm", "storm bram", "ñandú", "東京", "\U0001d518nion", "\ufb01re", 'say "no"', "tag:home", ""]
FEEDS = ["https://a.example/rss", "https://b.example/feed", "https://\U0001d518.example/", "https://\ufb01.example/"]


def _hits(rng: random.Random, n: int) -> list[list[object]]:
    hits = []
    for i in range(n):
        term = rng.choice(TERMS)
        # Few distinct times, so examples are often decided by the article id.
        published_at = 5 * H + rng.choice([0, 1, 2, 60_000])
        article_id = rng.choice(["url:https://x.example/", "guid:\U0001d518-", "guid:\ufb01-"]) + str(i)
        title = rng.choice(["Storm hits", "Le «titre»", 'A "quoted" title', "東京 news"])
        hits.append([term, published_at, article_id, title, rng.choice(FEEDS)])
    rng.shuffle(hits)
    return hits


def _fold_in_flink(t_env, cases: list[tuple[list[list[object]], int]]) -> dict[int, str]:
    """Each case's hits through `fold_term_hits`, grouped by case: {case: the folded JSON}."""
    from pyflink.table import DataTypes

    rows = [(i, term, p, a, t, f, k) for i, (hits, k) in enumerate(cases) for term, p, a, t, f in hits]
    schema = DataTypes.ROW([
        DataTypes.FIELD("i", DataTypes.INT()), DataTypes.FIELD("term", DataTypes.STRING()),
        DataTypes.FIELD("p", DataTypes.BIGINT()), DataTypes.FIELD("a", DataTypes.STRING()),
        DataTypes.FIELD("t", DataTypes.STRING()), DataTypes.FIELD("f", DataTypes.STRING()),
        DataTypes.FIELD("k", DataTypes.INT()),
    ])
    t_env.create_temporary_view("hits", t_env.from_elements(rows, schema))
    table = t_env.sql_query("SELECT i, fold_term_hits(term, p, a, t, f, k) FROM hits GROUP BY i")
    with table.execute().collect() as result:
        return {row[0]: row[1] for row in result}


def test_the_jvm_fold_is_pythons() -> None:
    from pyflink.table import EnvironmentSettings, TableEnvironment

    from connectors.flink_io import register_jvm_functions

    t_env = TableEnvironment.create(EnvironmentSettings.in_batch_mode())
    # In two phases, as the job's window aggregation runs: `merge` (and the accumulator's
    # serializer between the phases) folds the partial aggregates.
    t_env.get_config().set("table.optimizer.agg-phase-strategy", "TWO_PHASE")
    register_jvm_functions(t_env)
    rng = random.Random(7)
    cases = [(_hits(rng, n), k) for n in (1, 5, 40, 300) for k in (0, 1, 3)]
    got = _fold_in_flink(t_env, cases)
    assert sorted(got) == list(range(len(cases)))
    for i, (hits, k) in enumerate(cases):
        _, expected = counted_bucket(json.dumps(hits), H, k)
        folded = folded_bucket(got[i])
        assert folded == expected, (i, k)
        # In the terms' code-point order, as Python sorts them.
        assert list(folded) == sorted(expected)


def test_the_jobs_window_aggregation_is_split_before_the_exchange() -> None:
    """The job's window aggregation runs as a local part before the exchange by term bucket and
    a global part after it: the exchange carries folded accumulators, not every term hit."""
    from pyflink.datastream import StreamExecutionEnvironment
    from pyflink.table import StreamTableEnvironment

    from connectors.flink_io import register_jvm_functions
    from core.config import Config
    from jobs.trends import create_routed_views

    env = StreamExecutionEnvironment.get_execution_environment()
    t_env = StreamTableEnvironment.create(env)
    register_jvm_functions(t_env)
    t_env.create_temporary_function("parse_record", _stand_in_parse())
    t_env.execute_sql("""
        CREATE TEMPORARY TABLE feed_records (
          `value` BYTES, `topic` STRING, `partition` INT, `offset` BIGINT,
          pt AS PROCTIME(), event_time TIMESTAMP_LTZ(3),
          WATERMARK FOR event_time AS event_time
        ) WITH ('connector' = 'datagen', 'number-of-rows' = '1')""")
    plan = t_env.explain_sql(create_routed_views(t_env, Config()))
    physical = plan.split("== Optimized Execution Plan ==")[-1]
    assert "LocalWindowAggregate" in physical and "GlobalWindowAggregate" in physical, physical


def _stand_in_parse():
    """parse_record's signature, for planning only (explain never runs it)."""
    from pyflink.table import DataTypes
    from pyflink.table.udf import udf

    from jobs.trends import PARSED_TYPE

    return udf(lambda value: None, input_types=[DataTypes.BYTES()], result_type=PARSED_TYPE)
