"""Canonical URLs and article/event ids (udfs/canonical.py)."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from udfs.canonical import article_id, article_link, canonical_url, event_id
from udfs.entries import normalize_entry


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("https://example.com/a", "https://example.com/a"),
        ("HTTPS://Example.COM/a", "https://example.com/a"),
        ("https://example.com:443/a", "https://example.com/a"),
        ("http://example.com:80/a", "http://example.com/a"),
        ("http://example.com:8080/a", "http://example.com:8080/a"),
        ("https://example.com:80/a", "https://example.com:80/a"),
        ("https://example.com", "https://example.com/"),
        ("https://example.com?b=1", "https://example.com/?b=1"),
        ("https://example.com/a/", "https://example.com/a/"),  # trailing slash kept as served
        ("https://example.com/a#section-2", "https://example.com/a"),
        ("https://example.com/a?utm_source=rss&utm_medium=feed", "https://example.com/a"),
        ("https://example.com/a?UTM_Campaign=x&id=7", "https://example.com/a?id=7"),
        ("https://example.com/a?fbclid=1&gclid=2&mc_cid=3&mc_eid=4&igshid=5&ref_src=twsrc", "https://example.com/a"),
        ("https://example.com/a?b=2&a=1&c=3", "https://example.com/a?a=1&b=2&c=3"),
        ("https://example.com/a?a=2&a=1", "https://example.com/a?a=1&a=2"),
        ("https://example.com/a?q=", "https://example.com/a?q="),
        ("https://example.com/a?q=a+b", "https://example.com/a?q=a%20b"),
        ("https://example.com/a?q=a%20b", "https://example.com/a?q=a%20b"),
        ("https://example.com/%7Euser/%41", "https://example.com/~user/A"),
        ("https://example.com/a%2fb", "https://example.com/a%2Fb"),  # encoded slash is not a slash
        ("https://example.com/caf\u00e9", "https://example.com/caf%C3%A9"),
        ("https://user:secret@example.com/a", "https://example.com/a"),
        ("https://example.com./a", "https://example.com/a"),
        ("https://[2001:DB8::1]:443/a", "https://[2001:db8::1]/a"),
        ("  https://example.com/a \n", "https://example.com/a"),
        ("https://example.com/very/\n  long", "https://example.com/very/%20%20long"),
    ],
)
def test_canonical_url(raw: str, expected: str) -> None:
    assert canonical_url(raw) == expected


@pytest.mark.parametrize(
    "raw",
    [None, "", "   ", "ftp://example.com/a", "mailto:news@example.com", "javascript:alert(1)", "/relative/path",
     "https://", "https://exa mple.com/", "https://example.com:99999/", "urn:uuid:1234"],
)
def test_canonical_url_rejects_non_http_urls(raw: str | None) -> None:
    assert canonical_url(raw) is None


def test_canonical_url_is_idempotent_on_examples() -> None:
    for raw in ("HTTPS://Example.COM:443/a/?b=2&a=1&utm_x=3#f", "http://example.com/%7e?q=a+b"):
        once = canonical_url(raw)
        assert once is not None and canonical_url(once) == once


def test_article_id_prefers_canonical_url() -> None:
    assert article_id("https://Example.com/a?utm_source=x", "g-1", "https://feed", "T") == "url:https://example.com/a"


def test_article_id_falls_back_to_guid_when_link_is_missing_or_not_http() -> None:
    assert article_id(None, " g-1 ", "https://feed", "T") == "guid:g-1"
    assert article_id("mailto:x@example.com", "g-1", "https://feed", "T") == "guid:g-1"


def test_article_id_falls_back_to_hash_of_feed_and_title() -> None:
    expected = "hash:" + hashlib.sha256(b"https://feed\nStorm hits coast").hexdigest()
    assert article_id(None, None, "https://feed", "Storm hits coast") == expected
    # whitespace in the title is formatting, not identity
    assert article_id(None, "  ", "https://feed", "  Storm   hits\ncoast ") == expected


@pytest.mark.parametrize(
    ("link", "guid", "expected"),
    [
        ("https://Example.com/a?utm_source=x&id=7#top", None, "https://example.com/a?id=7"),
        (None, "http://example.com/story/1", "http://example.com/story/1"),
        (None, "tag:example.com,2020:story-1", ""),  # a guid that is not a web address
        (None, "javascript:alert(1)", ""),
        (None, None, ""),  # only a title: the id is a hash
    ],
)
def test_article_link_is_the_address_the_id_names(link: str | None, guid: str | None, expected: str) -> None:
    assert article_link(article_id(link, guid, "https://feed.example/rss", "A title")) == expected


def test_event_id_is_sha256_of_feed_and_article() -> None:
    expected = hashlib.sha256(b"https://feed/rss\nurl:https://example.com/a").hexdigest()
    assert event_id("https://feed/rss", "url:https://example.com/a") == expected
    assert event_id("https://other/rss", "url:https://example.com/a") != expected


# --------------------------------------------------------------------------- property

_segment = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-_", min_size=1, max_size=8)
_param_key = st.text(alphabet="abcdefghijklmnopqrstuvwxyz", min_size=1, max_size=6).filter(
    lambda k: not k.startswith(("utm_", "pk_", "mtm_", "oly_"))
    and k not in {"fbclid", "gclid", "dclid", "msclkid", "yclid", "igshid", "smid", "ocid", "cmpid"}
)
_tracking = st.sampled_from(["utm_source=rss", "utm_medium=feed", "fbclid=IwAR0", "gclid=abc", "mc_cid=1", "ref_src=twsrc"])


@st.composite
def article_link_variants(draw: st.DrawFn) -> tuple[str, str]:
    """Two renderings of the same article link."""
    host = draw(st.lists(_segment, min_size=2, max_size=3).map(".".join))
    path = "/" + "/".join(draw(st.lists(_segment, min_size=1, max_size=4)))
    params = draw(st.dictionaries(_param_key, _segment, max_size=4))
    items = [f"{k}={v}" for k, v in params.items()]

    def render() -> str:
        shuffled = draw(st.permutations(items))
        extra = draw(st.lists(_tracking, max_size=3))
        query_parts = list(shuffled) + extra
        query_parts = draw(st.permutations(query_parts))
        query = ("?" + "&".join(query_parts)) if query_parts else ""
        cased_host = "".join(c.upper() if draw(st.booleans()) else c for c in host)
        scheme = draw(st.sampled_from(["https", "HTTPS", "Https"]))
        port = draw(st.sampled_from(["", ":443"]))
        fragment = draw(st.sampled_from(["", "#top", "#comments", "#"]))
        ws_before = draw(st.sampled_from(["", " ", "\n  ", "\t"]))
        ws_after = draw(st.sampled_from(["", " ", "\n", "  \t"]))
        return f"{ws_before}{scheme}://{cased_host}{port}{path}{query}{fragment}{ws_after}"

    return render(), render()


@settings(max_examples=200, deadline=None)
@given(article_link_variants(), st.sampled_from(["https://a.example/rss", "https://b.example/atom.xml"]))
def test_same_article_same_ids_whatever_the_formatting(variants: tuple[str, str], feed_url: str) -> None:
    first, second = variants
    id_1 = article_id(first, "guid-1", feed_url, "Title")
    id_2 = article_id(second, "guid-2", feed_url, "Other title")
    assert id_1 == id_2
    assert id_1.startswith("url:")
    assert event_id(feed_url, id_1) == event_id(feed_url, id_2)
    canonical = canonical_url(first)
    assert canonical is not None and canonical_url(canonical) == canonical


@settings(max_examples=100, deadline=None)
@given(article_link_variants(), st.sampled_from(["", " ", "\n\t"]))
def test_same_entry_same_event_whatever_the_formatting(variants: tuple[str, str], padding: str) -> None:
    first, second = variants
    feed = {"title": "Feed"}
    a = normalize_entry({"link": first, "title": "Storm  hits"}, feed, feed_url="https://f/rss", fetched_at=10**12)
    b = normalize_entry({"link": second, "title": padding + "Storm hits" + padding}, feed, feed_url="https://f/rss", fetched_at=10**12)
    assert a.event is not None and b.event is not None
    assert (a.event["article_id"], a.event["event_id"]) == (b.event["article_id"], b.event["event_id"])
    assert a.event["title"] == b.event["title"] == "Storm hits"
