"""Fetching and parsing feeds against a real loopback HTTP server (connectors/feeds.py)."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import textwrap
import time
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest

from connectors.feed_server import FeedServer
from connectors.feeds import (
    BACKOFF_BASE_MS,
    FetchLimits,
    StateFileError,
    backoff_ms,
    feed_state,
    fetch_feed,
    load_state,
    parse_feed_bytes,
    poll_feeds,
    record_failure,
    record_success,
    save_state,
)
from connectors.feed_list import FeedSpec

REPO = Path(__file__).resolve().parents[2]
SAMPLES = REPO / "samples" / "feeds"
NOW = 1_795_176_000_000
FAST = FetchLimits(timeout_s=1.0, max_bytes=1024 * 1024, max_redirects=3, concurrency=4)

RSS_OK = b"""<?xml version="1.0" encoding="utf-8"?>
<rss version="2.0"><channel><title>Ok feed</title>
<item><title>One</title><link>https://example.com/1</link><pubDate>Fri, 20 Nov 2026 10:00:00 GMT</pubDate></item>
<item><title>Two</title><link>https://example.com/2</link><pubDate>Fri, 20 Nov 2026 11:00:00 GMT</pubDate></item>
</channel></rss>"""


def billion_laughs(levels: int = 10) -> str:
    lines = ['<?xml version="1.0"?>', "<!DOCTYPE rss [", '  <!ENTITY lol0 "lol">']
    for level in range(1, levels):
        lines.append(f'  <!ENTITY lol{level} "' + f"&lol{level - 1};" * 10 + '">')
    lines.append("]>")
    lines.append(
        f'<rss version="2.0"><channel><title>&lol{levels - 1};</title>'
        f"<item><title>&lol{levels - 1};</title><link>https://example.com/x</link></item></channel></rss>"
    )
    return "\n".join(lines)


# --------------------------------------------------------------------------- server


def _redirect_loop(handler: BaseHTTPRequestHandler) -> None:
    handler.send_response(302)
    handler.send_header("Location", "/redirect-loop")
    handler.send_header("Content-Length", "0")
    handler.end_headers()


def _redirect_once(handler: BaseHTTPRequestHandler) -> None:
    handler.send_response(301)
    handler.send_header("Location", "ok.rss")  # relative, as many servers send it
    handler.send_header("Content-Length", "0")
    handler.end_headers()


def _slow_headers(handler: BaseHTTPRequestHandler) -> None:
    time.sleep(3)
    try:
        handler.send_response(200)
        handler.send_header("Content-Length", "0")
        handler.end_headers()
    except OSError:
        pass


def _drip(handler: BaseHTTPRequestHandler) -> None:
    handler.send_response(200)
    handler.send_header("Content-Type", "application/rss+xml")
    handler.send_header("Content-Length", "100000")
    handler.end_headers()
    try:
        for _ in range(60):  # at most 6 s, long past the client's deadline
            handler.wfile.write(b" ")
            handler.wfile.flush()
            time.sleep(0.1)
    except OSError:
        pass  # the client gave up, as it should


def _big_without_length(handler: BaseHTTPRequestHandler) -> None:
    handler.send_response(200)
    handler.send_header("Content-Type", "application/rss+xml")
    handler.send_header("Connection", "close")
    handler.end_headers()
    handler.close_connection = True
    try:
        for _ in range(40):
            handler.wfile.write(b"<!-- padding -->" * 4096)  # 64 KiB x 40 > 1 MiB limit
    except OSError:
        pass


# 8 KiB that inflate to 8 MiB, eight times FAST's limit.  Made once: compressing it in the
# handler took long enough on a loaded machine for the fetch to time out first.
GZIP_BOMB = gzip.compress(b"\0" * (8 * 1024 * 1024), compresslevel=9)


def _gzip_bomb(handler: BaseHTTPRequestHandler) -> None:
    body = GZIP_BOMB
    handler.send_response(200)
    handler.send_header("Content-Type", "application/rss+xml")
    handler.send_header("Content-Encoding", "gzip")
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)


def _gzip_ok(handler: BaseHTTPRequestHandler) -> None:
    body = gzip.compress(RSS_OK)
    handler.send_response(200)
    handler.send_header("Content-Type", "application/rss+xml")
    handler.send_header("Content-Encoding", "gzip")
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FeedServer]:
    root = tmp_path_factory.mktemp("feeds")
    (root / "ok.rss").write_bytes(RSS_OK)
    (root / "page.html").write_bytes(b"<!DOCTYPE html><html><head><title>Home</title></head><body><p>Welcome</p></body></html>")
    (root / "truncated.xml").write_bytes(RSS_OK[: RSS_OK.index(b"<item><title>Two") + 20])
    (root / "not-xml.xml").write_bytes(b"this is plain text, not a feed")
    (root / "empty.xml").write_bytes(b"  \n")
    (root / "billion.xml").write_text(billion_laughs())
    (root / "wrong-encoding.xml").write_bytes(
        RSS_OK.replace(b"<title>One</title>", "<title>Caf\u00e9 r\u00e9opens</title>".encode("latin-1"))
    )
    (root / "big.xml").write_bytes(RSS_OK + b"<!--" + b"x" * (2 * 1024 * 1024) + b"-->")
    (root / "no-entries.rss").write_bytes(b'<?xml version="1.0"?><rss version="2.0"><channel><title>Quiet</title></channel></rss>')
    routes = {
        "/redirect-loop": _redirect_loop,
        "/redirect-once": _redirect_once,
        "/slow-headers": _slow_headers,
        "/drip": _drip,
        "/big-without-length": _big_without_length,
        "/gzip-bomb": _gzip_bomb,
        "/gzip-ok": _gzip_ok,
    }
    with FeedServer(str(root), routes=routes) as running:
        yield running


def fetch(server: FeedServer, path: str, entry: dict | None = None, limits: FetchLimits = FAST):
    return fetch_feed(server.url_for(path), entry or {}, limits, allow_files=False)


# --------------------------------------------------------------------------- feed server


def test_feed_server_serves_conditional_get(server: FeedServer) -> None:
    with urllib.request.urlopen(server.url_for("ok.rss"), timeout=5) as response:
        assert response.read() == RSS_OK
        etag, last_modified = response.headers["ETag"], response.headers["Last-Modified"]
        assert response.headers["Content-Type"] == "application/rss+xml"
    for headers in ({"If-None-Match": etag}, {"If-Modified-Since": last_modified}, {"If-None-Match": f'"x", {etag}'}):
        request = urllib.request.Request(server.url_for("ok.rss"), headers=headers)
        with pytest.raises(urllib.error.HTTPError) as caught:
            urllib.request.urlopen(request, timeout=5)
        assert caught.value.code == 304
    # A stale ETag wins over a fresh If-Modified-Since (RFC 9110).
    request = urllib.request.Request(server.url_for("ok.rss"), headers={"If-None-Match": '"stale"', "If-Modified-Since": last_modified})
    with urllib.request.urlopen(request, timeout=5) as response:
        assert response.status == 200


def test_feed_server_refuses_path_traversal(server: FeedServer) -> None:
    for path in ("/../../etc/passwd", "/%2e%2e/%2e%2e/etc/passwd"):
        with pytest.raises(urllib.error.HTTPError) as caught:
            urllib.request.urlopen(server.base_url + path, timeout=5)
        assert caught.value.code == 404


# --------------------------------------------------------------------------- fetch


def test_fetch_ok_then_not_modified_with_etag(server: FeedServer) -> None:
    first = fetch(server, "ok.rss")
    assert first.status == "ok" and first.body == RSS_OK
    assert first.validators["etag"] and first.validators["last_modified"]
    second = fetch(server, "ok.rss", first.validators)
    assert second.status == "not_modified"
    only_date = fetch(server, "ok.rss", {"last_modified": first.validators["last_modified"]})
    assert only_date.status == "not_modified"
    stale = fetch(server, "ok.rss", {"etag": '"something-else"'})
    assert stale.status == "ok"


def test_fetch_follows_a_bounded_number_of_redirects(server: FeedServer) -> None:
    followed = fetch(server, "redirect-once")
    assert followed.status == "ok" and followed.final_url == server.url_for("ok.rss")
    looping = fetch(server, "redirect-loop")
    assert (looping.status, looping.reason) == ("failed", "too_many_redirects")


@pytest.mark.parametrize(
    ("path", "reason"),
    [("big.xml", "too_large"), ("big-without-length", "too_large"), ("gzip-bomb", "too_large"), ("missing.xml", "http_404")],
)
def test_fetch_failures_have_reasons(server: FeedServer, path: str, reason: str) -> None:
    result = fetch(server, path)
    assert (result.status, result.reason) == ("failed", reason)
    assert result.body == b""


def test_fetch_decodes_gzip(server: FeedServer) -> None:
    result = fetch(server, "gzip-ok")
    assert result.status == "ok" and result.body == RSS_OK


@pytest.mark.parametrize("path", ["slow-headers", "drip"])
def test_fetch_respects_total_timeout(server: FeedServer, path: str) -> None:
    started = time.monotonic()
    result = fetch(server, path, limits=FetchLimits(timeout_s=0.6, max_bytes=1024 * 1024))
    elapsed = time.monotonic() - started
    assert (result.status, result.reason) == ("failed", "timeout")
    assert elapsed < 1.5


def test_fetch_connection_refused_is_a_reason() -> None:
    import socket

    with socket.socket() as probe:  # a port that was free a moment ago
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    result = fetch_feed(f"http://127.0.0.1:{port}/feed", {}, FAST, allow_files=False)
    assert result.status == "failed" and result.reason.startswith("connection_error")


def test_files_only_when_allowed(tmp_path: Path) -> None:
    feed = tmp_path / "local.rss"
    feed.write_bytes(RSS_OK)
    assert fetch_feed(feed.as_uri(), {}, FAST, allow_files=False).reason == "files_not_allowed"
    first = fetch_feed(feed.as_uri(), {}, FAST, allow_files=True)
    assert first.status == "ok" and first.body == RSS_OK and first.content_type == "application/rss+xml"
    assert fetch_feed(feed.as_uri(), first.validators, FAST, allow_files=True).status == "not_modified"
    os.utime(feed, ns=(1, 2))
    assert fetch_feed(feed.as_uri(), first.validators, FAST, allow_files=True).status == "ok"
    assert fetch_feed((tmp_path / "nope.rss").as_uri(), {}, FAST, allow_files=True).reason == "file_not_found"
    assert fetch_feed("gopher://example.com/feed", {}, FAST, allow_files=True).reason == "unsupported_scheme"


# --------------------------------------------------------------------------- parse


def _parse(server: FeedServer, path: str):
    result = fetch(server, path)
    assert result.status == "ok"
    return parse_feed_bytes(result.body, content_type=result.content_type, base_url=result.final_url)


@pytest.mark.parametrize(
    ("path", "failure"),
    [("page.html", "html_page"), ("not-xml.xml", "xml_not_well_formed"), ("empty.xml", "empty_body"),
     ("billion.xml", "xml_entity_declarations")],
)
def test_unusable_documents_fail_with_reason(server: FeedServer, path: str, failure: str) -> None:
    started = time.monotonic()
    parsed = _parse(server, path)
    assert parsed.failure == failure and parsed.entries == []
    assert time.monotonic() - started < 2


def test_truncated_feed_keeps_complete_entries_and_counts_bozo(server: FeedServer) -> None:
    parsed = _parse(server, "truncated.xml")
    assert parsed.failure is None
    assert parsed.bozo_reason == "xml_not_well_formed"
    assert parsed.entries[0]["title"] == "One"


def test_wrong_declared_encoding_keeps_entries(server: FeedServer) -> None:
    parsed = _parse(server, "wrong-encoding.xml")
    assert parsed.failure is None and parsed.bozo_reason == "declared_encoding_wrong"
    assert parsed.entries[0]["title"] == "Caf\u00e9 r\u00e9opens"


def test_feed_without_entries_is_fine(server: FeedServer) -> None:
    parsed = _parse(server, "no-entries.rss")
    assert parsed.failure is None and parsed.entries == [] and parsed.feed["title"] == "Quiet"


def test_body_that_names_a_local_file_is_not_opened(tmp_path: Path) -> None:
    secret = tmp_path / "secret.xml"
    secret.write_bytes(RSS_OK)
    # feedparser.parse(bytes) would open() this path; we hand it a stream.
    parsed = parse_feed_bytes(str(secret).encode())
    assert parsed.entries == [] and parsed.failure is not None


BILLION_LAUGHS_PROBE = textwrap.dedent(
    """
    import resource, sys, time
    resource.setrlimit(resource.RLIMIT_AS, (768 * 1024 * 1024, 768 * 1024 * 1024))
    sys.path.insert(0, sys.argv[1])
    import feedparser, io
    from connectors.feeds import parse_feed_bytes
    from tests.unit.test_feeds import billion_laughs
    payload = billion_laughs()
    started = time.monotonic()
    # 1. our path: refused before parsing
    assert parse_feed_bytes(payload.encode()).failure == "xml_entity_declarations"
    # 2. UTF-16 slips past the byte-level check: the parser itself must cope
    parsed = parse_feed_bytes(payload.replace('<?xml version="1.0"?>', '<?xml version="1.0" encoding="utf-16"?>').encode("utf-16"))
    titles = [len(e.get("title", "")) for e in parsed.entries]
    assert all(t < 10_000 for t in titles), titles
    # 3. and feedparser on its own, without our check
    direct = feedparser.parse(io.BytesIO(payload.encode()))
    assert all(len(e.get("title", "")) < 10_000 for e in direct.entries)
    print("elapsed", time.monotonic() - started)
    """
)


def test_billion_laughs_neither_hangs_nor_blows_memory(tmp_path: Path) -> None:
    script = tmp_path / "probe.py"
    script.write_text(BILLION_LAUGHS_PROBE)
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, str(script), str(REPO)], capture_output=True, text=True, timeout=30, cwd=str(REPO)
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert time.monotonic() - started < 20


# --------------------------------------------------------------------------- state, backoff, poll


def test_state_roundtrip_and_corruption(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "state.json"
    assert load_state(str(path)) == {"version": 1, "feeds": {}}
    state = load_state(None)
    record_success(state, "https://a/rss", status="ok", validators={"etag": '"e"'}, sent_event_ids=["x", "y", "x"])
    save_state(str(path), state)
    assert load_state(str(path)) == state
    assert feed_state(load_state(str(path)), "https://a/rss")["sent_event_ids"] == ["x", "y"]
    path.write_text("{not json")
    with pytest.raises(StateFileError, match="fix or delete"):
        load_state(str(path))
    path.write_text(json.dumps({"version": 99, "feeds": {}}))
    with pytest.raises(StateFileError):
        load_state(str(path))


def test_sent_ids_are_kept_while_listed_and_forgotten_after_leaving_for_the_ttl() -> None:
    state = load_state(None)
    day = 86_400_000
    record_success(state, "f", status="ok", validators={}, sent_event_ids=["a", "b"], listed_event_ids=["a", "b"], now_ms=0, forget_after_ms=7 * day)
    # b leaves the feed on day 1; a is still listed years later.
    record_success(state, "f", status="ok", validators={}, listed_event_ids=["a"], now_ms=day, forget_after_ms=7 * day)
    entry = feed_state(state, "f")
    assert entry["sent_event_ids"] == ["a"] and entry["left_feed_at"] == {"b": day}
    # "Not modified" says nothing about which ids are listed: nothing is forgotten.
    record_success(state, "f", status="not_modified", validators={}, now_ms=30 * day, forget_after_ms=7 * day)
    assert feed_state(state, "f")["left_feed_at"] == {"b": day}
    # Back within the TTL: remembered again as listed, not sent twice.
    record_success(state, "f", status="ok", validators={}, listed_event_ids=["a", "b"], now_ms=5 * day, forget_after_ms=7 * day)
    assert feed_state(state, "f")["sent_event_ids"] == ["a", "b"] and feed_state(state, "f")["left_feed_at"] == {}
    # Gone for longer than the TTL: forgotten; a, listed for 1000 days, is not.
    record_success(state, "f", status="ok", validators={}, listed_event_ids=["a"], now_ms=6 * day, forget_after_ms=7 * day)
    record_success(state, "f", status="ok", validators={}, listed_event_ids=["a"], now_ms=1000 * day, forget_after_ms=7 * day)
    assert feed_state(state, "f")["sent_event_ids"] == ["a"] and feed_state(state, "f")["left_feed_at"] == {}


def test_not_modified_keeps_validators() -> None:
    state = load_state(None)
    record_success(state, "f", status="ok", validators={"etag": '"1"', "last_modified": "x"})
    record_success(state, "f", status="not_modified", validators={})
    assert feed_state(state, "f")["etag"] == '"1"'


def test_exponential_backoff_schedule() -> None:
    assert [backoff_ms(n) for n in range(5)] == [0, BACKOFF_BASE_MS, 2 * BACKOFF_BASE_MS, 4 * BACKOFF_BASE_MS, 8 * BACKOFF_BASE_MS]
    assert backoff_ms(1000) == 6 * 3600 * 1000


def test_poll_backs_off_after_failure_then_retries(server: FeedServer) -> None:
    state = load_state(None)
    spec = FeedSpec(server.url_for("missing.xml"))
    [first] = poll_feeds([spec], state, FAST, allow_files=False, now_ms=NOW)
    assert (first.status, first.reason) == ("failed", "http_404")
    record_failure(state, spec.url, first.reason, NOW)
    record_failure(state, spec.url, first.reason, NOW)  # second failure: 2 minutes
    assert feed_state(state, spec.url)["next_attempt_at"] == NOW + 2 * BACKOFF_BASE_MS
    [waiting] = poll_feeds([spec], state, FAST, allow_files=False, now_ms=NOW + BACKOFF_BASE_MS)
    assert waiting.status == "backoff"
    [retried] = poll_feeds([spec], state, FAST, allow_files=False, now_ms=NOW + 2 * BACKOFF_BASE_MS)
    assert retried.status == "failed"


def test_poll_normalizes_and_filters_already_sent(server: FeedServer) -> None:
    state = load_state(None)
    specs = [FeedSpec(server.url_for("ok.rss"), name="Named"), FeedSpec(server.url_for("page.html"))]
    ok, html = poll_feeds(specs, state, FAST, allow_files=False, now_ms=NOW)
    assert (html.status, html.reason) == ("failed", "html_page")
    assert ok.status == "ok" and [e["title"] for e in ok.events] == ["One", "Two"]
    assert all(e["feed_url"] == specs[0].url for e in ok.events)
    # Pretend only "One" was delivered, and the server lost our validators.
    record_success(state, specs[0].url, status="ok", validators={}, sent_event_ids=[ok.events[0]["event_id"]])
    [again] = poll_feeds(specs[:1], state, FAST, allow_files=False, now_ms=NOW + 1)
    assert again.already_sent == 1 and [e["title"] for e in again.events] == ["Two"]


def test_poll_truncated_feed_counts_bozo_and_rejects_partial_entry(server: FeedServer) -> None:
    [poll] = poll_feeds([FeedSpec(server.url_for("truncated.xml"))], load_state(None), FAST, allow_files=False, now_ms=NOW)
    assert poll.status == "ok"
    assert [e["title"] for e in poll.events] == ["One"]
    assert poll.notes["bozo:xml_not_well_formed"] == 1
    assert poll.rejected == {"no_identity": 1}  # "Two" was cut off before its title closed


def test_sample_feeds_over_http(tmp_path: Path) -> None:
    with FeedServer(str(SAMPLES)) as samples:
        specs = [FeedSpec(samples.url_for(name)) for name in sorted(os.listdir(SAMPLES))]
        polls = poll_feeds(specs, load_state(None), FAST, allow_files=False, now_ms=NOW)
    assert [p.status for p in polls] == ["ok"] * 5
    assert sum(len(p.events) for p in polls) == 42
    assert not any(p.notes for p in polls) and not any(p.rejected for p in polls)
