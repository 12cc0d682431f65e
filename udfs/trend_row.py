"""The trends job's output row, its JSON form and its Parquet column spec.

A row is one revision of one (window, term).  `key()` is stable across revisions,
so a downstream upsert by key keeps the latest; `revision` increases by one each
time the row's content changes (late data, a refreshed baseline, a new rank), so
consumers can also discard out-of-order revisions.  `emitted_at` is when the
revision was produced and is deliberately not part of `content()`.
"""

from __future__ import annotations

import datetime as _dt
import json
from dataclasses import dataclass, fields
from typing import Any

_EPOCH = _dt.datetime(1970, 1, 1, tzinfo=_dt.timezone.utc)

# (column, type) for the Parquet/Arrow sink, in column order.  Types are a small
# vocabulary the connector maps: int64, int32, double, string, list<string>.
# Nullable columns are listed in PARQUET_NULLABLE; all others are NOT NULL.
# `window_date` ("YYYY-MM-DD" of window_start, UTC) is the partition column.
PARQUET_COLUMNS: tuple[tuple[str, str], ...] = (
    ("window_start", "int64"),  # epoch ms UTC
    ("window_end", "int64"),  # epoch ms UTC, exclusive
    ("term", "string"),
    ("articles", "int64"),
    ("feeds", "int64"),
    ("baseline", "double"),
    ("score", "double"),
    ("rank", "int32"),
    ("revision", "int64"),
    ("emitted_at", "int64"),  # epoch ms UTC
    ("examples", "list<string>"),
    ("window_date", "string"),
)
PARQUET_NULLABLE: frozenset[str] = frozenset({"rank"})
PARQUET_PARTITION_COLUMNS: tuple[str, ...] = ("window_date",)


def utc_date(epoch_ms: int) -> str:
    """"YYYY-MM-DD" (UTC) of an epoch-millisecond instant; exact integer arithmetic."""
    return (_EPOCH + _dt.timedelta(milliseconds=epoch_ms)).strftime("%Y-%m-%d")


@dataclass(frozen=True, slots=True)
class TrendRow:
    window_start: int
    window_end: int
    term: str
    articles: int
    feeds: int
    baseline: float
    score: float
    rank: int | None
    revision: int
    emitted_at: int
    examples: tuple[str, ...]

    def __reduce__(self):
        # Kept in the ranker's state pickled: rebuilding from the fields is ~3x faster
        # than the generated pickling of a frozen slotted dataclass.
        return TrendRow, tuple(getattr(self, name) for name in _TREND_ROW_FIELDS)

    def key(self) -> str:
        """Stable upsert key: one per (window, term), shared by all revisions."""
        return f"{self.window_start}|{self.term}"

    def content(self) -> tuple[Any, ...]:
        """Everything that defines a revision: all fields but `revision` and `emitted_at`."""
        return (
            self.window_start,
            self.window_end,
            self.term,
            self.articles,
            self.feeds,
            self.baseline,
            self.score,
            self.rank,
            self.examples,
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "window_start": self.window_start,
            "window_end": self.window_end,
            "term": self.term,
            "articles": self.articles,
            "feeds": self.feeds,
            "baseline": self.baseline,
            "score": self.score,
            "rank": self.rank,
            "revision": self.revision,
            "emitted_at": self.emitted_at,
            "examples": list(self.examples),
        }

    def to_json(self) -> bytes:
        """Compact UTF-8 JSON with sorted keys (byte-stable for equal rows)."""
        return json.dumps(self.as_dict(), separators=(",", ":"), sort_keys=True, ensure_ascii=False).encode("utf-8")

    @classmethod
    def from_json(cls, data: bytes | str) -> TrendRow:
        obj = json.loads(data)
        return cls(
            window_start=int(obj["window_start"]),
            window_end=int(obj["window_end"]),
            term=str(obj["term"]),
            articles=int(obj["articles"]),
            feeds=int(obj["feeds"]),
            baseline=float(obj["baseline"]),
            score=float(obj["score"]),
            rank=None if obj["rank"] is None else int(obj["rank"]),
            revision=int(obj["revision"]),
            emitted_at=int(obj["emitted_at"]),
            examples=tuple(str(e) for e in obj["examples"]),
        )

    def to_parquet_record(self) -> dict[str, Any]:
        """One record matching PARQUET_COLUMNS (adds the `window_date` partition value)."""
        record = self.as_dict()
        record["window_date"] = utc_date(self.window_start)
        return record


_TREND_ROW_FIELDS = tuple(f.name for f in fields(TrendRow))
