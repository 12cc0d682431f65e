"""`feedtrends serve` as a real process for the tests, and the real job's Parquet output.

`DEMO_PARQUET` holds part files that the trends job wrote on the local stack
(`feedtrends demo` over samples/feeds.opml), copied as they were; see tests/fixtures/README.md.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from connectors.stack.paths import free_ports
from core.config import Config
from tests.support.stack import stack_config

REPO = Path(__file__).resolve().parents[2]
DEMO_PARQUET = REPO / "tests" / "fixtures" / "demo-parquet"


def demo_parts() -> list[Path]:
    """The real part files, oldest checkpoint first (their names end in the part counter)."""
    return sorted(DEMO_PARQUET.rglob("part-*"), key=lambda p: int(p.name.rsplit("-", 1)[1]))


def private_config(state_dir: Path) -> Config:
    """A state dir on free ports: no stack runs there, and none of a developer's is asked."""
    return stack_config(state_dir)


def commit_part(src: Path, parquet_dir: Path) -> Path:
    """Lay a part file down as the job's FileSink does: write in-progress, then rename."""
    dest_dir = parquet_dir / src.parent.name
    dest_dir.mkdir(parents=True, exist_ok=True)
    in_progress = dest_dir / f".{src.name}.inprogress.test"
    shutil.copyfile(src, in_progress)
    final = dest_dir / src.name
    os.replace(in_progress, final)
    return final


def copy_demo_output(parquet_dir: Path) -> None:
    for part in demo_parts():
        commit_part(part, parquet_dir)


@dataclass
class Server:
    url: str
    port: int
    pid: int

    def get(self, path: str) -> tuple[int, str]:
        """(status, body) of a GET; `path` goes on the wire as is (no normalizing of `..`)."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=20)
        try:
            conn.request("GET", path)
            response = conn.getresponse()
            return response.status, response.read().decode("utf-8")
        finally:
            conn.close()

    def json(self, path: str):
        status, body = self.get(path)
        return status, json.loads(body)


def _env(config: Config) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FEEDTRENDS_")}
    for name in ("kafka_port", "kafka_controller_port", "flink_rest_port", "flink_rpc_port"):
        env[f"FEEDTRENDS_{name.upper()}"] = str(getattr(config, name))
    return env


@contextlib.contextmanager
def serving(config: Config, *, timeout_s: float = 30.0) -> Iterator[Server]:
    """`feedtrends serve` on a free loopback port over `config`'s state dir; stopped by pid."""
    (port,) = free_ports(1)
    proc = subprocess.Popen(
        [sys.executable, "-m", "feedtrends.cli", "--state-dir", str(config.state_dir), "serve", "--port", str(port)],
        cwd=REPO,
        env=_env(config),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    server = Server(f"http://127.0.0.1:{port}/", port, proc.pid)
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"feedtrends serve exited {proc.returncode}: {proc.stdout.read()}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise AssertionError(f"feedtrends serve did not listen on {port} within {timeout_s}s") from None
                time.sleep(0.1)
        yield server
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        proc.stdout.close()
