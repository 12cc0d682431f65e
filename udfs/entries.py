"""Feed entry -> schema v1 event.

Pure functions only: the fetcher (connectors/feeds.py) hands over an entry as
feedparser gives it (a dict), the feed-level dict, the feed URL and the fetch
time; nothing here reads the clock, the network or the disk, so the same
entry normalizes to the same event on every run.

Policy for entries with no identity at all (no link, no guid, no title): they
are *rejected* with reason "no_identity", never given an id.  Schema v1 defines
the last-resort id as a hash of (feed_url, title); with an empty title every
such entry of a feed would collapse into one article, and a hash over the
summary would change whenever the publisher edits a word.  A rejection is
counted and logged by the caller, so nothing disappears silently.

Reading the list of feeds to poll is input handling: `connectors/feed_list.py`.
"""

from __future__ import annotations

import calendar
import email.utils
import json
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from html.parser import HTMLParser
from typing import Any

from udfs.canonical import article_id as make_article_id
from udfs.canonical import event_id as make_event_id
from udfs.event import MAX_FUTURE_SKEW_MS, MIN_PUBLISHED_AT_MS, SCHEMA_VERSION

# Caps keep one event well under a Kafka record's comfortable size and keep the
# term extraction cost per event bounded; the first 1000 characters of a
# summary carry the story's terms.
SUMMARY_MAX_CHARS = 1000
TITLE_MAX_CHARS = 500
MAX_TAGS = 32
TAG_MAX_CHARS = 64

REJECT_NO_IDENTITY = "no_identity"
REJECT_NOT_A_MAPPING = "entry_not_a_mapping"


# --------------------------------------------------------------------------- text


class _TextExtractor(HTMLParser):
    """Collects text nodes; block elements become spaces so words don't glue."""

    _BLOCK = frozenset(
        "address article aside blockquote br dd div dl dt figcaption figure footer h1 h2 h3 h4 h5 h6 "
        "header hr li main nav ol p pre section table td th tr ul".split()
    )
    _SKIP = frozenset({"script", "style", "template", "noscript"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)  # unescapes &amp; &#8217; ... in text
        self.parts: list[str] = []
        self._skip_depth = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self._SKIP:
            self._skip_depth += 1
        elif tag in self._BLOCK:
            self.parts.append(" ")

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self._BLOCK:
            self.parts.append(" ")

    def handle_endtag(self, tag: str) -> None:
        if tag in self._SKIP:
            self._skip_depth = max(0, self._skip_depth - 1)
        elif tag in self._BLOCK:
            self.parts.append(" ")

    def handle_data(self, data: str) -> None:
        if not self._skip_depth:
            self.parts.append(data)


def html_to_text(html: str | None) -> str:
    """Visible text of an HTML fragment, entities unescaped, whitespace collapsed."""
    if not html:
        return ""
    if "<" not in html and "&" not in html:
        return normalize_whitespace(html)
    extractor = _TextExtractor()
    extractor.feed(html)
    extractor.close()
    return normalize_whitespace("".join(extractor.parts))


def normalize_whitespace(text: str) -> str:
    # str.split() also splits on NBSP and other Unicode spaces, which feeds love.
    return " ".join(text.split())


def cap_text(text: str, max_chars: int) -> str:
    """Cut at a word boundary near max_chars and mark the cut with an ellipsis."""
    if len(text) <= max_chars:
        return text
    cut = text[: max_chars - 1]
    space = cut.rfind(" ")
    if space >= max_chars * 0.8:
        cut = cut[:space]
    return cut.rstrip() + "\u2026"


def normalize_tags(raw_tags: Any) -> list[str]:
    """feedparser tags ([{"term": ...}] or plain strings) -> lowercased, unique, sorted."""
    terms: set[str] = set()
    if not isinstance(raw_tags, Sequence) or isinstance(raw_tags, (str, bytes)):
        return []
    for tag in raw_tags:
        if isinstance(tag, Mapping):
            term = tag.get("term") or tag.get("label")
        else:
            term = tag
        if not isinstance(term, str):
            continue
        term = html_to_text(term).lower()[:TAG_MAX_CHARS].strip()
        if term:
            terms.add(term)
    return sorted(terms)[:MAX_TAGS]


_LANGUAGE = re.compile(r"[a-z]{2,3}")


def normalize_language(value: Any) -> str | None:
    """BCP 47 tag -> primary subtag ("en-US" -> "en"); None when unusable."""
    if not isinstance(value, str):
        return None
    primary = re.split(r"[-_]", value.strip().lower(), maxsplit=1)[0]
    return primary if _LANGUAGE.fullmatch(primary) else None


# --------------------------------------------------------------------------- time


def _struct_to_ms(value: Any) -> int | None:
    if isinstance(value, time.struct_time) or (isinstance(value, (tuple, list)) and len(value) >= 6):
        try:
            return calendar.timegm(tuple(value[:6]) + (0, 0, 0)) * 1000
        except (TypeError, ValueError, OverflowError):
            return None
    return None


def parse_date_ms(text: str) -> int | None:
    """RFC 822 / RFC 3339 date string -> epoch ms UTC (naive means UTC)."""
    text = text.strip()
    if not text:
        return None
    parsed: datetime | None = None
    try:
        parsed = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        try:
            parsed = datetime.fromisoformat(text.replace("z", "Z"))
        except ValueError:
            return None
    if parsed is None:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    try:
        return int(parsed.timestamp() * 1000)
    except (OverflowError, OSError, ValueError):
        return None


def _entry_time_ms(entry: Mapping[str, Any], key: str) -> tuple[int | None, bool]:
    """(epoch ms or None, whether the entry had the field at all)."""
    ms = _struct_to_ms(entry.get(key + "_parsed"))
    raw = entry.get(key)
    present = ms is not None or (isinstance(raw, str) and bool(raw.strip()))
    if ms is None and isinstance(raw, str):
        ms = parse_date_ms(raw)
    return ms, present


def choose_published_at(entry: Mapping[str, Any], fetched_at: int) -> tuple[int, str, list[str]]:
    """published -> updated -> first_seen, skipping unparseable or absurd dates.

    Returns (published_at, published_at_source, notes).  Notes name each date
    that was present but unusable, so the caller can count them: a feed whose
    clock is wrong should be visible, not silently re-dated.  The future bound
    is relative to fetched_at (never the wall clock) so replays decide the same.
    """
    notes: list[str] = []
    for source in ("published", "updated"):
        ms, present = _entry_time_ms(entry, source)
        if not present:
            continue
        if ms is None:
            notes.append(f"{source}_unparseable")
        elif ms < MIN_PUBLISHED_AT_MS:
            notes.append(f"{source}_before_min")
        elif ms > fetched_at + MAX_FUTURE_SKEW_MS:
            notes.append(f"{source}_in_future")
        else:
            return ms, source, notes
    return fetched_at, "first_seen", notes


# --------------------------------------------------------------------------- entries


@dataclass(frozen=True)
class EntryResult:
    """Either an event (schema v1 dict) or a rejection reason; notes are counted anomalies."""

    event: dict[str, Any] | None
    rejection: str | None = None
    notes: tuple[str, ...] = field(default=())


def _first_text(entry: Mapping[str, Any], *keys: str) -> str:
    for key in keys:
        value = entry.get(key)
        if isinstance(value, str) and value.strip():
            return value
        if key == "content" and isinstance(value, Sequence) and value:
            first = value[0]
            if isinstance(first, Mapping) and isinstance(first.get("value"), str):
                return first["value"]
    return ""


def _entry_language(entry: Mapping[str, Any], feed: Mapping[str, Any]) -> str | None:
    candidates: list[Any] = [entry.get("language")]
    for detail in ("title_detail", "summary_detail"):
        value = entry.get(detail)
        if isinstance(value, Mapping):
            candidates.append(value.get("language"))
    candidates.append(feed.get("language"))
    for candidate in candidates:
        language = normalize_language(candidate)
        if language:
            return language
    return None


def normalize_entry(
    entry: Mapping[str, Any],
    feed: Mapping[str, Any],
    *,
    feed_url: str,
    fetched_at: int,
) -> EntryResult:
    """One feedparser entry as seen in one feed -> schema v1 event or rejection."""
    if not isinstance(entry, Mapping):
        return EntryResult(None, REJECT_NOT_A_MAPPING)
    link = entry.get("link")
    link = link.strip() if isinstance(link, str) and link.strip() else None
    guid = entry.get("id")
    guid = guid.strip() if isinstance(guid, str) and guid.strip() else None
    title = cap_text(html_to_text(_first_text(entry, "title")), TITLE_MAX_CHARS)
    if link is None and guid is None and not title:
        return EntryResult(None, REJECT_NO_IDENTITY)

    summary = cap_text(html_to_text(_first_text(entry, "summary", "description", "content")), SUMMARY_MAX_CHARS)
    the_article_id = make_article_id(link, guid, feed_url, title)
    published_at, source, notes = choose_published_at(entry, fetched_at)
    feed_title = html_to_text(feed.get("title") if isinstance(feed.get("title"), str) else "")
    event = {
        "schema_version": SCHEMA_VERSION,
        "event_id": make_event_id(feed_url, the_article_id),
        "article_id": the_article_id,
        "feed_url": feed_url,
        "feed_title": cap_text(feed_title, TITLE_MAX_CHARS),
        "url": link,
        "title": title,
        "summary": summary,
        "tags": normalize_tags(entry.get("tags")),
        "language": _entry_language(entry, feed),
        "published_at": published_at,
        "published_at_source": source,
        "fetched_at": fetched_at,
    }
    return EntryResult(event, None, tuple(notes))


def encode_event(event: Mapping[str, Any]) -> bytes:
    """Compact UTF-8 JSON, field order as built: the Kafka record value."""
    return json.dumps(event, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
