"""udfs/buckets.py's copy of Flink's key-group assignment agrees with the JVM's."""

from __future__ import annotations

from udfs.buckets import MAX_PARALLELISM, bucket_keys, subtask_of


def test_subtask_of_matches_flink() -> None:
    from pyflink.java_gateway import get_gateway

    jvm = get_gateway().jvm
    assign = jvm.org.apache.flink.runtime.state.KeyGroupRangeAssignment.assignKeyToParallelOperator
    keys = list(range(-50, 400)) + [2**31 - 1, -(2**31)] + list(bucket_keys(8))
    for p in (1, 2, 3, 4, 8):
        for key in keys:
            assert subtask_of(key, p) == assign(jvm.java.lang.Integer(key), MAX_PARALLELISM, p), (key, p)
