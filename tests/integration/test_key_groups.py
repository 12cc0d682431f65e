"""udfs/buckets.py's copy of Flink's key-group assignment agrees with the JVM's."""

from __future__ import annotations

from udfs.buckets import MAX_PARALLELISM, bucket_key, bucket_keys, subtask_of


def test_subtask_of_matches_flink() -> None:
    from pyflink.java_gateway import get_gateway

    jvm = get_gateway().jvm
    assign = jvm.org.apache.flink.runtime.state.KeyGroupRangeAssignment.assignKeyToParallelOperator
    keys = list(range(-50, 400)) + [2**31 - 1, -(2**31)] + list(bucket_keys(8))
    for p in (1, 2, 3, 4, 8):
        for key in keys:
            assert subtask_of(key, p) == assign(jvm.java.lang.Integer(key), MAX_PARALLELISM, p), (key, p)


def test_the_jvm_term_bucket_key_is_pythons() -> None:
    """The job buckets a window's counted terms in the JVM (`term_bucket_key`) and an article
    routed one by one in Python (`bucket_key`): both must land a term on the same key."""
    from pyflink.table import EnvironmentSettings, TableEnvironment

    from connectors.flink_io import register_jvm_functions

    t_env = TableEnvironment.create(EnvironmentSettings.in_batch_mode())
    register_jvm_functions(t_env)
    terms = ["storm", "storm bram", "tag:home", "feed:https://example.com/rss", "ñandú", "東京", "", "a b c"]
    for buckets in (1, 4, 8):
        keys = ", ".join(str(key) for key in bucket_keys(buckets))
        values = ", ".join("('" + term.replace("'", "''") + "')" for term in terms)
        table = t_env.sql_query(
            f"SELECT term, term_bucket_key(term, ARRAY[{keys}]) FROM (VALUES {values}) AS t (term)"
        )
        with table.execute().collect() as rows:
            got = {row[0]: row[1] for row in rows}
        assert got == {term: bucket_key(term, buckets) for term in terms}, buckets
