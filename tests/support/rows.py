"""The job's output as tests compare it: the final content per key, and what differs."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

import pyarrow as pa

from connectors.trend_store import latest_revisions
from core.config import Config
from tests.oracle import TrendParams
from udfs.trend_row import TrendRow

HOUR = 3_600_000


def final_contents(rows: Iterable[Mapping[str, Any]]) -> dict[str, tuple]:
    """window_start|term -> content() of its latest revision, from rows as dicts (Kafka JSON, Parquet)."""
    latest = (TrendRow.from_json(json.dumps(row)) for row in latest_revisions(rows))
    return {row.key(): row.content() for row in latest}


def latest_trend_rows(rows: Iterable[TrendRow]) -> dict[str, TrendRow]:
    """window_start|term -> its latest revision, from TrendRows (the same rule as final_contents)."""
    latest = latest_revisions(
        {"window_start": r.window_start, "term": r.term, "revision": r.revision, "row": r} for r in rows
    )
    return {held["row"].key(): held["row"] for held in latest}


def table_rows(table: pa.Table) -> list[dict]:
    """The table's rows without the `window_date` partition column (not part of a row)."""
    rows = table.to_pylist()
    for r in rows:
        r.pop("window_date", None)
    return rows


def describe_diff(got: dict, want: dict) -> str:
    """`equal`, or how many rows are missing, extra or different (with a few keys)."""
    missing = want.keys() - got.keys()
    extra = got.keys() - want.keys()
    changed = [k for k in want.keys() & got.keys() if got[k] != want[k]]
    if not (missing or extra or changed):
        return "equal"
    return f"{len(got)} rows: missing {len(missing)}, extra {len(extra)}, different {len(changed)}" + (
        f" (e.g. {sorted(changed)[:3]})" if changed else ""
    )


def oracle_params(config: Config) -> TrendParams:
    """The batch oracle's parameters for a job config."""
    # Lateness is decided on each partition's own watermark, made from its valid events.
    return TrendParams(
        size_ms=config.window_ms,
        lateness_ms=config.allowed_lateness_ms,
        out_of_orderness_ms=config.out_of_orderness_ms,
        n=config.baseline_windows,
        min_support=config.min_support,
        include_summary=config.include_summary,
        k=config.examples,
        watermark_source="valid_events",
        watermark_scope="partition",
        term_buckets=config.term_buckets,
    )
