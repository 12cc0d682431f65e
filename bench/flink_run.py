"""Running one Flink job on the bench stack and timing its rebuild of a preloaded topic.

Start: all tasks RUNNING (the source then reads from the earliest offset at once).
End: the job's consumer group has committed the end offsets (committed on checkpoint
completion, as `feedtrends replay` detects catching up) and one more checkpoint has
completed, so the rows emitted after the last record (by timers) are committed too.
The end is the completion time of that checkpoint, so the figure carries up to one
checkpoint interval (5 s) of commit latency: it is rebuild time as a user sees it.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from pathlib import Path

from kafka.errors import KafkaError

from bench import jvm_profile
from bench.common import Stopwatch, ThreadCpu, collapsed_samples, load_average, rss_bytes
from connectors import flink_cluster, flink_rest, stack
from feedtrends import operations
from core.config import Config

BUSY_METRICS = "busyTimeMsPerSecond,backPressuredTimeMsPerSecond,idleTimeMsPerSecond"


def _vertex_metrics(config: Config, job_id: str) -> dict[str, dict[str, float]]:
    out = {}
    for vertex in flink_cluster.job_details(config, job_id).get("vertices", []):
        rows = flink_rest.call(
            config, f"/jobs/{job_id}/vertices/{vertex['id']}/subtasks/metrics?get={BUSY_METRICS}&agg=avg,max"
        )
        out[vertex["name"][:90]] = {r["id"]: float(r.get("avg", 0.0)) for r in rows}
    return out


def taskmanager_pids(config: Config) -> tuple[int, ...]:
    """The stack's TaskManager pids, the first TaskManager first."""
    pids = stack.status(config)["pids"]
    return tuple(pid for role, pid in sorted(pids.items()) if role.startswith("taskmanager"))


def state_sample(config: Config, job_id: str, tm_pids: tuple[int, ...], elapsed: float) -> dict:
    """The latest completed checkpoint's sizes and every TaskManager's RSS, now."""
    rss = [rss_bytes(pid) / 2**20 for pid in tm_pids]
    out = {"t_s": round(elapsed, 1), "tm_rss_mb": rss[0] if rss else None, "tms_rss_mb": rss, "load": load_average()}
    try:
        completed = (flink_rest.call(config, f"/jobs/{job_id}/checkpoints").get("latest") or {}).get("completed")
        # The job's vertices once per sample, for both the checkpoint's shares and the source's drift.
        vertices = flink_cluster.job_details(config, job_id).get("vertices", [])
    except flink_cluster.ClusterError:
        return out
    if completed:
        out.update(
            checkpoint=completed.get("id"),
            state_size_kb=completed.get("state_size", 0) / 1024,
            checkpointed_size_kb=completed.get("checkpointed_size", 0) / 1024,
        )
        try:
            out["state_by_vertex_kb"] = checkpoint_by_vertex(config, job_id, completed["id"], vertices)
        except flink_cluster.ClusterError:
            pass
    try:
        out.update(source_drift(config, job_id, vertices))
    except flink_cluster.ClusterError:
        pass
    return out


def source_drift(config: Config, job_id: str, vertices: list[dict]) -> dict:
    """How far the source's subtasks are apart now: in records read and in event time (the
    source operator's output watermark).  Flink's watermark is the slowest reader's, so every
    window between the slowest and the fastest stays open downstream, with its state."""
    for vertex in vertices:
        if not vertex["name"].startswith("Source:") or vertex.get("parallelism", 1) < 2:
            continue
        path = f"/jobs/{job_id}/vertices/{vertex['id']}/subtasks/metrics"
        # Operator metrics are named after the operator: "Source__<name>.currentOutputWatermark".
        watermark = next(
            (m["id"] for m in flink_rest.call(config, path)
             if m["id"].startswith("Source__") and m["id"].endswith(".currentOutputWatermark")),
            None,
        )
        wanted = ["numRecordsOut"] + ([watermark] if watermark else [])
        got = {r["id"]: r for r in flink_rest.call(config, f"{path}?get={','.join(wanted)}&agg=min,max")}
        out = {}
        if "numRecordsOut" in got:
            out["source_records_apart"] = int(got["numRecordsOut"]["max"] - got["numRecordsOut"]["min"])
        # A subtask that has sent no watermark yet reports Long.MIN_VALUE: no drift to speak of.
        if watermark in got and got[watermark]["min"] > 0:
            out["source_event_time_apart_s"] = (got[watermark]["max"] - got[watermark]["min"]) / 1000
        return out
    return {}


def checkpoint_by_vertex(config: Config, job_id: str, checkpoint_id: int, vertices: list[dict]) -> dict[str, float]:
    """One checkpoint's state size per job vertex (KiB), by vertex name: which operator's state
    makes the total move."""
    names = {v["id"]: v["name"] for v in vertices}
    tasks = flink_rest.call(config, f"/jobs/{job_id}/checkpoints/details/{checkpoint_id}").get("tasks", {})
    return {names.get(vid, vid)[:60]: t.get("state_size", 0) / 1024 for vid, t in tasks.items() if t.get("state_size")}


def _profile(pid: int, seconds: int, out: Path) -> subprocess.Popen | None:
    """py-spy on the TaskManager: the job's Python runs embedded in it (thread mode)."""
    pyspy = Path(sys.executable).with_name("py-spy")
    if not pyspy.exists():
        return None
    out.parent.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen(
        [str(pyspy), "record", "--pid", str(pid), "--duration", str(seconds), "--rate", "50",
         "--nonblocking", "--format", "raw", "--output", str(out)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )


def summarize_profile(path: Path, top: int = 15) -> list[tuple[str, float]]:
    """Leaf-function share of samples from a py-spy raw (collapsed) profile."""
    leaf: dict[str, int] = {}
    total = 0
    for stack_text, n in collapsed_samples(path):
        frames = stack_text.split(";")
        total += n
        name = frames[-1] if frames else "?"
        leaf[name] = leaf.get(name, 0) + n
    return [(k, 100.0 * v / total) for k, v in sorted(leaf.items(), key=lambda kv: -kv[1])[:top]] if total else []


def inclusive_profile(path: Path, needles: tuple[str, ...]) -> dict[str, float]:
    """Share of samples whose stack contains each needle (inclusive time)."""
    hits = dict.fromkeys(needles, 0)
    total = 0
    for stack_text, n in collapsed_samples(path):
        total += n
        for needle in needles:
            if needle in stack_text:
                hits[needle] += n
    return {k: 100.0 * v / total for k, v in hits.items()} if total else {}


# How long async-profiler samples a rebuild (from its first committed records).
JVM_PROFILE_S = 40


def measure_rebuild(
    config: Config,
    targets: dict[int, int],
    *,
    job: Path | None,
    timeout_s: float,
    log=print,
    profile_to: Path | None = None,
    state_every_s: float | None = None,
    jvm_profile_to: Path | None = None,
) -> dict:
    """Submit (the trends job when `job` is None), time the rebuild, cancel the job.

    With `state_every_s`, also sample the checkpoint size and TaskManager RSS that often
    (the soak: a rebuild long enough to pass the dedup TTL many times).  With
    `jvm_profile_to` (a path prefix), run async-profiler on every TaskManager for
    JVM_PROFILE_S seconds from the first committed records (`bench.jvm_profile`)."""
    pids = stack.status(config)["pids"]
    flink_pids = tuple(pid for role, pid in pids.items() if role.startswith("taskmanager") or role == "jobmanager")
    if job is None:
        job_id = operations.start_job(config, None, echo=lambda line: None)
    else:
        job_id = flink_cluster.submit(config, job=job)
        flink_cluster.wait_for_all_tasks_running(config, job_id)
    log(f"  job {job_id} running; load {load_average()}")
    watch = Stopwatch(flink_pids)
    broker = Stopwatch((pids["kafka"],))
    threads = ThreadCpu(flink_pids)
    watch.start()
    broker.start()
    threads.start()
    deadline = time.monotonic() + timeout_s
    samples: dict[str, list[dict[str, float]]] = {}
    profiler = None
    loads = [load_average()]
    tms = taskmanager_pids(config)
    state_samples: list[dict] = []
    jvm_lib = jvm_profile.native_library(jvm_profile_to.parent) if jvm_profile_to is not None else None
    jvm_started: float | None = None
    jvm_profiles: list[Path] = []
    try:
        last_sample = last_state = 0.0
        while True:
            try:
                done, consumed, total = operations._caught_up(config, targets)
            except KafkaError:  # the group has no coordinator until its first commit
                done, consumed, total = False, 0, sum(targets.values())
            if done:
                break
            now = time.monotonic()
            if state_every_s and now - last_state >= state_every_s:
                last_state = now
                state_samples.append({**state_sample(config, job_id, tms, time.time() - watch.t0), "consumed": consumed})
            if now - last_sample >= 5:
                last_sample = now
                loads.append(load_average())
                try:
                    for name, m in _vertex_metrics(config, job_id).items():
                        samples.setdefault(name, []).append(m)
                except flink_cluster.ClusterError:
                    pass
                log(f"  committed {consumed}/{total} ({time.time() - watch.t0:.0f}s)")
                if profile_to is not None and profiler is None and consumed > 0 and "taskmanager" in pids:
                    profiler = _profile(pids["taskmanager"], 20, profile_to)
                if jvm_lib is not None and jvm_started is None and consumed > 0:
                    jvm_profile.start(tms, jvm_lib)
                    jvm_started = now
            if jvm_started is not None and not jvm_profiles and now - jvm_started >= JVM_PROFILE_S:
                jvm_profiles = jvm_profile.stop(tms, jvm_lib, jvm_profile_to)
            state = flink_cluster.job_details(config, job_id)["state"]
            if state not in ("RUNNING", "RESTARTING", "INITIALIZING", "CREATED"):
                raise RuntimeError(f"job {job_id} is {state} before catching up")
            if now > deadline:
                raise RuntimeError(f"job {job_id} did not catch up within {timeout_s:.0f}s ({consumed}/{total})")
            time.sleep(1)
        t_caught = time.time()
        first = (flink_cluster.last_checkpoint(config, job_id) or {"id": 0})["id"]
        while True:
            last = flink_cluster.last_checkpoint(config, job_id) or {"id": 0}
            if last["id"] > first:
                break
            if time.monotonic() > deadline:
                raise RuntimeError("caught up, but no checkpoint completed afterwards")
            time.sleep(0.5)
        if state_every_s:
            state_samples.append({**state_sample(config, job_id, tms, time.time() - watch.t0), "consumed": consumed})
        cpu = watch.cpu()
        broker_cpu = broker.cpu()
        thread_cpu = threads.by_name()
        t_end = last["completed_at"] / 1000
        seconds = t_end - watch.t0
        events = sum(targets.values())
        checkpoints = flink_rest.call(config, f"/jobs/{job_id}/checkpoints")
        counts = checkpoints.get("counts", {})
        durations = [c.get("end_to_end_duration", 0) for c in checkpoints.get("history", [])]
        counters = {}
        try:
            counters = flink_cluster.job_counters(config, job_id)
        except flink_cluster.ClusterError:
            pass
    finally:
        if jvm_started is not None and not jvm_profiles:
            jvm_profiles = jvm_profile.stop(tms, jvm_lib, jvm_profile_to)
        if profiler is not None:
            try:
                profiler.wait(timeout=40)
            except subprocess.TimeoutExpired:
                profiler.kill()
                profiler.wait()
        try:
            flink_cluster.cancel_job(config, job_id)
        except flink_cluster.ClusterError as exc:
            log(f"  cancel {job_id}: {exc}")
    busy = {
        name: {k: statistics.mean(s[k] for s in ss if k in s) for k in BUSY_METRICS.split(",") if any(k in s for s in ss)}
        for name, ss in samples.items()
    }
    return {
        "job_id": job_id,
        "events": events,
        "seconds": seconds,
        "seconds_to_offsets_committed": t_caught - watch.t0,
        "events_per_s": events / seconds,
        "cpu_s": cpu,
        "broker_cpu_s": broker_cpu,
        "thread_cpu_s": thread_cpu,
        "checkpoints_completed": counts.get("completed"),
        "checkpoints_failed": counts.get("failed"),
        "checkpoint_duration_ms_median": statistics.median(durations) if durations else None,
        "busy": busy,
        "counters": counters,
        "load": loads,
        **({"state_samples": state_samples} if state_every_s else {}),
        **({"jvm_profile": {"files": [str(p) for p in jvm_profiles], "shares": jvm_profile.shares(jvm_profiles)}}
           if jvm_profiles else {}),
    }
