"""Running the job on a Flink cluster: submit with `flink run -py`; list, cancel, checkpoint and
stop jobs over REST (connectors/flink_rest.py); the journal of job ids and restore points."""

from __future__ import annotations

import json
import re
import subprocess
import time
from pathlib import Path

from connectors import flink_rest
from connectors.flink_rest import ClusterError
from connectors.stack.flink import flink_env, pyflink_home
from connectors.stack.paths import StackError, StackPaths
from core.config import REPO_ROOT, Config

TRENDS_JOB = REPO_ROOT / "jobs" / "trends.py"
# Shipped with the job so a remote cluster's Python workers can import them.
PYTHON_PACKAGES = ("core", "udfs", "connectors", "jobs")

_JOB_ID = re.compile(r"JobID ([0-9a-f]{32})")


def list_jobs(config: Config) -> list[dict]:
    return flink_rest.call(config, "/jobs/overview").get("jobs", [])


def free_slots(config: Config) -> int:
    return int(flink_rest.call(config, "/overview").get("slots-available", 0))


def running_job(config: Config, name: str | None = None) -> dict | None:
    """The running (or starting) job with this name, if any."""
    name = name or config.job_name
    for job in list_jobs(config):
        if job["name"] == name and job["state"] in ("CREATED", "INITIALIZING", "RUNNING", "RESTARTING"):
            return job
    return None


def job_details(config: Config, job_id: str) -> dict:
    return flink_rest.call(config, f"/jobs/{job_id}")


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


# `<subtask>.<source operator>.KafkaSourceReader.topic.<topic>.partition.<n>.currentOffset`
# exists once a reader holds that partition; `...KafkaConsumer.fetch-total` counts the
# reader's fetch requests (empty ones too).
_PARTITION_METRIC = re.compile(r"^(\d+)\..*\.KafkaSourceReader\.topic\.(.+)\.partition\.(\d+)\.currentOffset$")
_FETCH_METRIC = re.compile(r"^(\d+)\..*\.KafkaSourceReader\.KafkaConsumer\.fetch-total$")


def _source_reading(config: Config, job_id: str, vertices: list[dict]) -> tuple[int, bool, bool]:
    """(partitions held by the job's Kafka readers, whether every reader holding one has fetched,
    whether the sources report any metrics at all)."""
    held: set[tuple[str, str]] = set()
    fetched = True
    reported = False
    for vertex in vertices:
        if not vertex["name"].startswith("Source:"):
            continue
        base = f"/jobs/{job_id}/vertices/{vertex['id']}/metrics"
        names = [m["id"] for m in flink_rest.call(config, base)]
        reported = reported or bool(names)
        holders: set[str] = set()
        for name in names:
            match = _PARTITION_METRIC.match(name)
            if match:
                held.add((match.group(2), match.group(3)))
                holders.add(match.group(1))
        fetches = [n for n in names if (m := _FETCH_METRIC.match(n)) and m.group(1) in holders]
        if len(fetches) < len(holders):
            fetched = False
        elif fetches:
            values = flink_rest.call(config, f"{base}?get={','.join(fetches)}")
            fetched = fetched and all(float(v.get("value", 0)) > 0 for v in values)
    return len(held), fetched, reported


# Without any source metrics for this long, stop waiting for them (see wait_until_reading).
_NO_METRICS_S = 15.0


def wait_until_reading(config: Config, job_id: str, partitions: int, timeout_s: float = 120.0) -> int | None:
    """Wait until the job's Kafka readers hold all `partitions` and fetch, then take a checkpoint.

    A checkpoint taken in the first seconds of a job, after the source's enumerator has
    handed out the partitions but before its readers have them, restores into readers
    that hold the partitions and never fetch (seen with the Kafka source 5.0 on Flink
    2.2).  A checkpoint taken once every reader fetches is one a restore can use, so
    starting a job ends with one.  Returns the id of that checkpoint, or None for a
    job that ended meanwhile (a short bounded replay: nothing left to restore).
    """
    start = time.monotonic()
    deadline = start + timeout_s
    held, fetched = 0, False
    while time.monotonic() < deadline:
        details = job_details(config, job_id)
        if details["state"] == "FINISHED":
            return None
        if details["state"] in ("CANCELED", "FAILED"):
            raise ClusterError(f"job {job_id} is {details['state']} while starting; see the Flink logs")
        held, fetched, reported = _source_reading(config, job_id, details.get("vertices", []))
        if held >= partitions and fetched:
            break
        if not reported and time.monotonic() - start > _NO_METRICS_S:
            # The JobManager cannot see the TaskManagers' metrics (seen after a TaskManager
            # restart): the readers receive their partitions about two seconds after the
            # tasks run, so a checkpoint this long after is very likely to hold them.
            break
        time.sleep(0.5)
    else:
        raise ClusterError(
            f"job {job_id}: its Kafka source reads {held} of {partitions} partition(s) "
            f"{'' if fetched else '(and has not fetched) '}after {timeout_s:.0f}s; "
            f"see {config.flink_rest_url}/#/job/{job_id}/overview"
        )
    try:
        return trigger_checkpoint(config, job_id, timeout_s=max(10.0, deadline - time.monotonic()))
    except ClusterError:
        if job_details(config, job_id)["state"] == "FINISHED":
            return None
        raise


def trigger_checkpoint(config: Config, job_id: str, timeout_s: float = 60.0) -> int:
    """Take a checkpoint now (Flink's REST trigger) and wait for it; returns its id."""
    before = (last_checkpoint(config, job_id) or {"id": 0})["id"]
    flink_rest.call(config, f"/jobs/{job_id}/checkpoints", method="POST", body={})
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        last = last_checkpoint(config, job_id)
        if last and last["id"] > before:
            return last["id"]
        time.sleep(0.5)
    raise ClusterError(f"job {job_id}: no checkpoint completed within {timeout_s:.0f}s of the trigger")


def cancel_job(config: Config, job_id: str, timeout_s: float = 60.0) -> None:
    flink_rest.call(config, f"/jobs/{job_id}", method="PATCH")
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
# The events source's table name (connectors/flink_io.py); Flink names the source
# operator, and so its numRecordsOut counter, after it.
SOURCE_TABLE = "feed_events_source"
# What the job's Python operators count, and Flink's own counters of its JVM operators:
# records read are the Kafka source's output; duplicates are what Flink's
# Deduplicate operator takes in and does not pass on.
_REPORTED = ("dead_letters", "late_beyond_lateness", "rows_out")
_SOURCE_OPERATOR = f"Source__{SOURCE_TABLE}"
_DEDUP_OPERATOR = "Deduplicate"


def _counter_name(metric_id: str) -> str | None:
    """`<operator>.<name>` -> what it adds to, or None for a metric we do not sum."""
    operator, _, name = metric_id.rpartition(".")
    if name in _REPORTED:
        return name
    if name == "numRecordsOut" and operator.startswith(_SOURCE_OPERATOR):
        return "events_in"
    if name in ("numRecordsIn", "numRecordsOut") and operator.startswith(_DEDUP_OPERATOR):
        return "dedup_" + name
    return None


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
    trigger = flink_rest.call(config, f"/jobs/{job_id}/stop", method="POST", body={"drain": False, "targetDirectory": target})
    request_id = trigger["request-id"]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        status = flink_rest.call(config, f"/jobs/{job_id}/savepoints/{request_id}")
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
    completed = (flink_rest.call(config, f"/jobs/{job_id}/checkpoints").get("latest") or {}).get("completed")
    if not completed:
        return None
    return {
        "id": completed["id"],
        "path": completed.get("external_path"),
        "completed_at": completed.get("latest_ack_timestamp"),
        "duration_ms": completed.get("end_to_end_duration"),
    }


def job_counters(config: Config, job_id: str) -> dict[str, int]:
    """The job's counters (summed over subtasks), as Flink reports them."""
    totals = dict.fromkeys((*_REPORTED, "events_in", "dedup_numRecordsIn", "dedup_numRecordsOut"), 0)
    for vertex in job_details(config, job_id).get("vertices", []):
        base = f"/jobs/{job_id}/vertices/{vertex['id']}/subtasks/metrics"
        names = [m["id"] for m in flink_rest.call(config, base)]
        wanted = [n for n in names if _counter_name(n)]
        if not wanted:
            continue
        for metric in flink_rest.call(config, f"{base}?get={','.join(wanted)}&agg=sum"):
            totals[_counter_name(metric["id"])] += int(float(metric.get("sum", 0)))
    totals["duplicates"] = totals["dedup_numRecordsIn"] - totals["dedup_numRecordsOut"]
    return {name: totals[name] for name in COUNTERS}
