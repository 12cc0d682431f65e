"""The pure half of `feedtrends query`: times, selections and output formats.

Everything here works on plain row dicts (the output row of `udfs/trend_row.py`) and
does no I/O, so every rule of the query command is testable without Parquet or Kafka.
The rows it answers from are the latest revision per key
(`connectors.trend_store.latest_revisions`); reading them and drawing plots is
`feedtrends/query_store.py`; the argparse wiring is `feedtrends/query_cli.py`.

Errors carry their kind (core/errors.py) in their type, so the CLI turns any of
them into one line on stderr and that kind's exit code.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime as _dt
import difflib
import io
import json
import re
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from core.errors import BadInput, Refused, Unreachable
from udfs.terms import FEED_PREFIX
from udfs.trend_row import TrendRow

# --------------------------------------------------------------------------- errors


class QueryError(Exception):
    """A query that cannot be answered; each subclass is also one kind of core/errors.py."""


class QueryInputError(QueryError, BadInput):
    """The user's input is malformed (a time, a window, a flag value, a --plot path)."""


class NothingFound(QueryError, Refused):
    """The source was read, but it holds no rows yet or none match."""


class BackendUnavailable(QueryError, Unreachable):
    """The source itself cannot be read (missing Parquet dir, unreachable broker)."""


# --------------------------------------------------------------------------- times

_EPOCH = _dt.datetime(1970, 1, 1, tzinfo=_dt.timezone.utc)
_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}
_RELATIVE = re.compile(r"^(?:now)?\s*-\s*(\d+)\s*(ms|s|m|h|d|w)$", re.ASCII)
_EPOCH_MS = re.compile(r"^\d+$", re.ASCII)

# What a UTC datetime can show (years 1-9999): a time outside cannot be printed or
# compared with a window, so it is bad input rather than an overflow later.
_MIN_MS = (_dt.datetime(1, 1, 1, tzinfo=_dt.timezone.utc) - _EPOCH) // _dt.timedelta(milliseconds=1)
_MAX_MS = (_dt.datetime(9999, 12, 31, 23, 59, 59, 999000, tzinfo=_dt.timezone.utc) - _EPOCH) // _dt.timedelta(milliseconds=1)

TIME_HELP = "ISO-8601 (naive = UTC; Z or +02:00 allowed), epoch ms, now, or relative: -30m, -24h, -7d"


def parse_time_ms(text: str, now_ms: int) -> int:
    """A user-given instant as epoch ms.

    Accepts what `query ... --format json` prints (epoch ms, all digits), ISO-8601
    with or without a `Z`/offset (naive means UTC: the job's windows are UTC),
    `now`, and `-<n><unit>` relative to `now_ms` (units ms, s, m, h, d, w).
    """
    value = _parse_time_ms(text, now_ms)
    if not _MIN_MS <= value <= _MAX_MS:
        raise QueryInputError(f"time out of range: {text!r} (years 1-9999; epoch ms up to {_MAX_MS})")
    return value


def _parse_time_ms(text: str, now_ms: int) -> int:
    s = str(text).strip()
    lowered = s.lower()
    if not s:
        raise QueryInputError(f"empty time (use {TIME_HELP})")
    if lowered == "now":
        return now_ms
    relative = _RELATIVE.match(lowered)
    if relative:
        return now_ms - int(relative.group(1)) * _UNIT_MS[relative.group(2)]
    if _EPOCH_MS.match(s):
        return int(s)
    iso = s[:-1] + "+00:00" if s[-1] in "zZ" else s
    try:
        moment = _dt.datetime.fromisoformat(iso)
    except ValueError:
        raise QueryInputError(f"not a time: {text!r} (use {TIME_HELP})") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=_dt.timezone.utc)
    return (moment - _EPOCH) // _dt.timedelta(milliseconds=1)


def utc_text(epoch_ms: int) -> str:
    """`2026-11-20 06:00` (UTC, minutes): for tables."""
    return (_EPOCH + _dt.timedelta(milliseconds=epoch_ms)).strftime("%Y-%m-%d %H:%M")


def utc_iso(epoch_ms: int) -> str:
    """`2026-11-20T06:00:00Z`: for JSON/CSV, and accepted back by `parse_time_ms`."""
    return (_EPOCH + _dt.timedelta(milliseconds=epoch_ms)).strftime("%Y-%m-%dT%H:%M:%SZ")


# --------------------------------------------------------------------------- rows

ROW_FIELDS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(TrendRow))


_ADDED_LATER = ("aliases", "links")


def output_row(raw: Mapping[str, Any]) -> dict[str, Any]:
    """Just the output row's fields, in order, with plain Python types.

    Drops extras such as the `window_date` partition column; a missing field raises
    KeyError (the reader reports the source as unreadable).
    """
    # Output written before the story rules has no `aliases` column, and output written
    # before example links no `links` column: none of them.
    row = {name: raw.get(name) if name in _ADDED_LATER else raw[name] for name in ROW_FIELDS}
    for name in ("examples", *_ADDED_LATER):
        row[name] = list(row[name] or [])
    return row


def is_feed_row(row: Mapping[str, Any]) -> bool:
    return str(row["term"]).startswith(FEED_PREFIX)


# --------------------------------------------------------------------------- selections


@dataclass(frozen=True)
class Window:
    window_start: int
    window_end: int


def windows_summary(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One record per window, oldest first.

    `terms` counts the window's terms without the `feed:` pseudo-terms; `articles`
    is the sum of its `feed:` rows (each article counts for exactly one feed, so this
    is the number of distinct articles); `max_revision` is the highest revision among
    the window's (latest) rows, which grows while late data still revises it.
    """
    out: dict[int, dict[str, Any]] = {}
    for row in rows:
        w = out.setdefault(
            row["window_start"],
            {
                "window_start": row["window_start"],
                "window_end": row["window_end"],
                "window_start_utc": utc_iso(row["window_start"]),
                "terms": 0,
                "articles": 0,
                "max_revision": 0,
            },
        )
        if is_feed_row(row):
            w["articles"] += row["articles"]
        else:
            w["terms"] += 1
        w["max_revision"] = max(w["max_revision"], row["revision"])
    return [out[ws] for ws in sorted(out)]


def resolve_window(rows: Sequence[Mapping[str, Any]], at_ms: int | None) -> Window:
    """The window starting at `at_ms`, else the one containing it; `None` = the latest window."""
    if not rows:
        raise NothingFound("no trend rows yet")
    spans = sorted({(r["window_start"], r["window_end"]) for r in rows})
    if at_ms is None:
        return Window(*spans[-1])
    for start, end in spans:
        if start == at_ms:
            return Window(start, end)
    for start, end in spans:
        if start <= at_ms < end:
            return Window(start, end)
    raise NothingFound(
        f"no window at {utc_iso(at_ms)} ({at_ms}); there are {len(spans)} windows from "
        f"{utc_iso(spans[0][0])} ({spans[0][0]}) to {utc_iso(spans[-1][0])} ({spans[-1][0]}), "
        "see `feedtrends query windows`"
    )


def top_terms(rows: Sequence[Mapping[str, Any]], window_start: int, k: int) -> list[dict[str, Any]]:
    """The window's ranked rows by rank (then term), at most `k`; unranked rows are left out."""
    if k < 1:
        raise QueryInputError(f"--k must be at least 1, not {k}")
    ranked = [r for r in rows if r["window_start"] == window_start and r["rank"] is not None]
    return [dict(r) for r in sorted(ranked, key=lambda r: (r["rank"], r["term"]))[:k]]


def _term_key(term: str) -> str:
    return unicodedata.normalize("NFKC", term).strip().casefold()


def term_history(
    rows: Sequence[Mapping[str, Any]],
    term: str,
    since_ms: int | None = None,
    until_ms: int | None = None,
) -> list[dict[str, Any]]:
    """The term's rows, oldest window first, for windows overlapping [since, until).

    The term matches exactly, else after NFKC + case folding (the job stores terms
    case-folded, so `Bram` finds `bram`).  An unknown term names close matches.
    """
    if since_ms is not None and until_ms is not None and since_ms >= until_ms:
        raise QueryInputError(f"--since ({utc_iso(since_ms)}) must be before --until ({utc_iso(until_ms)})")
    if not rows:
        raise NothingFound("no trend rows yet")
    known = {r["term"] for r in rows}
    if term in known:
        matched = term
    else:
        folded = {_term_key(t): t for t in sorted(known)}
        matched = folded.get(_term_key(term))
    if matched is None:
        close = difflib.get_close_matches(_term_key(term), sorted(known), n=3)
        hint = f"; close: {', '.join(close)}" if close else ""
        raise NothingFound(f"unknown term {term!r} (in no window){hint}")
    history = [
        dict(r)
        for r in rows
        if r["term"] == matched
        and (since_ms is None or r["window_end"] > since_ms)
        and (until_ms is None or r["window_start"] < until_ms)
    ]
    if not history:
        span = f"{utc_iso(since_ms) if since_ms is not None else '-'} .. {utc_iso(until_ms) if until_ms is not None else '-'}"
        raise NothingFound(f"term {matched!r} has no rows in {span}")
    return sorted(history, key=lambda r: r["window_start"])


def feed_counts(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Per (window, feed): the window's articles from that feed, from the `feed:<url>` rows."""
    out = [
        {
            "window_start": r["window_start"],
            "window_end": r["window_end"],
            "window_start_utc": utc_iso(r["window_start"]),
            "feed": r["term"][len(FEED_PREFIX) :],
            "articles": r["articles"],
            "revision": r["revision"],
        }
        for r in rows
        if is_feed_row(r)
    ]
    return sorted(out, key=lambda r: (r["window_start"], -r["articles"], r["feed"]))


# --------------------------------------------------------------------------- formats

FORMATS = ("table", "json", "csv")


@dataclass(frozen=True)
class Column:
    """One table column: header, the record key, how to render a value, right-aligned or not."""

    header: str
    key: str
    render: Callable[[Any], str] = str
    right: bool = True


def _score(value: float) -> str:
    return f"{value:.2f}"


def _optional(value: Any) -> str:
    return "-" if value is None else str(value)


def _clip(width: int) -> Callable[[Any], str]:
    def render(value: Any) -> str:
        text = value[0] if isinstance(value, (list, tuple)) and value else value or ""
        text = str(text)
        return text if len(text) <= width else text[: width - 1] + "…"

    return render


def _joined(width: int) -> Callable[[Any], str]:
    """A list as "a, b, c", clipped."""
    def render(value: Any) -> str:
        return _clip(width)(", ".join(str(v) for v in value or ()))

    return render


_WINDOW_COLUMNS = (
    Column("window_start (UTC)", "window_start", utc_text, right=False),
    Column("window_start (ms)", "window_start"),
)

TABLE_COLUMNS: dict[str, tuple[Column, ...]] = {
    "windows": _WINDOW_COLUMNS
    + (Column("terms", "terms"), Column("articles", "articles"), Column("max_revision", "max_revision")),
    "top": (
        Column("rank", "rank", _optional),
        Column("term", "term", right=False),
        Column("articles", "articles"),
        Column("feeds", "feeds"),
        Column("baseline", "baseline", _score),
        Column("score", "score", _score),
        Column("rev", "revision"),
        Column("also", "aliases", _joined(30), right=False),
        Column("example", "examples", _clip(60), right=False),
    ),
    "term": _WINDOW_COLUMNS
    + (
        Column("articles", "articles"),
        Column("feeds", "feeds"),
        Column("baseline", "baseline", _score),
        Column("score", "score", _score),
        Column("rank", "rank", _optional),
        Column("rev", "revision"),
    ),
    "feeds": _WINDOW_COLUMNS + (Column("articles", "articles"), Column("feed", "feed", right=False)),
}


def format_table(records: Sequence[Mapping[str, Any]], columns: Sequence[Column]) -> str:
    """Aligned columns with a header line; the last column is never padded."""
    cells = [[c.render(r[c.key]) for c in columns] for r in records]
    widths = [max([len(c.header)] + [len(row[i]) for row in cells]) for i, c in enumerate(columns)]

    def line(values: Sequence[str]) -> str:
        parts = []
        for i, (c, v) in enumerate(zip(columns, values)):
            last = i == len(columns) - 1
            parts.append(v.rjust(widths[i]) if c.right else (v if last else v.ljust(widths[i])))
        return "  ".join(parts).rstrip()

    return "\n".join([line([c.header for c in columns])] + [line(row) for row in cells])


def format_json(records: Sequence[Mapping[str, Any]]) -> str:
    """A JSON list of the records, keys in field order, non-ASCII kept as is."""
    return json.dumps(list(records), indent=2, ensure_ascii=False)


def format_csv(records: Sequence[Mapping[str, Any]], fields: Sequence[str]) -> str:
    """RFC 4180 CSV with a header; null is an empty cell, a list is its JSON text."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(fields)
    for r in records:
        writer.writerow(
            [
                "" if r[f] is None else json.dumps(r[f], ensure_ascii=False) if isinstance(r[f], list) else r[f]
                for f in fields
            ]
        )
    return buffer.getvalue().rstrip("\n")


RECORD_FIELDS: dict[str, tuple[str, ...]] = {
    "windows": ("window_start", "window_end", "window_start_utc", "terms", "articles", "max_revision"),
    "top": ROW_FIELDS,
    "term": ROW_FIELDS,
    "feeds": ("window_start", "window_end", "window_start_utc", "feed", "articles", "revision"),
}


def render(kind: str, records: Sequence[Mapping[str, Any]], fmt: str) -> str:
    """The records of one query kind (`windows`, `top`, `term`, `feeds`) in a format."""
    if fmt == "json":
        return format_json([{f: r[f] for f in RECORD_FIELDS[kind]} for r in records])
    if fmt == "csv":
        return format_csv(records, RECORD_FIELDS[kind])
    if fmt == "table":
        return format_table(records, TABLE_COLUMNS[kind])
    raise QueryInputError(f"unknown format {fmt!r} (use {', '.join(FORMATS)})")
