"""Fetching and parsing feeds: the only place that talks to feed servers.

Every fetch is bounded: a total deadline per request, a maximum body size
(checked before and while reading, and after gzip decoding), a maximum number
of redirects and a fixed worker pool.  feedparser only ever sees bytes we
already hold (it never fetches, and never opens a "body" as a file name).

Per-feed state survives between runs in a JSON state file:

    {"version": 1, "feeds": {"<feed url>": {
        "etag": str|null, "last_modified": str|null,   # HTTP validators
        "fingerprint": str|null,                       # file:// feeds: mtime_ns-size
        "sent_event_ids": [..],                        # sent, and listed by the feed's latest document
        "left_feed_at": {event id: epoch ms},          # sent, then no longer listed since then
        "consecutive_failures": int, "next_attempt_at": epoch ms,
        "last_status": str, "last_error": str|null}}}

An id is remembered for as long as the feed lists it, however long that is (an
evergreen article stays in some feeds for years), and forgotten only once it has
been gone from the feed for longer than the job's dedup TTL: so memory is bounded
by the feed's own size plus what left it within the TTL, and an entry that comes
back is not sent again while the job might still count it as new.

Validators and sent ids are only committed after the poll's events were
delivered (see connectors/ingest.py): committing them earlier would make the
next poll get "304 Not Modified" for entries that never reached Kafka.
"""

from __future__ import annotations

import http.client
import io
import json
import logging
import os
import re
import socket
import ssl
import tempfile
import time
import urllib.parse
import urllib.request
import zlib
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import feedparser

from connectors.feed_list import FeedSpec
from core.errors import BadInput
from udfs.entries import normalize_entry

log = logging.getLogger("feedtrends.feeds")

STATE_VERSION = 1
DEFAULT_FORGET_AFTER_MS = 7 * 86_400_000  # the job's default dedup TTL (core/config.py)
BACKOFF_BASE_MS = 60_000
BACKOFF_MAX_MS = 6 * 3600 * 1000
USER_AGENT = "feedtrends/1 (+https://example.invalid/feedtrends)"
_REDIRECTS = (301, 302, 303, 307, 308)


@dataclass(frozen=True)
class FetchLimits:
    timeout_s: float = 15.0  # total per request, connect to last byte
    max_bytes: int = 5 * 1024 * 1024
    max_redirects: int = 5
    concurrency: int = 8


# --------------------------------------------------------------------------- state


class StateFileError(BadInput):
    """The state file exists but cannot be used; the message says what to do."""


def load_state(path: str | None) -> dict[str, Any]:
    """Read the state file; a missing file (or path None) is an empty state."""
    empty = {"version": STATE_VERSION, "feeds": {}}
    if not path or not os.path.exists(path):
        return empty
    try:
        with open(path, encoding="utf-8") as handle:
            state = json.load(handle)
    except (OSError, ValueError) as exc:
        # Refuse rather than silently start over: a fresh state re-sends every
        # entry of every feed.
        raise StateFileError(f"cannot read state file {path}: {exc}; fix or delete it") from None
    if not isinstance(state, dict) or state.get("version") != STATE_VERSION or not isinstance(state.get("feeds"), dict):
        raise StateFileError(f"state file {path} is not a feedtrends v{STATE_VERSION} state; fix or delete it")
    return state


def save_state(path: str | None, state: Mapping[str, Any]) -> None:
    """Atomic write (temp file + rename): a crash never leaves half a state file."""
    if not path:
        return
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".state-", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(state, handle, separators=(",", ":"), sort_keys=True)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def feed_state(state: dict[str, Any], feed_url: str) -> dict[str, Any]:
    entry = state["feeds"].setdefault(feed_url, {})
    entry.setdefault("etag", None)
    entry.setdefault("last_modified", None)
    entry.setdefault("fingerprint", None)
    entry.setdefault("sent_event_ids", [])
    entry.setdefault("left_feed_at", {})
    entry.setdefault("consecutive_failures", 0)
    entry.setdefault("next_attempt_at", 0)
    entry.setdefault("last_status", None)
    entry.setdefault("last_error", None)
    return entry


def backoff_ms(consecutive_failures: int) -> int:
    """1 min, 2 min, 4 min ... capped at 6 h."""
    if consecutive_failures <= 0:
        return 0
    return min(BACKOFF_MAX_MS, BACKOFF_BASE_MS * 2 ** min(consecutive_failures - 1, 30))


def record_failure(state: dict[str, Any], feed_url: str, reason: str, now_ms: int) -> None:
    entry = feed_state(state, feed_url)
    entry["consecutive_failures"] += 1
    entry["next_attempt_at"] = now_ms + backoff_ms(entry["consecutive_failures"])
    entry["last_status"] = "failed"
    entry["last_error"] = reason


def record_success(
    state: dict[str, Any],
    feed_url: str,
    *,
    status: str,
    validators: Mapping[str, str | None],
    sent_event_ids: Iterable[str] = (),
    listed_event_ids: Iterable[str] | None = None,
    now_ms: int = 0,
    forget_after_ms: int = DEFAULT_FORGET_AFTER_MS,
) -> None:
    """Commit a delivered poll: validators, the ids just sent, and which ids the feed lists.

    `listed_event_ids` are the ids of every usable entry in the document just parsed
    (None: not known, e.g. "not modified", so nothing changes).  A remembered id the
    document no longer lists starts its time away now; one away for longer than
    `forget_after_ms` is forgotten.
    """
    entry = feed_state(state, feed_url)
    entry["consecutive_failures"] = 0
    entry["next_attempt_at"] = 0
    entry["last_status"] = status
    entry["last_error"] = None
    if status == "ok":
        for key in ("etag", "last_modified", "fingerprint"):
            entry[key] = validators.get(key)
    sent: list[str] = entry["sent_event_ids"]
    left: dict[str, int] = entry["left_feed_at"]
    known = set(sent) | set(left)
    for event_id in sent_event_ids:
        if event_id not in known:
            sent.append(event_id)
            known.add(event_id)
    if listed_event_ids is None:
        return
    listed = set(listed_event_ids)
    for event_id in sent:
        if event_id not in listed:
            left.setdefault(event_id, now_ms)
    entry["sent_event_ids"] = [event_id for event_id in known if event_id in listed]
    entry["sent_event_ids"].sort()  # a stable state file
    entry["left_feed_at"] = {
        event_id: since
        for event_id, since in sorted(left.items())
        if event_id not in listed and now_ms - since <= forget_after_ms
    }


# --------------------------------------------------------------------------- fetch


@dataclass
class FetchResult:
    status: str  # "ok" | "not_modified" | "failed"
    body: bytes = b""
    content_type: str = ""
    final_url: str = ""
    reason: str | None = None
    validators: dict[str, str | None] = field(default_factory=dict)


class _FetchError(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _read_bounded(read: Callable[[int], bytes], limits: FetchLimits, deadline: float, encoding: str) -> bytes:
    decoder = zlib.decompressobj(16 + zlib.MAX_WBITS) if encoding == "gzip" else None
    chunks: list[bytes] = []
    total = 0
    while True:
        if time.monotonic() > deadline:
            raise _FetchError("timeout")
        chunk = read(64 * 1024)
        if not chunk:
            break
        if decoder is not None:
            # max_length bounds the output of a decompression bomb.
            chunk = decoder.decompress(chunk, limits.max_bytes + 1 - total)
        total += len(chunk)
        if total > limits.max_bytes:
            raise _FetchError("too_large")
        chunks.append(chunk)
    return b"".join(chunks)


def _fetch_http(url: str, entry: Mapping[str, Any], limits: FetchLimits) -> FetchResult:
    deadline = time.monotonic() + limits.timeout_s
    headers = {
        "User-Agent": USER_AGENT,
        "Accept": "application/rss+xml, application/atom+xml, application/xml;q=0.9, text/xml;q=0.9, */*;q=0.1",
        "Accept-Encoding": "gzip",
    }
    if entry.get("etag"):
        headers["If-None-Match"] = entry["etag"]
    if entry.get("last_modified"):
        headers["If-Modified-Since"] = entry["last_modified"]
    current = url
    for _ in range(limits.max_redirects + 1):
        parts = urllib.parse.urlsplit(current)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise _FetchError("bad_redirect" if current != url else "unsupported_scheme")
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise _FetchError("timeout")
        conn: http.client.HTTPConnection
        if parts.scheme == "https":
            conn = http.client.HTTPSConnection(
                parts.hostname, parts.port, timeout=remaining, context=ssl.create_default_context()
            )
        else:
            conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=remaining)
        try:
            path = urllib.parse.urlunsplit(("", "", parts.path or "/", parts.query, ""))
            conn.request("GET", path, headers=headers)
            # Kept because http.client drops conn.sock once a response says
            # "Connection: close"; the socket itself stays open for reading.
            sock = conn.sock
            response = conn.getresponse()
            if response.status in _REDIRECTS:
                location = response.getheader("Location")
                if not location:
                    raise _FetchError(f"http_{response.status}_without_location")
                current = urllib.parse.urljoin(current, location)
                continue
            if response.status == 304:
                return FetchResult("not_modified", final_url=current)
            if not 200 <= response.status < 300 or response.status in (204, 206):
                raise _FetchError(f"http_{response.status}")
            declared = response.getheader("Content-Length")
            if declared and declared.isdigit() and int(declared) > limits.max_bytes:
                raise _FetchError("too_large")
            encoding = (response.getheader("Content-Encoding") or "").strip().lower()
            if encoding not in ("", "identity", "gzip"):
                raise _FetchError(f"unsupported_content_encoding_{encoding}")

            def read_until_deadline(size: int) -> bytes:
                # read1 returns what has arrived (read(n) waits for n bytes), and
                # the socket timeout shrinks with the deadline, so a slow-drip
                # server cannot hold a worker past timeout_s.
                if sock is not None:
                    sock.settimeout(max(0.001, deadline - time.monotonic()))
                return response.read1(size)

            body = _read_bounded(read_until_deadline, limits, deadline, encoding)
            return FetchResult(
                "ok",
                body=body,
                content_type=response.getheader("Content-Type") or "",
                final_url=current,
                validators={"etag": response.getheader("ETag"), "last_modified": response.getheader("Last-Modified")},
            )
        finally:
            conn.close()
    raise _FetchError("too_many_redirects")


_FILE_CONTENT_TYPES = {".rss": "application/rss+xml", ".atom": "application/atom+xml", ".rdf": "application/rdf+xml"}


def _fetch_file(url: str, entry: Mapping[str, Any], limits: FetchLimits) -> FetchResult:
    path = urllib.request.url2pathname(urllib.parse.urlsplit(url).path)
    try:
        stat = os.stat(path)
    except FileNotFoundError:
        raise _FetchError("file_not_found") from None
    # mtime + size plays the role of an ETag for local files.
    fingerprint = f"{stat.st_mtime_ns}-{stat.st_size}"
    if entry.get("fingerprint") == fingerprint:
        return FetchResult("not_modified", final_url=url)
    if stat.st_size > limits.max_bytes:
        raise _FetchError("too_large")
    with open(path, "rb") as handle:
        body = _read_bounded(handle.read, limits, time.monotonic() + limits.timeout_s, "")
    # Without a content type feedparser flags every local file as bozo.
    content_type = _FILE_CONTENT_TYPES.get(os.path.splitext(path)[1].lower(), "application/xml")
    return FetchResult(
        "ok", body=body, content_type=content_type, final_url=url, validators={"fingerprint": fingerprint}
    )


def fetch_feed(url: str, entry: Mapping[str, Any], limits: FetchLimits, *, allow_files: bool) -> FetchResult:
    """GET one feed (conditional when validators are known); never raises for bad input."""
    scheme = urllib.parse.urlsplit(url).scheme.lower()
    try:
        if scheme in ("http", "https"):
            return _fetch_http(url, entry, limits)
        if scheme == "file":
            if not allow_files:
                raise _FetchError("files_not_allowed")
            return _fetch_file(url, entry, limits)
        raise _FetchError("unsupported_scheme")
    except _FetchError as exc:
        return FetchResult("failed", final_url=url, reason=exc.reason)
    except (socket.timeout, TimeoutError):
        return FetchResult("failed", final_url=url, reason="timeout")
    except ssl.SSLError:
        return FetchResult("failed", final_url=url, reason="tls_error")
    except (OSError, http.client.HTTPException) as exc:
        return FetchResult("failed", final_url=url, reason=f"connection_error:{type(exc).__name__}")


# --------------------------------------------------------------------------- parse


@dataclass
class ParsedFeed:
    feed: dict[str, Any]
    entries: list[Any]
    failure: str | None = None  # the feed is unusable
    bozo_reason: str | None = None  # the feed was malformed but yielded entries


_INTERNAL_SUBSET_ENTITY = re.compile(rb"<!DOCTYPE[^\[>]*\[[^\]]*<!ENTITY", re.IGNORECASE | re.DOTALL)
_HTML_START = re.compile(rb"^\s*(<\?xml[^>]*>\s*)?(<!--.*?-->\s*)*<(!doctype\s+html|html[\s>])", re.IGNORECASE | re.DOTALL)

_BOZO_REASONS = {
    "CharacterEncodingOverride": "declared_encoding_wrong",
    "CharacterEncodingUnknown": "encoding_unknown",
    "NonXMLContentType": "non_xml_content_type",
    "SAXParseException": "xml_not_well_formed",
    "UndeclaredNamespace": "undeclared_namespace",
}


def _bozo_reason(exc: Any) -> str:
    name = type(exc).__name__
    return _BOZO_REASONS.get(name, re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower())


def parse_feed_bytes(body: bytes, *, content_type: str = "", base_url: str = "") -> ParsedFeed:
    """Parse feed bytes with feedparser; classify what cannot be used."""
    if not body.strip():
        return ParsedFeed({}, [], failure="empty_body")
    # Feeds never need their own entity declarations, and they are how
    # "billion laughs" and external-entity payloads arrive.  Refusing them up
    # front makes the cost independent of the parser's own defences.
    if _INTERNAL_SUBSET_ENTITY.search(body[:65536]):
        return ParsedFeed({}, [], failure="xml_entity_declarations")
    headers = {"content-location": base_url} if base_url else {}
    if content_type:
        headers["content-type"] = content_type
    # A stream, not bytes: given bytes, feedparser first tries open(body) as a
    # file name, and a hostile server could name a local file.
    parsed = feedparser.parse(io.BytesIO(body), response_headers=headers, sanitize_html=False)
    entries = list(parsed.get("entries") or [])
    bozo = _bozo_reason(parsed.get("bozo_exception")) if parsed.get("bozo") else None
    if not entries and (bozo or not parsed.get("version")):
        if _HTML_START.match(body[:4096]):
            return ParsedFeed({}, [], failure="html_page")
        return ParsedFeed({}, [], failure=bozo or "not_a_feed")
    return ParsedFeed(dict(parsed.get("feed") or {}), entries, bozo_reason=bozo)


# --------------------------------------------------------------------------- poll


@dataclass
class FeedPoll:
    """What one poll of one feed produced; nothing is committed to state yet."""

    feed_url: str
    status: str  # "ok" | "not_modified" | "failed" | "backoff"
    reason: str | None = None
    events: list[dict[str, Any]] = field(default_factory=list)  # new, not sent before
    listed: list[str] = field(default_factory=list)  # event ids of every usable entry in the document
    already_sent: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    notes: Counter[str] = field(default_factory=Counter)
    validators: dict[str, str | None] = field(default_factory=dict)


def poll_feed(spec: FeedSpec, entry: Mapping[str, Any], limits: FetchLimits, *, allow_files: bool, now_ms: int) -> FeedPoll:
    """Fetch, parse and normalize one feed; filter events this feed already sent."""
    fetched = fetch_feed(spec.url, entry, limits, allow_files=allow_files)
    if fetched.status != "ok":
        return FeedPoll(spec.url, fetched.status, reason=fetched.reason)
    parsed = parse_feed_bytes(fetched.body, content_type=fetched.content_type, base_url=fetched.final_url)
    if parsed.failure:
        return FeedPoll(spec.url, "failed", reason=parsed.failure)
    poll = FeedPoll(spec.url, "ok", validators=fetched.validators)
    if parsed.bozo_reason:
        poll.notes[f"bozo:{parsed.bozo_reason}"] += 1
    sent = set(entry.get("sent_event_ids") or ()) | set(entry.get("left_feed_at") or ())
    feed_info = dict(parsed.feed)
    if not feed_info.get("title") and spec.name:
        feed_info["title"] = spec.name
    for raw in parsed.entries:
        result = normalize_entry(raw, feed_info, feed_url=spec.url, fetched_at=now_ms)
        poll.notes.update(result.notes)
        if result.event is None:
            poll.rejected[result.rejection or "unknown"] += 1
            continue
        poll.listed.append(result.event["event_id"])
        if result.event["event_id"] in sent:
            poll.already_sent += 1  # also catches the same entry twice in one document
            continue
        sent.add(result.event["event_id"])
        poll.events.append(result.event)
    return poll


def poll_feeds(
    specs: list[FeedSpec],
    state: dict[str, Any],
    limits: FetchLimits,
    *,
    allow_files: bool,
    now_ms: int,
) -> list[FeedPoll]:
    """Poll every feed that is not backing off, in parallel, results in spec order."""
    due: list[tuple[int, FeedSpec, dict[str, Any]]] = []
    results: list[FeedPoll | None] = [None] * len(specs)
    for index, spec in enumerate(specs):
        entry = feed_state(state, spec.url)
        if entry["next_attempt_at"] > now_ms:
            results[index] = FeedPoll(spec.url, "backoff", reason=entry.get("last_error"))
        else:
            # Workers get a snapshot: state is only mutated by the caller.
            due.append((index, spec, json.loads(json.dumps(entry))))
    if due:
        with ThreadPoolExecutor(max_workers=max(1, min(limits.concurrency, len(due))), thread_name_prefix="feed") as pool:
            futures = {
                index: pool.submit(poll_feed, spec, entry, limits, allow_files=allow_files, now_ms=now_ms)
                for index, spec, entry in due
            }
            for index, future in futures.items():
                try:
                    results[index] = future.result()
                except Exception as exc:  # a parser bug must not stop the other feeds
                    log.exception("unexpected error polling %s", specs[index].url)
                    results[index] = FeedPoll(specs[index].url, "failed", reason=f"internal_error:{type(exc).__name__}")
    return [r for r in results if r is not None]
