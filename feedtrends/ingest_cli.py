"""`feedtrends ingest`, `generate` and `serve-feeds`: their flags and the step from
flags to the plain functions of connectors/ (run_ingest, run_generate, FeedServer).

Errors are not handled here: they reach the CLI's one handler (feedtrends/cli.py),
which prints one line and picks the exit code from their kind.
"""

from __future__ import annotations

import argparse
import os
import sys

from connectors.feed_server import FeedServer
from connectors.feeds import FetchLimits
from connectors.ingest import STATE_FILE_NAME, parse_start_ms, run_generate, run_ingest
from core.config import Config
from feedtrends.arguments import config_from, duration_seconds, fraction, positive_int
from connectors.synthetic import DEFAULT_LATE_HORIZON_MS, DEFAULT_OUT_OF_ORDER_BOUND_MS, DEFAULT_START_MS, GeneratorConfig

# --------------------------------------------------------------------------- ingest / generate


def _add_kafka_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dry-run", action="store_true", help="print JSON lines to stdout instead of producing to Kafka")
    parser.add_argument(
        "--bootstrap", default=None, help="Kafka bootstrap HOST:PORT (default: the configured broker, as for every command)"
    )
    parser.add_argument("--topic", default=None, help="topic (default: the configured events_topic)")
    parser.add_argument(
        "--partitions",
        type=positive_int,
        default=None,
        help="partitions when the topic has to be created (default: the configured partitions)",
    )


def _kafka_config(args: argparse.Namespace) -> Config:
    return config_from(args, bootstrap=args.bootstrap, events_topic=args.topic, partitions=args.partitions)


def add_ingest_arguments(parser: argparse.ArgumentParser) -> None:
    """`feedtrends ingest FEEDS [--once | --every 5m] [--allow-files] [--dry-run] ...`"""
    parser.add_argument("feeds", metavar="FEEDS", help="feed list: OPML, YAML (- url: ...) or one URL per line")
    when = parser.add_mutually_exclusive_group()
    when.add_argument("--once", action="store_true", help="poll every feed once and exit (default)")
    when.add_argument("--every", type=duration_seconds, metavar="DURATION", help="poll repeatedly, e.g. 30s, 5m, 1h")
    parser.add_argument("--allow-files", action="store_true", help="allow file:// URLs and paths in the feed list")
    _add_kafka_arguments(parser)
    parser.add_argument(
        "--state",
        default=None,
        metavar="PATH",
        help=(
            f"per-feed state file (ETags, sent ids, backoff); default <state_dir>/{STATE_FILE_NAME}, "
            "or none at all with --dry-run so dry runs never hide entries from real runs"
        ),
    )
    parser.add_argument("--timeout", type=duration_seconds, default=15.0, help="total time per feed request (default: 15s)")
    parser.add_argument("--max-bytes", type=positive_int, default=5 * 1024 * 1024, help="max feed size (default: 5 MiB)")
    parser.add_argument("--concurrency", type=positive_int, default=8, help="feeds fetched in parallel (default: 8)")


def ingest_command(args: argparse.Namespace) -> int:
    """0 all feeds fine, 1 a feed failed; unusable input and an unreachable Kafka raise."""
    config = _kafka_config(args)
    state_path = args.state
    if state_path is None and not args.dry_run:
        state_path = str(config.state_dir / STATE_FILE_NAME)
    summary = run_ingest(
        args.feeds,
        once=args.every is None,
        every_seconds=args.every,
        allow_files=args.allow_files,
        dry_run=args.dry_run,
        config=config,
        state_path=state_path,
        limits=FetchLimits(timeout_s=args.timeout, max_bytes=args.max_bytes, concurrency=args.concurrency),
    )
    return summary.exit_code


def add_generate_arguments(parser: argparse.ArgumentParser) -> None:
    """`feedtrends generate [--count N] [--seed S] [--rate R] [--duplicates F] ...`"""
    parser.add_argument("--count", type=int, default=10_000, help="records to generate (default: 10000)")
    parser.add_argument("--seed", type=int, default=42, help="random seed; same seed, same bytes (default: 42)")
    parser.add_argument("--rate", type=float, default=1.0, help="events per simulated second (default: 1.0)")
    parser.add_argument(
        "--start",
        type=parse_start_ms,
        default=DEFAULT_START_MS,
        help="simulated start: ISO time or epoch ms (default: 2026-11-20T00:00:00Z)",
    )
    parser.add_argument("--duplicates", type=fraction, default=0.0, help="fraction of re-sent articles")
    parser.add_argument("--out-of-order", type=fraction, default=0.0, help="fraction behind the max by < bound")
    parser.add_argument("--late", type=fraction, default=0.0, help="fraction behind the max by > horizon")
    parser.add_argument("--malformed", type=fraction, default=0.0, help="fraction of invalid records")
    parser.add_argument(
        "--out-of-order-bound", type=duration_seconds, default=DEFAULT_OUT_OF_ORDER_BOUND_MS / 1000, help="default: 2m"
    )
    parser.add_argument("--late-horizon", type=duration_seconds, default=DEFAULT_LATE_HORIZON_MS / 1000, help="default: 3h")
    parser.add_argument("--feeds", type=int, default=40, help="number of simulated feeds (default: 40)")
    _add_kafka_arguments(parser)


def generate_command(args: argparse.Namespace) -> int:
    generator = GeneratorConfig(
        count=args.count,
        seed=args.seed,
        start_ms=args.start,
        rate=args.rate,
        duplicates=args.duplicates,
        out_of_order=args.out_of_order,
        late=args.late,
        malformed=args.malformed,
        out_of_order_bound_ms=int(args.out_of_order_bound * 1000),
        late_horizon_ms=int(args.late_horizon * 1000),
        feeds=args.feeds,
    )
    generator.validate()  # before reading the configuration: a bad mix of fractions is the error to report
    return run_generate(generator, dry_run=args.dry_run, config=_kafka_config(args)).exit_code


# --------------------------------------------------------------------------- serve-feeds


def add_serve_feeds_arguments(parser: argparse.ArgumentParser) -> None:
    """`feedtrends serve-feeds [DIR] [--host H] [--port P]`."""
    parser.add_argument("directory", nargs="?", default="samples/feeds", help="directory of feed files (default: samples/feeds)")
    parser.add_argument("--host", default="127.0.0.1", help="bind address (default: 127.0.0.1, loopback only)")
    parser.add_argument("--port", type=int, default=8008, help="port, 0 for any free port (default: 8008)")


def serve_feeds_command(args: argparse.Namespace) -> int:
    server = FeedServer(args.directory, host=args.host, port=args.port)
    names = sorted(n for n in os.listdir(server.directory) if os.path.isfile(os.path.join(server.directory, n)))
    print(f"serving {server.directory} at {server.base_url}/ (Ctrl-C to stop)", file=sys.stderr)
    for name in names:
        print(server.url_for(name))
    sys.stdout.flush()
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass  # Ctrl-C is how a server is meant to stop: not an interruption
    return 0
