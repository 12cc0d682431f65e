"""The local stack: one Kafka broker (KRaft) and one Flink cluster, on loopback.

`up` starts whatever part is not running and waits until it answers; `down`
stops, by pid, what `up` started.  Everything lives under `config.state_dir`:

    state/kafka/{server.properties,data/,logs/,kafka.pid}
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

from feedtrends.config import REPO_ROOT, Config

FLINK_CONF_TEMPLATE = REPO_ROOT / "flink-conf" / "config.yaml"


class StackError(RuntimeError):
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

    def pid_file(self, name: str) -> Path:
        return (self.kafka if name == "kafka" else self.flink) / f"{name}.pid"

    def started_taskmanagers(self) -> list[str]:
        """Every TaskManager with a pid file: "taskmanager", "taskmanager-2", ..."""
        found = sorted(p.stem for p in self.flink.glob("taskmanager*.pid")) if self.flink.exists() else []
        return sorted(set(found) | {"taskmanager"}, key=_role_order)

    def log_file(self, name: str) -> Path:
        return (self.kafka / "logs" if name == "kafka" else self.flink_log) / f"{name}.out"


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


def _kafka_properties(config: Config, paths: StackPaths) -> str:
    port, cport = config.kafka_port, config.kafka_controller_port
    # The longest transaction Flink's sink may hold open; the sink's own
    # transaction.timeout.ms (set by the job) must stay below it.
    max_txn_ms = 60 * 60 * 1000
    props = {
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.voters": f"1@127.0.0.1:{cport}",
        "listeners": f"PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{cport}",
        "advertised.listeners": f"PLAINTEXT://127.0.0.1:{port}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
        "log.dirs": str(paths.kafka / "data"),
        "num.partitions": "1",
        "auto.create.topics.enable": "false",
        "offsets.topic.replication.factor": "1",
        "offsets.topic.num.partitions": "4",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "transaction.state.log.num.partitions": "4",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
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


def _kafka_java(config: Config, paths: StackPaths, main: str, *args: str) -> list[str]:
    jars = config.jars_dir / "kafka"
    if not any(jars.glob("kafka_*.jar")):
        raise StackError(f"Kafka jars missing in {jars}: run `make jars` (Maven resolves them)")
    return [
        "java",
        "-Xms256m",
        "-Xmx1g",
        "-XX:+UseG1GC",
        f"-Dlog4j2.configurationFile={paths.kafka / 'log4j2.properties'}",
        f"-Dkafka.logs.dir={paths.kafka / 'logs'}",
        "-cp",
        str(jars / "*"),
        main,
        *args,
    ]


def _kafka_ready(bootstrap: str) -> bool:
    from kafka import KafkaAdminClient
    from kafka.errors import KafkaError

    try:
        admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=3000)
    except (KafkaError, OSError, ValueError):
        return False
    try:
        admin.list_topics()
        return True
    except (KafkaError, OSError):
        return False
    finally:
        admin.close()


def start_kafka(config: Config) -> str:
    paths = StackPaths(config.state_dir)
    props_file = paths.kafka / "server.properties"
    marker = str(props_file)
    if running_pid(paths.pid_file("kafka"), marker):
        return "already running"
    (paths.kafka / "logs").mkdir(parents=True, exist_ok=True)
    props_file.write_text(_kafka_properties(config, paths))
    (paths.kafka / "log4j2.properties").write_text(_KAFKA_LOG4J2.format(logs=paths.kafka / "logs"))
    if not (paths.kafka / "data" / "meta.properties").exists():
        # KRaft storage is formatted once; the data then survives down/up.
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        fmt = subprocess.run(
            _kafka_java(
                config, paths, "kafka.tools.StorageTool", "format",
                # "=" form: a random id may start with "-", which argparse would take for an option.
                f"--cluster-id={cluster_id}", f"--config={props_file}",
            ),
            capture_output=True,
            text=True,
            timeout=120,
        )
        if fmt.returncode != 0:
            raise StackError(f"formatting Kafka storage failed: {fmt.stderr.strip() or fmt.stdout.strip()}")
    _spawn(
        _kafka_java(config, paths, "kafka.Kafka", str(props_file)),
        log=paths.log_file("kafka"),
        pid_file=paths.pid_file("kafka"),
        env=dict(os.environ),
    )
    return "started"


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
    for d in (paths.checkpoints, paths.savepoints, config.parquet_dir):
        d.mkdir(parents=True, exist_ok=True)
    _write_stack_file(config)

    kafka_state = start_kafka(config)
    flink_state = start_flink(config)
    echo(f"kafka: {kafka_state}; " + "; ".join(f"{role}: {state}" for role, state in flink_state.items()))

    def kafka_alive() -> bool:
        if not running_pid(paths.pid_file("kafka"), str(paths.kafka / "server.properties")):
            raise StackError(f"Kafka exited during start; see {paths.kafka / 'logs'}")
        return _kafka_ready(config.kafka_bootstrap)

    _wait("Kafka", kafka_alive, timeout_s=timeout_s, log=paths.kafka / "logs" / "server.log")

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
        "kafka": (str(paths.kafka / "server.properties"),),
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


def status(config: Config) -> dict:
    paths = StackPaths(config.state_dir)
    procs = {
        "kafka": running_pid(paths.pid_file("kafka"), str(paths.kafka / "server.properties")),
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
    return {
        "kafka_bootstrap": config.kafka_bootstrap,
        "kafka_running": procs["kafka"] is not None,
        "kafka_ready": procs["kafka"] is not None and _kafka_ready(config.kafka_bootstrap),
        "flink_rest_url": config.flink_rest_url,
        "flink_running": overview is not None,
        "taskmanagers": (overview or {}).get("taskmanagers", 0),
        "slots_total": (overview or {}).get("slots-total", 0),
        "slots_available": (overview or {}).get("slots-available", 0),
        "pids": {k: v for k, v in procs.items() if v},
        "jobs": jobs,
        "running_jobs": [j for j in jobs if j["state"] == "RUNNING"],
        "state_dir": str(paths.root),
        "logs": {"kafka": str(paths.kafka / "logs"), "flink": str(paths.flink_log)},
    }
