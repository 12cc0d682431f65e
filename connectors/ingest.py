"""`feedtrends ingest` and `feedtrends generate`: from feeds (or the synthetic
generator) to the `feed-events` topic.

run_ingest / run_generate are the entry points (the CLI's flags are in
feedtrends/ingest_cli.py, which calls them; so do tests).

One ingest poll:

    feed list -> poll_feeds (fetch | parse | normalize | drop already-sent)
              -> new events, sorted by published_at -> sink (Kafka or stdout)
              -> flush -> commit per-feed state (validators, sent ids, backoff)

State is committed only for feeds whose events were all acknowledged, so a
Kafka failure makes the next poll fetch and send those entries again
(at-least-once; the job deduplicates by event_id/article_id).
"""

from __future__ import annotations

import dataclasses
import logging
import re
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import IO, Any

from connectors.feeds import (
    DEFAULT_FORGET_AFTER_MS,
    FetchLimits,
    load_state,
    poll_feeds,
    record_failure,
    record_success,
    save_state,
)
from connectors.feed_list import FeedSpec, load_feed_list
from connectors.producer import DryRunSink, EventSink, KafkaSink, make_producer
from connectors.retry import kafka_call
from connectors.synthetic import GeneratorConfig, format_counts, iter_synthetic
from core.config import Config, load_config
from udfs.entries import encode_event

log = logging.getLogger("feedtrends.ingest")

STATE_FILE_NAME = "ingest-state.json"  # in the configured state_dir, as for `demo`
GENERATE_FLUSH_EVERY = 10_000  # bounds the producer's pending futures in memory


def _kafka_target(config: Config | None, bootstrap: str | None, topic: str | None, partitions: int | None) -> Config:
    """The one configuration (FEEDTRENDS_* and defaults), with this call's overrides."""
    config = config if config is not None else load_config()
    changes = {"bootstrap": bootstrap, "events_topic": topic, "partitions": partitions}
    return dataclasses.replace(config, **{k: v for k, v in changes.items() if v is not None})


def open_kafka_sink(config: Config, *, client_id: str) -> KafkaSink:
    """Create the events topic if missing and connect a producer, retrying a broker that
    is still starting (connectors/retry.py) until the configured deadline."""
    from connectors.topics import ensure_topics

    ensure_topics(config, {config.events_topic: config.partitions})
    producer = kafka_call(
        "connect a producer",
        lambda t: make_producer(config.kafka_bootstrap, client_id=client_id, bootstrap_timeout_ms=t.bootstrap_timeout_ms),
        bootstrap=config.kafka_bootstrap,
        deadline_s=config.retry_deadline_ms / 1000,
    )
    return KafkaSink(config.kafka_bootstrap, config.events_topic, producer=producer)


# --------------------------------------------------------------------------- helpers


def parse_start_ms(text: str) -> int:
    """Epoch milliseconds or an ISO 8601 time with zone (naive means UTC)."""
    text = str(text).strip()
    if re.fullmatch(r"-?\d+", text):
        return int(text)
    parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return int(parsed.timestamp() * 1000)


class _Progress:
    """A single self-overwriting status line, only when stderr is a terminal."""

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream
        self.enabled = bool(getattr(stream, "isatty", lambda: False)())

    def show(self, text: str) -> None:
        if self.enabled:
            self.stream.write("\r\033[K" + text)
            self.stream.flush()

    def clear(self) -> None:
        if self.enabled:
            self.stream.write("\r\033[K")
            self.stream.flush()


# --------------------------------------------------------------------------- ingest


@dataclass
class IngestSummary:
    feeds_ok: int = 0
    feeds_not_modified: int = 0
    feeds_failed: int = 0
    feeds_backoff: int = 0  # skipped: still backing off after earlier errors
    entries_new: int = 0
    entries_already_sent: int = 0
    entries_rejected: int = 0
    events_delivered: int = 0
    polls: int = 0
    reasons: Counter[str] = field(default_factory=Counter)

    @property
    def exit_code(self) -> int:
        return 1 if self.feeds_failed else 0

    def line(self) -> str:
        return (
            f"feeds ok={self.feeds_ok} not_modified={self.feeds_not_modified} failed={self.feeds_failed}; "
            f"entries new={self.entries_new} already_sent={self.entries_already_sent} rejected={self.entries_rejected}"
        )

    def detail_line(self) -> str:
        parts = [f"{reason}={count}" for reason, count in sorted(self.reasons.items())]
        if self.feeds_backoff:
            parts.insert(0, f"backoff_skipped={self.feeds_backoff}")
        return "reasons: " + " ".join(parts) if parts else ""


def ingest_poll(
    specs: list[FeedSpec],
    state: dict[str, Any],
    sink: EventSink,
    *,
    limits: FetchLimits,
    allow_files: bool,
    now_ms: int,
    forget_after_ms: int = DEFAULT_FORGET_AFTER_MS,
) -> IngestSummary:
    """One poll of every due feed; mutates `state` (caller saves it).

    An id a feed no longer lists is forgotten `forget_after_ms` after it left (the
    job's dedup TTL: until then the job would still drop a re-sent copy).
    """
    polls = poll_feeds(specs, state, limits, allow_files=allow_files, now_ms=now_ms)
    summary = IngestSummary(polls=1)

    # Across feeds, oldest first: keeps each partition's record timestamps
    # close to increasing, so the job's watermarks do not jump ahead.
    outgoing = sorted(
        ((event, poll.feed_url) for poll in polls for event in poll.events),
        key=lambda pair: (pair[0]["published_at"], pair[0]["event_id"]),
    )
    for event, feed_url in outgoing:
        sink.send(event["article_id"].encode("utf-8"), encode_event(event), event["published_at"], tag=feed_url)
    report = sink.flush()
    summary.events_delivered = report.sent
    for error, count in report.errors.items():
        summary.reasons[f"produce:{error}"] += count

    for poll in polls:
        summary.entries_already_sent += poll.already_sent
        summary.entries_rejected += sum(poll.rejected.values())
        summary.entries_new += len(poll.events)
        for reason, count in poll.rejected.items():
            summary.reasons[f"rejected:{reason}"] += count
        for note, count in poll.notes.items():
            summary.reasons[note] += count
        if poll.status == "backoff":
            summary.feeds_backoff += 1
        elif poll.status == "failed":
            summary.feeds_failed += 1
            summary.reasons[f"failed:{poll.reason}"] += 1
            record_failure(state, poll.feed_url, poll.reason or "unknown", now_ms)
            log.warning("feed %s failed: %s", poll.feed_url, poll.reason)
        elif poll.feed_url in report.failed_tags:
            # Not delivered: keep the old validators and sent ids so the next
            # poll fetches and sends these entries again.
            summary.feeds_failed += 1
            summary.reasons["failed:produce_failed"] += 1
            record_failure(state, poll.feed_url, "produce_failed", now_ms)
            log.warning("feed %s: events not acknowledged by Kafka", poll.feed_url)
        else:
            if poll.status == "ok":
                summary.feeds_ok += 1
            else:
                summary.feeds_not_modified += 1
            record_success(
                state,
                poll.feed_url,
                status=poll.status,
                validators=poll.validators,
                sent_event_ids=[event["event_id"] for event in poll.events],
                listed_event_ids=poll.listed if poll.status == "ok" else None,
                now_ms=now_ms,
                forget_after_ms=forget_after_ms,
            )
    return summary


def _merge(total: IngestSummary, part: IngestSummary) -> None:
    for name in (
        "feeds_ok",
        "feeds_not_modified",
        "feeds_failed",
        "feeds_backoff",
        "entries_new",
        "entries_already_sent",
        "entries_rejected",
        "events_delivered",
        "polls",
    ):
        setattr(total, name, getattr(total, name) + getattr(part, name))
    total.reasons.update(part.reasons)


def run_ingest(
    feeds_file: str,
    *,
    once: bool = True,
    every_seconds: float | None = None,
    allow_files: bool = False,
    dry_run: bool = False,
    bootstrap: str | None = None,
    topic: str | None = None,
    partitions: int | None = None,
    config: Config | None = None,
    state_path: str | None = None,
    out: IO[Any] | None = None,
    err: IO[str] | None = None,
    max_polls: int | None = None,
    limits: FetchLimits = FetchLimits(),
    sink: EventSink | None = None,
    clock: Callable[[], float] = time.time,
    sleep: Callable[[float], None] = time.sleep,
) -> IngestSummary:
    """Poll the feeds once, or every `every_seconds` until max_polls (None: forever).

    Broker, topic and partitions come from `config` (default: the FEEDTRENDS_*
    configuration); `bootstrap`, `topic`, `partitions` override it.
    state_path None keeps state in memory only (between polls of this run).
    Prints one summary line per poll to `err`; with dry_run the events go to
    `out` as JSON lines.  The returned summary is of the last poll, with
    `polls` counting all of them; its exit_code is non-zero if a feed failed.
    """
    if not once and (every_seconds is None or every_seconds <= 0):
        raise ValueError("every_seconds must be positive unless once=True")
    # Looked up per call, not bound at import: tests and the CLI may swap them.
    out = out if out is not None else sys.stdout
    err = err if err is not None else sys.stderr
    specs = load_feed_list(feeds_file)
    state = load_state(state_path)
    settings = _kafka_target(config, bootstrap, topic, partitions)
    if sink is None:
        if dry_run:
            sink = DryRunSink(out)
        else:
            sink = open_kafka_sink(settings, client_id="feedtrends-ingest")
    progress = _Progress(err)
    last = IngestSummary()
    polls = 0
    try:
        while True:
            started = clock()
            progress.show(f"poll {polls + 1}: {len(specs)} feeds ...")
            last = ingest_poll(
                specs, state, sink, limits=limits, allow_files=allow_files, now_ms=int(started * 1000),
                forget_after_ms=settings.dedup_ttl_ms,
            )
            save_state(state_path, state)
            polls += 1
            last.polls = polls
            progress.clear()
            print(last.line(), file=err)
            if last.detail_line():
                print(last.detail_line(), file=err)
            err.flush()
            if once or (max_polls is not None and polls >= max_polls):
                break
            assert every_seconds is not None
            sleep(max(0.0, every_seconds - (clock() - started)))
    finally:
        sink.close()
    return last


# --------------------------------------------------------------------------- generate


@dataclass
class GenerateSummary:
    counts: dict[str, int]
    delivered: int
    failed: int

    @property
    def exit_code(self) -> int:
        return 1 if self.failed else 0


def run_generate(
    generator: GeneratorConfig,
    *,
    dry_run: bool = False,
    bootstrap: str | None = None,
    topic: str | None = None,
    partitions: int | None = None,
    config: Config | None = None,
    out: IO[Any] | None = None,
    err: IO[str] | None = None,
    sink: EventSink | None = None,
) -> GenerateSummary:
    """Send the synthetic stream; print the injected counts per kind at the end
    (to `err` when dry_run, because `out` then carries the records)."""
    generator.validate()
    out = out if out is not None else sys.stdout
    err = err if err is not None else sys.stderr
    target = None if dry_run and sink is None else _kafka_target(config, bootstrap, topic, partitions)
    if sink is None:
        if dry_run:
            sink = DryRunSink(out)
        else:
            sink = open_kafka_sink(target, client_id="feedtrends-generate")
    progress = _Progress(err)
    counts: Counter[str] = Counter()
    delivered = failed = 0
    try:
        for index, record in enumerate(iter_synthetic(generator), start=1):
            sink.send(record.key, record.value, record.timestamp_ms, tag=None)
            counts[record.kind] += 1
            if index % GENERATE_FLUSH_EVERY == 0:
                report = sink.flush()
                delivered, failed = delivered + report.sent, failed + report.failed
                progress.show(f"generated {index}/{generator.count}")
        report = sink.flush()
        delivered, failed = delivered + report.sent, failed + report.failed
    finally:
        sink.close()
        progress.clear()
    summary = GenerateSummary(dict(sorted(counts.items())), delivered, failed)
    report_stream = err if dry_run else out
    print(format_counts(summary.counts), file=report_stream)
    if not dry_run:
        print(f"delivered={delivered} failed={failed} topic={target.events_topic if target else '-'}", file=report_stream)
    report_stream.flush()
    return summary
