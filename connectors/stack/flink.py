"""The stack's Flink: a JobManager and TaskManagers run from the `bin/` of the pip-installed
PyFlink, with our conf dir (the repo's flink-conf plus this stack's ports and paths) and
a lib dir that adds our connector jars (`.cache/jars/flink`) to PyFlink's own `lib/`."""

from __future__ import annotations

import os
import sys
import sysconfig
from pathlib import Path

import yaml

from connectors import flink_rest
from connectors.stack.paths import StackError, StackPaths, taskmanager_roles
from connectors.stack.processes import running_pid, spawn
from core.config import REPO_ROOT, Config

FLINK_CONF_TEMPLATE = REPO_ROOT / "flink-conf" / "config.yaml"


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


def flink_markers(paths: StackPaths, role: str) -> tuple[str, str]:
    # Until the launcher script execs java, only the script's path is on its command line.
    script = "jobmanager.sh" if role == "jobmanager" else "taskmanager.sh"
    return str(paths.flink_conf), str(pyflink_home() / "bin" / script)


def _flink_script(name: str) -> list[str]:
    # The pip wheel does not keep the scripts' exec bit; run them with bash.
    return ["bash", str(pyflink_home() / "bin" / name)]


def flink_overview(config: Config) -> dict | None:
    return flink_rest.probe(config, "/overview")


def start_flink(config: Config) -> dict[str, str]:
    paths = StackPaths(config.state_dir)
    render_flink_conf(config)
    assemble_flink_lib(config)
    paths.flink_log.mkdir(parents=True, exist_ok=True)
    env = flink_env(config)
    result = {}
    roles = [("jobmanager", "jobmanager.sh")] + [(role, "taskmanager.sh") for role in taskmanager_roles(config)]
    for role, script in roles:
        if running_pid(paths.pid_file(role), *flink_markers(paths, role)):
            result[role] = "already running"
            continue
        spawn(
            _flink_script(script) + ["start-foreground"],
            log=paths.log_file(role),
            pid_file=paths.pid_file(role),
            env=env,
        )
        result[role] = "started"
    return result
