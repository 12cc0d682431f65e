"""`feedtrends query sql "SELECT ..."`: DuckDB over the current version's Parquet output.

Two views, over the committed part files (`window_date=*/part-*`; in-progress files
start with '.' and are never read):

    revisions   every row the job committed: all revisions, plus the `window_date` partition
    trends      the final row per (window_start, term): its highest revision, as `query` reads them

DuckDB because it runs SQL straight on Parquet in-process (no server, no load step),
reads hive partitions, and ships as one wheel.  The output takes `--format
table|json|csv` through the same formatters as the other query commands.  A statement
DuckDB rejects is bad input: one line on stderr, exit 2.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import decimal
import uuid
from pathlib import Path
from typing import Any, TextIO

from core.config import Config
from feedtrends.exit_codes import OK, report
from feedtrends.query import (
    BackendUnavailable,
    Column,
    QueryError,
    QueryInputError,
    format_csv,
    format_json,
    format_table,
)

# The final revision per key, exactly as connectors.trend_store.latest_revisions picks it.
TRENDS_VIEW = """
CREATE VIEW trends AS
SELECT * FROM revisions
QUALIFY row_number() OVER (PARTITION BY window_start, term ORDER BY revision DESC) = 1
"""


def part_files(parquet_dir: Path) -> list[Path]:
    """The committed part files of an output dir (a missing dir is BackendUnavailable)."""
    from feedtrends import query_store

    return query_store.part_files(query_store.require_dir(parquet_dir))


def _empty_revisions_sql() -> str:
    """A `revisions` of the output row's shape with no rows: output with no part files yet."""
    from udfs.trend_row import COLUMNS

    duck = {"int64": "BIGINT", "int32": "INTEGER", "double": "DOUBLE", "string": "VARCHAR", "list<string>": "VARCHAR[]"}
    cols = ", ".join(f"CAST(NULL AS {duck[c.kind]}) AS {c.name}" for c in COLUMNS)
    return f"CREATE VIEW revisions AS SELECT {cols} WHERE false"


def connect(parquet_dir: Path):
    """An in-memory DuckDB connection with the `revisions` and `trends` views."""
    import duckdb

    files = part_files(parquet_dir)
    con = duckdb.connect(":memory:")
    if files:
        listed = ", ".join("'" + str(f).replace("'", "''") + "'" for f in files)
        # union_by_name: output written before the `aliases` column reads it as null.
        con.execute(
            f"CREATE VIEW revisions AS SELECT * FROM read_parquet([{listed}], hive_partitioning = true, union_by_name = true)"
        )
    else:
        con.execute(_empty_revisions_sql())
    con.execute(TRENDS_VIEW)
    return con


def _plain(value: Any) -> Any:
    """A DuckDB value as JSON can hold it (dates as ISO text, decimals as floats)."""
    if isinstance(value, decimal.Decimal):
        return float(value)
    if isinstance(value, (_dt.datetime, _dt.date, _dt.time)):
        return value.isoformat()
    if isinstance(value, _dt.timedelta):
        return value.total_seconds()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, (bytes, bytearray)):
        return value.hex()
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


def execute(parquet_dir: Path, statement: str) -> tuple[list[str], list[dict[str, Any]]]:
    """Run one statement: (column names, records).  A statement DuckDB rejects is QueryInputError."""
    import duckdb

    if not statement.strip():
        raise QueryInputError('no statement: give one, e.g. "SELECT * FROM trends LIMIT 5"')
    con = connect(parquet_dir)
    try:
        cursor = con.execute(statement)
        if cursor is None or cursor.description is None:  # not a query (e.g. SET): no result set
            return [], []
        names = [d[0] for d in cursor.description]
        return names, [{n: _plain(v) for n, v in zip(names, row)} for row in cursor.fetchall()]
    except duckdb.IOException as exc:
        raise BackendUnavailable(f"cannot read Parquet in {parquet_dir}: {str(exc).splitlines()[0]}") from None
    except duckdb.Error as exc:
        raise QueryInputError(f"{type(exc).__name__}: {' '.join(str(exc).split())}") from None
    finally:
        con.close()


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.2f}"
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    return str(value)


def render_sql(names: list[str], records: list[dict[str, Any]], fmt: str) -> str:
    if fmt == "json":
        return format_json(records)
    if fmt == "csv":
        return format_csv(records, names)
    numeric = {n for n in names if records and all(isinstance(r[n], (int, float)) or r[n] is None for r in records)}
    return format_table(records, [Column(n, n, _cell, right=n in numeric) for n in names])


def run_sql(args: argparse.Namespace, config: Config, *, out: TextIO, err: TextIO) -> int:
    """`query sql`: the statement over the current version's Parquet, printed in `--format`."""
    from feedtrends.query_cli import current_output, print_output

    try:
        names, records = execute(current_output(config).parquet_dir, args.statement)
    except QueryError as exc:
        return report("query sql", exc, err)
    if names:
        print_output(render_sql(names, records, args.format), out)
    return OK
