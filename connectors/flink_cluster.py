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


def free_slots(config: Config) -> int:
    return int(_rest(config, "/overview").get("slots-available", 0))


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


# --------------------------------------------------------------------------- journal, restore points

COUNTERS = ("events_in", "dead_letters", "duplicates", "late_beyond_lateness", "rows_out")


def _journal_path(config: Config) -> Path:
    return config.state_dir / "jobs.json"


def _load_journal(config: Config) -> dict:
    path = _journal_path(config)
    return json.loads(path.read_text()) if path.exists() else {}


def _save_journal(config: Config, journal: dict) -> None:
    path = _journal_path(config)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(journal, indent=2))
    tmp.replace(path)


def record_job(config: Config, job_id: str, *, restored_from: str | None) -> None:
    """Remember which job ids ran under which name: checkpoints are stored per job id."""
    journal = _load_journal(config)
    journal[job_id] = {
        "name": config.job_name,
        "submitted_at": int(time.time() * 1000),
        "restored_from": restored_from,
        "savepoints": [],
    }
    _save_journal(config, journal)


def record_savepoint(config: Config, job_id: str, location: str) -> None:
    journal = _load_journal(config)
    journal.setdefault(job_id, {"name": config.job_name, "savepoints": []})["savepoints"].append(location)
    _save_journal(config, journal)


def _local_path(location: str) -> Path:
    """`file:/a/b` or `file:///a/b` -> /a/b."""
    if location.startswith("file:"):
        return Path("/" + location[len("file:"):].lstrip("/"))
    return Path(location)


def restore_points(config: Config, job_name: str | None = None) -> list[tuple[float, str, str]]:
    """(time, kind, path) of every retained checkpoint and savepoint of this job name, oldest first."""
    name = job_name or config.job_name
    found: list[tuple[float, str, str]] = []
    for job_id, entry in _load_journal(config).items():
        if entry.get("name") != name:
            continue
        for chk in (config.state_dir / "checkpoints" / job_id).glob("chk-*/_metadata"):
            found.append((chk.stat().st_mtime, "checkpoint", str(chk.parent)))
        for location in entry.get("savepoints", []):
            meta = _local_path(location) / "_metadata"
            if meta.exists():
                found.append((meta.stat().st_mtime, "savepoint", str(_local_path(location))))
    return sorted(found)


def latest_restore_point(config: Config, job_name: str | None = None) -> tuple[str, str] | None:
    points = restore_points(config, job_name)
    return (points[-1][1], points[-1][2]) if points else None


# --------------------------------------------------------------------------- stop, checkpoints, metrics


def stop_with_savepoint(config: Config, job_id: str, timeout_s: float = 180.0) -> str:
    """Stop-with-savepoint (no drain: windows stay open in the savepoint); returns its location."""
    target = (config.state_dir / "savepoints").as_uri()
    trigger = _rest(config, f"/jobs/{job_id}/stop", method="POST", body={"drain": False, "targetDirectory": target})
    request_id = trigger["request-id"]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        status = _rest(config, f"/jobs/{job_id}/savepoints/{request_id}")
        if status["status"]["id"] == "COMPLETED":
            operation = status.get("operation", {})
            if "failure-cause" in operation:
                cause = operation["failure-cause"].get("stack-trace", "").strip().splitlines()[:1]
                raise ClusterError(f"savepoint failed: {cause[0] if cause else 'unknown cause'}")
            location = operation["location"]
            record_savepoint(config, job_id, location)
            wait_for_state(config, job_id, {"FINISHED", "CANCELED"}, timeout_s=60)
            return location
        time.sleep(1.0)
    raise ClusterError(f"savepoint of job {job_id} not done after {timeout_s:.0f}s")


def last_checkpoint(config: Config, job_id: str) -> dict | None:
    completed = (_rest(config, f"/jobs/{job_id}/checkpoints").get("latest") or {}).get("completed")
    if not completed:
        return None
    return {
        "id": completed["id"],
        "path": completed.get("external_path"),
        "completed_at": completed.get("latest_ack_timestamp"),
        "duration_ms": completed.get("end_to_end_duration"),
    }


def job_counters(config: Config, job_id: str) -> dict[str, int]:
    """The job's own counters (summed over subtasks), as Flink reports them."""
    totals = dict.fromkeys(COUNTERS, 0)
    for vertex in job_details(config, job_id).get("vertices", []):
        base = f"/jobs/{job_id}/vertices/{vertex['id']}/subtasks/metrics"
        names = [m["id"] for m in _rest(config, base)]
        wanted = [n for n in names if n.rsplit(".", 1)[-1] in COUNTERS]
        if not wanted:
            continue
        for metric in _rest(config, f"{base}?get={','.join(wanted)}&agg=sum"):
            totals[metric["id"].rsplit(".", 1)[-1]] += int(float(metric.get("sum", 0)))
    return totals
