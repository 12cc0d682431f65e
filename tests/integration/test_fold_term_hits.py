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


def test_the_jvm_fold_is_pythons() -> None:
    from pyflink.table import EnvironmentSettings, TableEnvironment

    from connectors.flink_io import register_jvm_functions

    t_env = TableEnvironment.create(EnvironmentSettings.in_batch_mode())
    register_jvm_functions(t_env)
    rng = random.Random(7)
    cases = [(_hits(rng, n), k) for n in (1, 5, 40, 300) for k in (0, 1, 3)]
    values = ", ".join(
        f"({i}, '{json.dumps(hits, ensure_ascii=False).replace(chr(39), chr(39) * 2)}', {k})"
        for i, (hits, k) in enumerate(cases)
    )
    table = t_env.sql_query(f"SELECT i, fold_term_hits(hits, k) FROM (VALUES {values}) AS t (i, hits, k)")
    with table.execute().collect() as rows:
        got = {row[0]: row[1] for row in rows}
    assert sorted(got) == list(range(len(cases)))
    for i, (hits, k) in enumerate(cases):
        _, expected = counted_bucket(json.dumps(hits), H, k)
        folded = folded_bucket(got[i])
        assert folded == expected, (i, k)
        # In the terms' code-point order, as Python sorts them.
        assert list(folded) == sorted(expected)
