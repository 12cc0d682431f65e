"""`feedtrends`: the single entry point for users.

    feedtrends up | down | status [--json]     the local Kafka + Flink stack
    feedtrends ingest FEEDS ...                 poll feeds into Kafka
    feedtrends generate ...                     synthetic events into Kafka
    feedtrends serve-feeds [DIR]                a local HTTP server for feed files
    feedtrends topics                           create the product's topics
    feedtrends submit | stop [--savepoint] | resume [SAVEPOINT]
                                                run the trends job on the cluster
    feedtrends replay [--bounded] | versions    rebuild into a new output version
    feedtrends trends [--top N]                 print the windows and top terms from Parquet
    feedtrends query windows | top | term TERM | feeds
                                                read the trends back (feedtrends/query_cli.py)
    feedtrends serve [--host H] [--port P]      the dashboard and JSON API (feedtrends/serve.py)
    feedtrends demo [--top N] [--wait S] [--serve]
                                                everything above, end to end

Errors are one line on stderr and a documented exit code, never a traceback; the
codes are the table in feedtrends/exit_codes.py:

    0 ok;  1 refused, failed or nothing to do;  2 bad input (arguments, configuration,
    files);  3 a backend (Kafka, Flink) still unreachable when the retry deadline
    passed;  130 interrupted (Ctrl-C), 143 terminated (SIGTERM).
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import time
from typing import Callable

from core.config import REPO_ROOT, Config
from feedtrends.arguments import OneLineParser, config_from
from feedtrends.exit_codes import TERMINATED, report

SAMPLE_FEEDS = REPO_ROOT / "samples" / "feeds.opml"


def _config(args: argparse.Namespace) -> Config:
    return config_from(args, jobmanager=getattr(args, "jobmanager_addr", None))


# --------------------------------------------------------------------------- stack


def cmd_up(args: argparse.Namespace) -> int:
    from connectors import stack

    stack.up(_config(args))
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    from connectors import stack

    stack.down(_config(args))
    return 0


# --------------------------------------------------------------------------- topics / job


def cmd_topics(args: argparse.Namespace) -> int:
    from connectors.topics import ensure_topics

    config = _config(args)
    for topic, created in ensure_topics(config).items():
        print(f"{topic}: {'created' if created else 'exists'}")
    return 0


def cmd_trends(args: argparse.Namespace) -> int:
    from connectors.trend_store import print_windows, read_latest
    from connectors.versions import current_version
    from feedtrends.operations import OperationError

    parquet_dir = current_version(_config(args)).parquet_dir
    if read_latest(parquet_dir).num_rows == 0:
        raise OperationError(f"no trend rows in {parquet_dir} yet (windows appear once the watermark passes their end)")
    return 0 if print_windows(parquet_dir, top=args.top) else 1


def cmd_demo(args: argparse.Namespace) -> int:
    """Stack up, sample feeds in, job on the cluster, trends out."""
    from connectors import flink_cluster, stack
    from connectors.ingest import STATE_FILE_NAME, run_ingest
    from feedtrends import operations
    from connectors.topics import ensure_topics
    from connectors.trend_store import print_windows, read_latest
    from connectors.versions import config_for, current_version

    config = _config(args)
    stack.up(config)
    ensure_topics(config)
    print(f"ingesting the bundled sample feeds ({SAMPLE_FEEDS.relative_to(REPO_ROOT)}) into {config.events_topic}")
    summary = run_ingest(
        str(SAMPLE_FEEDS),
        once=True,
        every_seconds=None,
        allow_files=True,
        dry_run=False,
        bootstrap=config.kafka_bootstrap,
        topic=config.events_topic,
        partitions=config.partitions,
        state_path=str(config.state_dir / STATE_FILE_NAME),
    )
    if summary.exit_code != 0:
        print("some sample feeds failed to ingest (see above)", file=sys.stderr)
    # The job and output of the current version (a replay may have made a new one current).
    current = config_for(config, current_version(config))
    job = flink_cluster.running_job(current)
    if job:
        print(f"job already running: {job['jid']}")
    else:
        operations.submit(config)
    deadline = time.monotonic() + args.wait
    while time.monotonic() < deadline and read_latest(current.parquet_path).num_rows == 0:
        time.sleep(2)
    print()
    ok = print_windows(current.parquet_path, top=args.top)
    print()
    print("The stack keeps running (Flink web UI: %s). Stop it with: make down" % config.flink_rest_url)
    from feedtrends.serve import DEFAULT_HOST, DEFAULT_PORT, dashboard_url, serve

    if args.serve:
        return serve(config) if ok else 1
    print(f"Dashboard: `feedtrends serve`, then open {dashboard_url(DEFAULT_HOST, DEFAULT_PORT)} (or: demo --serve)")
    return 0 if ok else 1


def cmd_serve(args: argparse.Namespace) -> int:
    from feedtrends.serve import serve_command

    return serve_command(args, _config(args))


# --------------------------------------------------------------------------- main


def build_parser() -> argparse.ArgumentParser:
    from feedtrends.ingest_cli import (
        add_generate_arguments,
        add_ingest_arguments,
        add_serve_feeds_arguments,
        generate_command,
        ingest_command,
        serve_feeds_command,
    )
    from feedtrends.operations import add_operations_arguments
    from feedtrends.query_cli import add_query_arguments

    parser = OneLineParser(prog="feedtrends", description="Trending terms from news feeds.")
    parser.add_argument("--state-dir", help="local stack state (default: $FEEDTRENDS_STATE_DIR or ./.state)")
    sub = parser.add_subparsers(dest="command", required=True)

    def add(name: str, func: Callable[[argparse.Namespace], int], help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text)
        p.set_defaults(func=func)
        return p

    add("up", cmd_up, "start the local Kafka broker and Flink cluster (idempotent)")
    add("down", cmd_down, "stop what `up` started")
    add("topics", cmd_topics, "create the product's Kafka topics if missing")
    add_operations_arguments(sub, _config)
    trends = add("trends", cmd_trends, "print windows and top terms from the Parquet output")
    trends.add_argument("--top", type=int, default=5)
    demo = add("demo", cmd_demo, "run everything end to end on the local stack")
    demo.add_argument("--top", type=int, default=5)
    demo.add_argument("--wait", type=float, default=180.0, help="seconds to wait for the first trends")
    demo.add_argument("--serve", action="store_true", help="end by serving the dashboard (feedtrends serve)")
    from feedtrends.serve import add_serve_arguments

    add_serve_arguments(add("serve", cmd_serve, "the trends dashboard and JSON API over the Parquet output"))
    add_ingest_arguments(add("ingest", ingest_command, "poll feeds into Kafka"))
    add_generate_arguments(add("generate", generate_command, "write synthetic events to Kafka"))
    add_serve_feeds_arguments(add("serve-feeds", serve_feeds_command, "serve feed files over local HTTP"))
    add_query_arguments(sub)
    return parser


def _terminated(signum, frame) -> None:
    # SIGTERM unwinds like Ctrl-C, so a replay stops the job it started (operations.replay).
    raise SystemExit(TERMINATED)


def main(argv: list[str] | None = None, parser: argparse.ArgumentParser | None = None) -> int:
    """Run one command; every error ends here, as one line and its exit code."""
    # Kafka clients log every failed connection attempt; the retry helpers report the
    # outcome in one line instead.
    logging.getLogger("kafka").setLevel(logging.CRITICAL)
    try:
        signal.signal(signal.SIGTERM, _terminated)
    except ValueError:
        pass  # not the main thread (an embedding caller keeps its own handler)
    args = (parser or build_parser()).parse_args(argv)
    name = " ".join(p for p in (args.command, getattr(args, "query_kind", None)) if p)
    try:
        return args.func(args)
    except (Exception, KeyboardInterrupt) as exc:
        return report(name, exc)


if __name__ == "__main__":
    sys.exit(main())
