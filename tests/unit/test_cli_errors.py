"""Operations commands fail with one clear line and an exit code, never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from connectors.stack.paths import free_ports


def _run(tmp_path, *args: str, **env_overrides: str) -> subprocess.CompletedProcess:
    (port,) = free_ports(1)  # nothing listens there
    env = dict(os.environ)
    env.update(
        FEEDTRENDS_STATE_DIR=str(tmp_path),
        FEEDTRENDS_FLINK_REST_PORT=str(port),
        FEEDTRENDS_KAFKA_PORT=str(port),
        FEEDTRENDS_RETRY_DEADLINE_MS="1s",
    )
    env.update(env_overrides)
    return subprocess.run(
        [sys.executable, "-m", "feedtrends.cli", *args], env=env, capture_output=True, text=True, timeout=120
    )


@pytest.mark.parametrize(
    "args, code, message",
    [
        (("submit",), 3, "Flink cluster unreachable at http://127.0.0.1:"),
        (("stop", "--savepoint"), 3, "Flink cluster unreachable"),
        (("resume", "/nonexistent/savepoint-1"), 2, "no such savepoint or checkpoint: /nonexistent/savepoint-1"),
        (("versions", "remove", "v9"), 2, "no such version: v9"),
    ],
)
def test_operations_errors_are_one_line(tmp_path, args, code, message) -> None:
    result = _run(tmp_path, *args)
    assert result.returncode == code
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"feedtrends {args[0]}: ") and message in lines[0]


def test_a_bad_setting_is_named(tmp_path) -> None:
    result = _run(tmp_path, "status", FEEDTRENDS_WINDOW_MS="soon")
    assert result.returncode == 2
    assert result.stderr.strip() == "feedtrends status: window_ms: not a duration: 'soon' (use e.g. 500ms, 30s, 5m, 1h, 7d)"


# --------------------------------------------------------------------------- the one exit-code table

import ast
import builtins
import importlib
import inspect
import re
import socket
from pathlib import Path

from connectors import feed_list, feeds, flink_cluster, retry, stack
from core.config import ConfigError
from feedtrends import exit_codes, operations, query

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("core", "connectors", "udfs", "feedtrends")

# Every error the product raises, with the code the README gives its kind.
EXPECTED: dict[type[BaseException], int] = {
    ConfigError: 2,
    feed_list.FeedListError: 2,
    feeds.StateFileError: 2,
    query.QueryInputError: 2,
    operations.OperationInputError: 2,
    ValueError: 2,
    NotADirectoryError: 2,
    operations.OperationError: 1,
    flink_cluster.ClusterError: 1,
    stack.StackError: 1,
    retry.BackendRefused: 1,
    query.NothingFound: 1,
    retry.BackendUnavailable: 3,
    query.BackendUnavailable: 3,
    TimeoutError: 3,  # a topic read that never reached its end offsets
}
# Raised and caught inside their own module, never seen by the CLI: the retry helpers
# turn FlinkUnreachable into BackendUnavailable, a feed's _FetchError is its failure
# reason; argparse turns ArgumentTypeError into a usage error (exit 2, tested below).
NEVER_REACH_THE_CLI = {"FlinkUnreachable", "_FetchError", "ArgumentTypeError", "SystemExit", "on_give_up"}


def _modules():
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            dotted = ".".join(path.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")
            yield path, importlib.import_module(dotted)


def _raised_names(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call):
            func = node.exc.func
            names.add(func.attr if isinstance(func, ast.Attribute) else func.id)
    return names


def test_every_error_the_code_raises_maps_to_its_documented_code() -> None:
    modules = list(_modules())
    # A name a function imports locally (cli.py's `from feedtrends.operations import ...`).
    defined = {name: cls for _, m in modules for name, cls in vars(m).items() if isinstance(cls, type)}
    seen = set()
    for path, module in modules:
        for name in _raised_names(path) - NEVER_REACH_THE_CLI:
            cls = getattr(module, name, None) or getattr(builtins, name, None) or defined[name]
            assert cls in EXPECTED, f"{path.relative_to(REPO)} raises {name}: add it to EXPECTED with its code"
            assert exit_codes.exit_code(cls("x")) == EXPECTED[cls], (path, name)
            seen.add(cls)
    # No stale entries (retry's give-up helper returns BackendUnavailable for retry_until to raise).
    assert seen | {retry.BackendUnavailable} == set(EXPECTED)


def test_every_error_class_the_product_defines_has_a_kind() -> None:
    for _, module in _modules():
        for name, cls in inspect.getmembers(module, inspect.isclass):
            if cls.__module__ != module.__name__ or not issubclass(cls, BaseException):
                continue
            if name in NEVER_REACH_THE_CLI or cls is query.QueryError:  # QueryError: only its kinds are raised
                continue
            assert exit_codes.exit_code(cls("x")) in exit_codes.MEANINGS, f"{module.__name__}.{name} has no kind"


@pytest.mark.parametrize(
    "error",
    [ConnectionRefusedError(111, "Connection refused"), TimeoutError("timed out"), socket.gaierror(-2, "Name or service not known")],
    ids=lambda e: type(e).__name__,
)
def test_a_network_error_no_retry_helper_wrapped_is_unreachable_not_bad_input(error) -> None:
    assert exit_codes.exit_code(error) == exit_codes.UNREACHABLE == 3
    assert exit_codes.exit_code(FileNotFoundError(2, "No such file")) == exit_codes.BAD_INPUT


def test_an_unknown_error_is_one_line_naming_its_type(capsys) -> None:
    assert exit_codes.report("status", LookupError("a\nb")) == 1
    assert capsys.readouterr().err == "feedtrends status: unexpected LookupError: a b\n"
    assert exit_codes.report("ingest", KeyboardInterrupt()) == 130
    assert capsys.readouterr().err == "feedtrends ingest: interrupted\n"


@pytest.mark.parametrize(
    "args",
    [("resume",), ("topics",), ("ingest", str(REPO / "samples" / "feeds.opml"), "--allow-files"), ("generate", "--count", "1")],
    ids=lambda a: a[0],
)
def test_a_backend_unreachable_after_the_deadline_exits_3(tmp_path, args) -> None:
    result = _run(tmp_path, *args)
    assert result.returncode == 3, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"feedtrends {args[0]}: ")
    assert "Flink cluster unreachable" in lines[0] or "did not answer" in lines[0]


def test_the_compose_submit_script_exits_3_when_the_cluster_is_unreachable(tmp_path) -> None:
    """docker/submit.sh checks for a running job before `flink run`: same table, same line."""
    script = (REPO / "docker" / "submit.sh").read_text()
    check = re.search(r"running=\$\(python3\.11 - <<'EOF'\n(.*?)\nEOF\n", script, re.S)
    assert check, "docker/submit.sh no longer checks for a running job the expected way"
    (port,) = free_ports(1)
    env = {**os.environ, "FEEDTRENDS_STATE_DIR": str(tmp_path), "FEEDTRENDS_JOBMANAGER": f"127.0.0.1:{port}",
           "FEEDTRENDS_RETRY_DEADLINE_MS": "500ms"}
    result = subprocess.run([sys.executable, "-c", check.group(1)], env=env, cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.returncode == 3 and result.stdout == ""
    assert result.stderr.startswith("feedtrends submit: Flink cluster unreachable at ") and result.stderr.count("\n") == 1


def _readme_table(heading: str) -> dict[str, str]:
    rows = re.findall(rf"^\| {heading} \| meaning \|\n\|---\|---\|\n((?:\|.*\|\n)+)", (REPO / "README.md").read_text(), re.M)
    assert len(rows) == 1, heading
    return {code.strip(): meaning.strip() for code, meaning in re.findall(r"^\| ([^|]+) \| (.+) \|$", rows[0], re.M)}


def test_the_readme_exit_code_table_is_the_codes_table() -> None:
    table = _readme_table("exit code")
    codes = {int(c) for key in table for c in key.split("/")}
    assert codes == set(exit_codes.MEANINGS)
    for key, meaning in table.items():
        for code in key.split("/"):
            assert exit_codes.MEANINGS[int(code)] in meaning, (code, meaning)
    # The query table narrows the meanings; it uses no code the table lacks.
    assert {int(c) for c in _readme_table("query exit code")} <= set(exit_codes.MEANINGS)


def test_the_cli_docstring_lists_the_codes_table() -> None:
    from feedtrends import cli

    paragraph = cli.__doc__.split("Errors are one line", 1)[1]
    assert {int(c) for c in re.findall(r"(?<![\w-])(\d+) (?=[a-z(])", paragraph)} == set(exit_codes.MEANINGS)
