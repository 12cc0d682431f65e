"""Term buckets: stable, balanced key labels (udfs/buckets.py)."""

from __future__ import annotations

import subprocess
import sys

from hypothesis import given
from hypothesis import strategies as st

from udfs.buckets import bucket_keys, group_by_bucket, subtask_of, term_bucket


def test_bucket_is_stable_across_processes() -> None:
    # Python's hash() is salted per process; the bucket must not be.
    code = "from udfs.buckets import term_bucket; print([term_bucket(t, 4) for t in ('brexit', 'tag:uk', 'bank england')])"
    runs = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout for _ in range(2)}
    assert runs == {str([term_bucket(t, 4) for t in ("brexit", "tag:uk", "bank england")]) + "\n"}


def test_labels_land_one_per_subtask_at_parallelism_buckets() -> None:
    for buckets in (1, 2, 3, 4, 8, 16):
        keys = bucket_keys(buckets)
        assert len(set(keys)) == buckets
        assert sorted(subtask_of(k, buckets) for k in keys) == list(range(buckets))


def test_labels_spread_evenly_at_divisors() -> None:
    keys = bucket_keys(4)
    assert sorted(subtask_of(k, 2) for k in keys) == [0, 0, 1, 1]
    assert {subtask_of(k, 1) for k in keys} == {0}


def test_plain_labels_would_not_spread() -> None:
    # Why labels are picked: 0..3 all land on one subtask at parallelism 2.
    assert len({subtask_of(k, 2) for k in range(4)}) == 1


@given(st.lists(st.text(min_size=1, max_size=12), unique=True, max_size=30), st.integers(1, 8))
def test_grouping_partitions_the_terms(terms: list[str], buckets: int) -> None:
    terms_sorted = tuple(sorted(terms))
    grouped = group_by_bucket(terms_sorted, buckets)
    assert sorted(t for group in grouped.values() for t in group) == list(terms_sorted)
    keys = bucket_keys(buckets)
    for key, group in grouped.items():
        assert group == tuple(sorted(group))
        assert all(keys[term_bucket(t, buckets)] == key for t in group)
