"""Talking to a Flink cluster: submit with `flink run -py`, list and cancel jobs over REST."""

from __future__ import annotations

import json
import re
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

from feedtrends.config import REPO_ROOT, Config
from connectors.stack import StackError, StackPaths, flink_env, pyflink_home

TRENDS_JOB = REPO_ROOT / "jobs" / "trends.py"
# Shipped with the job so a remote cluster's Python workers can import them.
PYTHON_PACKAGES = ("udfs", "connectors", "jobs", "feedtrends")

_JOB_ID = re.compile(r"JobID ([0-9a-f]{32})")


class ClusterError(RuntimeError):
    """The Flink cluster refused or failed a request (message says why)."""


def _rest(config: Config, path: str, method: str = "GET", body: dict | None = None, timeout_s: float = 10.0) -> dict:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        config.flink_rest_url + path, data=data, method=method, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as resp:
            raw = resp.read()
    except urllib.error.HTTPError as exc:
        raise ClusterError(f"Flink REST {method} {path}: HTTP {exc.code} {exc.read()[:300]!r}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise ClusterError(f"Flink cluster unreachable at {config.flink_rest_url}: {exc}") from None
    return json.loads(raw) if raw else {}


def list_jobs(config: Config) -> list[dict]:
    return _rest(config, "/jobs/overview").get("jobs", [])


def running_job(config: Config, name: str | None = None) -> dict | None:
    """The running (or starting) job with this name, if any."""
    name = name or config.job_name
    for job in list_jobs(config):
        if job["name"] == name and job["state"] in ("CREATED", "INITIALIZING", "RUNNING", "RESTARTING"):
            return job
    return None


def job_details(config: Config, job_id: str) -> dict:
    return _rest(config, f"/jobs/{job_id}")


def wait_for_state(config: Config, job_id: str, states: set[str], timeout_s: float = 120.0) -> str:
    deadline = time.monotonic() + timeout_s
    state = "UNKNOWN"
    while time.monotonic() < deadline:
        state = job_details(config, job_id)["state"]
        if state in states:
            return state
        if state in ("FAILED",) and "FAILED" not in states:
            raise ClusterError(f"job {job_id} failed; see the Flink logs or {config.flink_rest_url}/#/job/{job_id}")
        time.sleep(1.0)
    raise ClusterError(f"job {job_id} still {state} after {timeout_s:.0f}s (wanted {sorted(states)})")


def wait_for_all_tasks_running(config: Config, job_id: str, timeout_s: float = 120.0) -> None:
    """RUNNING at job level happens before the tasks are deployed; wait for the tasks too."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        details = job_details(config, job_id)
        if details["state"] == "FAILED":
            raise ClusterError(f"job {job_id} failed while starting")
        vertices = details.get("vertices", [])
        if vertices and all(v["status"] == "RUNNING" for v in vertices):
            return
        time.sleep(1.0)
    raise ClusterError(f"job {job_id}: tasks not all running after {timeout_s:.0f}s")


def cancel_job(config: Config, job_id: str, timeout_s: float = 60.0) -> None:
    _rest(config, f"/jobs/{job_id}", method="PATCH")
    wait_for_state(config, job_id, {"CANCELED", "FAILED", "FINISHED"}, timeout_s=timeout_s)


def submit(config: Config, *, job: Path = TRENDS_JOB, savepoint: str | None = None, timeout_s: float = 180.0) -> str:
    """Submit `job` detached with `flink run -py`; returns the job id.

    The job reads its settings from the FEEDTRENDS_* environment we hand the
    client, so the job graph is built with exactly this config.
    """
    paths = StackPaths(config.state_dir)
    if not (paths.flink_conf / "config.yaml").exists():
        raise StackError("no Flink configuration rendered yet: run `feedtrends up` first")
    env = flink_env(config)
    env.update(config.as_env())
    address = config.jobmanager or f"127.0.0.1:{config.flink_rest_port}"
    cmd = [
        "bash",
        str(pyflink_home() / "bin" / "flink"),
        "run",
        "--detached",
        "--jobmanager",
        address,
        "--python",
        str(job),
        "--pyFiles",
        ",".join(str(REPO_ROOT / p) for p in PYTHON_PACKAGES),
    ]
    if savepoint:
        cmd[3:3] = ["--fromSavepoint", savepoint]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout_s, cwd=REPO_ROOT)
    match = _JOB_ID.search(proc.stdout)
    if proc.returncode != 0 or not match:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-25:])
        raise ClusterError(f"`flink run` failed (exit {proc.returncode}):\n{tail}")
    return match.group(1)
