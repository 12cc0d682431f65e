"""`make quality` / `python -m bench.quality`: real news through the real stack and job, and how its trends read.

    private stack (temp state dir, free loopback ports)
      -> loopback feed server, one stable URL per outlet; per day of the set, in order:
         that day's file behind its outlet's URL (an outlet without one keeps its last),
         then one ingest poll over all outlets (the real fetch | parse | normalize path)
      -> one sentinel event far ahead, so every data window closes
      -> the trends job (day windows, wide out-of-orderness) until its Parquet rows equal
         the batch oracle's (all input consumed, the last windows closed)
      -> per-day top 10 and the figures of udfs/quality.py; JSON to bench/results/

Every process started here is stopped by pid (the stack by `connectors.stack.down`,
the job by cancel, the feed server by shutdown), also on failure.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import sys
import tempfile
import time
from collections import defaultdict
from datetime import datetime, timezone
from pathlib import Path

from connectors import flink_cluster, stack
from connectors.feed_list import FeedSpec
from connectors.feed_server import FeedServer
from connectors.feeds import FetchLimits, load_state
from connectors.ingest import ingest_poll, open_kafka_sink
from connectors.stack.paths import free_ports
from connectors.topics import ensure_topics, read_topic
from connectors.trend_store import read_parquet
from core.config import REPO_ROOT, Config, load_config
from tests.oracle import run_oracle
from tests.support.rows import final_contents, oracle_params, table_rows
from udfs.entries import encode_event, normalize_entry
from udfs.quality import Entry, QualityArticle, figures
from udfs.terms import article_terms
from udfs.windows import window_start

DAY_MS = 86_400_000
RESULTS = REPO_ROOT / "bench" / "results"
DEFAULT_DATA = REPO_ROOT.parent / "shared" / "realnews-dev"


def log(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def day_ms(day: str) -> int:
    return int(datetime.fromisoformat(day).replace(tzinfo=timezone.utc).timestamp() * 1000)


def _date(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).strftime("%Y-%m-%d")


def snapshot_days(feeds_dir: Path) -> tuple[list[str], list[str]]:
    """(outlets, days) of `feeds/<outlet>/<YYYY-MM-DD>.xml`, both sorted."""
    outlets = sorted(p.name for p in feeds_dir.iterdir() if p.is_dir())
    days = sorted({f.stem for o in outlets for f in (feeds_dir / o).glob("*.xml")})
    return outlets, days


def replay(config: Config, feeds_dir: Path, outlets: list[str], days: list[str], serve_dir: Path, port: int):
    """Each day in order: its snapshots behind the outlets' URLs, one ingest poll.  Returns (last poll time, the
    open Kafka sink, for the sentinel)."""
    state = load_state(None)  # in memory: one replay, one run
    sink = open_kafka_sink(config, client_id="feedtrends-quality")
    try:
        server = FeedServer(str(serve_dir), port=port).start()
    except OSError as exc:
        sink.close()
        raise SystemExit(f"quality: cannot serve the feeds on 127.0.0.1:{port} ({exc}); pass --feed-port") from None
    now_ms = 0
    try:
        specs = [FeedSpec(server.url_for(f"{o}.xml"), name=o) for o in outlets]
        for day in days:
            # The last moment of the day: an undated entry is first seen that day.
            now_ms = day_ms(day) + DAY_MS - 1
            for o in outlets:
                src = feeds_dir / o / f"{day}.xml"
                if src.exists():
                    tmp = serve_dir / f".{o}.xml"
                    shutil.copyfile(src, tmp)
                    os.utime(tmp, (now_ms / 1000, now_ms / 1000))
                    os.replace(tmp, serve_dir / f"{o}.xml")
            summary = ingest_poll(specs, state, sink, limits=FetchLimits(timeout_s=30.0), allow_files=False,
                                  now_ms=now_ms, forget_after_ms=config.dedup_ttl_ms)
            log(f"{day}: {summary.line()}")
    finally:
        server.stop()
    return now_ms, sink


def send_sentinel(sink, at_ms: int) -> str:
    """One valid event at `at_ms`: the watermark it brings closes every window before it."""
    entry = {"link": "http://quality.invalid/end-of-replay", "title": "end of replay",
             "published": datetime.fromtimestamp(at_ms / 1000, tz=timezone.utc).strftime("%a, %d %b %Y %H:%M:%S +0000")}
    event = normalize_entry(entry, {"title": "sentinel"}, feed_url="http://quality.invalid/feed", fetched_at=at_ms).event
    assert event is not None and event["published_at"] == at_ms
    sink.send(event["article_id"].encode(), encode_event(event), at_ms)
    report = sink.flush()
    if report.sent != 1:
        raise RuntimeError(f"sentinel not delivered: {report}")
    return event["article_id"]


def wait_for_rows(config: Config, job_id: str, expected: dict, timeout_s: float) -> tuple[list[dict], bool]:
    """Poll the Parquet output until its final rows equal `expected` (or the deadline); (rows, complete)."""
    deadline = time.monotonic() + timeout_s
    rows: list[dict] = []
    last_log = 0.0
    keys = {tuple(k.split("|", 1)) for k in expected}
    while time.monotonic() < deadline:
        table = read_parquet(config.parquet_path)
        # The full comparison is costly on this many rows: only once every key has a row.
        present = set(zip(map(str, table["window_start"].to_pylist()), table["term"].to_pylist())) \
            if table.num_rows else set()
        rows, got = [], {}
        if keys <= present:
            rows = table_rows(table)
            got = final_contents(rows)
            if all(got.get(k) == v for k, v in expected.items()):
                return rows, True
        state = flink_cluster.job_details(config, job_id)["state"]
        if state not in ("RUNNING", "RESTARTING", "INITIALIZING", "CREATED"):
            raise RuntimeError(f"job {job_id} is {state}")
        if time.monotonic() - last_log > 30:
            log(f"  rows: {len(keys & present)}/{len(keys)} keys so far ({table.num_rows} revisions read)")
            last_log = time.monotonic()
        time.sleep(5)
    return table_rows(read_parquet(config.parquet_path)), False


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.quality", description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=DEFAULT_DATA,
                   help="the real-news set (feeds/<outlet>/<YYYY-MM-DD>.xml); default ../shared/realnews-dev")
    p.add_argument("--top", type=int, default=10, help="entries per day (default 10)")
    p.add_argument("--out-of-orderness", default="10d", help="watermark bound (default 10d: snapshots list old news)")
    p.add_argument("--lateness", default="5d", help="allowed lateness (default 5d)")
    p.add_argument("--timeout", type=float, default=1800, help="limit for the job's output, seconds (default 1800)")
    # The feed URLs are part of the data (the `feed:` terms, the ids of entries without a link), so a
    # fixed port makes two runs on the same set give the same rows.
    p.add_argument("--feed-port", type=int, default=38715, help="loopback port of the feed server (default 38715)")
    p.add_argument("--label", default="", help="a name for the results file, e.g. before / after")
    args = p.parse_args(argv)
    feeds_dir = args.data / "feeds"
    if not feeds_dir.is_dir():
        print(f"quality: no real-news set at {args.data} (expected {feeds_dir}/<outlet>/<YYYY-MM-DD>.xml); "
              "pass --data DIR", file=sys.stderr)
        return 2
    outlets, days = snapshot_days(feeds_dir)
    started = time.monotonic()

    state_dir = Path(tempfile.mkdtemp(prefix="feedtrends-quality-"))
    kafka, controller, rest, rpc = free_ports(4)
    config = load_config(
        {"state_dir": str(state_dir), "kafka_port": kafka, "kafka_controller_port": controller,
         "flink_rest_port": rest, "flink_rpc_port": rpc, "taskmanagers": 1, "parallelism": 1, "partitions": 1,
         "window_ms": "1d", "out_of_orderness_ms": args.out_of_orderness, "lateness_ms": args.lateness,
         # Processing-time TTLs: the whole replay is one run, nothing may expire in it.
         "dedup_ttl_ms": "3650d", "idleness_ms": "10s", "job_name": "feedtrends-quality"},
        env={},
    )
    config = dataclasses.replace(config, parquet_dir=state_dir / "parquet")
    job_id = None
    try:
        stack.up(config, timeout_s=300, echo=log)
        ensure_topics(config)
        serve_dir = state_dir / "serve"
        serve_dir.mkdir()
        last_poll, sink = replay(config, feeds_dir, outlets, days, serve_dir, args.feed_port)
        try:
            sentinel_at = window_start(last_poll, DAY_MS) + config.out_of_orderness_ms + config.allowed_lateness_ms \
                + 3 * DAY_MS
            send_sentinel(sink, sentinel_at)
        finally:
            sink.close()
        records = [(m.partition, m.offset, m.timestamp, m.value)
                   for m in read_topic(config.kafka_bootstrap, config.events_topic, "read_uncommitted")]
        log(f"{len(records)} records in {config.events_topic}; computing the oracle")
        params = oracle_params(config)
        expected_result = run_oracle(records, params)
        cutoff = window_start(sentinel_at, DAY_MS)
        expected = {k: v for k, v in expected_result.rows.items() if v[0] < cutoff}
        log(f"oracle: {len(expected)} rows, {len(expected_result.late)} late, "
            f"{len(expected_result.duplicates)} duplicates, {len(expected_result.dlq)} rejected")

        job_id = flink_cluster.submit(config)
        log(f"submitted job {job_id}")
        flink_cluster.wait_for_all_tasks_running(config, job_id, timeout_s=300)
        rows, complete = wait_for_rows(config, job_id, expected, args.timeout)
        log(f"job output {'complete (equals the oracle)' if complete else 'INCOMPLETE at the deadline'}")
    finally:
        if job_id is not None:
            try:
                flink_cluster.cancel_job(config, job_id)
            except Exception as exc:  # noqa: BLE001 - the stack goes down anyway
                log(f"cancel failed: {exc}")
        stack.down(config, echo=log)
    elapsed = time.monotonic() - started

    # The accepted articles, re-tokenized as the job does: the figures' own view of the input.
    from tests.oracle import accept_articles

    _, accepted = accept_articles(records, params)
    articles = [
        QualityArticle(a.article_id, a.feed_url, window_start(a.published_at, DAY_MS),
                       frozenset(article_terms(a, include_summary=params.include_summary, max_terms=params.max_terms)))
        for a in accepted if window_start(a.published_at, DAY_MS) < cutoff
    ]
    latest = {}
    for r in rows:
        key = (r["window_start"], r["term"])
        if key not in latest or r["revision"] > latest[key]["revision"]:
            latest[key] = r
    data_days = {day_ms(d) for d in days}
    ranked: dict[int, list[Entry]] = defaultdict(list)
    examples: dict[tuple[int, str], list[str]] = {}
    for (ws, term), r in latest.items():
        if ws in data_days and r["rank"] is not None:
            ranked[ws].append(Entry(ws, r["rank"], term, r["score"], r["articles"], r["feeds"],
                                    tuple(r.get("aliases") or ())))
            examples[(ws, term)] = list(r.get("examples") or ())
    result = figures(ranked, articles, top=args.top)
    tops = {}
    for ws in sorted(ranked):
        head = sorted(ranked[ws], key=lambda e: e.rank)[: args.top]
        tops[_date(ws)] = [dict(e._asdict(), examples=examples[(ws, e.term)]) for e in head]
        print(f"\n{_date(ws)}  ({sum(1 for a in articles if a.window_start == ws)} articles)")
        for e in head:
            aliases = f"  aliases: {', '.join(e.aliases)}" if e.aliases else ""
            print(f"  {e.rank:>2}. {e.term:<28} score {e.score:8.3f}  articles {e.articles:>3}  feeds {e.feeds:>2}{aliases}")
    summary = {k: v for k, v in result.items() if k != "flagged"}
    print(f"\nquality over {result['days']} days, {result['entries']} top-{args.top} entries "
          f"(job output {'complete' if complete else 'INCOMPLETE'}, {elapsed:.0f} s):")
    print(f"  boilerplate share:        {100 * result['boilerplate_share']:.1f} %")
    print(f"  same-story share:         {100 * result['same_story_share']:.1f} %")
    print(f"  #1 decided by spelling:   {100 * result['spelling_days_share']:.1f} % of days")
    print(f"  entries in >= 2 feeds:    {100 * result['multi_feed_share']:.1f} %")
    print(f"  single-feed above a several-feed entry of the same articles: "
          f"{result['spread_inversions']} of {result['spread_pairs']} pairs")
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"quality-{args.label + '-' if args.label else ''}{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps({"figures": summary, "flagged": result["flagged"], "complete": complete,
                               "elapsed_s": round(elapsed), "records": len(records), "articles": len(articles),
                               "settings": {"window_ms": config.window_ms,
                                            "out_of_orderness_ms": config.out_of_orderness_ms,
                                            "lateness_ms": config.allowed_lateness_ms,
                                            "baseline_windows": config.baseline_windows,
                                            "min_support": config.min_support},
                               "tops": tops}, indent=1))
    print(f"results: {out}")
    shutil.rmtree(state_dir, ignore_errors=True)
    return 0 if complete else 1


if __name__ == "__main__":
    sys.exit(main())
