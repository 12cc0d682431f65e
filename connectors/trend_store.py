"""Reading the trend output back: Parquet files written by the job, and the Kafka topic."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.dataset as ds

from udfs.trend_row import COLUMNS

_ARROW_KINDS = {
    "int64": pa.int64(),
    "int32": pa.int32(),
    "double": pa.float64(),
    "string": pa.string(),
    "list<string>": pa.list_(pa.string()),
}
# The columns of a Parquet part file, from the one spec of the row (udfs/trend_row.py);
# the partition column is the directory name, not a column of the file.
FILE_SCHEMA = pa.schema(
    [pa.field(c.name, _ARROW_KINDS[c.kind], nullable=c.nullable) for c in COLUMNS if not c.partition]
)


def read_parquet(parquet_dir: Path) -> pa.Table:
    """Every committed row.  In-progress files start with '.' and are skipped by pyarrow."""
    if not Path(parquet_dir).exists() or not any(Path(parquet_dir).rglob("part-*")):
        return pa.table({})
    dataset = ds.dataset(str(parquet_dir), format="parquet", partitioning="hive", exclude_invalid_files=True)
    return dataset.to_table()


def latest_revisions(rows: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The highest revision per (window_start, term), sorted by (window_start, term).

    What a compacted topic or an upserting reader keeps.  The job writes each
    revision of a key once, so revisions never tie in its output; in hand-made data
    the first row seen of equal revisions stays.
    """
    best: dict[tuple[int, str], Mapping[str, Any]] = {}
    for row in rows:
        key = (row["window_start"], row["term"])
        if key not in best or row["revision"] > best[key]["revision"]:
            best[key] = row
    return [dict(best[key]) for key in sorted(best)]


def read_latest(parquet_dir: Path) -> pa.Table:
    table = read_parquet(parquet_dir)
    if table.num_rows == 0:
        return table
    return pa.Table.from_pylist(latest_revisions(table.to_pylist()))


def read_kafka_rows(bootstrap: str, topic: str, *, timeout_s: float = 60.0) -> list[dict]:
    """All committed rows of a trends topic (read_committed), by (partition, offset); a missing topic has none."""
    from connectors.topics import read_topic  # imported here: reading Parquet needs no Kafka client

    return [json.loads(m.value) for m in read_topic(bootstrap, topic, "read_committed", timeout_s=timeout_s, missing_ok=True)]


def _utc(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).strftime("%Y-%m-%d %H:%M")


def print_windows(parquet_dir: Path, *, top: int = 5) -> bool:
    """Print one line per window (start, articles, terms) and its top-ranked terms."""
    table = read_latest(parquet_dir)
    if table.num_rows == 0:
        print(f"no trend rows in {parquet_dir} yet (windows appear once the watermark passes their end)")
        return False
    rows = table.to_pylist()
    windows = sorted({r["window_start"] for r in rows})
    print(f"{'window_start (UTC)':<18}  {'window_start (ms)':>17}  {'terms':>5}  top terms (articles, score)")
    for ws in windows:
        in_window = [r for r in rows if r["window_start"] == ws]
        ranked = sorted((r for r in in_window if r["rank"] is not None), key=lambda r: r["rank"])[:top]
        tops = ", ".join(f"{r['term']} ({r['articles']}, {r['score']:.2f})" for r in ranked) or "-"
        print(f"{_utc(ws):<18}  {ws:>17}  {len(in_window):>5}  {tops}")
    return True
