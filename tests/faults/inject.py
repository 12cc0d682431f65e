"""Injecting faults into the suite's own stack, and waiting for the job to recover.

Only processes of this suite's stack are signalled, by the pid `connectors.stack`
recorded when it started them; every wait has a deadline.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from connectors import flink_cluster, flink_rest
from connectors import stack as local_stack
from connectors.flink_cluster import ClusterError
from connectors.stack.processes import is_zombie
from core.config import Config
from tests.faults.scenario import log


def fault_points(rng, count: int, n_batches: int, *, first: int = 4, gap: int = 8) -> list[int]:
    """`count` batch indices in [first, n_batches - gap), at least `gap` apart (seeded)."""
    for _ in range(1000):
        points = sorted(rng.sample(range(first, n_batches - gap), count))
        if all(b - a >= gap for a, b in zip(points, points[1:])):
            return points
    raise ValueError("cannot place the fault points; use fewer faults or more batches")


def kill(config: Config, role: str) -> int:
    """SIGKILL the process group of `role` (kafka, jobmanager, taskmanager) of this stack; returns its pid."""
    pid = local_stack.status(config)["pids"].get(role)
    assert pid, f"{role} is not running"
    os.killpg(pid, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            os.waitpid(pid, os.WNOHANG)  # reap it: the stack fixture's process started it
        except ChildProcessError:
            pass
        if not Path(f"/proc/{pid}").exists() or is_zombie(pid):
            return pid
        time.sleep(0.1)
    raise TimeoutError(f"{role} (pid {pid}) still alive 30 s after SIGKILL")


def restart(config: Config) -> None:
    """`feedtrends up`: starts only the dead part(s)."""
    local_stack.up(config, timeout_s=180, echo=lambda line: log(f"up: {line}") if "started" in line else None)


def num_restarts(config: Config, job_id: str) -> int | None:
    metrics = flink_rest.probe(config, f"/jobs/{job_id}/metrics?get=numRestarts", timeout_s=10)
    try:
        return int(float(metrics[0]["value"])) if metrics else None
    except (ValueError, KeyError, IndexError, TypeError):
        return None


def wait_recovered(config: Config, job_id: str, since_ms: int, timeout_s: float = 300.0) -> float:
    """Until the job runs all its tasks and a checkpoint completed after `since_ms` (wall clock)."""
    start = time.monotonic()
    deadline = start + timeout_s
    last = "no answer"
    while time.monotonic() < deadline:
        try:
            details = flink_cluster.job_details(config, job_id)
            if details["state"] in ("FAILED", "CANCELED", "FINISHED"):
                raise AssertionError(f"job {job_id} is {details['state']} instead of recovering")
            checkpoint = flink_cluster.last_checkpoint(config, job_id)
            running = all(v["status"] == "RUNNING" for v in details.get("vertices", []))
            last = f"state {details['state']}, tasks running {running}, last checkpoint {checkpoint}"
            if running and checkpoint and (checkpoint["completed_at"] or 0) > since_ms:
                return time.monotonic() - start
        except ClusterError as exc:
            last = str(exc)
        time.sleep(1.0)
    raise TimeoutError(f"job {job_id} did not recover within {timeout_s:.0f}s: {last}")
