"""The streaming simulation (what the Flink operators do) must end where the batch oracle does."""

from __future__ import annotations

import random
from collections import defaultdict
from typing import Any

from hypothesis import HealthCheck, currently_in_test_context, event, given, settings
from hypothesis import strategies as st

from tests.eventgen import BASE_MS, encode
from tests.eventgen import event as make_event
from tests.oracle import Record, TrendParams, run_oracle
from tests.streaming_sim import StreamingSim

H = 3_600_000
M = 60_000
WORDS = ["quantum", "chips", "election", "storm", "market", "vaccine", "rally", "the", "of", "2024", "Chips"]
GARBAGE = [b"\xff\xfe", b"[]", b"{oops", encode({"schema_version": 2}), encode({**make_event(), "title": None})]

article_st = st.fixed_dictionaries(
    {
        "article_id": st.sampled_from([f"url:https://e.com/{i}" for i in range(15)]),
        "feed_url": st.sampled_from([f"https://f{i}.example/rss" for i in range(4)]),
        "title": st.lists(st.sampled_from(WORDS), max_size=5).map(" ".join),
        "summary": st.lists(st.sampled_from(WORDS), max_size=4).map(" ".join),
        "tags": st.lists(st.sampled_from(["ai", "hw"]), max_size=2, unique=True).map(sorted),
        "language": st.sampled_from(["en", "de", None]),
        "minute": st.integers(0, 6 * 60),
    }
)
item_st = st.one_of(article_st, article_st, article_st, article_st, st.sampled_from(GARBAGE))


def to_records(items: list[Any]) -> list[Record]:
    """Kafka-like records in production order; key = article_id picks the partition."""
    offsets: dict[int, int] = defaultdict(int)
    records: list[Record] = []
    for item in items:
        if isinstance(item, bytes):
            partition, ts, value = 2, BASE_MS, item
        else:
            fields = dict(item)
            ts = BASE_MS + fields.pop("minute") * M
            value = encode(make_event(published_at=ts, **fields))
            partition = int(fields["article_id"].rsplit("/", 1)[1]) % 2
        records.append((partition, offsets[partition], ts, value))
        offsets[partition] += 1
    return records


params_st = st.builds(
    TrendParams,
    size_ms=st.sampled_from([H, 2 * H]),
    lateness_ms=st.sampled_from([0, 30 * M, 2 * H]),
    out_of_orderness_ms=st.sampled_from([0, 10 * M, H]),
    n=st.integers(0, 3),
    min_support=st.integers(1, 3),
    include_summary=st.booleans(),
    k=st.integers(1, 3),
    max_terms=st.sampled_from([4, 64]),
    watermark_source=st.sampled_from(["valid_events", "all_records"]),
    watermark_scope=st.sampled_from(["global", "partition"]),
)

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def assert_ranks_are_permutations(rows: dict[str, tuple[Any, ...]]) -> None:
    by_window: dict[int, list[int]] = defaultdict(list)
    for content in rows.values():
        ws, _, term, *_rest, rank, _examples, _aliases, _links = content
        if rank is not None:
            assert not term.startswith("feed:")
            by_window[ws].append(rank)
    for ranks in by_window.values():
        assert sorted(ranks) == list(range(1, len(ranks) + 1))


def check_sim_equals_oracle(records: list[Record], params: TrendParams, buckets: int = 4) -> StreamingSim:
    params = TrendParams(**{**params.__dict__, "term_buckets": buckets})
    oracle = run_oracle(records, params)
    sim = StreamingSim(params, buckets=buckets).run(records)
    assert sim.dlq == oracle.dlq
    assert sim.late == oracle.late
    assert sim.duplicates == oracle.duplicates
    assert sim.rows == oracle.rows
    assert_ranks_are_permutations(oracle.rows)
    # everything but dedup's "seen" is cleaned up by timers once the input ends
    sizes = sim.state_sizes()
    assert sizes["term_counts"] == sizes["ranker_previous"] == sizes["ranker_pending"] == 0
    # hypothesis statistics (pytest --hypothesis-show-statistics): are the interesting paths hit?
    if currently_in_test_context():
        event(f"late beyond lateness: {bool(oracle.late)}")
        event(f"rows revised: {any(r.revision > 1 for r in sim.emitted)}")
        event(f"baseline > 0: {any(c[5] > 0 for c in oracle.rows.values())}")
    return sim


@SETTINGS
@given(st.lists(article_st, min_size=5, max_size=40), params_st)
def test_streaming_equals_batch_without_late_events(items: list[dict[str, Any]], params: TrendParams) -> None:
    # Lateness longer than the whole log: out-of-order events update fired windows, none is dropped.
    params = TrendParams(**{**params.__dict__, "lateness_ms": 10 * H})
    records = to_records(items)
    assert run_oracle(records, params).late == {}
    check_sim_equals_oracle(records, params)


@SETTINGS
@given(
    st.lists(item_st, min_size=5, max_size=40), params_st, st.integers(0, 180), st.randoms(use_true_random=False),
    st.sampled_from([1, 4]),
)
def test_streaming_equals_batch_with_garbage_and_late_events(
    items: list[Any], params: TrendParams, jitter_minutes: int, rnd: random.Random, buckets: int
) -> None:
    # Roughly time-ordered, like a real log: sorted by publication minute plus jitter.
    items.sort(key=lambda i: (i["minute"] if isinstance(i, dict) else 0) + rnd.uniform(-1, 1) * jitter_minutes)
    check_sim_equals_oracle(to_records(items), params, buckets)


@SETTINGS
@given(
    st.lists(article_st, max_size=30, unique_by=lambda a: a["article_id"]),
    params_st,
    st.randoms(use_true_random=False),
)
def test_rows_do_not_depend_on_arrival_order(items: list[dict[str, Any]], params: TrendParams, rnd: random.Random) -> None:
    params = TrendParams(**{**params.__dict__, "lateness_ms": 10 * H})
    shuffled = items[:]
    rnd.shuffle(shuffled)
    rows = run_oracle(to_records(items), params).rows
    assert run_oracle(to_records(shuffled), params).rows == rows
    assert StreamingSim(params).run(to_records(shuffled)).rows == rows


def test_late_data_refreshes_a_fired_window_and_the_next_baseline() -> None:
    params = TrendParams(size_ms=H, lateness_ms=2 * H, out_of_orderness_ms=0, n=1, min_support=1, k=2)
    items = [
        {"article_id": "url:https://e.com/0", "title": "storm", "minute": 10},
        {"article_id": "url:https://e.com/1", "title": "storm", "minute": 70},
        {"article_id": "url:https://e.com/2", "title": "rally", "minute": 130},  # fires window 1
        {"article_id": "url:https://e.com/3", "title": "storm", "minute": 20},  # late, within lateness
        {"article_id": "url:https://e.com/4", "title": "storm", "minute": 5 * 60},  # window 0 now beyond lateness
        {"article_id": "url:https://e.com/5", "title": "storm", "minute": 30},  # late beyond lateness
        {"article_id": "url:https://e.com/5", "title": "storm", "minute": 30},  # its duplicate
    ]
    records = to_records(items)
    sim = check_sim_equals_oracle(records, params)
    oracle = run_oracle(records, params)
    assert oracle.late == {(1, 2): 5 * H - 1 - (H - 1 + 2 * H)}
    assert oracle.duplicates == {(1, 3)}
    w0, w1 = BASE_MS, BASE_MS + H
    storm = {r.window_start: r for r in sim.latest.values() if r.term == "storm"}
    assert storm[w0].articles == 2 and storm[w0].revision == 2
    assert storm[w1].baseline == 2.0 and storm[w1].revision == 2  # first emitted with baseline 1.0
    assert storm[w1].examples == ("storm",)
    first_w1 = next(r for r in sim.emitted if r.window_start == w1 and r.term == "storm")
    assert first_w1.baseline == 1.0 and first_w1.score == round((1 - 1) / 2**0.5, 6)
