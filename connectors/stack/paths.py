"""Where the local stack lives, what its processes are called, and free loopback ports.

Everything lives under `config.state_dir`:

    state/kafka/{server.properties,data/,logs/,kafka.pid,cluster.json}
    state/kafka-2/, state/kafka-3/ ...   (the other nodes of a `brokers: 3` cluster)
    state/flink/{conf/,lib/,log/,tmp/,jobmanager.pid,taskmanager.pid}
    state/checkpoints/  state/savepoints/  state/parquet/
    state/stack.json    (ports, so `status` and clients find the stack)

A role names one process: "kafka", "kafka-2", ... (node i of the Kafka cluster),
"jobmanager", "taskmanager", "taskmanager-2", ...
"""

from __future__ import annotations

import random
import socket
from dataclasses import dataclass
from pathlib import Path

from core.config import Config
from core.errors import Refused


class StackError(Refused):
    """The stack could not be started, stopped or reached (message says why)."""


@dataclass(frozen=True)
class StackPaths:
    root: Path

    @property
    def kafka(self) -> Path:
        return self.root / "kafka"

    @property
    def flink(self) -> Path:
        return self.root / "flink"

    @property
    def flink_conf(self) -> Path:
        return self.flink / "conf"

    @property
    def flink_lib(self) -> Path:
        return self.flink / "lib"

    @property
    def flink_log(self) -> Path:
        return self.flink / "log"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def savepoints(self) -> Path:
        return self.root / "savepoints"

    @property
    def stack_file(self) -> Path:
        return self.root / "stack.json"

    def kafka_node(self, role: str) -> Path:
        """A Kafka node's own dir: "kafka" (node 1), "kafka-2", ..."""
        return self.root / role

    def pid_file(self, name: str) -> Path:
        return (self.kafka_node(name) if _is_kafka_role(name) else self.flink) / f"{name}.pid"

    def started_brokers(self) -> list[str]:
        """Every Kafka node with a pid file: "kafka", "kafka-2", ..."""
        found = [p.parent.name for p in self.root.glob("kafka*/kafka*.pid")] if self.root.exists() else []
        return sorted(set(found) | {"kafka"}, key=role_order)

    def started_taskmanagers(self) -> list[str]:
        """Every TaskManager with a pid file: "taskmanager", "taskmanager-2", ..."""
        found = sorted(p.stem for p in self.flink.glob("taskmanager*.pid")) if self.flink.exists() else []
        return sorted(set(found) | {"taskmanager"}, key=role_order)

    def log_file(self, name: str) -> Path:
        return (self.kafka_node(name) / "logs" if _is_kafka_role(name) else self.flink_log) / f"{name}.out"


def _is_kafka_role(name: str) -> bool:
    return name == "kafka" or name.startswith("kafka-")


def broker_roles(config: Config) -> list[str]:
    """The Kafka nodes `up` starts; node i is role "kafka" (i = 1) or "kafka-<i>"."""
    return ["kafka"] + [f"kafka-{i}" for i in range(2, config.brokers + 1)]


def node_id(role: str) -> int:
    return 1 if role == "kafka" else int(role.rpartition("-")[2])


def broker_role(node: int) -> str:
    return "kafka" if node == 1 else f"kafka-{node}"


def free_ports(count: int) -> list[int]:
    """Distinct free TCP ports on 127.0.0.1 (held open together so they differ), for private stacks."""
    socks = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def free_port_block(count: int, attempts: int = 50) -> int:
    """The first of `count` consecutive free ports on 127.0.0.1 (a private multi-node Kafka needs them)."""
    for _ in range(attempts):
        base = random.randint(20000, 60000 - count)
        socks = []
        try:
            for port in range(base, base + count):
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                socks.append(s)
                s.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise StackError(f"no {count} consecutive free loopback ports found in {attempts} attempts")


def role_order(role: str) -> tuple[int, str]:
    number = role.rpartition("-")[2]
    return (int(number) if number.isdigit() else 1, role)


def taskmanager_roles(config: Config) -> list[str]:
    """The TaskManagers `up` starts: one JVM (and one embedded Python, one GIL) each."""
    return ["taskmanager"] + [f"taskmanager-{i}" for i in range(2, config.taskmanagers + 1)]
