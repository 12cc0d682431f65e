"""Every subcommand, given malformed, out-of-range and hostile values, with the stack down,
fails with one line on stderr and a documented exit code, never a traceback.

The stack is "down" by construction: every port points at a loopback port nothing
listens on, and the retry deadline is short so the walk stays quick.
"""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from connectors.stack.paths import free_ports

DOCUMENTED_EXIT_CODES = {0, 1, 2, 3}

HOSTILE = [
    "",
    " ",
    "-1",
    "0",
    "1",
    "99999999999999999999",
    "-99999999999999999999",
    "1e309",
    "nan",
    "inf",
    "-inf",
    "0x10",
    "1.5",
    "5m",
    "-24h",
    "-99999999999999999999d",
    "now",
    "2026-13-01",
    "9999-12-31T23:59:59Z",
    "0001-01-01",
    "../../../../etc/passwd",
    "/dev/null",
    "/nonexistent/dir",
    "'; DROP TABLE x; --",
    "%s%s%n",
    "\u202e\u0000bidi",
    "ü" * 300,
    "{\"a\": 1}",
    "v0",
    "v99999999999999999999",
    "remove",
    "--",
]

# Flags each subcommand knows (values come from HOSTILE); unknown ones test argparse.
FLAGS: dict[tuple[str, ...], list[str]] = {
    ("status",): ["--json", "--bogus"],
    ("topics",): ["--bogus"],
    ("submit",): ["--jobmanager"],
    ("stop",): ["--savepoint", "--jobmanager"],
    ("resume",): ["--jobmanager"],
    ("replay",): ["--bounded", "--timeout"],
    ("versions",): [],
    ("versions", "remove"): [],
    ("trends",): ["--top"],
    ("query", "windows"): ["--format", "--source", "--bootstrap"],
    ("query", "top"): ["--window", "--latest", "--k", "--plot", "--format", "--source"],
    ("query", "term"): ["--since", "--until", "--plot", "--format", "--source"],
    ("query", "feeds"): ["--format", "--source"],
    ("query", "sql"): ["--format"],
    ("ingest",): ["--once", "--every", "--allow-files", "--topic", "--partitions", "--timeout", "--max-bytes", "--concurrency", "--state", "--bootstrap"],
    ("generate",): ["--count", "--seed", "--rate", "--start", "--duplicates", "--out-of-order", "--late", "--malformed", "--feeds", "--topic", "--partitions", "--bootstrap"],
    ("serve-feeds",): ["--port", "--host"],
    ("up",): ["--bogus"],
    ("demo",): ["--bogus"],
}
VALUELESS = {"--json", "--savepoint", "--bounded", "--latest", "--once", "--allow-files"}


@pytest.fixture(scope="module")
def down_env(tmp_path_factory) -> dict[str, str]:
    kafka, controller, rest, rpc = free_ports(4)  # nothing listens there
    return {
        "FEEDTRENDS_STATE_DIR": str(tmp_path_factory.mktemp("state")),
        "FEEDTRENDS_KAFKA_PORT": str(kafka),
        "FEEDTRENDS_KAFKA_CONTROLLER_PORT": str(controller),
        "FEEDTRENDS_FLINK_REST_PORT": str(rest),
        "FEEDTRENDS_FLINK_RPC_PORT": str(rpc),
        "FEEDTRENDS_RETRY_DEADLINE_MS": "300ms",
    }


def _run_in_process(argv: list[str], env: dict[str, str]) -> tuple[int, str]:
    from feedtrends import cli

    err = io.StringIO()
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            try:
                code = cli.main(argv)
            except SystemExit as exc:  # argparse
                code = exc.code if isinstance(exc.code, int) else 1
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return code, err.getvalue()


def _assert_one_line(argv: list[str], code: int, stderr: str) -> None:
    assert "Traceback" not in stderr, (argv, stderr)
    assert code in DOCUMENTED_EXIT_CODES, (argv, code, stderr)
    if code != 0:
        lines = [line for line in stderr.splitlines() if line.strip()]
        assert len(lines) == 1, (argv, code, stderr)
        assert lines[0].startswith("feedtrends"), (argv, stderr)


@st.composite
def _argv(draw, command: tuple[str, ...]) -> list[str]:
    argv = list(command)
    if command in (("versions", "remove"), ("query", "term"), ("query", "sql"), ("ingest",), ("resume",)):
        argv.append(draw(st.sampled_from(HOSTILE[1:])))  # the positional argument
    if command == ("serve-feeds",):
        argv.append("/nonexistent/feeds")  # a valid directory would serve forever
    # `up` and `demo` would start a stack: they only ever get a bad flag.
    at_least = 1 if command in (("up",), ("demo",)) else 0
    for _ in range(draw(st.integers(at_least, 4))):
        flag = draw(st.sampled_from(FLAGS[command] or ["--bogus"]))
        argv.append(flag)
        if flag not in VALUELESS:
            argv.append(draw(st.sampled_from(HOSTILE)))
    # A dry run polling every N minutes would run forever; everything else ends.
    assume(not (command == ("ingest",) and "--every" in argv))
    return argv


@pytest.mark.parametrize("command", list(FLAGS), ids=lambda c: " ".join(c))
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_every_subcommand_fails_in_one_line(down_env, command, data) -> None:
    argv = data.draw(_argv(command))
    code, stderr = _run_in_process(argv, down_env)
    _assert_one_line(argv, code, stderr)


def _run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "feedtrends.cli", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize(
    "args, code, message",
    [
        (("query", "top", "--window", "99999999999999999999"), 2, "out of range"),
        (("replay", "--bounded"), 3, "Kafka at 127.0.0.1:"),
        (("topics",), 3, "Kafka at 127.0.0.1:"),
        (("submit",), 3, "Flink cluster unreachable at http://127.0.0.1:"),
        (("query", "windows", "--source", "kafka"), 3, "unreachable"),
        (("ingest", "/nonexistent/feeds.opml"), 2, "/nonexistent/feeds.opml"),
    ],
)
def test_reported_failures_are_one_line(down_env, args, code, message) -> None:
    result = _run(down_env, *args)
    _assert_one_line(list(args), result.returncode, result.stderr)
    assert result.returncode == code, result.stderr
    assert message in result.stderr


# --------------------------------------------------------------------------- usage text names real flags

import argparse
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _options(parser: argparse.ArgumentParser) -> set[str]:
    return {option for action in parser._actions for option in action.option_strings}


def _unknown_flags(usage: str) -> list[tuple[str, str]]:
    """(command, flag) for each `--flag` in a usage line that its command's parser lacks.

    A usage line is `feedtrends CMD [SUB] ... [| CMD2 ...]`: after a `|`, a command
    (or a subcommand of the current one) name switches to it; anything else is an
    alternative of the same command (`--once | --every 5m`).
    """
    from feedtrends.cli import build_parser

    root = build_parser()
    commands = _subcommands(root)
    words = usage.replace("\\|", "|").replace("[", " ").replace("]", " ").split()
    assert words[0] == "feedtrends", usage
    path: list[str] = []
    parser = root
    unknown = []
    after_bar = True
    for word in words[1:]:
        if word == "|":
            after_bar = True
            continue
        sub = _subcommands(parser)
        if (after_bar or parser is root) and word in commands and (after_bar or not path):
            path, parser = [word], commands[word]
        elif word in sub and (after_bar or len(path) == 1):
            path, parser = path[:1] + [word], sub[word]
        elif word.startswith("--"):
            flag = word.split("=", 1)[0]
            if flag not in _options(parser) | _options(root):
                unknown.append((" ".join(path), flag))
        after_bar = False
    return unknown


def _usage_lines() -> list[str]:
    from feedtrends import cli, query_cli

    lines = []
    for doc in (cli.__doc__, query_cli.__doc__):
        for line in doc.splitlines():
            if line.strip().startswith("feedtrends "):
                lines.append(re.split(r"\s{3,}", line.strip())[0])
    readme = (REPO / "README.md").read_text()
    lines += re.findall(r"`(feedtrends [^`]+)`", readme)
    lines += [line[2:] for line in readme.splitlines() if line.startswith("$ feedtrends ")]
    return lines


def test_the_usage_check_catches_a_flag_the_parser_lacks() -> None:
    assert _unknown_flags("feedtrends trends [--limit N]") == [("trends", "--limit")]
    assert _unknown_flags("feedtrends submit | stop [--savepoint] | resume [SAVEPOINT]") == []
    assert _unknown_flags("feedtrends query top [--window START | --latest] [--k N] [--since T]") == [("query top", "--since")]


def test_usage_text_names_only_flags_the_parser_has() -> None:
    lines = _usage_lines()
    assert len(lines) > 20, lines  # the docstrings and the README were read
    assert [(line, bad) for line in lines for bad in _unknown_flags(line)] == []


def test_the_walk_uses_real_flags() -> None:
    from feedtrends.cli import build_parser

    root = build_parser()
    for command, flags in FLAGS.items():
        parser = root
        for name in command:
            parser = _subcommands(parser)[name] if name in _subcommands(parser) else parser
        assert set(flags) - {"--bogus"} <= _options(parser), command
