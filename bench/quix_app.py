"""The quix-streams baseline: the same topic, dedup and tumbling term counts.

    input (bytes) -> parse (udfs.validate.parse_event), bad input dropped
      -> dedup: stateful apply keyed by the message key (= article id), a seen-timestamp
         with a TTL checked on read (quix State has no TTL of its own)
      -> terms (udfs.terms.article_terms), expanded -> group_by term (repartition topic)
      -> tumbling_window(window_ms, grace = out-of-orderness).count().final()
      -> output topic
    processing_guarantee = exactly-once (Kafka transactions), commit every 5 s as Flink checkpoints.

Bounded: stops itself (app.stop()) once it has read `--count` input messages *and*
counted `--term-hits` term occurrences (the python-loop tells how many the data
has), or at the deadline.  Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import sys
import time


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--bootstrap", required=True)
    p.add_argument("--topic", required=True)
    p.add_argument("--output", required=True)
    p.add_argument("--group", required=True)
    p.add_argument("--state-dir", required=True)
    p.add_argument("--count", type=int, required=True)
    p.add_argument("--term-hits", type=int, default=0)
    p.add_argument("--window-ms", type=int, default=3_600_000)
    p.add_argument("--out-of-orderness-ms", type=int, default=300_000)
    p.add_argument("--dedup-ttl-ms", type=int, default=7 * 86_400_000)
    p.add_argument("--deadline-s", type=float, default=1800)
    args = p.parse_args(argv)

    import logging

    from quixstreams import Application, State

    from udfs.terms import article_terms
    from udfs.validate import Rejection, parse_event

    app = Application(
        broker_address=args.bootstrap,
        consumer_group=args.group,
        auto_offset_reset="earliest",
        processing_guarantee="exactly-once",
        commit_interval=5.0,
        state_dir=args.state_dir,
        loglevel=logging.WARNING,
        consumer_extra_config={"isolation.level": "read_committed"},
    )
    source = app.topic(args.topic, value_deserializer="bytes", key_deserializer="bytes")
    sink = app.topic(args.output, value_serializer="json")

    stats = {"consumed": 0, "term_hits": 0, "t_first": None, "t_inputs_done": None, "t_last": None}
    deadline = time.monotonic() + args.deadline_s
    ttl = args.dedup_ttl_ms

    def maybe_stop() -> None:
        if (stats["consumed"] >= args.count and stats["term_hits"] >= args.term_hits) or time.monotonic() > deadline:
            if stats["t_last"] is None:
                stats["t_last"] = time.time()
                app.stop()

    def parse(value: bytes):
        if stats["t_first"] is None:
            stats["t_first"] = time.time()
        stats["consumed"] += 1
        if stats["consumed"] == args.count:
            stats["t_inputs_done"] = time.time()
        article = parse_event(value)
        if stats["consumed"] >= args.count:
            maybe_stop()
        return None if isinstance(article, Rejection) else article

    def dedup(article, state: State):
        seen_at = state.get("seen_at")
        now = int(time.time() * 1000)
        if seen_at is not None and now - seen_at < ttl:
            return None
        state.set("seen_at", now)
        return article

    def explode(article):
        return [{"term": t, "article_id": article.article_id} for t in article_terms(article)]

    def hit(value):
        stats["term_hits"] += 1
        if stats["term_hits"] >= args.term_hits and stats["consumed"] >= args.count:
            maybe_stop()
        return value

    sdf = app.dataframe(source)
    sdf = sdf.apply(parse).filter(lambda a: a is not None)
    sdf = sdf.apply(dedup, stateful=True).filter(lambda a: a is not None)
    sdf = sdf.apply(explode, expand=True)
    sdf = sdf.group_by(lambda v: v["term"], name="term", key_serializer="str", key_deserializer="str")
    sdf = sdf.apply(hit)
    sdf = sdf.tumbling_window(duration_ms=args.window_ms, grace_ms=args.out_of_orderness_ms).count().final()
    sdf = sdf.to_topic(sink)

    cpu0 = time.process_time()
    app.run()
    t_end = time.time()
    t_first = stats["t_first"] or t_end
    seconds = t_end - t_first
    print(json.dumps({
        "events": stats["consumed"], "term_hits": stats["term_hits"], "seconds": seconds,
        "seconds_inputs_read": (stats["t_inputs_done"] or t_end) - t_first,
        "cpu_s": time.process_time() - cpu0,
        "events_per_s": stats["consumed"] / seconds if seconds else 0.0,
        "timed_out": time.monotonic() > deadline,
    }))
    return 0 if stats["consumed"] >= args.count else 1


if __name__ == "__main__":
    sys.exit(main())
