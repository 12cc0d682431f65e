"""Helpers shared by the unit tests: schema-v1 event bytes and record logs."""

from __future__ import annotations

import hashlib
import json
from typing import Any

BASE_MS = 1_700_000_000_000 - 1_700_000_000_000 % 3_600_000  # an hour boundary in Nov 2023


def event(
    article_id: str = "url:https://example.com/a",
    *,
    feed_url: str = "https://feeds.example/rss",
    title: str = "Quantum computing breakthrough",
    summary: str = "",
    tags: list[str] | None = None,
    language: str | None = "en",
    published_at: int = BASE_MS,
    fetched_at: int | None = None,
    **overrides: Any,
) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "schema_version": 1,
        "event_id": hashlib.sha256(f"{feed_url}\n{article_id}".encode()).hexdigest(),
        "article_id": article_id,
        "feed_url": feed_url,
        "feed_title": "Example feed",
        "url": "https://example.com/a",
        "title": title,
        "summary": summary,
        "tags": [] if tags is None else tags,
        "language": language,
        "published_at": published_at,
        "published_at_source": "published",
        "fetched_at": published_at + 60_000 if fetched_at is None else fetched_at,
    }
    obj.update(overrides)
    return obj


def encode(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False).encode("utf-8")
