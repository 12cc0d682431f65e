"""`feedtrends query`: read the trends back, from the current output version.

    feedtrends query windows                                   windows, their terms, articles, max revision
    feedtrends query top [--window START | --latest] [--k N]   a window's top terms by rank
    feedtrends query term TERM [--since T] [--until T]         one term's rows over time
    feedtrends query feeds                                     articles per (window, feed)

Every subcommand takes `--format table|json|csv` and `--source parquet|kafka`;
`top` and `term` take `--plot FILE.png` (1000 x 500 px).  Rows are the latest
revision per (window_start, term) of the current version (`connectors/versions.py`).

Exit codes: 0 ok; 1 no data yet / nothing matched (no such window, unknown term,
nothing in the time range); 2 usage or input error (bad time or window, bad flag,
bad --plot path, bad configuration); 3 the source cannot be read (Parquet dir
missing or unreadable, Kafka unreachable).  Errors are one line on stderr.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from typing import Any, TextIO

from connectors.trend_store import latest_revisions
from core.config import Config
from feedtrends.arguments import OneLineParser, config_from
from feedtrends.exit_codes import OK, report
from feedtrends.query import (
    FORMATS,
    TIME_HELP,
    BackendUnavailable,
    NothingFound,
    QueryError,
    QueryInputError,
    feed_counts,
    parse_time_ms,
    render,
    resolve_window,
    term_history,
    top_terms,
    utc_iso,
    utc_text,
    windows_summary,
)


# argparse takes `-24h` for an unknown option ("expected one argument"); only `-5` or
# `-.5` count as values.  Widening its negative-number pattern on the parsers that take
# times lets `--since -24h` work like `--since=-24h`.  (`_negative_number_matcher` is
# an instance attribute of ArgumentParser in Python 3.11, which the project pins.)
_RELATIVE_TIME_ARG = re.compile(r"^-\d+(?:ms|s|m|h|d|w)?$|^-\d*\.\d+$")


def _accept_relative_times(parser: argparse.ArgumentParser) -> None:
    parser._negative_number_matcher = _RELATIVE_TIME_ARG


def add_query_arguments(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add `query` and its subcommands to the `feedtrends` subparsers; returns the `query` parser."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--format", choices=FORMATS, default="table", help="output format (default: table)")
    common.add_argument(
        "--source",
        choices=("parquet", "kafka"),
        default="parquet",
        help="read the current version's Parquet dir (default) or its Kafka topic (read_committed)",
    )
    common.add_argument("--bootstrap", metavar="HOST:PORT", help="Kafka bootstrap for --source kafka")

    query = subparsers.add_parser(
        "query",
        help="windows, top terms, a term's history or feed counts from the trends output",
        description="Exit codes: 0 ok, 1 no data / nothing matched, 2 usage or input error, 3 source unreadable.",
    )
    query.set_defaults(func=query_command)
    kinds = query.add_subparsers(dest="query_kind", required=True, metavar="{windows,top,term,feeds}")

    kinds.add_parser("windows", parents=[common], help="windows with their term and article counts")

    top = kinds.add_parser("top", parents=[common], help="a window's top terms by rank")
    which = top.add_mutually_exclusive_group()
    which.add_argument("--window", metavar="START", help=f"the window starting at (or containing) START: {TIME_HELP}")
    which.add_argument("--latest", action="store_true", help="the latest window (the default)")
    top.add_argument("--k", type=int, default=10, help="how many terms (default 10)")
    top.add_argument("--plot", metavar="FILE.png", help="also draw the top terms to a PNG")
    _accept_relative_times(top)

    term = kinds.add_parser("term", parents=[common], help="one term's rows, window by window")
    term.add_argument("term", help="the term, e.g. bram, 'storm bram', tag:election, feed:<url>")
    term.add_argument("--since", metavar="T", help=f"windows ending after T: {TIME_HELP}")
    term.add_argument("--until", metavar="T", help=f"windows starting before T: {TIME_HELP}")
    term.add_argument("--plot", metavar="FILE.png", help="also draw the term's history to a PNG")
    _accept_relative_times(term)

    kinds.add_parser("feeds", parents=[common], help="articles per (window, feed) from the feed: rows")
    return query


def build_query_parser() -> argparse.ArgumentParser:
    """A stand-alone `feedtrends`-shaped parser with only `query` (tests, `python -m`)."""
    parser = OneLineParser(prog="feedtrends")
    parser.add_argument("--state-dir", help="local stack state (default: $FEEDTRENDS_STATE_DIR or ./.state)")
    add_query_arguments(parser.add_subparsers(dest="command", required=True))
    return parser


def query_command(args: argparse.Namespace) -> int:
    """The `query` command: config from flags and env, then `run_query`."""
    return run_query(args, config_from(args, bootstrap=getattr(args, "bootstrap", None)))


def _read_rows(args: argparse.Namespace, config: Config) -> list[dict[str, Any]]:
    from feedtrends import query_store
    from connectors.versions import current_version

    try:
        version = current_version(config)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise BackendUnavailable(f"cannot read the output versions registry in {config.state_dir}: {exc}") from None
    if args.source == "kafka":
        rows = query_store.read_kafka_rows(config.kafka_bootstrap, version.trends_topic)
        where = f"topic {version.trends_topic} (read_committed)"
    else:
        rows = query_store.read_parquet_rows(version.parquet_dir)
        where = str(version.parquet_dir)
    if not rows:
        raise NothingFound(
            f"no trend rows in {where} of version {version.name} yet "
            "(a window appears once the watermark passes its end)"
        )
    return latest_revisions(rows)


def run_query(
    args: argparse.Namespace,
    config: Config,
    *,
    now_ms: int | None = None,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    """Answer one query; any QueryError becomes one line on `err` and its exit code
    (feedtrends/exit_codes.py, as for every command)."""
    out = out or sys.stdout
    err = err or sys.stderr
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    kind = args.query_kind
    try:
        # Validate the input before touching the source: a typo should not wait for Kafka.
        window_at = parse_time_ms(args.window, now_ms) if kind == "top" and args.window else None
        since = parse_time_ms(args.since, now_ms) if kind == "term" and args.since else None
        until = parse_time_ms(args.until, now_ms) if kind == "term" and args.until else None
        if kind == "top" and args.k < 1:
            raise QueryInputError(f"--k must be at least 1, not {args.k}")
        if kind == "term" and since is not None and until is not None and since >= until:
            raise QueryInputError(f"--since ({utc_iso(since)}) must be before --until ({utc_iso(until)})")

        rows = _read_rows(args, config)
        title = None
        if kind == "windows":
            records = windows_summary(rows)
        elif kind == "feeds":
            records = feed_counts(rows)
            if not records:
                raise NothingFound("no feed: rows in the output")
        elif kind == "top":
            window = resolve_window(rows, window_at)
            records = top_terms(rows, window.window_start, args.k)
            if not records:
                raise NothingFound(
                    f"window {utc_iso(window.window_start)} ({window.window_start}) has no ranked terms "
                    f"(a term needs min_support={config.min_support} articles)"
                )
            title = (
                f"top {len(records)} terms of window {utc_text(window.window_start)} - "
                f"{utc_text(window.window_end)} UTC (window_start {window.window_start})"
            )
        else:
            records = term_history(rows, args.term, since, until)

        if getattr(args, "plot", None):
            from feedtrends import query_store

            if kind == "top":
                query_store.plot_top_terms(records, args.plot)
            else:
                query_store.plot_term_history(records, args.plot)
    except QueryError as exc:
        return report(f"query {kind}", exc, err)

    text = render(kind, records, args.format)
    try:
        if title and args.format == "table":
            print(title, file=out)
        print(text, file=out)
        out.flush()
    except BrokenPipeError:
        # The reader stopped early (`| head`): not an error.  Point stdout at devnull so
        # the interpreter's final flush does not fail again on the closed pipe.
        if out is sys.stdout:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
    return OK


if __name__ == "__main__":
    from feedtrends.cli import main

    sys.exit(main(parser=build_query_parser()))
