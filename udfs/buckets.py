"""Term buckets: how the term-windows operator's work is keyed.

Each article counts ~11 terms.  Sending one record per (article, term) into a
term-keyed Python operator cost more than everything else in the job together
(BENCHMARKS.md: a keyed Python record costs ~20-50 us in thread mode, the state
calls it makes ~5 us).  So the terms are keyed by a *bucket* of terms instead:
an article becomes one record per bucket its terms fall into (~3.8 records for
11 terms and 4 buckets), and the operator keeps every term of its bucket.

Two rules keep this correct and balanced:

* A term's bucket must never change while its state lives, so it comes from a
  stable hash (CRC-32: Python's own `hash()` differs per process) and the number
  of buckets is part of the deployment, like a topic's partition count: changing
  it needs a replay (`feedtrends replay`), not a restart.
* Flink spreads keys over subtasks by a hash of the key; with only a handful of
  keys, the plain labels 0..3 all land on the same subtask at parallelism 2.  So
  each bucket gets a *key label* picked to land on its own subtask when the
  operator runs at parallelism = buckets (and so evenly at every divisor of it),
  using Flink's own key-group assignment (KeyGroupRangeAssignment with the job's
  max parallelism).  tests/integration check the formula against the JVM's.
"""

from __future__ import annotations

import zlib
from functools import lru_cache

# The job sets this max parallelism explicitly (Flink's default for p <= 85),
# so key groups, and the labels below, are the same on every run.
MAX_PARALLELISM = 128

_U32 = 0xFFFFFFFF


def term_bucket(term: str, buckets: int) -> int:
    """The bucket (0..buckets-1) of a term; stable across processes and runs."""
    return zlib.crc32(term.encode("utf-8")) % buckets


def _rotl32(x: int, r: int) -> int:
    return ((x << r) | (x >> (32 - r))) & _U32


def flink_murmur_hash(code: int) -> int:
    """Flink's MathUtils.murmurHash(int): the hash behind key-group assignment."""
    code &= _U32
    code = (code * 0xCC9E2D51) & _U32
    code = _rotl32(code, 15)
    code = (code * 0x1B873593) & _U32
    code = _rotl32(code, 13)
    code = (code * 5 + 0xE6546B64) & _U32
    code ^= 4
    # fmix32
    code ^= code >> 16
    code = (code * 0x85EBCA6B) & _U32
    code ^= code >> 13
    code = (code * 0xC2B2AE35) & _U32
    code ^= code >> 16
    signed = code - (1 << 32) if code & 0x80000000 else code
    if signed >= 0:
        return signed
    return -signed if signed != -(1 << 31) else 0


def subtask_of(key: int, parallelism: int, max_parallelism: int = MAX_PARALLELISM) -> int:
    """Which subtask owns an INT key (Flink: assignKeyToParallelOperator; Integer.hashCode is the value)."""
    key_group = flink_murmur_hash(key) % max_parallelism
    return key_group * parallelism // max_parallelism


@lru_cache(maxsize=None)
def bucket_keys(buckets: int, max_parallelism: int = MAX_PARALLELISM) -> tuple[int, ...]:
    """Key label per bucket: the smallest non-negative INT landing on subtask i at parallelism `buckets`."""
    if not 1 <= buckets <= max_parallelism:
        raise ValueError(f"buckets must be in 1..{max_parallelism}, got {buckets}")
    labels: list[int | None] = [None] * buckets
    candidate, missing = 0, buckets
    # Bounded: every subtask owns max_parallelism / buckets key groups, and the
    # murmur hash spreads consecutive ints over them; 1e6 is far past need.
    while missing and candidate < 1_000_000:
        i = subtask_of(candidate, buckets, max_parallelism)
        if labels[i] is None:
            labels[i] = candidate
            missing -= 1
        candidate += 1
    if missing:
        raise ValueError(f"no key labels found for {buckets} buckets")
    return tuple(int(label) for label in labels)  # type: ignore[arg-type]


def bucket_key(term: str, buckets: int) -> int:
    """The key label of the bucket one term falls into (as `group_by_bucket` keys it)."""
    return bucket_keys(buckets)[term_bucket(term, buckets)]


def group_by_bucket(terms: tuple[str, ...], buckets: int) -> dict[int, tuple[str, ...]]:
    """bucket key label -> the article's terms in that bucket (each in sorted order, as given)."""
    keys = bucket_keys(buckets)
    grouped: dict[int, list[str]] = {}
    for term in terms:
        grouped.setdefault(keys[term_bucket(term, buckets)], []).append(term)
    return {key: tuple(group) for key, group in grouped.items()}
