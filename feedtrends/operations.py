"""Operating the trends job: submit, stop, resume, status, replay, versions.

Each command works on the *current output version* (connectors/versions.py): its
job name, topics and Parquet directory.  Messages are for people; `--json` output
is for scripts.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import sys
import time
from pathlib import Path

from connectors import flink_cluster, stack
from connectors.flink_cluster import ClusterError
from connectors.topics import consumer_lag, delete_topics, end_offsets, ensure_topics, product_topics
from connectors.versions import OutputVersion, config_for, current_version, load_versions, next_version, save_versions
from core.config import Config
from core.errors import BadInput, Refused


class OperationError(Refused):
    """An operation refused, failed, or found nothing to do."""


class OperationInputError(BadInput):
    """An operation's argument names nothing usable (a savepoint, a version, a timeout)."""


def _current(config: Config) -> Config:
    return config_for(config, current_version(config))


def start_job(config: Config, savepoint: str | None, *, echo=print) -> str:
    free = flink_cluster.free_slots(config)
    if free < config.parallelism:
        # With slot sharing a job needs as many slots as its parallelism.
        raise OperationError(
            f"{config.job_name} needs {config.parallelism} free task slot(s), the cluster has {free}; "
            "stop another job or add a TaskManager"
        )
    ensure_topics(config, product_topics(config))
    job_id = flink_cluster.submit(config, savepoint=savepoint)
    flink_cluster.record_job(config, job_id, restored_from=savepoint)
    flink_cluster.wait_for_all_tasks_running(config, job_id)
    # Until a checkpoint holds the readers' partitions, a restore could lose them.
    flink_cluster.wait_until_reading(config, job_id, len(end_offsets(config, config.events_topic)))
    echo(f"job {config.job_name}: {job_id}")
    echo(f"web UI: {config.flink_rest_url}/#/job/{job_id}/overview")
    return job_id


def _refuse_if_running(config: Config) -> None:
    job = flink_cluster.running_job(config)
    if job:
        raise OperationError(f"job {config.job_name} is already running as {job['jid']}; not starting a second instance")


def submit(config: Config, *, echo=print) -> str:
    """Start the current version's job, resuming from its latest checkpoint or savepoint if any."""
    vconf = _current(config)
    _refuse_if_running(vconf)
    point = flink_cluster.latest_restore_point(vconf)
    if point:
        echo(f"resuming from the latest retained {point[0]}: {point[1]}")
    else:
        echo("no retained checkpoint or savepoint: starting from the earliest offset")
    return start_job(vconf, point[1] if point else None, echo=echo)


def resume(config: Config, savepoint: str | None, *, echo=print) -> str:
    vconf = _current(config)
    if savepoint:
        path = Path(savepoint.removeprefix("file:")).expanduser()
        if not (path / "_metadata").exists():
            raise OperationInputError(f"no such savepoint or checkpoint: {savepoint} (no _metadata there)")
    _refuse_if_running(vconf)
    if savepoint:
        location = str(path.resolve())
    else:
        point = flink_cluster.latest_restore_point(vconf)
        if not point:
            raise OperationError(f"no retained checkpoint or savepoint of {vconf.job_name} to resume from")
        location = point[1]
    echo(f"resuming {vconf.job_name} from {location}")
    return start_job(vconf, location, echo=echo)


def stop(config: Config, *, savepoint: bool, echo=print) -> str | None:
    vconf = _current(config)
    job = flink_cluster.running_job(vconf)
    if not job:
        raise OperationError(f"no running job named {vconf.job_name}")
    if savepoint:
        location = flink_cluster.stop_with_savepoint(vconf, job["jid"])
        echo(f"stopped {job['jid']} with savepoint {location}")
        echo("resume with: feedtrends resume")
        return location
    flink_cluster.cancel_job(vconf, job["jid"])
    point = flink_cluster.latest_restore_point(vconf)
    echo(f"cancelled {job['jid']}" + (f"; its last checkpoint is retained: {point[1]}" if point else ""))
    return None


def status(config: Config) -> dict:
    info = stack.status(config)
    current, versions = load_versions(config)
    info["current_version"] = current
    info["versions"] = {name: dataclasses.asdict(v) | {"parquet_dir": str(v.parquet_dir)} for name, v in versions.items()}
    if not info["flink_running"]:
        return info
    for job in info["jobs"]:
        try:
            if job["state"] == "RUNNING":
                job["last_checkpoint"] = flink_cluster.last_checkpoint(config, job["id"])
                job["counters"] = flink_cluster.job_counters(config, job["id"])
        except ClusterError as exc:
            job["error"] = str(exc)
        if info["kafka_ready"]:
            lag = consumer_lag(config, job["name"], config.events_topic)
            job["consumer_lag"] = {"total": sum(p["lag"] for p in lag.values()), "partitions": lag}
    return info


def print_status(info: dict) -> None:
    print(f"kafka:   {'ready' if info['kafka_ready'] else 'down'}  {info['kafka_bootstrap']}")
    brokers = info.get("brokers", [])
    if len(brokers) > 1:  # one line per node of a multi-broker cluster
        for b in brokers:
            state = "registered" if b["registered"] else ("running, not registered" if b.get("pid") else "down")
            pid = f"  pid {b['pid']}" if b.get("pid") else ""
            print(f"         broker {b['node_id']}  {b.get('address', ''):<16} {state}{pid}")
    for line in info.get("warnings", []):
        print(line)
    flink = f"{info['taskmanagers']} taskmanager(s), {info['slots_available']}/{info['slots_total']} slots free"
    print(f"flink:   {'up' if info['flink_running'] else 'down'}  {info['flink_rest_url']}  {flink if info['flink_running'] else ''}")
    print(f"output:  current version {info['current_version']} of {', '.join(info['versions'])}")
    for job in info["jobs"]:
        print(f"job:     {job['id']}  {job['state']:<9} {job['name']}")
        checkpoint = job.get("last_checkpoint")
        if checkpoint:
            age = (time.time() * 1000 - checkpoint["completed_at"]) / 1000
            print(f"         last checkpoint #{checkpoint['id']} {age:.0f}s ago: {checkpoint['path']}")
        if "consumer_lag" in job:
            print(f"         consumer lag: {job['consumer_lag']['total']} events")
        if job.get("counters"):
            print("         counters: " + ", ".join(f"{k}={v}" for k, v in job["counters"].items()))


def _caught_up(config: Config, targets: dict[int, int]) -> tuple[bool, int, int]:
    lag = consumer_lag(config, config.job_name, config.events_topic)
    consumed = sum(min(lag[p]["committed"] or 0, end) for p, end in targets.items() if p in lag)
    total = sum(targets.values())
    done = all((lag.get(p, {}).get("committed") or 0) >= end for p, end in targets.items())
    return done, consumed, total


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _mark_version(config: Config, name: str, **changes) -> None:
    current, versions = load_versions(config)
    if name in versions:
        versions[name] = dataclasses.replace(versions[name], **changes)
        save_versions(config, current, versions)


def _abandon_replay(config: Config, version: OutputVersion, reason: str, *, echo=print) -> None:
    """Stop the job a replay started and mark its version failed, saying why.

    Never raises: it runs while another error (or Ctrl-C) is on its way out.
    """
    vconf = config_for(config, version)
    note = reason
    try:
        job = flink_cluster.running_job(vconf)
        if job:
            flink_cluster.cancel_job(vconf, job["jid"])
            note += f"; its job {job['jid']} was cancelled"
    except Exception as exc:  # the cluster may be what failed
        note += f"; could not check or cancel its job {vconf.job_name}: {' '.join(str(exc).split())}"
    try:
        _mark_version(config, version.name, state="failed", owner_pid=0, note=note)
        echo(f"version {version.name} marked failed ({note}); remove it with `feedtrends versions remove {version.name}`")
    except Exception as exc:
        echo(f"version {version.name}: could not record the failure: {exc}")


def reconcile_versions(config: Config, *, echo=print) -> None:
    """A version still "building" whose replay process is gone (killed) is abandoned now."""
    _, versions = load_versions(config)
    for version in versions.values():
        if version.state == "building" and not _alive(version.owner_pid):
            owner = f"pid {version.owner_pid}" if version.owner_pid else "an earlier build"
            _abandon_replay(config, version, f"the replay building it ({owner}) exited before it finished", echo=echo)


def replay(config: Config, *, bounded: bool, timeout_s: float = 3600.0, echo=print) -> str:
    """Rebuild from the earliest offset, with empty state, into a new output version.

    If anything fails or interrupts it (Ctrl-C, SIGTERM) after the version is
    registered, the job it started is cancelled and the version is marked
    `failed` with the reason: no job keeps running that nothing tracks.
    """
    if not timeout_s > 0:
        raise OperationInputError(f"--timeout must be a positive number of seconds, not {timeout_s}")
    reconcile_versions(config, echo=echo)
    targets = end_offsets(config, config.events_topic)
    if not targets:
        raise OperationError(f"topic {config.events_topic} does not exist: nothing to replay")
    current, versions = load_versions(config)
    version = dataclasses.replace(next_version(config), owner_pid=os.getpid())
    versions[version.name] = version
    save_versions(config, current, versions)
    try:
        _build_version(config, version, targets, bounded=bounded, timeout_s=timeout_s, echo=echo)
    except KeyboardInterrupt:
        _abandon_replay(config, version, "interrupted", echo=echo)
        raise
    except SystemExit as exc:
        _abandon_replay(config, version, f"terminated (exit {exc.code})", echo=echo)
        raise
    except BaseException as exc:
        _abandon_replay(config, version, f"failed: {' '.join(str(exc).split()) or type(exc).__name__}", echo=echo)
        raise
    _, versions = load_versions(config)
    versions[version.name] = dataclasses.replace(versions[version.name], state="live", owner_pid=0)
    save_versions(config, version.name, versions)  # live and current in one atomic write
    echo(f"version {version.name} is now current (query reads it); older versions stay until `feedtrends versions remove`")
    return version.name


def _build_version(
    config: Config, version: OutputVersion, targets: dict[int, int], *, bounded: bool, timeout_s: float, echo
) -> None:
    vconf = config_for(config, version)
    echo(f"replaying {config.events_topic} from the earliest offset into version {version.name}")
    echo(f"  topic {version.trends_topic}, Parquet {version.parquet_dir}")
    job_id = start_job(vconf, None, echo=echo)

    deadline = time.monotonic() + timeout_s
    interactive = sys.stderr.isatty()
    while True:
        done, consumed, total = _caught_up(vconf, targets)
        line = f"  consumed {consumed}/{total} events ({100 * consumed / max(total, 1):.0f}%)"
        print("\r" + line if interactive else line, end="" if interactive else "\n", file=sys.stderr, flush=True)
        if done:
            break
        if flink_cluster.job_details(vconf, job_id)["state"] not in ("RUNNING", "RESTARTING", "INITIALIZING", "CREATED"):
            raise OperationError(f"replay job {job_id} stopped before catching up; see {vconf.flink_rest_url}")
        if time.monotonic() > deadline:
            raise OperationError(f"replay did not catch up within {timeout_s:.0f}s")
        time.sleep(2)
    if interactive:
        print(file=sys.stderr)
    # A partition that has no more data holds the watermark back until it counts as
    # idle; the live job has passed that point, so wait it out here too, or windows
    # the live version closed would still be open in the new one.
    time.sleep(vconf.idleness_ms / 1000)
    # The checkpoint that committed the last offsets may still be committing the rows
    # that timers emitted right after them: let two more checkpoints complete.
    first = (flink_cluster.last_checkpoint(vconf, job_id) or {"id": 0})["id"]
    while (flink_cluster.last_checkpoint(vconf, job_id) or {"id": 0})["id"] < first + 2:
        if time.monotonic() > deadline:
            raise OperationError("replay caught up but no checkpoint completed afterwards")
        time.sleep(1)
    if bounded:
        location = flink_cluster.stop_with_savepoint(vconf, job_id)
        echo(f"caught up with the end offsets seen at the start; stopped with savepoint {location}")


def remove_version(config: Config, name: str, *, echo=print) -> None:
    current, versions = load_versions(config)
    if name not in versions:
        raise OperationInputError(f"no such version: {name} (have: {', '.join(versions)})")
    if name == current:
        raise OperationError(f"{name} is the current version; replay or switch before removing it")
    if versions[name].state == "building" and _alive(versions[name].owner_pid):
        raise OperationError(f"{name} is being built by a replay (pid {versions[name].owner_pid}); stop that first")
    vconf = config_for(config, versions[name])
    if flink_cluster.running_job(vconf):
        raise OperationError(f"the job of {name} ({vconf.job_name}) is running; stop it first")
    delete_topics(vconf, [vconf.trends_topic, vconf.dlq_topic, vconf.late_topic])
    shutil.rmtree(vconf.parquet_path, ignore_errors=True)
    del versions[name]
    save_versions(config, current, versions)
    echo(f"removed version {name}: topics {vconf.trends_topic}, {vconf.dlq_topic}, {vconf.late_topic} and {vconf.parquet_path}")


def add_operations_arguments(sub: argparse._SubParsersAction, config_of) -> None:
    """Wire submit/stop/resume/status/replay/versions into the CLI."""

    # Errors go up to the CLI's one handler (feedtrends/cli.py), which prints them
    # in one line and picks the exit code from their kind.
    def run(func):
        def command(args: argparse.Namespace) -> int:
            return func(config_of(args), args) or 0

        return command

    def _status(config: Config, args) -> int:
        info = status(config)
        if args.json:
            print(json.dumps(info, indent=2, default=str))
        else:
            print_status(info)
        return 0

    def _versions(config: Config, args) -> int:
        if args.action == "remove":
            remove_version(config, args.name)
            return 0
        reconcile_versions(config, echo=lambda line: print(line, file=sys.stderr))
        current, versions = load_versions(config)
        for name, v in versions.items():
            note = f"  ({v.note})" if v.note else ""
            print(f"{'*' if name == current else ' '} {name:<4} {v.state:<9} {v.trends_topic:<24} {v.parquet_dir}{note}")
        return 0

    p = sub.add_parser("submit", help="submit the trends job (resumes from its latest checkpoint/savepoint)")
    p.add_argument("--jobmanager", dest="jobmanager_addr", metavar="HOST:PORT", help="Flink REST address")
    p.set_defaults(func=run(lambda c, a: submit(c) and 0))
    p = sub.add_parser("stop", help="stop the trends job (with --savepoint: stop-with-savepoint)")
    p.add_argument("--savepoint", action="store_true")
    p.add_argument("--jobmanager", dest="jobmanager_addr", metavar="HOST:PORT")
    p.set_defaults(func=run(lambda c, a: stop(c, savepoint=a.savepoint) and 0))
    p = sub.add_parser("resume", help="start the job from a savepoint (default: the latest checkpoint or savepoint)")
    p.add_argument("savepoint", nargs="?", metavar="SAVEPOINT")
    p.add_argument("--jobmanager", dest="jobmanager_addr", metavar="HOST:PORT")
    p.set_defaults(func=run(lambda c, a: resume(c, a.savepoint) and 0))
    p = sub.add_parser("status", help="stack, jobs, last checkpoint, consumer lag, counters")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run(_status))
    p = sub.add_parser("replay", help="rebuild from the earliest offset into a new output version")
    p.add_argument("--bounded", action="store_true", help="stop at the end offsets seen at the start")
    p.add_argument("--timeout", type=float, default=3600.0, help="seconds to wait for catching up")
    p.set_defaults(func=run(lambda c, a: replay(c, bounded=a.bounded, timeout_s=a.timeout) and 0))
    p = sub.add_parser("versions", help="list output versions, or remove an old one")
    p.add_argument("action", nargs="?", choices=["list", "remove"], default="list")
    p.add_argument("name", nargs="?")
    p.set_defaults(func=run(_versions))
