"""The JVM's `unpack_trend_rows` (`TrendRows`) turns the ranker's batches back into Python's rows, for the sinks."""

from __future__ import annotations

import random

from udfs.trend_row import TrendRow, batch_json

TERMS = ["storm", "storm bram", "ñandú", "東京", "\U0001d518nion", 'say "no"', "it's", "back\\slash", "feed:x", ""]
TITLES = ["Storm hits", "Le «titre»", 'A "quoted" title', "東京 news", "tab\tand\nnewline", "\U0001d518 astral"]


def _row(rng: random.Random) -> TrendRow:
    ws = rng.choice([0, -3_600_000, 1_700_000_000_000, 1_764_633_600_000 - 1])
    n = rng.randint(0, 3)
    return TrendRow(
        window_start=ws, window_end=ws + 3_600_000, term=rng.choice(TERMS), articles=rng.randint(1, 10**6),
        feeds=rng.randint(1, 50), baseline=rng.choice([0.0, 2.25, 1e-7, 123456.789, 1 / 3]),
        score=rng.choice([0.0, -1.5, 3.4142, 1e300, 2 / 3]), rank=rng.choice([None, 1, 17]),
        revision=rng.randint(1, 9), emitted_at=1_700_003_700_000 + rng.randint(0, 10**6),
        examples=tuple(rng.choice(TITLES) for _ in range(n)), aliases=tuple(rng.sample(TERMS, rng.randint(0, 2))),
        links=tuple(rng.choice(["https://a.example/1?q=1&b=2", ""]) for _ in range(n)),
    )


def test_the_jvm_unpacks_pythons_rows() -> None:
    from pyflink.common import Types
    from pyflink.datastream import StreamExecutionEnvironment

    from connectors.flink_io import TREND_COLUMNS, unpack_trend_rows

    rng = random.Random(7)
    batches = [[_row(rng) for _ in range(n)] for n in (1, 2, 5, 40, 0)]
    env = StreamExecutionEnvironment.get_execution_environment()
    env.set_parallelism(1)
    stream = env.from_collection([batch_json(rows) for rows in batches], type_info=Types.STRING())
    with unpack_trend_rows(stream).execute_and_collect() as result:
        got = [tuple(list(v) if isinstance(v, (list, tuple)) else v for v in row) for row in result]
    # Python's own reading of each row, column for column (TREND_COLUMNS' order), in order.
    expected = [(*row.column_values(), row.key(), row.json_text()) for rows in batches for row in rows]
    assert len(expected[0]) == len(TREND_COLUMNS)
    assert got == expected
