"""Event schema v1: the JSON object the ingester writes to `feed-events`.

One event is one feed entry as seen in one feed. Copies of the same article seen
in several feeds (or on several polls) share `article_id`; `event_id` is stable
for (feed, article), so re-sending the same entry yields the same event id.

The Kafka record that carries an event is keyed by `article_id` (all copies of an
article land in one partition, in order) and its record timestamp is
`published_at`, so the Flink source can derive per-partition watermarks in the JVM
without parsing JSON.

Fields (see schemas/event-v1.schema.json for the machine-readable form):

    schema_version       int, always 1
    event_id             str, sha256 hex of feed_url + "\\n" + article_id
    article_id           str, canonical article id ("url:<canonical url>", "guid:<guid>"
                         or "hash:<sha256 of feed_url + title>")
    feed_url             str
    feed_title           str ("" when unknown)
    url                  str | null, the entry's link as served
    title                str (may be "" when the entry had none; never null)
    summary              str, HTML stripped, whitespace normalized, capped
    tags                 list[str], lowercased, de-duplicated, sorted
    language             str | null, e.g. "en", "de"
    published_at         int, epoch milliseconds UTC
    published_at_source  "published" | "updated" | "first_seen"
    fetched_at           int, epoch milliseconds UTC
"""

from __future__ import annotations

SCHEMA_VERSION = 1

FIELDS = (
    "schema_version",
    "event_id",
    "article_id",
    "feed_url",
    "feed_title",
    "url",
    "title",
    "summary",
    "tags",
    "language",
    "published_at",
    "published_at_source",
    "fetched_at",
)

PUBLISHED_AT_SOURCES = ("published", "updated", "first_seen")

# Timestamps outside this range are "absurd": they cannot be a real article's
# publication time.  The upper bound is relative to the event's own fetched_at so
# that the decision is deterministic on replay (never compare with the wall clock).
MIN_PUBLISHED_AT_MS = 946_684_800_000  # 2000-01-01T00:00:00Z
MAX_FUTURE_SKEW_MS = 24 * 3600 * 1000  # published_at may lead fetched_at by a day
