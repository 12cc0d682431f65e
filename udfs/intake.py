"""What the job's one per-event Python function computes: parse, validate, terms.

The job runs everything else per event in the JVM (per-partition watermark,
dedup, the late split), so this function returns plain columns those operators
can use: a dead-letter record for bad input, or the article's fields, its terms
and the key of the counting subtask it goes to.
"""

from __future__ import annotations

from typing import NamedTuple

from udfs.counting import article_bucket_key, join_terms
from udfs.dead_letter import dlq_record, late_record
from udfs.terms import DEFAULT_MAX_TERMS, article_terms
from udfs.validate import Rejection, parse_event


class Intake(NamedTuple):
    """One Kafka record, as columns: `dlq` is set for bad input, the rest for an article."""

    dlq: str | None
    key: int  # 0 for bad input
    article_id: str | None
    feed_url: str | None
    title: str | None
    published_at: int  # 0 for bad input
    terms: str | None


def intake(
    value: bytes,
    topic: str | None,
    partition: int | None,
    offset: int | None,
    *,
    include_summary: bool,
    buckets: int,
    max_terms: int = DEFAULT_MAX_TERMS,
) -> Intake:
    """Parse one record value; bad input becomes its dead-letter JSON with the reason and source position."""
    parsed = parse_event(value)
    if isinstance(parsed, Rejection):
        record = dlq_record(value, parsed.reason, topic, partition, offset, detail=parsed.detail)
        # Zeros, not nulls, in the number columns: a null number from a Python
        # function in thread mode fails the JVM-side conversion.
        return Intake(record.decode(), 0, None, None, None, 0, None)
    return Intake(
        None,
        article_bucket_key(parsed.article_id, buckets),
        parsed.article_id,
        parsed.feed_url,
        parsed.title,
        parsed.published_at,
        join_terms(article_terms(parsed, include_summary=include_summary, max_terms=max_terms)),
    )


def late_output(
    value: bytes, late_by_ms: int, watermark: int, window_start: int, topic: str | None, partition: int | None,
    offset: int | None,
) -> str:
    """The late-output JSON of a record the JVM found late beyond lateness (it parsed before, so it parses now)."""
    article = parse_event(value)
    if isinstance(article, Rejection):  # cannot happen: only valid events reach the late split
        raise ValueError(f"late record does not parse: {article.reason}")
    return late_record(
        article, late_by_ms, watermark, topic, partition, offset, window_start=window_start
    ).decode()
