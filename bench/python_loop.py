"""The Python ceiling: one kafka-python consumer doing the job's work in memory.

parse (udfs.validate.parse_event) -> dedup (dict of article ids) -> terms
(udfs.terms.article_terms) -> tumbling-window counts (dict), windows closed and
dropped when the partition watermark (max published_at - out-of-orderness) passes
them.  No state backend, no checkpoints, no output topic: what a single Python
process can do at best.  Prints one JSON line.

    python -m bench.python_loop --bootstrap HOST:PORT --topic T --count N
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import defaultdict


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--bootstrap", required=True)
    p.add_argument("--topic", required=True)
    p.add_argument("--count", type=int, required=True)
    p.add_argument("--window-ms", type=int, default=3_600_000)
    p.add_argument("--out-of-orderness-ms", type=int, default=300_000)
    p.add_argument("--deadline-s", type=float, default=1800)
    args = p.parse_args(argv)

    from kafka import KafkaConsumer

    from udfs.terms import article_terms
    from udfs.validate import Rejection, parse_event
    from udfs.windows import window_start

    consumer = KafkaConsumer(
        args.topic,
        bootstrap_servers=args.bootstrap,
        group_id=None,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        isolation_level="read_committed",
        max_poll_records=5000,
        fetch_max_bytes=64 * 1024 * 1024,
        max_partition_fetch_bytes=16 * 1024 * 1024,
    )
    size = args.window_ms
    seen: dict[str, bool] = {}
    counts: dict[int, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    max_ts: dict[int, int] = {}
    consumed = rejected = duplicates = term_hits = rows = 0
    t_first = None
    cpu0 = time.process_time()
    deadline = time.monotonic() + args.deadline_s
    try:
        while consumed < args.count and time.monotonic() < deadline:
            batches = consumer.poll(timeout_ms=1000)
            for tp, messages in batches.items():
                if t_first is None:
                    t_first = time.time()
                for m in messages:
                    consumed += 1
                    article = parse_event(m.value)
                    if isinstance(article, Rejection):
                        rejected += 1
                        continue
                    if article.article_id in seen:
                        duplicates += 1
                        continue
                    seen[article.article_id] = True
                    window = counts[window_start(article.published_at, size)]
                    for term in article_terms(article):
                        window[term] += 1
                        term_hits += 1
                    if article.published_at > max_ts.get(tp.partition, -1):
                        max_ts[tp.partition] = article.published_at
                # Close the windows every partition's watermark has passed.
                if len(max_ts) == len(consumer.assignment()):
                    watermark = min(max_ts.values()) - args.out_of_orderness_ms - 1
                    for ws in [w for w in counts if w + size <= watermark]:
                        rows += len(counts.pop(ws))
        t_last = time.time()
    finally:
        consumer.close()
    seconds = (t_last - t_first) if t_first else 0.0
    print(json.dumps({
        "events": consumed, "seconds": seconds, "cpu_s": time.process_time() - cpu0,
        "events_per_s": consumed / seconds if seconds else 0.0,
        "rejected": rejected, "duplicates": duplicates, "term_hits": term_hits,
        "rows_closed": rows, "open_windows": len(counts),
        "unique_articles": len(seen),
    }))
    return 0 if consumed >= args.count else 1


if __name__ == "__main__":
    sys.exit(main())
