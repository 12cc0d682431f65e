"""The local stack: Kafka (KRaft, one node or `brokers` of them) and one Flink cluster, on loopback.

`up` starts whatever part is not running and waits until it answers; `down`
stops, by pid, what `up` started.  Everything lives under `config.state_dir`:

    state/kafka/{server.properties,data/,logs/,kafka.pid,cluster.json}
    state/kafka-2/, state/kafka-3/ ...   (the other nodes of a `brokers: 3` cluster)
    state/flink/{conf/,lib/,log/,tmp/,jobmanager.pid,taskmanager.pid}
    state/checkpoints/  state/savepoints/  state/parquet/
    state/stack.json    (ports, so `status` and clients find the stack)

Kafka runs from the jars Maven copied into `.cache/jars/kafka`; Flink runs from
the `bin/` of the pip-installed PyFlink, with a lib dir that adds our connector
jars (`.cache/jars/flink`) to PyFlink's own `lib/`.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import subprocess
import sys
import sysconfig
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import yaml

from core.config import REPO_ROOT, Config
from core.errors import Refused

FLINK_CONF_TEMPLATE = REPO_ROOT / "flink-conf" / "config.yaml"


class StackError(Refused):
    """The stack could not be started, stopped or reached (message says why)."""


# --------------------------------------------------------------------------- paths


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
        return sorted(set(found) | {"kafka"}, key=_role_order)

    def started_taskmanagers(self) -> list[str]:
        """Every TaskManager with a pid file: "taskmanager", "taskmanager-2", ..."""
        found = sorted(p.stem for p in self.flink.glob("taskmanager*.pid")) if self.flink.exists() else []
        return sorted(set(found) | {"taskmanager"}, key=_role_order)

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
    import random

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


def pyflink_home() -> Path:
    """The pip distribution of PyFlink: it ships Flink's bin/, lib/ and opt/."""
    import pyflink  # imported lazily: `feedtrends down` should not need the JVM side

    return Path(pyflink.__file__).resolve().parent


def flink_env(config: Config) -> dict[str, str]:
    """Environment for Flink's scripts and for PyFlink's local gateway."""
    paths = StackPaths(config.state_dir)
    env = dict(os.environ)
    env.update(
        FLINK_HOME=str(pyflink_home()),
        FLINK_CONF_DIR=str(paths.flink_conf),
        FLINK_LIB_DIR=str(paths.flink_lib),
        FLINK_LOG_DIR=str(paths.flink_log),
    )
    return env


# --------------------------------------------------------------------------- processes


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
    return None if _is_zombie(pid) else pid  # a zombie is dead for our purposes


def _spawn(cmd: list[str], *, log: Path, pid_file: Path, env: dict[str, str]) -> int:
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        # A new session makes the child the leader of its own process group, so
        # `down` can stop it and anything it forked (Python workers) by that id.
        proc = subprocess.Popen(
            cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, start_new_session=True
        )
    pid_file.write_text(str(proc.pid))
    return proc.pid


def _stop_pid(pid: int, timeout_s: float = 30.0) -> None:
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
            if not _cmdline(pid) or _is_zombie(pid):
                return
            time.sleep(0.2)


def _is_zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1].startswith("Z")
    except OSError:
        return True


def _wait(what: str, check: Callable[[], bool], *, timeout_s: float, log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.5)
    hint = f"; see {log}" if log else ""
    raise StackError(f"{what} did not become ready within {timeout_s:.0f}s{hint}")


# --------------------------------------------------------------------------- kafka


def _kafka_properties(config: Config, paths: StackPaths, role: str = "kafka") -> str:
    node, nodes = node_id(role), config.kafka_node_ports
    port, cport = nodes[node - 1]
    # Internal topics (group offsets, transaction state) as replicated as ours:
    # 3 copies, 2 in sync, once there are three nodes.
    internal_rf = min(3, config.brokers)
    internal_min_isr = 2 if internal_rf >= 3 else 1
    # The longest transaction Flink's sink may hold open; the sink's own
    # transaction.timeout.ms (set by the job) must stay below it.
    max_txn_ms = 60 * 60 * 1000
    props = {
        "process.roles": "broker,controller",
        "node.id": str(node),
        "controller.quorum.voters": ",".join(f"{i}@127.0.0.1:{c}" for i, (_, c) in enumerate(nodes, start=1)),
        "listeners": f"PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{cport}",
        "advertised.listeners": f"PLAINTEXT://127.0.0.1:{port}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
        "log.dirs": str(paths.kafka_node(role) / "data"),
        "num.partitions": "1",
        "auto.create.topics.enable": "false",
        "offsets.topic.replication.factor": str(internal_rf),
        "offsets.topic.num.partitions": "4",
        "transaction.state.log.replication.factor": str(internal_rf),
        "transaction.state.log.min.isr": str(internal_min_isr),
        "transaction.state.log.num.partitions": "4",
        "share.coordinator.state.topic.replication.factor": str(internal_rf),
        "share.coordinator.state.topic.min.isr": str(internal_min_isr),
        # The broker default for topics created by anyone else; ours set their own.
        "min.insync.replicas": str(internal_min_isr),
        "default.replication.factor": str(internal_rf),
        # A replica that lost data must not become leader: acknowledged rows stay.
        "unclean.leader.election.enable": "false",
        "transaction.max.timeout.ms": str(max_txn_ms),
        "group.initial.rebalance.delay.ms": "0",
        # Kafka 4 rejects record timestamps more than an hour ahead by default.  We
        # want such records in the topic: the job routes them to the dead-letter
        # topic with a reason instead of the producer failing a whole batch.
        "log.message.timestamp.after.max.ms": str(2**63 - 1),
        # Replay from the earliest offset must find every event: keep them all locally.
        "log.retention.ms": "-1",
        "log.segment.bytes": str(256 * 1024 * 1024),
    }
    if config.brokers > 1:
        # Three nodes share two cores with Flink: fewer threads each.
        props.update({"num.network.threads": "2", "num.io.threads": "2", "background.threads": "2"})
    return "".join(f"{k}={v}\n" for k, v in props.items())


_KAFKA_LOG4J2 = """\
status = warn
appender.file.type = RollingFile
appender.file.name = file
appender.file.fileName = {logs}/server.log
appender.file.filePattern = {logs}/server.log.%i
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
appender.file.policies.type = Policies
appender.file.policies.size.type = SizeBasedTriggeringPolicy
appender.file.policies.size.size = 50MB
appender.file.strategy.type = DefaultRolloverStrategy
appender.file.strategy.max = 3
rootLogger.level = info
rootLogger.appenderRef.file.ref = file
logger.kafka.name = kafka
logger.kafka.level = info
logger.state.name = state.change.logger
logger.state.level = warn
"""


def _kafka_java(config: Config, node_dir: Path, main: str, *args: str) -> list[str]:
    jars = config.jars_dir / "kafka"
    if not any(jars.glob("kafka_*.jar")):
        raise StackError(f"Kafka jars missing in {jars}: run `make jars` (Maven resolves them)")
    # A cluster of nodes on one small machine: small heaps (a node of this stack
    # holds little: the page cache, not the heap, serves the logs).
    heap = ["-Xms256m", "-Xmx1g"] if config.brokers == 1 else ["-Xms128m", "-Xmx384m"]
    return [
        "java",
        *heap,
        "-XX:+UseG1GC",
        f"-Dlog4j2.configurationFile={node_dir / 'log4j2.properties'}",
        f"-Dkafka.logs.dir={node_dir / 'logs'}",
        "-cp",
        str(jars / "*"),
        main,
        *args,
    ]


def _admin(bootstrap: str, timeout_ms: int = 3000):
    from kafka import KafkaAdminClient

    return KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=timeout_ms)


def _kafka_ready(bootstrap: str) -> bool:
    return registered_brokers(bootstrap) is not None


def registered_brokers(bootstrap: str) -> list[int] | None:
    """Node ids of the brokers the cluster reports (registered, not fenced); None if it does not answer."""
    from kafka.errors import KafkaError

    try:
        admin = _admin(bootstrap)
    except (KafkaError, OSError, ValueError):
        return None
    try:
        admin.list_topics()
        brokers = admin.describe_cluster().get("brokers", [])
        return sorted(b["broker_id"] for b in brokers if not b.get("is_fenced"))
    except (KafkaError, OSError, KeyError):
        return None
    finally:
        admin.close()


def _cluster_file(paths: StackPaths) -> Path:
    return paths.kafka / "cluster.json"


def _cluster_id(config: Config, paths: StackPaths) -> str:
    """The KRaft cluster id every node is formatted with; refuses data of a differently sized cluster.

    The controller quorum (every node) is fixed at format time: nodes formatted
    for one broker cannot join a three-node quorum, nor the other way round.
    """
    record = _cluster_file(paths)
    meta = paths.kafka / "data" / "meta.properties"
    if record.exists():
        saved = json.loads(record.read_text())
    elif meta.exists():  # formatted before the node count was recorded: one node
        props = dict(line.split("=", 1) for line in meta.read_text().splitlines() if "=" in line)
        saved = {"cluster_id": props["cluster.id"].strip(), "brokers": 1}
    else:
        saved = {"cluster_id": base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode(), "brokers": config.brokers}
    if saved["brokers"] != config.brokers:
        raise StackError(
            f"the Kafka data in {paths.root} is a {saved['brokers']}-broker cluster, the config asks for "
            f"{config.brokers}: use another state_dir (or remove {paths.root}, losing its data)"
        )
    record.parent.mkdir(parents=True, exist_ok=True)
    record.write_text(json.dumps(saved))
    return saved["cluster_id"]


def start_kafka(config: Config) -> dict[str, str]:
    """Start every Kafka node that is not running; role -> "started" / "already running"."""
    paths = StackPaths(config.state_dir)
    result = {}
    cluster_id = None
    for role in broker_roles(config):
        node_dir = paths.kafka_node(role)
        props_file = node_dir / "server.properties"
        if running_pid(paths.pid_file(role), str(props_file)):
            result[role] = "already running"
            continue
        cluster_id = cluster_id or _cluster_id(config, paths)
        (node_dir / "logs").mkdir(parents=True, exist_ok=True)
        props_file.write_text(_kafka_properties(config, paths, role))
        (node_dir / "log4j2.properties").write_text(_KAFKA_LOG4J2.format(logs=node_dir / "logs"))
        if not (node_dir / "data" / "meta.properties").exists():
            # KRaft storage is formatted once; the data then survives down/up.
            fmt = subprocess.run(
                _kafka_java(
                    config, node_dir, "kafka.tools.StorageTool", "format",
                    # "=" form: a random id may start with "-", which argparse would take for an option.
                    f"--cluster-id={cluster_id}", f"--config={props_file}",
                ),
                capture_output=True,
                text=True,
                timeout=120,
            )
            if fmt.returncode != 0:
                raise StackError(f"formatting Kafka storage of {role} failed: {fmt.stderr.strip() or fmt.stdout.strip()}")
        _spawn(
            _kafka_java(config, node_dir, "kafka.Kafka", str(props_file)),
            log=paths.log_file(role),
            pid_file=paths.pid_file(role),
            env=dict(os.environ),
        )
        result[role] = "started"
    return result


# --------------------------------------------------------------------------- flink


def python_worker_settings() -> dict[str, str]:
    """Run the job's Python with this interpreter and its packages.

    In thread mode the TaskManager embeds CPython (pemja), which starts from the
    base installation's prefix, not the virtual environment's: without
    `python.pythonpath` it would not find pyflink, pemja or our packages.
    """
    return {
        "python.executable": sys.executable,
        "python.client.executable": sys.executable,
        "python.pythonpath": sysconfig.get_paths()["purelib"],
    }


def render_flink_conf(config: Config) -> Path:
    """Write the runtime conf dir: the repo's config.yaml plus this stack's paths and ports."""
    paths = StackPaths(config.state_dir)
    paths.flink_conf.mkdir(parents=True, exist_ok=True)
    conf = yaml.safe_load(FLINK_CONF_TEMPLATE.read_text()) or {}
    conf.update(
        {
            "rest.port": config.flink_rest_port,
            "jobmanager.rpc.port": config.flink_rpc_port,
            "execution.checkpointing.dir": paths.checkpoints.as_uri(),
            "execution.checkpointing.savepoint-dir": paths.savepoints.as_uri(),
            "io.tmp.dirs": str(paths.flink / "tmp"),
            "env.log.dir": str(paths.flink_log),
            "env.pid.dir": str(paths.flink),
            "web.tmpdir": str(paths.flink / "tmp" / "web"),
        }
    )
    conf.update(python_worker_settings())
    (paths.flink / "tmp").mkdir(parents=True, exist_ok=True)
    (paths.flink_conf / "config.yaml").write_text(yaml.safe_dump(conf, sort_keys=True))
    # Logging configs come with PyFlink's distribution.
    for name in ("log4j.properties", "log4j-console.properties", "log4j-cli.properties"):
        src = pyflink_home() / "conf" / name
        dst = paths.flink_conf / name
        if src.exists() and not dst.exists():
            dst.write_text(src.read_text())
    return paths.flink_conf


def assemble_flink_lib(config: Config) -> Path:
    """PyFlink's lib/ plus our connector jars, as symlinks (nothing is copied)."""
    paths = StackPaths(config.state_dir)
    extra = sorted((config.jars_dir / "flink").glob("*.jar"))
    if not any(j.name.startswith("flink-sql-connector-kafka") for j in extra):
        raise StackError(f"Flink connector jars missing in {config.jars_dir / 'flink'}: run `make jars`")
    paths.flink_lib.mkdir(parents=True, exist_ok=True)
    # flink-python in lib/ (not only shipped with each job): PyFlink's thread mode
    # embeds CPython through pemja, which can load libpython for one class loader
    # per JVM only; loaded per job, the second job on a TaskManager fails
    # (FLINK-37727).  flink-conf makes `pemja.` load parent-first for the same reason.
    python_jar = sorted((pyflink_home() / "opt").glob("flink-python-*.jar"))
    wanted = {j.name: j for j in sorted((pyflink_home() / "lib").glob("*.jar")) + python_jar + extra}
    for existing in paths.flink_lib.iterdir():
        if existing.name not in wanted or existing.resolve() != wanted[existing.name].resolve():
            existing.unlink()
    for name, jar in wanted.items():
        link = paths.flink_lib / name
        if not link.exists():
            link.symlink_to(jar)
    return paths.flink_lib


def _role_order(role: str) -> tuple[int, str]:
    number = role.rpartition("-")[2]
    return (int(number) if number.isdigit() else 1, role)


def taskmanager_roles(config: Config) -> list[str]:
    """The TaskManagers `up` starts: one JVM (and one embedded Python, one GIL) each."""
    return ["taskmanager"] + [f"taskmanager-{i}" for i in range(2, config.taskmanagers + 1)]


def _flink_markers(paths: StackPaths, role: str) -> tuple[str, str]:
    # Until the launcher script execs java, only the script's path is on its command line.
    script = "jobmanager.sh" if role == "jobmanager" else "taskmanager.sh"
    return str(paths.flink_conf), str(pyflink_home() / "bin" / script)


def _flink_script(name: str) -> list[str]:
    # The pip wheel does not keep the scripts' exec bit; run them with bash.
    return ["bash", str(pyflink_home() / "bin" / name)]


def rest_get(config: Config, path: str, timeout_s: float = 3.0) -> dict:
    with urllib.request.urlopen(config.flink_rest_url + path, timeout=timeout_s) as resp:
        return json.loads(resp.read())


def _flink_overview(config: Config) -> dict | None:
    try:
        return rest_get(config, "/overview")
    except (urllib.error.URLError, OSError, ValueError):
        return None


def start_flink(config: Config) -> dict[str, str]:
    paths = StackPaths(config.state_dir)
    render_flink_conf(config)
    assemble_flink_lib(config)
    paths.flink_log.mkdir(parents=True, exist_ok=True)
    env = flink_env(config)
    result = {}
    roles = [("jobmanager", "jobmanager.sh")] + [(role, "taskmanager.sh") for role in taskmanager_roles(config)]
    for role, script in roles:
        if running_pid(paths.pid_file(role), *_flink_markers(paths, role)):
            result[role] = "already running"
            continue
        _spawn(
            _flink_script(script) + ["start-foreground"],
            log=paths.log_file(role),
            pid_file=paths.pid_file(role),
            env=env,
        )
        result[role] = "started"
    return result


# --------------------------------------------------------------------------- up / down / status


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
            if not running_pid(paths.pid_file(role), str(paths.kafka_node(role) / "server.properties")):
                raise StackError(f"Kafka node {role} exited during start; see {paths.kafka_node(role) / 'logs'}")
        # Ready once every node answers on its own port and the cluster counts every
        # node as a broker: replicated topics (and the internal ones) need them all.
        # Asking each node, not just the bootstrap list: a survivor of a lost quorum
        # still lists the dead nodes as brokers.
        wanted = list(range(1, config.brokers + 1))
        return all(registered_brokers(f"127.0.0.1:{port}") == wanted for port, _ in config.kafka_node_ports)

    # Three JVMs starting together on two cores take longer than one.
    kafka_timeout = timeout_s * (1 if config.brokers == 1 else 2)
    _wait("Kafka", kafka_alive, timeout_s=kafka_timeout, log=paths.kafka / "logs" / "server.log")

    def flink_ready() -> bool:
        for role in ["jobmanager", *taskmanager_roles(config)]:
            if not running_pid(paths.pid_file(role), *_flink_markers(paths, role)):
                raise StackError(f"Flink {role} exited during start; see {paths.log_file(role)}")
        overview = _flink_overview(config)
        if not overview:
            return False
        # Every TaskManager registered, and a free slot unless running jobs hold them
        # all (up must not wait forever then).
        if overview.get("taskmanagers", 0) < config.taskmanagers:
            return False
        return overview.get("slots-available", 0) > 0 or overview.get("jobs-running", 0) > 0

    _wait("Flink", flink_ready, timeout_s=timeout_s, log=paths.flink_log)
    echo(f"Kafka bootstrap:  {config.kafka_bootstrap}   (logs: {paths.kafka / 'logs'})")
    echo(f"Flink web UI:     {config.flink_rest_url}   (logs: {paths.flink_log})")
    echo("stop with:        feedtrends down   (or: make down)")


def down(config: Config, *, echo: Callable[[str], None] = print) -> None:
    paths = StackPaths(config.state_dir)
    markers = {
        **{role: _flink_markers(paths, role) for role in paths.started_taskmanagers()},
        "jobmanager": _flink_markers(paths, "jobmanager"),
        **{role: (str(paths.kafka_node(role) / "server.properties"),) for role in paths.started_brokers()},
    }
    # TaskManager first, so running jobs fail over cleanly instead of losing their JobManager mid-checkpoint.
    for role, role_markers in markers.items():
        pid = running_pid(paths.pid_file(role), *role_markers)
        if pid is None:
            echo(f"{role}: not running")
        else:
            _stop_pid(pid)
            echo(f"{role}: stopped (pid {pid})")
        paths.pid_file(role).unlink(missing_ok=True)


def _replication_warnings(config: Config) -> list[str]:
    """Product topics with fewer replicas than configured (never changed silently: said here)."""
    from kafka.errors import KafkaError

    from connectors.replication import replication_of, under_replicated
    from connectors.topics import product_topics

    try:
        admin = _admin(config.kafka_bootstrap, timeout_ms=10000)
    except (KafkaError, OSError, ValueError) as exc:
        return [f"warning: cannot check the topics' replication: {exc}"]
    try:
        return under_replicated(replication_of(config, admin), admin, list(product_topics(config)))
    except (KafkaError, OSError) as exc:
        return [f"warning: cannot check the topics' replication: {exc}"]
    finally:
        admin.close()


def status(config: Config) -> dict:
    paths = StackPaths(config.state_dir)
    brokers = sorted(set(broker_roles(config)) | set(paths.started_brokers()), key=_role_order)
    procs = {
        **{role: running_pid(paths.pid_file(role), str(paths.kafka_node(role) / "server.properties")) for role in brokers},
        "jobmanager": running_pid(paths.pid_file("jobmanager"), *_flink_markers(paths, "jobmanager")),
        **{role: running_pid(paths.pid_file(role), *_flink_markers(paths, role)) for role in paths.started_taskmanagers()},
    }
    overview = _flink_overview(config) if procs["jobmanager"] else None
    jobs: list[dict] = []
    if overview is not None:
        try:
            jobs = [
                {"id": j["jid"], "name": j["name"], "state": j["state"], "start_time": j.get("start-time")}
                for j in rest_get(config, "/jobs/overview").get("jobs", [])
            ]
        except (urllib.error.URLError, OSError, ValueError):
            jobs = []
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
        "warnings": _replication_warnings(config) if registered else [],
        "jobs": jobs,
        "running_jobs": [j for j in jobs if j["state"] == "RUNNING"],
        "state_dir": str(paths.root),
        "logs": {"kafka": str(paths.kafka / "logs"), "flink": str(paths.flink_log)},
    }
