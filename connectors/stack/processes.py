"""Supervising the stack's processes: started in their own session, found again by pid
file (checked against their command line), stopped by process group."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Callable

from connectors.stack.paths import StackError


def _read_pid(pid_file: Path) -> int | None:
    try:
        return int(pid_file.read_text().strip())
    except (OSError, ValueError):
        return None


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def running_pid(pid_file: Path, *markers: str) -> int | None:
    """The pid in `pid_file` if that process is alive and is ours.

    A marker (e.g. a path under our state dir) must appear on its command line:
    that guards against a recycled pid that now belongs to somebody else.
    """
    pid = _read_pid(pid_file)
    if pid is None:
        return None
    cmd = _cmdline(pid)
    if not cmd or not any(marker in cmd for marker in markers):
        return None
    return None if is_zombie(pid) else pid  # a zombie is dead for our purposes


def spawn(cmd: list[str], *, log: Path, pid_file: Path, env: dict[str, str]) -> int:
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        # A new session makes the child the leader of its own process group, so
        # `down` can stop it and anything it forked (Python workers) by that id.
        proc = subprocess.Popen(
            cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, start_new_session=True
        )
    pid_file.write_text(str(proc.pid))
    return proc.pid


def stop_pid(pid: int, timeout_s: float = 30.0) -> None:
    """SIGTERM the process group led by `pid`, then SIGKILL if it lingers."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            return
        except PermissionError:
            os.kill(pid, sig)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                # Reap it if it is our child (up and down in one process, as in tests).
                os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                pass
            if not _cmdline(pid) or is_zombie(pid):
                return
            time.sleep(0.2)


def is_zombie(pid: int) -> bool:
    """Exited but not reaped (or gone): dead for every purpose of ours."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1].startswith("Z")
    except (OSError, IndexError):
        return True


def wait_until(what: str, check: Callable[[], bool], *, timeout_s: float, log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.5)
    hint = f"; see {log}" if log else ""
    raise StackError(f"{what} did not become ready within {timeout_s:.0f}s{hint}")
