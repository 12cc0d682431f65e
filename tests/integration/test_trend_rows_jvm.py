"""The JVM's `unpack_trend_rows` turns the ranker's batches back into Python's rows, for the sinks."""

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
    from pyflink.table import EnvironmentSettings, TableEnvironment

    from connectors.flink_io import TREND_COLUMNS, register_jvm_functions

    t_env = TableEnvironment.create(EnvironmentSettings.in_batch_mode())
    register_jvm_functions(t_env)
    rng = random.Random(7)
    batches = [[_row(rng) for _ in range(n)] for n in (1, 2, 5, 40, 0)]
    values = ", ".join(f"({i}, '{batch_json(rows).replace(chr(39), chr(39) * 2)}')" for i, rows in enumerate(batches))
    table = t_env.sql_query(
        f"SELECT b.i, t.* FROM (VALUES {values}) AS b (i, batch), LATERAL TABLE(unpack_trend_rows(batch)) AS t"
    )
    # The function's row is the sinks' row, column for column (types as Flink SQL prints them).
    schema = table._j_table.getResolvedSchema()
    assert list(schema.getColumnNames())[1:] == [name for name, _, _ in TREND_COLUMNS]
    got_types = [t.toString().replace(" NOT NULL", "") for t in list(schema.getColumnDataTypes())[1:]]
    assert got_types == [sql for _, sql, _ in TREND_COLUMNS]

    with table.execute().collect() as result:
        got: dict[int, list[tuple]] = {}
        for r in result:
            got.setdefault(r[0], []).append(tuple(r[1:]))
    expected = {i: [(*row.column_values(), row.key(), row.json_text()) for row in rows]
                for i, rows in enumerate(batches) if rows}
    assert got == expected
