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
