"""The local stack: Kafka (KRaft, one node or `brokers` of them) and one Flink cluster, on loopback.

`up` starts whatever part is not running and waits until it answers; `down`
stops, by pid, what `up` started; `status` says what runs.  The parts:

    paths.py       where the stack lives under `config.state_dir`, its roles, free ports
    processes.py   starting, finding (pid files) and stopping its processes
    kafka.py       the Kafka nodes: properties, logging, storage format, start
    flink.py       the Flink cluster: conf and lib dirs, the Python workers, start
"""

from __future__ import annotations

import json
from typing import Callable

from connectors import flink_rest
from connectors.stack.flink import flink_markers, flink_overview, start_flink
from connectors.stack.kafka import kafka_marker, registered_brokers, replication_warnings, start_kafka
from connectors.stack.paths import StackError, StackPaths, broker_roles, node_id, role_order, taskmanager_roles
from connectors.stack.processes import running_pid, stop_pid, wait_until
from core.config import Config


def _write_stack_file(config: Config) -> None:
    paths = StackPaths(config.state_dir)
    paths.stack_file.write_text(
        json.dumps(
            {
                "kafka_bootstrap": config.kafka_bootstrap,
                "kafka_port": config.kafka_port,
                "kafka_controller_port": config.kafka_controller_port,
                "brokers": config.brokers,
                "flink_rest_url": config.flink_rest_url,
                "flink_rest_port": config.flink_rest_port,
                "flink_rpc_port": config.flink_rpc_port,
            },
            indent=2,
        )
    )


def up(config: Config, *, timeout_s: float = 120.0, echo: Callable[[str], None] = print) -> None:
    paths = StackPaths(config.state_dir)
    paths.root.mkdir(parents=True, exist_ok=True)
    for d in (paths.checkpoints, paths.savepoints, config.parquet_path):
        d.mkdir(parents=True, exist_ok=True)
    _write_stack_file(config)

    kafka_state = start_kafka(config)
    flink_state = start_flink(config)
    echo("; ".join(f"{role}: {state}" for role, state in {**kafka_state, **flink_state}.items()))

    def kafka_alive() -> bool:
        for role in broker_roles(config):
            if not running_pid(paths.pid_file(role), kafka_marker(paths, role)):
                raise StackError(f"Kafka node {role} exited during start; see {paths.kafka_node(role) / 'logs'}")
        # Ready once every node answers on its own port and the cluster counts every
        # node as a broker: replicated topics (and the internal ones) need them all.
        # Asking each node, not just the bootstrap list: a survivor of a lost quorum
        # still lists the dead nodes as brokers.
        wanted = list(range(1, config.brokers + 1))
        return all(registered_brokers(f"127.0.0.1:{port}") == wanted for port, _ in config.kafka_node_ports)

    # Three JVMs starting together on two cores take longer than one.
    kafka_timeout = timeout_s * (1 if config.brokers == 1 else 2)
    wait_until("Kafka", kafka_alive, timeout_s=kafka_timeout, log=paths.kafka / "logs" / "server.log")

    def flink_ready() -> bool:
        for role in ["jobmanager", *taskmanager_roles(config)]:
            if not running_pid(paths.pid_file(role), *flink_markers(paths, role)):
                raise StackError(f"Flink {role} exited during start; see {paths.log_file(role)}")
        overview = flink_overview(config)
        if not overview:
            return False
        # Every TaskManager registered, and a free slot unless running jobs hold them
        # all (up must not wait forever then).
        if overview.get("taskmanagers", 0) < config.taskmanagers:
            return False
        return overview.get("slots-available", 0) > 0 or overview.get("jobs-running", 0) > 0

    wait_until("Flink", flink_ready, timeout_s=timeout_s, log=paths.flink_log)
    echo(f"Kafka bootstrap:  {config.kafka_bootstrap}   (logs: {paths.kafka / 'logs'})")
    echo(f"Flink web UI:     {config.flink_rest_url}   (logs: {paths.flink_log})")
    echo("stop with:        feedtrends down   (or: make down)")


def down(config: Config, *, echo: Callable[[str], None] = print) -> None:
    paths = StackPaths(config.state_dir)
    markers = {
        **{role: flink_markers(paths, role) for role in paths.started_taskmanagers()},
        "jobmanager": flink_markers(paths, "jobmanager"),
        **{role: (kafka_marker(paths, role),) for role in paths.started_brokers()},
    }
    # TaskManager first, so running jobs fail over cleanly instead of losing their JobManager mid-checkpoint.
    for role, role_markers in markers.items():
        pid = running_pid(paths.pid_file(role), *role_markers)
        if pid is None:
            echo(f"{role}: not running")
        else:
            stop_pid(pid)
            echo(f"{role}: stopped (pid {pid})")
        paths.pid_file(role).unlink(missing_ok=True)


def status(config: Config) -> dict:
    paths = StackPaths(config.state_dir)
    brokers = sorted(set(broker_roles(config)) | set(paths.started_brokers()), key=role_order)
    procs = {
        **{role: running_pid(paths.pid_file(role), kafka_marker(paths, role)) for role in brokers},
        "jobmanager": running_pid(paths.pid_file("jobmanager"), *flink_markers(paths, "jobmanager")),
        **{role: running_pid(paths.pid_file(role), *flink_markers(paths, role)) for role in paths.started_taskmanagers()},
    }
    overview = flink_overview(config) if procs["jobmanager"] else None
    listed = flink_rest.probe(config, "/jobs/overview") if overview is not None else None
    jobs = [
        {"id": j["jid"], "name": j["name"], "state": j["state"], "start_time": j.get("start-time")}
        for j in (listed or {}).get("jobs", [])
    ]
    local = config.bootstrap == ""
    registered = registered_brokers(config.kafka_bootstrap) if not local or any(procs[r] for r in brokers) else None
    return {
        "kafka_bootstrap": config.kafka_bootstrap,
        "kafka_running": all(procs[r] is not None for r in broker_roles(config)),
        "kafka_ready": registered is not None,
        # Each broker of the local stack: its process and whether the cluster counts it.
        "brokers": [
            {
                "role": role,
                "node_id": node_id(role),
                "address": f"127.0.0.1:{config.kafka_port + 2 * (node_id(role) - 1)}",
                "pid": procs[role],
                "registered": registered is not None and node_id(role) in registered,
            }
            for role in brokers
        ] if local else [{"node_id": n, "registered": True} for n in registered or []],
        "flink_rest_url": config.flink_rest_url,
        "flink_running": overview is not None,
        "taskmanagers": (overview or {}).get("taskmanagers", 0),
        "slots_total": (overview or {}).get("slots-total", 0),
        "slots_available": (overview or {}).get("slots-available", 0),
        "pids": {k: v for k, v in procs.items() if v},
        "warnings": replication_warnings(config) if registered else [],
        "jobs": jobs,
        "running_jobs": [j for j in jobs if j["state"] == "RUNNING"],
        "state_dir": str(paths.root),
        "logs": {"kafka": str(paths.kafka / "logs"), "flink": str(paths.flink_log)},
    }
