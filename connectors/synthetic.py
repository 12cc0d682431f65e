"""Deterministic synthetic feed events: the input of `feedtrends generate`, of bench/ and of
the tests (an input source beside the feeds; the job itself never imports it).

The stream imitates many news feeds: a Zipf-distributed background vocabulary,
topics that burst and fade over the simulated span, publishers whose articles
are re-posted by aggregator feeds.  Every record says what was injected
(`kind`), so tests can assert exactly what the job must have done with it:

    ok             a new article, published_at >= every earlier valid event
    duplicate      a re-send of a recent article (same article_id): either the
                   same feed re-serving it (same event_id) or another feed
                   linking it with tracking params (new event_id)
    out_of_order   a new article whose published_at is behind the current max
                   by less than out_of_order_bound_ms (within the watermark bound)
    late           a new article behind the current max by more than
                   late_horizon_ms (beyond any allowed lateness the job uses)
    malformed:<r>  bytes that are not a valid schema v1 event, reason r

Duplicates are only drawn from articles within the out-of-order bound of the
current max, so a duplicate is never also late: each kind tests one thing.

Record timestamps equal published_at (the producer contract).  Malformed
records carry the current stream time as their record timestamp: the job
derives watermarks from record timestamps before it can parse the value, and a
payload bug should exercise the validation path, not poison the watermark.

Pure: no clock, no I/O; the same config gives byte-identical records.
"""

from __future__ import annotations

import bisect
import itertools
import json
import math
import random
from collections import Counter, deque
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, NamedTuple

from udfs.canonical import article_id as make_article_id
from udfs.canonical import event_id as make_event_id
from udfs.entries import encode_event
from udfs.event import MIN_PUBLISHED_AT_MS, SCHEMA_VERSION

KINDS = ("ok", "duplicate", "out_of_order", "late")
MALFORMED_REASONS = (
    "broken_json",
    "not_json",
    "not_utf8",
    "not_object",
    "wrong_schema_version",
    "missing_field",
    "wrong_type",
    "absurd_timestamp",
)

DEFAULT_START_MS = int(datetime(2026, 11, 20, tzinfo=timezone.utc).timestamp() * 1000)
# Half of the job's 5-minute out-of-orderness, leaving margin for jitter.
DEFAULT_OUT_OF_ORDER_BOUND_MS = 2 * 60 * 1000
# Far beyond a 1 h window plus 1 h allowed lateness plus the bound.
DEFAULT_LATE_HORIZON_MS = 3 * 3600 * 1000


class SyntheticRecord(NamedTuple):
    key: bytes | None
    value: bytes
    timestamp_ms: int
    kind: str


@dataclass(frozen=True)
class GeneratorConfig:
    count: int = 10_000
    seed: int = 42
    start_ms: int = DEFAULT_START_MS
    rate: float = 1.0  # events per simulated second: spacing of published_at
    duplicates: float = 0.0
    out_of_order: float = 0.0
    late: float = 0.0
    malformed: float = 0.0
    out_of_order_bound_ms: int = DEFAULT_OUT_OF_ORDER_BOUND_MS
    late_horizon_ms: int = DEFAULT_LATE_HORIZON_MS
    feeds: int = 40

    def validate(self) -> None:
        if self.count < 0:
            raise ValueError("count must be >= 0")
        if not (self.rate > 0 and math.isfinite(self.rate)):
            raise ValueError("rate must be a positive number of events per simulated second")
        fractions = {
            "duplicates": self.duplicates,
            "out_of_order": self.out_of_order,
            "late": self.late,
            "malformed": self.malformed,
        }
        for name, value in fractions.items():
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be a fraction in [0, 1], got {value}")
        if sum(fractions.values()) > 1.0 + 1e-9:
            raise ValueError("duplicates + out_of_order + late + malformed must not exceed 1")
        if self.out_of_order_bound_ms < 2:
            raise ValueError("out_of_order_bound_ms must be >= 2")
        if self.late_horizon_ms < 1:
            raise ValueError("late_horizon_ms must be >= 1")
        if self.feeds < 2:
            raise ValueError("feeds must be >= 2 (duplicates may come from another feed)")
        if self.start_ms - self.late_horizon_ms - 2 * _HOUR_MS < MIN_PUBLISHED_AT_MS:
            raise ValueError("start time too early: late events would fall before MIN_PUBLISHED_AT_MS")
        plan = planned_counts(self)
        if plan["duplicate"] and not plan["ok"]:
            raise ValueError("duplicates need at least one ok event to duplicate")


_HOUR_MS = 3600 * 1000


def planned_counts(config: GeneratorConfig) -> dict[str, int]:
    """Exact number of records per top-level kind ("malformed" not split by reason)."""

    def share(fraction: float) -> int:
        return int(fraction * config.count + 1e-9)  # 0.29 * 100 must give 29

    plan = {
        "duplicate": share(config.duplicates),
        "out_of_order": share(config.out_of_order),
        "late": share(config.late),
        "malformed": share(config.malformed),
    }
    plan["ok"] = config.count - sum(plan.values())
    return plan


# --------------------------------------------------------------------------- vocabulary

# Background words, most frequent first; weights follow 1 / rank^1.07 (Zipf).
_BACKGROUND = (
    "people city government report year officials week country state police plan people "
    "market company new local public minister leaders economy percent deal data prices team "
    "school health court rules record support group county workers million budget community "
    "energy water housing study research service talks security region families council "
    "business agency industry series season growth program network system project policy "
    "election border travel investors trade coast centre board village hospital university "
    "village farmers transport rail airport festival museum streets residents region survey "
    "climate weather fund bank shares results campaign review talks crisis relief repairs "
    "vote voters crowd fans stadium coach striker keeper league club supporters match tickets "
    "engineers launch product devices software update users phones laptops servers cloud "
    "storage memory design factory supply demand orders exports imports tariffs analysts "
    "forecast quarter profit revenue outlook warning deadline meeting statement interview "
    "evidence inquiry judge lawyers appeal ruling verdict charges protest strike union wages "
    "pensions taxes schools teachers students parents children doctors nurses patients "
    "vaccine virus cases testing wildlife forest river bridge roads traffic drivers flights"
).split()
_BACKGROUND = tuple(dict.fromkeys(_BACKGROUND))  # keep first occurrence, keep rank order
_BACKGROUND_CUM = tuple(itertools.accumulate(1.0 / (rank + 1) ** 1.07 for rank in range(len(_BACKGROUND))))

_VERBS = (
    "hits", "sparks", "delays", "boosts", "shakes", "tests", "divides", "reshapes", "drives",
    "lifts", "threatens", "marks", "faces", "brings", "signals", "revives",
)
_PLACES = (
    "Northport", "Westbrook", "Lake Aren", "Caldera Bay", "Eastfield", "Marrow Hills",
    "Port Selden", "Redwater", "Kingsmere", "Ashford Valley",
)


@dataclass(frozen=True)
class _Topic:
    name: str
    terms: tuple[str, ...]
    tags: tuple[str, ...]
    center: float  # fraction of the simulated span where the burst peaks
    width: float  # burst width as a fraction of the span
    peak: float  # burst weight relative to the background


_TOPICS = (
    _Topic("storm", ("storm", "hurricane", "flooding", "evacuation", "winds", "landfall"), ("weather", "storm"), 0.15, 0.08, 6.0),
    _Topic("election", ("election", "ballots", "turnout", "candidate", "recount", "polls"), ("politics", "election"), 0.45, 0.15, 4.0),
    _Topic("chip", ("chip", "processor", "semiconductor", "wafer", "benchmark", "launch"), ("technology", "chips"), 0.70, 0.06, 8.0),
    _Topic("final", ("final", "cup", "goal", "penalty", "trophy", "extra-time"), ("sport", "football"), 0.88, 0.05, 9.0),
    _Topic("strike", ("strike", "union", "walkout", "wages", "picket", "negotiators"), ("labour",), 0.30, 0.20, 2.0),
    _Topic("wildfire", ("wildfire", "blaze", "firefighters", "smoke", "containment"), ("weather", "fire"), 0.60, 0.10, 3.0),
    _Topic("rates", ("interest", "rates", "inflation", "central-bank", "bond", "yields"), ("economy",), 0.50, 0.40, 1.0),
    _Topic("outbreak", ("outbreak", "vaccine", "infections", "quarantine", "clinics"), ("health",), 0.80, 0.12, 2.5),
)

_SECTIONS = ("world", "politics", "business", "technology", "sport", "science", "local", "latest")


def _slug(title: str) -> str:
    words = ["".join(c for c in w.lower() if c.isalnum() or c == "-") for w in title.split()]
    return "-".join(w for w in words if w)[:32].strip("-")


# --------------------------------------------------------------------------- generator


class _Generator:
    def __init__(self, config: GeneratorConfig) -> None:
        config.validate()
        self.config = config
        # Separate streams: the kind schedule does not shift article content.
        self.kind_rng = random.Random(f"kinds:{config.seed}")
        self.rng = random.Random(f"content:{config.seed}")
        self.spacing_ms = 1000.0 / config.rate
        self.span_ms = max(1.0, config.count * self.spacing_ms)
        self.feeds = self._make_feeds(config.feeds)
        self.recent: deque[dict[str, Any]] = deque(maxlen=512)
        self.current_max: int | None = None
        self.article_seq = 0

    def _make_feeds(self, n: int) -> list[dict[str, str]]:
        feeds = []
        for i in range(n):
            host = f"n{i:02d}.example.com"
            section = _SECTIONS[i % len(_SECTIONS)]
            feeds.append(
                {
                    "host": host,
                    "feed_url": f"https://{host}/{section}.rss",
                    "feed_title": f"Example News {i:02d} - {section.title()}",
                }
            )
        return feeds

    # ---- content

    def _background(self, k: int) -> list[str]:
        total = _BACKGROUND_CUM[-1]
        return [_BACKGROUND[bisect.bisect_left(_BACKGROUND_CUM, self.rng.random() * total)] for _ in range(k)]

    def _topic_at(self, t_ms: int) -> _Topic | None:
        x = (t_ms - self.config.start_ms) / self.span_ms
        weights = [0.15 + tp.peak * math.exp(-0.5 * ((x - tp.center) / tp.width) ** 2) for tp in _TOPICS]
        background_weight = 3.0
        pick = self.rng.random() * (background_weight + sum(weights))
        for topic, weight in zip(_TOPICS, weights):
            pick -= weight
            if pick < 0:
                return topic
        return None

    def _new_article(self, published_at: int, fetched_at: int) -> dict[str, Any]:
        rng = self.rng
        topic = self._topic_at(published_at)
        if topic is not None:
            a, b = rng.sample(topic.terms, 2)
            tags = sorted(set(rng.sample(topic.tags, rng.randint(0, len(topic.tags)))))
        else:
            a, b = self._background(2)
            tags = []
        w = self._background(3)
        place = rng.choice(_PLACES)
        templates = (
            f"{a.capitalize()} {rng.choice(_VERBS)} {place} {w[0]} as {b} {w[1]} grows",
            f"{place} {w[0]}: {a} {rng.choice(_VERBS)} {b} {w[1]}",
            f"What the {a} means for {w[0]} and {b} in {place}",
            f"{a.capitalize()} and {b}: {w[0]} {w[1]} {rng.choice(_VERBS)} {w[2]}",
        )
        title = rng.choice(templates)
        feed = rng.choice(self.feeds)
        self.article_seq += 1
        day = datetime.fromtimestamp(published_at / 1000, tz=timezone.utc).strftime("%Y%m%d")
        url = f"https://{feed['host']}/{day}/{_slug(title)}-{self.article_seq}"
        the_article_id = make_article_id(url, None, feed["feed_url"], title)
        event: dict[str, Any] = {
            "schema_version": SCHEMA_VERSION,
            "event_id": make_event_id(feed["feed_url"], the_article_id),
            "article_id": the_article_id,
            "feed_url": feed["feed_url"],
            "feed_title": feed["feed_title"],
            "url": url,
            "title": title,
            "summary": "",
            "tags": tags,
            "language": "en",
            "published_at": published_at,
            "published_at_source": "published" if rng.random() < 0.95 else "updated",
            "fetched_at": fetched_at,
        }
        event["summary"] = self._summary(event, topic, place)
        return event

    def _summary(self, event: dict[str, Any], topic: _Topic | None, place: str) -> str:
        # Size the summary so the whole JSON lands near 500-700 bytes, like a
        # real feed teaser; always at least one whole sentence.
        budget = self.rng.randint(540, 660) - len(encode_event(event))
        sentences: list[str] = []
        length = -1
        while len(sentences) < 12:
            words = self._background(self.rng.randint(5, 9))
            if topic is not None and self.rng.random() < 0.7:
                words.insert(self.rng.randrange(1, len(words) + 1), self.rng.choice(topic.terms))
            if self.rng.random() < 0.2:
                words += ["in", place]
            sentence = words[0].capitalize() + " " + " ".join(words[1:]) + "."
            if sentences and length + 1 + len(sentence) > budget:
                break
            sentences.append(sentence)
            length += 1 + len(sentence)
        return " ".join(sentences)

    # ---- kinds

    def _ok(self, clock: int) -> tuple[dict[str, Any], int]:
        jitter = self.rng.randrange(0, max(1, int(self.spacing_ms // 2)))
        published = clock + jitter
        if self.current_max is not None:
            published = max(published, self.current_max)
        fetched = published + self.rng.randrange(10_000, 900_000)
        event = self._new_article(published, fetched)
        self.recent.append(event)
        self.current_max = published
        return event, published

    def _duplicate(self) -> dict[str, Any]:
        assert self.current_max is not None and self.recent
        horizon = self.current_max - self.config.out_of_order_bound_ms
        candidates = []
        for event in reversed(self.recent):
            if event["published_at"] <= horizon or len(candidates) >= 64:
                break
            candidates.append(event)
        original = self.rng.choice(candidates)
        dup = dict(original)
        dup["fetched_at"] = max(original["fetched_at"], self.current_max) + self.rng.randrange(1_000, 600_000)
        if self.rng.random() < 0.5:
            # Another feed links the same article, decorated with tracking params.
            others = [f for f in self.feeds if f["feed_url"] != original["feed_url"]]
            feed = self.rng.choice(others)
            decoration = self.rng.choice(
                ("?utm_source=rss&utm_medium=feed", "#comments", "?utm_campaign=daily&fbclid=abc123")
            )
            dup["url"] = original["url"] + decoration
            dup["feed_url"] = feed["feed_url"]
            dup["feed_title"] = feed["feed_title"]
            assert make_article_id(dup["url"], None, feed["feed_url"], dup["title"]) == original["article_id"]
            dup["event_id"] = make_event_id(feed["feed_url"], original["article_id"])
        return dup

    def _behind(self, reference: int, min_delta: int, max_delta: int) -> dict[str, Any]:
        published = reference - self.rng.randint(min_delta, max_delta)
        fetched = reference + self.rng.randrange(10_000, 900_000)
        return self._new_article(published, fetched)

    def _malformed(self, reference: int) -> tuple[bytes | None, bytes, str]:
        rng = self.rng
        reason = rng.choice(MALFORMED_REASONS)
        event = self._new_article(reference, reference + 60_000)
        key: bytes | None = event["article_id"].encode("utf-8")
        if reason == "broken_json":
            value = encode_event(event)
            value = value[: rng.randrange(1, len(value) - 1)]
        elif reason == "not_json":
            key = None
            value = rng.choice(
                (b"<html><body>502 Bad Gateway</body></html>", b"hello, world", b"", b"{'single': 'quotes'}")
            )
        elif reason == "not_utf8":
            value = encode_event(event).replace(b'"title":"', b'"title":"\xff\xfe', 1)
        elif reason == "not_object":
            value = json.dumps(rng.choice(([event["event_id"], 1], 42, "event", None))).encode()
        elif reason == "wrong_schema_version":
            event["schema_version"] = rng.choice((2, 0, "1"))
            value = encode_event(event)
        elif reason == "missing_field":
            del event[rng.choice(tuple(event))]
            value = encode_event(event)
        elif reason == "wrong_type":
            field, bad = rng.choice(
                (
                    ("published_at", "2026-11-20T10:00:00Z"),
                    ("tags", "weather,storm"),
                    ("title", None),
                    ("fetched_at", 1.5e12),
                    ("event_id", 12345),
                )
            )
            event[field] = bad
            value = encode_event(event)
        else:  # absurd_timestamp
            event["published_at"] = rng.choice((0, -1, 32_503_680_000_000, MIN_PUBLISHED_AT_MS - 1))
            value = encode_event(event)
        return key, value, f"malformed:{reason}"

    # ---- stream

    def __iter__(self) -> Iterator[SyntheticRecord]:
        cfg = self.config
        remaining = planned_counts(cfg)
        left = cfg.count
        for position in range(cfg.count):
            clock = cfg.start_ms + int(position * self.spacing_ms)
            if self.current_max is None and remaining["ok"]:
                kind = "ok"  # everything else is defined relative to a first article
            else:
                # Selection sampling: exact counts, uniformly spread.
                pick = self.kind_rng.randrange(left)
                for kind, n in remaining.items():
                    if pick < n:
                        break
                    pick -= n
            remaining[kind] -= 1
            left -= 1
            reference = self.current_max if self.current_max is not None else clock
            if kind == "ok":
                event, _ = self._ok(clock)
            elif kind == "duplicate":
                event = self._duplicate()
            elif kind == "out_of_order":
                event = self._behind(reference, 1, cfg.out_of_order_bound_ms - 1)
            elif kind == "late":
                event = self._behind(reference, cfg.late_horizon_ms + 1, cfg.late_horizon_ms + _HOUR_MS)
            else:
                key, value, label = self._malformed(reference)
                yield SyntheticRecord(key, value, reference, label)
                continue
            yield SyntheticRecord(event["article_id"].encode("utf-8"), encode_event(event), event["published_at"], kind)


def iter_synthetic(config: GeneratorConfig) -> Iterator[SyntheticRecord]:
    """Stream the records lazily (constant memory for large counts)."""
    return iter(_Generator(config))


def generate(config: GeneratorConfig) -> tuple[list[SyntheticRecord], dict[str, int]]:
    """All records plus the count per kind (malformed split by reason)."""
    records = list(iter_synthetic(config))
    return records, count_kinds(records)


def count_kinds(records: Any) -> dict[str, int]:
    counts = Counter(record.kind for record in records)
    return dict(sorted(counts.items()))


def format_counts(counts: dict[str, int]) -> str:
    """One line: 'injected ok=.. duplicate=.. ... malformed=N (reason=n, ...)'."""
    malformed = {k.split(":", 1)[1]: v for k, v in counts.items() if k.startswith("malformed:")}
    parts = [f"{kind}={counts.get(kind, 0)}" for kind in KINDS]
    detail = ", ".join(f"{reason}={n}" for reason, n in sorted(malformed.items()))
    parts.append(f"malformed={sum(malformed.values())}" + (f" ({detail})" if detail else ""))
    return "injected " + " ".join(parts)
