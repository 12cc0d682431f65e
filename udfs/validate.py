"""Parse and validate one Kafka record value into an `Article`, or say why not.

Bad input never crashes the job: every failure becomes a `Rejection` whose
`reason` is a stable short code (what dashboards and the dead-letter topic group
by) and whose `detail` is free text for humans.

Reason codes (the part before ":" is the code family; `reason_code()` returns it):

    invalid_utf8            value is not UTF-8, or a string holds a lone UTF-16
                            surrogate (a JSON "\\ud800" escape) that no UTF-8 sink
                            could write back out
    malformed_json          not parseable as JSON
    not_an_object           JSON, but not an object
    unknown_schema_version  schema_version is an int other than 1
    missing_field:<name>    a v1 field is absent (article_id / feed_url: or empty)
    wrong_type:<name>       a field has the wrong JSON type (bool is not an int;
                            published_at_source outside its enum counts here too)
    absurd_timestamp        published_at < MIN_PUBLISHED_AT_MS, or
                            published_at > fetched_at + MAX_FUTURE_SKEW_MS, or a
                            timestamp outside a Java long.  Deterministic: never
                            compares with the wall clock, so replay gives the same
                            decisions.

Every field of schema v1 is required (a v1 producer always writes all of them, so
a missing one is an upstream bug worth seeing in the DLQ).  Unknown extra fields
are ignored, so v1 producers may add fields without breaking this job.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, fields
from typing import Any

from udfs.event import (
    MAX_FUTURE_SKEW_MS,
    MIN_PUBLISHED_AT_MS,
    PUBLISHED_AT_SOURCES,
    SCHEMA_VERSION,
)

# Flink timestamps and the Parquet/JSON consumers are Java longs.
_LONG_MIN = -(2**63)
_LONG_MAX = 2**63 - 1

# A lone surrogate can only enter through a JSON "\uD8xx".."\uDFxx" escape (the raw
# bytes themselves were strict UTF-8).  Scanning the bytes first keeps the common
# path free of per-field checks.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")

_SOURCES = frozenset(PUBLISHED_AT_SOURCES)


@dataclass(frozen=True, slots=True)
class Article:
    """A validated schema-v1 event.  `tags` is a tuple so the object is hashable."""

    event_id: str
    article_id: str
    feed_url: str
    feed_title: str
    url: str | None
    title: str
    summary: str
    tags: tuple[str, ...]
    language: str | None
    published_at: int
    published_at_source: str
    fetched_at: int

    def __reduce__(self):
        # Articles cross between Flink operators pickled; the generated pickling of a
        # frozen slotted dataclass is ~3x slower than rebuilding it from its fields.
        return Article, tuple(getattr(self, name) for name in _ARTICLE_FIELDS)

    def to_event(self) -> dict[str, Any]:
        """The schema-v1 JSON object again (used by the late output, so it can be replayed)."""
        return {
            "schema_version": SCHEMA_VERSION,
            "event_id": self.event_id,
            "article_id": self.article_id,
            "feed_url": self.feed_url,
            "feed_title": self.feed_title,
            "url": self.url,
            "title": self.title,
            "summary": self.summary,
            "tags": list(self.tags),
            "language": self.language,
            "published_at": self.published_at,
            "published_at_source": self.published_at_source,
            "fetched_at": self.fetched_at,
        }


_ARTICLE_FIELDS = tuple(f.name for f in fields(Article))


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why a record was not an Article.  `reason` is stable; `detail` is for humans."""

    reason: str
    detail: str = ""

    @property
    def code(self) -> str:
        return reason_code(self.reason)


def reason_code(reason: str) -> str:
    """`"missing_field:title"` -> `"missing_field"`: the family metrics count by."""
    return reason.split(":", 1)[0]


def _is_int(value: object) -> bool:
    # bool is an int subclass in Python; JSON true must not pass as 1.
    return type(value) is int


def _is_str(value: object) -> bool:
    return type(value) is str


def _is_str_or_none(value: object) -> bool:
    return value is None or type(value) is str


def _is_str_list(value: object) -> bool:
    return type(value) is list and all(type(v) is str for v in value)


# (field, type check, expected-type text) in schema order, so that the first
# problem reported is deterministic.  schema_version is checked separately, first,
# because a future version may have different fields altogether.
_CHECKS: tuple[tuple[str, Any, str], ...] = (
    ("event_id", _is_str, "string"),
    ("article_id", _is_str, "string"),
    ("feed_url", _is_str, "string"),
    ("feed_title", _is_str, "string"),
    ("url", _is_str_or_none, "string or null"),
    ("title", _is_str, "string"),
    ("summary", _is_str, "string"),
    ("tags", _is_str_list, "list of strings"),
    ("language", _is_str_or_none, "string or null"),
    ("published_at", _is_int, "integer"),
    ("published_at_source", _is_str, "string"),
    ("fetched_at", _is_int, "integer"),
)
_STRING_FIELDS = ("event_id", "article_id", "feed_url", "feed_title", "url", "title", "summary", "language")


def _type_name(value: object) -> str:
    return "null" if value is None else type(value).__name__


def parse_event(raw: bytes) -> Article | Rejection:
    """Decode one record value; return an Article or a Rejection with a reason code."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return Rejection("invalid_utf8", f"byte {exc.start}: {exc.reason}")
    try:
        obj = json.loads(text)
    except ValueError as exc:  # JSONDecodeError, and RecursionError-free ValueErrors
        return Rejection("malformed_json", str(exc))
    except RecursionError:
        return Rejection("malformed_json", "nesting too deep")
    if type(obj) is not dict:
        return Rejection("not_an_object", f"top-level JSON is {_type_name(obj)}")

    if "schema_version" not in obj:
        return Rejection("missing_field:schema_version", "field absent")
    version = obj["schema_version"]
    if not _is_int(version):
        return Rejection("wrong_type:schema_version", f"expected integer, got {_type_name(version)}")
    if version != SCHEMA_VERSION:
        return Rejection("unknown_schema_version", f"schema_version {version}, this job reads {SCHEMA_VERSION}")

    for name, check, expected in _CHECKS:
        if name not in obj:
            return Rejection(f"missing_field:{name}", "field absent")
        value = obj[name]
        if not check(value):
            return Rejection(f"wrong_type:{name}", f"expected {expected}, got {_type_name(value)}")
    # Dedup keys on article_id and per-feed counts on feed_url: empty is as good as absent.
    if not obj["article_id"]:
        return Rejection("missing_field:article_id", "empty string")
    if not obj["feed_url"]:
        return Rejection("missing_field:feed_url", "empty string")
    if obj["published_at_source"] not in _SOURCES:
        return Rejection(
            "wrong_type:published_at_source",
            f"expected one of {', '.join(PUBLISHED_AT_SOURCES)}",
        )

    if _SURROGATE_ESCAPE.search(raw) is not None:
        for name in _STRING_FIELDS:
            value = obj[name]
            if value is not None and _LONE_SURROGATE.search(value):
                return Rejection("invalid_utf8", f"lone surrogate escape in {name}")
        for tag in obj["tags"]:
            if _LONE_SURROGATE.search(tag):
                return Rejection("invalid_utf8", "lone surrogate escape in tags")

    published_at: int = obj["published_at"]
    fetched_at: int = obj["fetched_at"]
    if not (_LONG_MIN <= fetched_at <= _LONG_MAX):
        return Rejection("absurd_timestamp", "fetched_at outside a 64-bit long")
    if published_at < MIN_PUBLISHED_AT_MS:
        return Rejection("absurd_timestamp", f"published_at {published_at} before {MIN_PUBLISHED_AT_MS}")
    if published_at > fetched_at + MAX_FUTURE_SKEW_MS:
        return Rejection(
            "absurd_timestamp",
            f"published_at {published_at} more than {MAX_FUTURE_SKEW_MS} ms after fetched_at {fetched_at}",
        )
    if published_at > _LONG_MAX:
        return Rejection("absurd_timestamp", "published_at outside a 64-bit long")

    return Article(
        event_id=obj["event_id"],
        article_id=obj["article_id"],
        feed_url=obj["feed_url"],
        feed_title=obj["feed_title"],
        url=obj["url"],
        title=obj["title"],
        summary=obj["summary"],
        tags=tuple(obj["tags"]),
        language=obj["language"],
        published_at=published_at,
        published_at_source=obj["published_at_source"],
        fetched_at=fetched_at,
    )
