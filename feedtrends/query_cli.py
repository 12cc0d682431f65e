"""`feedtrends query`: read the trends back, from the current output version.

    feedtrends query windows                                   windows, their terms, articles, max revision
    feedtrends query top [--window START | --latest] [--k N]   a window's top terms by rank
    feedtrends query term TERM [--since T] [--until T]         one term's rows over time
    feedtrends query feeds                                     articles per (window, feed)
    feedtrends query sql "SELECT ..."                          DuckDB over the Parquet (feedtrends/sql.py)

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
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TextIO

from connectors.trend_store import latest_revisions
from connectors.versions import OutputVersion
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
    kinds = query.add_subparsers(dest="query_kind", required=True, metavar="{windows,top,term,feeds,sql}")

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

    sql = kinds.add_parser(
        "sql",
        help="DuckDB SQL over the Parquet output: views `trends` (final rows) and `revisions` (every row)",
    )
    sql.add_argument("statement", help='e.g. "SELECT term, count(*) FROM trends WHERE rank <= 3 GROUP BY term"')
    sql.add_argument("--format", choices=FORMATS, default="table", help="output format (default: table)")
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


def current_output(config: Config) -> OutputVersion:
    """The current output version; a registry that cannot be read is BackendUnavailable."""
    from connectors.versions import current_version

    try:
        return current_version(config)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise BackendUnavailable(f"cannot read the output versions registry in {config.state_dir}: {exc}") from None


def current_rows(config: Config, source: str = "parquet") -> list[dict[str, Any]]:
    """The latest revision per (window_start, term) of the current version's output.

    No rows yet is NothingFound; a source that cannot be read is BackendUnavailable.
    `feedtrends serve` answers from these rows too.
    """
    from feedtrends import query_store

    version = current_output(config)
    if source == "kafka":
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


@dataclass(frozen=True)
class Question:
    """One `query windows|top|term|feeds` question, as flags or URL parameters give it."""

    kind: str
    window: str | None = None  # top: a window START (any TIME_HELP form); None = the latest
    k: int = 10  # top
    term: str | None = None  # term
    since: str | None = None  # term
    until: str | None = None  # term

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Question:
        return cls(
            args.query_kind,
            **{f: getattr(args, f) for f in ("window", "k", "term", "since", "until") if hasattr(args, f)},
        )


@dataclass(frozen=True)
class Answer:
    records: list[dict[str, Any]]
    title: str | None = None  # the table format's heading line


def answer(question: Question, rows_of: Callable[[], list[dict[str, Any]]], config: Config, now_ms: int) -> Answer:
    """The records that answer a question, from the rows `rows_of()` returns.

    The input is validated before `rows_of` is called: a typo should not wait for
    Kafka.  Raises a QueryError; `query` and `serve` both answer through here, so
    `serve`'s JSON is `query --format json`'s.
    """
    kind = question.kind
    window_at = parse_time_ms(question.window, now_ms) if kind == "top" and question.window else None
    since = parse_time_ms(question.since, now_ms) if kind == "term" and question.since else None
    until = parse_time_ms(question.until, now_ms) if kind == "term" and question.until else None
    if kind == "top" and question.k < 1:
        raise QueryInputError(f"--k must be at least 1, not {question.k}")
    if kind == "term" and since is not None and until is not None and since >= until:
        raise QueryInputError(f"--since ({utc_iso(since)}) must be before --until ({utc_iso(until)})")

    rows = rows_of()
    if kind == "windows":
        return Answer(windows_summary(rows))
    if kind == "feeds":
        records = feed_counts(rows)
        if not records:
            raise NothingFound("no feed: rows in the output")
        return Answer(records)
    if kind == "top":
        window = resolve_window(rows, window_at)
        records = top_terms(rows, window.window_start, question.k)
        if not records:
            raise NothingFound(
                f"window {utc_iso(window.window_start)} ({window.window_start}) has no ranked terms "
                f"(a term needs min_support={config.min_support} articles)"
            )
        title = (
            f"top {len(records)} terms of window {utc_text(window.window_start)} - "
            f"{utc_text(window.window_end)} UTC (window_start {window.window_start})"
        )
        return Answer(records, title)
    return Answer(term_history(rows, question.term, since, until))


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
    if kind == "sql":
        from feedtrends.sql import run_sql

        return run_sql(args, config, out=out, err=err)
    try:
        result = answer(Question.from_args(args), lambda: current_rows(config, args.source), config, now_ms)
        records, title = result.records, result.title

        if getattr(args, "plot", None):
            from feedtrends import query_store

            if kind == "top":
                query_store.plot_top_terms(records, args.plot)
            else:
                query_store.plot_term_history(records, args.plot)
    except QueryError as exc:
        return report(f"query {kind}", exc, err)

    text = render(kind, records, args.format)
    print_output(f"{title}\n{text}" if title and args.format == "table" else text, out)
    return OK


def print_output(text: str, out: TextIO) -> None:
    """Print a query's answer; a reader that stops early (`| head`) is not an error."""
    try:
        print(text, file=out)
        out.flush()
    except BrokenPipeError:
        # The reader stopped early (`| head`): not an error.  Point stdout at devnull so
        # the interpreter's final flush does not fail again on the closed pipe.
        if out is sys.stdout:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())


if __name__ == "__main__":
    from feedtrends.cli import main

    sys.exit(main(parser=build_query_parser()))
