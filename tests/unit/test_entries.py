"""Entry normalization (udfs/entries.py) and feed list parsing (connectors/feed_list.py)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import feedparser
import jsonschema
import pytest

from connectors.feed_list import FeedListError, FeedSpec, detect_feed_list_format, parse_feed_list
from udfs.canonical import event_id
from udfs.entries import (
    REJECT_NO_IDENTITY,
    SUMMARY_MAX_CHARS,
    cap_text,
    encode_event,
    html_to_text,
    normalize_entry,
    normalize_language,
)
from udfs.event import FIELDS, MAX_FUTURE_SKEW_MS, MIN_PUBLISHED_AT_MS

REPO = Path(__file__).resolve().parents[2]
SCHEMA = json.loads((REPO / "schemas" / "event-v1.schema.json").read_text())
FEED = "https://news.example.com/rss"
FETCHED = 1_795_176_000_000  # 2026-11-20T12:00:00Z
HOUR = 3_600_000


def normalize(entry: dict, feed: dict | None = None, fetched_at: int = FETCHED):
    return normalize_entry(entry, feed if feed is not None else {"title": "Example News", "language": "en-US"}, feed_url=FEED, fetched_at=fetched_at)


def gm(ms: int) -> time.struct_time:
    return time.gmtime(ms // 1000)


# --------------------------------------------------------------------------- text


@pytest.mark.parametrize(
    ("html", "text"),
    [
        ("<p>Storm <b>Bram</b> hits</p><p>the coast</p>", "Storm Bram hits the coast"),
        ("Fish &amp; chips &mdash; &#8220;quoted&#8221; &nbsp;caf&eacute;", "Fish & chips \u2014 \u201cquoted\u201d caf\u00e9"),
        ("a<br>b<br/>c", "a b c"),
        ("<script>alert(1)</script>visible<style>p{}</style>", "visible"),
        ("  many \n\t spaces\u00a0here  ", "many spaces here"),
        ("1 &lt; 2 &gt; 0", "1 < 2 > 0"),
        ("", ""),
        (None, ""),
        ("<p>unclosed <b>tags", "unclosed tags"),
    ],
)
def test_html_to_text(html: str | None, text: str) -> None:
    assert html_to_text(html) == text


def test_cap_text_cuts_at_word_boundary_with_ellipsis() -> None:
    text = " ".join(["word"] * 400)
    capped = cap_text(text, SUMMARY_MAX_CHARS)
    assert len(capped) <= SUMMARY_MAX_CHARS
    assert capped.endswith("word\u2026")
    assert cap_text("short", 10) == "short"


@pytest.mark.parametrize(
    ("raw", "language"),
    [("en-US", "en"), ("EN_gb", "en"), ("de", "de"), ("fil", "fil"), (" fr-CA ", "fr"), ("", None), (None, None),
     ("english", None), ("x", None), (42, None)],
)
def test_normalize_language(raw: object, language: str | None) -> None:
    assert normalize_language(raw) == language


# --------------------------------------------------------------------------- entries


def test_full_entry_becomes_schema_v1_event() -> None:
    entry = {
        "title": "Storm <b>Bram</b> makes landfall",
        "link": "https://Herald.example.com/storm?utm_source=rss#top",
        "id": "herald-42",
        "summary": "<p>Gusts &gt; 140&nbsp;km/h.</p>",
        "tags": [{"term": "Weather"}, {"term": "storm"}, {"term": "WEATHER"}, {"term": " "}, {"label": "Coast"}],
        "published_parsed": gm(FETCHED - HOUR),
    }
    result = normalize(entry)
    event = result.event
    assert result.rejection is None and result.notes == ()
    assert tuple(event) == FIELDS
    jsonschema.validate(event, SCHEMA)
    assert event["article_id"] == "url:https://herald.example.com/storm"
    assert event["event_id"] == event_id(FEED, event["article_id"])
    assert event["url"] == "https://Herald.example.com/storm?utm_source=rss#top"  # as served
    assert event["title"] == "Storm Bram makes landfall"
    assert event["summary"] == "Gusts > 140 km/h."
    assert event["tags"] == ["coast", "storm", "weather"]
    assert event["language"] == "en"
    assert event["feed_title"] == "Example News"
    assert (event["published_at"], event["published_at_source"]) == (FETCHED - HOUR, "published")
    assert event["fetched_at"] == FETCHED


def test_summary_falls_back_to_content_and_is_capped() -> None:
    entry = {"title": "t", "content": [{"value": "<div>" + "long text " * 300 + "</div>"}]}
    summary = normalize(entry).event["summary"]
    assert summary.startswith("long text long text")
    assert len(summary) <= SUMMARY_MAX_CHARS


def test_entry_language_wins_over_feed_language() -> None:
    event = normalize({"title": "t", "title_detail": {"language": "de-AT"}}).event
    assert event["language"] == "de"
    assert normalize({"title": "t"}, feed={}).event["language"] is None


# every date fallback --------------------------------------------------------


@pytest.mark.parametrize(
    ("entry", "published_at", "source", "notes"),
    [
        ({"published_parsed": gm(FETCHED - HOUR)}, FETCHED - HOUR, "published", ()),
        ({"published": "Fri, 20 Nov 2026 10:00:00 +0000"}, FETCHED - 2 * HOUR, "published", ()),
        ({"published": "2026-11-20T11:00:00+01:00"}, FETCHED - 2 * HOUR, "published", ()),
        ({"published": "2026-11-20T10:00:00"}, FETCHED - 2 * HOUR, "published", ()),  # naive = UTC
        ({"updated_parsed": gm(FETCHED - 3 * HOUR)}, FETCHED - 3 * HOUR, "updated", ()),
        ({}, FETCHED, "first_seen", ()),
        (
            {"published_parsed": gm(FETCHED + MAX_FUTURE_SKEW_MS + HOUR), "updated_parsed": gm(FETCHED - HOUR)},
            FETCHED - HOUR,
            "updated",
            ("published_in_future",),
        ),
        (
            {"published_parsed": gm(MIN_PUBLISHED_AT_MS - HOUR), "updated_parsed": gm(FETCHED - HOUR)},
            FETCHED - HOUR,
            "updated",
            ("published_before_min",),
        ),
        ({"published": "yesterday-ish", "updated_parsed": gm(FETCHED - HOUR)}, FETCHED - HOUR, "updated", ("published_unparseable",)),
        (
            {"published_parsed": gm(FETCHED + 2 * MAX_FUTURE_SKEW_MS), "updated_parsed": gm(0)},
            FETCHED,
            "first_seen",
            ("published_in_future", "updated_before_min"),
        ),
        ({"updated": "not a date"}, FETCHED, "first_seen", ("updated_unparseable",)),
        # Just inside both bounds is kept.
        ({"published_parsed": gm(FETCHED + MAX_FUTURE_SKEW_MS)}, FETCHED + MAX_FUTURE_SKEW_MS, "published", ()),
        ({"published_parsed": gm(MIN_PUBLISHED_AT_MS)}, MIN_PUBLISHED_AT_MS, "published", ()),
    ],
)
def test_published_at_fallbacks(entry: dict, published_at: int, source: str, notes: tuple[str, ...]) -> None:
    result = normalize({"title": "Storm", **entry})
    assert result.event is not None
    assert (result.event["published_at"], result.event["published_at_source"]) == (published_at, source)
    assert result.notes == notes
    jsonschema.validate(result.event, SCHEMA)


# identity ---------------------------------------------------------------------


def test_entry_without_link_guid_or_title_is_rejected_not_dropped() -> None:
    result = normalize({"summary": "orphan text", "published_parsed": gm(FETCHED)})
    assert result.event is None
    assert result.rejection == REJECT_NO_IDENTITY
    # markup-only titles count as no title
    assert normalize({"title": "<b> </b>"}).rejection == REJECT_NO_IDENTITY


@pytest.mark.parametrize(
    ("entry", "prefix"),
    [
        ({"link": "https://example.com/a"}, "url:"),
        ({"link": "not a url", "id": "g"}, "guid:"),
        ({"id": "tag:example.com,2026:1"}, "guid:"),
        ({"title": "Only a title"}, "hash:"),
    ],
)
def test_identity_fallbacks(entry: dict, prefix: str) -> None:
    event = normalize(entry).event
    assert event["article_id"].startswith(prefix)
    assert isinstance(event["title"], str)
    jsonschema.validate(event, SCHEMA)


def test_non_mapping_entry_is_rejected() -> None:
    assert normalize("not an entry").rejection == "entry_not_a_mapping"  # type: ignore[arg-type]


def test_normalization_is_deterministic_and_encodes_compactly() -> None:
    entry = {"title": "Caf\u00e9 reopens", "link": "https://example.com/a", "published_parsed": gm(FETCHED)}
    first, second = normalize(entry).event, normalize(dict(entry)).event
    assert encode_event(first) == encode_event(second)
    raw = encode_event(first)
    assert b'": ' not in raw and b'", "' not in raw  # compact separators
    assert "Caf\u00e9".encode() in raw  # UTF-8, not \u escapes
    assert json.loads(raw) == first


def test_real_feedparser_entries_normalize() -> None:
    rss = b"""<?xml version="1.0"?><rss version="2.0"><channel><title>T &amp; Co</title><language>en-GB</language>
    <item><title>A &amp; B</title><link>https://example.com/a?utm_medium=rss</link>
    <description>&lt;p&gt;x&amp;nbsp;y&lt;/p&gt;</description><category>Politics</category>
    <pubDate>Fri, 20 Nov 2026 09:00:00 GMT</pubDate></item></channel></rss>"""
    parsed = feedparser.parse(rss)
    event = normalize_entry(parsed.entries[0], parsed.feed, feed_url=FEED, fetched_at=FETCHED).event
    assert event["title"] == "A & B"
    assert event["summary"] == "x y"
    assert event["feed_title"] == "T & Co"
    assert event["language"] == "en"
    assert event["tags"] == ["politics"]
    assert event["article_id"] == "url:https://example.com/a"
    assert event["published_at"] == FETCHED - 3 * HOUR


# --------------------------------------------------------------------------- feed lists


def test_parse_plain_text_feed_list(tmp_path: Path) -> None:
    text = "# my feeds\nhttps://a.example/rss\n\n  https://b.example/feed#frag   # trailing comment\nlocal/c.xml\nhttps://a.example/rss\n"
    specs = parse_feed_list(text, base_dir=str(tmp_path))
    assert [s.url for s in specs] == [
        "https://a.example/rss",
        "https://b.example/feed#frag",
        (tmp_path / "local" / "c.xml").as_uri(),
    ]


def test_parse_yaml_feed_list() -> None:
    text = "- url: https://a.example/rss\n  name: A News\n  tags: [World, politics]\n- https://b.example/atom\n"
    assert parse_feed_list(text) == [
        FeedSpec("https://a.example/rss", "A News", ("politics", "world")),
        FeedSpec("https://b.example/atom", "", ()),
    ]
    assert parse_feed_list("feeds:\n  - url: https://c.example/\n")[0].url == "https://c.example/"


def test_parse_opml_feed_list_resolves_relative_paths(tmp_path: Path) -> None:
    opml = """<?xml version="1.0"?><opml version="2.0"><head/><body>
      <outline text="Tech"><outline type="rss" text="T" xmlUrl="feeds/t.rss" category="Chips"/></outline>
      <outline type="rss" title="W" text="w" xmlUrl="https://w.example/rss"/></body></opml>"""
    specs = parse_feed_list(opml, base_dir=str(tmp_path))
    assert specs == [
        FeedSpec((tmp_path / "feeds" / "t.rss").as_uri(), "T", ("chips", "tech")),
        FeedSpec("https://w.example/rss", "W", ()),
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("ftp://x.example/feed\n", "unsupported scheme"),
        ("- url: https://a.example\n  colour: red\n", "unknown keys"),
        ("- url: https://a.example\n  tags: {a: 1}\n", "tags must be a list"),
        ("- [1, 2]\n", "expected a URL"),
        ("- url: [unclosed\n", "YAML"),
        ("<opml><body><outline", "not well-formed"),
        ("<rss/>", "expected <opml>"),
        ('<!DOCTYPE o [<!ENTITY a "b">]><opml><body/></opml>', "entity declarations"),
    ],
)
def test_bad_feed_lists_raise_clear_errors(text: str, message: str) -> None:
    with pytest.raises(FeedListError, match=message):
        parse_feed_list(text)


@pytest.mark.parametrize(
    ("name", "kind"), [("feeds.opml", "opml"), ("feeds.txt", "text"), ("feeds.yaml", "yaml")]
)
def test_sample_feed_lists_agree(name: str, kind: str) -> None:
    path = REPO / "samples" / name
    text = path.read_text()
    assert detect_feed_list_format(text) == kind
    urls = [s.url for s in parse_feed_list(text, base_dir=str(path.parent))]
    assert len(urls) == 5
    assert sorted(urls) == sorted((REPO / "samples" / "feeds" / f).as_uri() for f in (
        "coastal-herald.rss", "daily-ledger.rss", "techwire.rss", "matchday-sports.atom", "newsroll-top.atom"))
