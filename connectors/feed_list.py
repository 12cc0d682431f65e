"""The list of feeds to poll: a file in OPML, YAML or plain text -> feed specs.

    OPML    <outline xmlUrl="..." text="..." category="a,b"/> at any depth
    YAML    a list of URLs or of {url, name, tags}, or {feeds: [...]}
    text    one URL or path per line; `#` starts a comment

Relative paths resolve against the list's own directory and become file: URIs;
only http, https and file locations are accepted (FeedListError says which line).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from udfs.entries import normalize_whitespace


@dataclass(frozen=True)
class FeedSpec:
    url: str
    name: str = ""
    tags: tuple[str, ...] = ()


class FeedListError(ValueError):
    """The feed list cannot be understood; the message says where and why."""


_SCHEME = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*):")
_ALLOWED_SCHEMES = ("http", "https", "file")


def _resolve_location(location: str, base_dir: str, where: str) -> str:
    location = location.strip()
    if not location:
        raise FeedListError(f"{where}: empty feed location")
    match = _SCHEME.match(location)
    # A one-letter "scheme" is a Windows drive, i.e. a path.
    if match and len(match.group(1)) > 1:
        scheme = match.group(1).lower()
        if scheme not in _ALLOWED_SCHEMES:
            raise FeedListError(f"{where}: unsupported scheme {scheme!r} in {location!r} (use http, https or file)")
        if scheme == "file" and not location.lower().startswith("file:///"):
            # file:relative/path: resolve against the list like a bare path
            location = location[len("file:") :].lstrip("/")
            return _path_to_uri(location, base_dir)
        return location
    return _path_to_uri(location, base_dir)


def _path_to_uri(path: str, base_dir: str) -> str:
    from pathlib import PurePath

    joined = os.path.normpath(os.path.join(base_dir, os.path.expanduser(path)))
    return PurePath(os.path.abspath(joined)).as_uri()


def _clean_tags(raw: Any, where: str) -> tuple[str, ...]:
    if raw is None:
        return ()
    if isinstance(raw, str):
        raw = [t for t in re.split(r"[,\s]+", raw) if t]
    if not isinstance(raw, list) or not all(isinstance(t, (str, int, float)) for t in raw):
        raise FeedListError(f"{where}: tags must be a list of strings")
    return tuple(sorted({str(t).strip().lower() for t in raw if str(t).strip()}))


def _parse_opml(text: str, base_dir: str) -> list[tuple[str, str, tuple[str, ...], str]]:
    import xml.etree.ElementTree as ET

    if "<!ENTITY" in text:
        # A list of feeds never needs entity declarations; refusing them
        # removes the entity-expansion class of problems entirely.
        raise FeedListError("OPML: entity declarations are not allowed")
    try:
        root = ET.fromstring(text)
    except ET.ParseError as exc:
        raise FeedListError(f"OPML: not well-formed XML ({exc})") from None
    body = root.find("body")
    if root.tag.lower() != "opml" or body is None:
        raise FeedListError("OPML: expected <opml><body>...</body></opml>")
    found: list[tuple[str, str, tuple[str, ...], str]] = []

    def walk(node: Any, folder_tags: tuple[str, ...], depth: int) -> None:
        if depth > 32:  # nesting is user data: bound the recursion
            raise FeedListError("OPML: outlines nested deeper than 32 levels")
        for index, outline in enumerate(node.findall("outline")):
            where = f"OPML outline {outline.get('text') or outline.get('title') or index!r}"
            url = outline.get("xmlUrl") or outline.get("xmlurl") or outline.get("url")
            name = outline.get("title") or outline.get("text") or ""
            tags = folder_tags + _clean_tags(outline.get("category"), where)
            if url:
                found.append((url, name, tags, where))
            else:
                folder = (name.strip().lower(),) if name.strip() else ()
                walk(outline, folder_tags + folder, depth + 1)

    walk(body, (), 0)
    return found


def _parse_yaml(text: str) -> list[tuple[str, str, tuple[str, ...], str]]:
    import yaml

    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise FeedListError(f"YAML: {exc}") from None
    if isinstance(data, Mapping) and "feeds" in data:
        data = data["feeds"]
    if not isinstance(data, list):
        raise FeedListError("YAML: expected a list of feeds (- url: ...)")
    found = []
    for index, item in enumerate(data, start=1):
        where = f"YAML item {index}"
        if isinstance(item, str):
            found.append((item, "", (), where))
        elif isinstance(item, Mapping) and isinstance(item.get("url"), str):
            unknown = set(item) - {"url", "name", "tags"}
            if unknown:
                raise FeedListError(f"{where}: unknown keys {sorted(unknown)} (allowed: url, name, tags)")
            name = item.get("name") or ""
            found.append((item["url"], str(name), _clean_tags(item.get("tags"), where), where))
        else:
            raise FeedListError(f"{where}: expected a URL string or a mapping with 'url'")
    return found


def _parse_plain(text: str) -> list[tuple[str, str, tuple[str, ...], str]]:
    found = []
    for number, line in enumerate(text.splitlines(), start=1):
        # '#' starts a comment only at line start or after whitespace, because
        # URLs may carry a fragment.
        line = re.split(r"(?:^|\s)#", line, maxsplit=1)[0].strip()
        if line:
            found.append((line, "", (), f"line {number}"))
    return found


def detect_feed_list_format(text: str) -> str:
    """"opml", "yaml" or "text", from the first meaningful line."""
    for line in text.lstrip("\ufeff").splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.startswith("<"):
            return "opml"
        if stripped.startswith("- ") or stripped == "-" or stripped.startswith("feeds:"):
            return "yaml"
        return "text"
    return "text"


def parse_feed_list(text: str, *, base_dir: str = ".") -> list[FeedSpec]:
    """OPML, YAML (`- url: ... name: ... tags: [...]`) or one URL per line -> FeedSpecs.

    Relative paths resolve against base_dir (the directory of the list file),
    so a list can travel with its feeds.  Duplicate URLs keep the first entry.
    Raises FeedListError with the position of the first problem.
    """
    text = text.lstrip("\ufeff")
    kind = detect_feed_list_format(text)
    if kind == "opml":
        raw = _parse_opml(text, base_dir)
    elif kind == "yaml":
        raw = _parse_yaml(text)
    else:
        raw = _parse_plain(text)
    specs: list[FeedSpec] = []
    seen: set[str] = set()
    for url, name, tags, where in raw:
        resolved = _resolve_location(url, base_dir, where)
        if resolved in seen:
            continue
        seen.add(resolved)
        specs.append(FeedSpec(url=resolved, name=normalize_whitespace(name), tags=tuple(sorted(set(tags)))))
    return specs


def load_feed_list(path: str) -> list[FeedSpec]:
    with open(path, encoding="utf-8") as handle:
        text = handle.read()
    return parse_feed_list(text, base_dir=os.path.dirname(os.path.abspath(path)))
