"""Canonical article identity: one article, one id, whichever feed served it.

Feeds link the same article with different decorations: tracking parameters,
fragments, host case, default ports, parameter order.  Deduplication downstream
keys on `article_id`, so every decoration that does not change *which page* is
meant must be removed here, deterministically (same input -> same id on every
machine and on every replay).
"""

from __future__ import annotations

import functools
import hashlib
import re
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

# Query parameters that only tell the publisher where a click came from.
# Matched case-insensitively; names ending in "_" are prefixes.
TRACKING_PARAM_PREFIXES = ("utm_", "_hs", "pk_", "mtm_", "oly_")
TRACKING_PARAMS = frozenset(
    {
        "fbclid",
        "gclid",
        "dclid",
        "gbraid",
        "wbraid",
        "msclkid",
        "yclid",
        "twclid",
        "mc_cid",
        "mc_eid",
        "igshid",
        "ref_src",
        "ref_url",
        "_ga",
        "_gl",
        "mkt_tok",
        "vero_id",
        "vero_conv",
        "cmpid",
        "ocid",
        "at_medium",
        "at_campaign",
        "smid",
        "sr_share",
    }
)

_DEFAULT_PORTS = {"http": 80, "https": 443}

# RFC 3986 unreserved characters: an escape of one of these means the same URL
# as the bare character, so it is decoded; every other escape is kept (decoding
# %2F or %3F would change the URL's structure).
_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_PCT = re.compile(r"%([0-9A-Fa-f]{2})")
_HOST = re.compile(r"[^\x00-\x20/?#@\[\]\\%]+")  # no controls, spaces or delimiters
_PATH_SAFE = "/:@!$&'()*+,;=-._~%"


def _normalize_escapes(path: str) -> str:
    def fix(match: re.Match[str]) -> str:
        char = chr(int(match.group(1), 16))
        return char if char in _UNRESERVED else "%" + match.group(1).upper()

    path = _PCT.sub(fix, path)
    # A '%' not followed by two hex digits is a literal percent sign.
    path = re.sub(r"%(?![0-9A-F]{2})", "%25", path)
    # Quote what must not appear raw (spaces, non-ASCII); existing escapes pass.
    return quote(path, safe=_PATH_SAFE)


def is_tracking_param(name: str) -> bool:
    lowered = name.lower()
    return lowered in TRACKING_PARAMS or lowered.startswith(TRACKING_PARAM_PREFIXES)


def canonical_url(url: str | None) -> str | None:
    """Return the canonical form of an http(s) article URL, or None if it is not one.

    Rules: scheme and host lowercased; user info, default port and fragment
    dropped; tracking parameters removed; remaining parameters sorted; an empty
    path becomes "/"; any other path keeps its trailing slash as served (some
    servers treat /a and /a/ as different pages, so we never guess).
    """
    if not url:
        return None
    # Browsers drop tabs and newlines inside URLs (WHATWG URL spec); feeds
    # wrap long links, so do the same.
    url = re.sub(r"[\t\r\n]", "", url.strip())
    if not url:
        return None
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS:
        return None
    host = (parts.hostname or "").rstrip(".")
    if not host or not _HOST.fullmatch(host):
        return None
    if ":" in host:  # IPv6 literal; urlsplit strips the brackets
        host = f"[{host}]"
    netloc = host if port in (None, _DEFAULT_PORTS[scheme]) else f"{host}:{port}"
    path = _normalize_escapes(parts.path) or "/"
    params = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if not is_tracking_param(k)]
    query = urlencode(sorted(params), quote_via=quote, safe="-._~")
    return urlunsplit((scheme, netloc, path, query, ""))


def _sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def article_id(entry_url: str | None, guid: str | None, feed_url: str, title: str | None) -> str:
    """Stable id of an article across feeds and polls.

    Preference order follows how portable the identity is: a canonical URL is
    shared by every feed that links the article; a guid is only unique within
    its publisher; a hash of (feed, title) is the last resort and only stable
    as long as the feed does not retitle the entry.
    """
    canonical = canonical_url(entry_url)
    if canonical is not None:
        return "url:" + canonical
    guid = (guid or "").strip()
    if guid:
        return "guid:" + guid
    normalized_title = " ".join((title or "").split())
    return "hash:" + _sha256_hex(feed_url + "\n" + normalized_title)


def event_id(feed_url: str, article_id: str) -> str:
    """sha256 hex of feed_url + "\\n" + article_id (schema v1): stable per (feed, article)."""
    return _sha256_hex(feed_url + "\n" + article_id)


# Every candidate of a window carries its examples' links, and a rebuild ranks each
# window's candidates again at every revision: the same ids come back many times.
@functools.lru_cache(maxsize=65536)
def article_link(the_article_id: str) -> str:
    """The web address an article id names, or "" when it names none.

    A `url:` id carries the article's canonical URL, the same page as the link
    each feed served.  A `guid:` id is a link only when the guid is itself an
    http(s) URL (RSS's isPermaLink guids); it is canonicalized so that only an
    http(s) address ever comes out.  A `hash:` id has no address.
    """
    kind, _, value = the_article_id.partition(":")
    if kind == "url":
        return value
    if kind == "guid":
        return canonical_url(value) or ""
    return ""
