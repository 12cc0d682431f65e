"""The trends job's output row: its columns (the one spec of the output schema) and its JSON form.

A row is one revision of one (window, term).  `key()` is stable across revisions,
so a downstream upsert by key keeps the latest; `revision` increases by one each
time the row's content changes (late data, a refreshed baseline, a new rank), so
consumers can also discard out-of-order revisions.  `emitted_at` is when the
revision was produced and is deliberately not part of `content()`.
"""

from __future__ import annotations

import datetime as _dt
import functools
import json
import operator
from collections.abc import Callable, Iterable
from dataclasses import dataclass, fields
from typing import Any

_EPOCH = _dt.datetime(1970, 1, 1, tzinfo=_dt.timezone.utc)


@dataclass(frozen=True)
class Column:
    """One column of the output row.

    `kind` is a small vocabulary the connectors map to Flink SQL, Flink types and
    Arrow: int64, int32, double, string, list<string>.  `nullable` says whether the
    value may be null (only `rank` may).  A `partition` column is the Parquet
    directory (`window_date=...`), not part of the Kafka JSON.
    """

    name: str
    kind: str
    nullable: bool = False
    partition: bool = False


# The output row: the one spec from which the Flink DDL and row type, the Arrow
# schema and the JSON keys are derived, in this order.  The 32-bit kinds are what
# the job has always written; changing one would change every Parquet file's schema.
COLUMNS: tuple[Column, ...] = (
    Column("window_start", "int64"),  # epoch ms UTC
    Column("window_end", "int64"),  # epoch ms UTC, exclusive
    Column("term", "string"),
    Column("articles", "int32"),
    Column("feeds", "int32"),
    Column("baseline", "double"),
    Column("score", "double"),
    Column("rank", "int32", nullable=True),  # null: not ranked (below min_support, or a feed: term)
    Column("revision", "int32"),
    Column("emitted_at", "int64"),  # epoch ms UTC; not part of a row's equality
    Column("examples", "list<string>"),
    Column("aliases", "list<string>"),  # the story's other terms, on its ranked row (udfs/trend.py)
    Column("links", "list<string>"),  # each example's web address, "" where it has none (udfs.canonical.article_link)
    Column("window_date", "string", partition=True),  # "YYYY-MM-DD" of window_start, UTC
)
JSON_COLUMNS: tuple[Column, ...] = tuple(c for c in COLUMNS if not c.partition)


# Every row of a window has the same date, and a rebuild writes thousands of rows per window.
@functools.lru_cache(maxsize=4096)
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
    aliases: tuple[str, ...] = ()
    links: tuple[str, ...] = ()

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
            self.aliases,
            self.links,
        )

    def column_values(self) -> tuple[Any, ...]:
        """The row's values in `COLUMNS` order (what the sinks write)."""
        return tuple(get(self) for get in _GETTERS)

    def as_dict(self) -> dict[str, Any]:
        """The JSON object: every column but the partition column."""
        return {c.name: _GETTER[c.name](self) for c in JSON_COLUMNS}

    def to_json(self) -> bytes:
        """Compact UTF-8 JSON with sorted keys (byte-stable for equal rows)."""
        return self.json_text().encode("utf-8")

    def json_text(self) -> str:
        """`to_json` as text."""
        return _ENCODER.encode(self._json_object())

    def _json_object(self) -> dict[str, Any]:
        # Built in sorted key order, so the encoder need not sort (the same bytes as sort_keys=True);
        # tuples encode as JSON arrays, as the columns' lists do.
        return {name: get(self) for name, get in _JSON_GETTERS}

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
            aliases=tuple(str(a) for a in obj.get("aliases", ())),
            links=tuple(str(u) for u in obj.get("links", ())),
        )


_TREND_ROW_FIELDS = tuple(f.name for f in fields(TrendRow))


def batch_json(rows: Iterable[TrendRow]) -> str:
    """A JSON array of the rows' JSON objects, in one encoder call: element i is exactly
    `rows[i].json_text()` (the separators have no spaces), which the sinks' `unpack_trend_rows`
    (connectors/jvm) takes apart again as the row's Kafka value."""
    return _ENCODER.encode([row._json_object() for row in rows])


def _getter(column: Column) -> Callable[[TrendRow], Any]:
    """How a column's value is read off a row, decided once per column rather than once per row."""
    if column.name == "window_date":
        return lambda row: utc_date(row.window_start)
    if column.kind == "list<string>":
        field = operator.attrgetter(column.name)
        return lambda row: list(field(row))
    return operator.attrgetter(column.name)


_GETTER: dict[str, Callable[[TrendRow], Any]] = {c.name: _getter(c) for c in COLUMNS}
_GETTERS = tuple(_GETTER[c.name] for c in COLUMNS)
# (JSON key, how it is read off a row), in the key order of the JSON.
_JSON_GETTERS = tuple((name, operator.attrgetter(name)) for name in sorted(c.name for c in JSON_COLUMNS))
_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)

# Every field is a column; the only derived column is the partition.
assert {c.name for c in COLUMNS if not c.partition} == set(_TREND_ROW_FIELDS), "COLUMNS and TrendRow disagree"
