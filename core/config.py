"""The one configuration object of feedtrends.

Loaded once per process: CLI flag > environment (`FEEDTRENDS_<FIELD>`) > default.
Validated at load, so a bad value fails with one clear line instead of deep inside
a running job.  Durations accept `250ms`, `30s`, `5m`, `1h`, `7d` or plain
milliseconds.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping

REPO_ROOT = Path(__file__).resolve().parent.parent

ENV_PREFIX = "FEEDTRENDS_"


class ConfigError(ValueError):
    """A configuration value is missing or invalid (message names the setting)."""


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNIT_MS = {None: 1, "ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}


def parse_duration_ms(text: str | int, *, unit_required: bool = False) -> int:
    """`'5m'` -> 300000, `'1.5h'` -> 5400000.  Plain numbers are milliseconds.

    The one duration parser of the product.  Command-line flags pass
    `unit_required=True`: a bare `--every 30` would naturally be read as seconds,
    and refusing it is cheaper than a poll every 30 ms.
    """
    if isinstance(text, int):
        return text
    match = _DURATION.match(str(text))
    if not match or (unit_required and match.group(2) is None):
        example = "30s, 5m, 1h" if unit_required else "500ms, 30s, 5m, 1h, 7d"
        raise ConfigError(f"not a duration: {text!r} (use e.g. {example})")
    return round(float(match.group(1)) * _UNIT_MS[match.group(2)])


def _duration(default: str) -> Any:
    return field(default=parse_duration_ms(default), metadata={"kind": "duration"})


@dataclass(frozen=True)
class Config:
    """Every setting of the product.  Field names are the env/CLI names."""

    # Where the local stack keeps its data, logs and pids (git-ignored).
    state_dir: Path = REPO_ROOT / ".state"
    # Jars resolved by Maven (`make jars`).
    jars_dir: Path = REPO_ROOT / ".cache" / "jars"

    # Local stack ports (loopback only).
    kafka_port: int = 9092
    kafka_controller_port: int = 9093
    flink_rest_port: int = 8081
    flink_rpc_port: int = 6123
    # TaskManagers `up` starts.  Python runs inside each (thread mode) under one
    # GIL per process, so a second TaskManager is what lets Python use a second core.
    taskmanagers: int = 1
    # Kafka nodes `up` starts (combined broker + controller, KRaft).  Node i > 1
    # listens on kafka_port + 2(i-1) and kafka_controller_port + 2(i-1); 3 rehearses
    # a production cluster (replicated topics, a broker lost without losing a row).
    brokers: int = 1
    # Where clients find Kafka; empty means the local stack's broker(s).
    bootstrap: str = ""
    # Flink REST endpoint used by `flink run`; empty means the local stack's.
    jobmanager: str = ""
    # How long an operation retries a backend's retriable errors (a broker or
    # JobManager still starting) before it fails with one line (connectors/retry.py).
    retry_deadline_ms: int = _duration("30s")

    # Topics.
    events_topic: str = "feed-events"
    trends_topic: str = "feed-trends"
    dlq_topic: str = "feed-events-dlq"
    late_topic: str = "feed-events-late"
    partitions: int = 2
    # Replicas of every topic we create, capped at the brokers the cluster reports
    # (so the one-broker local stack gets 1), and the replicas an acks=all write
    # must reach; 0 means 2 when the factor is 3 or more, else 1.
    replication_factor: int = 3
    min_insync_replicas: int = 0

    # Job semantics.
    window_ms: int = _duration("1h")
    # None: one window.  Read `allowed_lateness_ms`, which resolves it.
    lateness_ms: int | None = None
    out_of_orderness_ms: int = _duration("5m")
    # How far (event time) the source may read one partition ahead of the slowest (watermark
    # alignment); 0: no bound.  Matters in a rebuild, where the readers run as fast as they can:
    # the windows between the slowest and the fastest stay open, with their state.
    max_source_drift_ms: int = _duration("6h")
    idleness_ms: int = _duration("30s")
    dedup_ttl_ms: int = _duration("7d")
    baseline_windows: int = 6
    min_support: int = 2
    examples: int = 3
    include_summary: bool = False
    parallelism: int = 1
    # Terms are keyed by this many buckets (udfs/buckets.py): the term-windows
    # operator runs on at most this many subtasks.  Fixed for a deployment, like a
    # topic's partition count: changing it needs `feedtrends replay`.
    term_buckets: int = 4

    # Output.
    # None: <state_dir>/parquet.  Read `parquet_path`, which resolves it.
    parquet_dir: Path | None = None
    # Stable for a deployment, unique per job: the Kafka sink's transactions are
    # fenced by it, so two jobs sharing a prefix would abort each other.
    transactional_id_prefix: str = "feedtrends-trends"
    job_name: str = "feedtrends-trends"

    def __post_init__(self) -> None:
        # Validation only: derived values are properties, so `dataclasses.replace`
        # (a new window size, another state dir) never keeps a stale one.
        for name in ("kafka_port", "kafka_controller_port", "flink_rest_port", "flink_rpc_port"):
            port = getattr(self, name)
            if not 0 < port < 65536:
                raise ConfigError(f"{name}: {port} is not a TCP port")
        if self.retry_deadline_ms < 0:
            raise ConfigError("retry_deadline_ms must be >= 0")
        if self.window_ms <= 0:
            raise ConfigError("window_ms must be positive")
        if self.max_source_drift_ms < 0:
            raise ConfigError("max_source_drift_ms must be >= 0 (0: no bound)")
        if self.lateness_ms is not None and self.lateness_ms < 0:
            raise ConfigError("lateness_ms must be >= 0 (unset: one window)")
        for name in (
            "partitions", "baseline_windows", "min_support", "examples", "parallelism", "term_buckets", "taskmanagers",
            "brokers", "replication_factor",
        ):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1")
        if self.min_insync_replicas < 0:
            raise ConfigError("min_insync_replicas must be >= 1 (or 0 for the default)")
        if self.min_insync_replicas > self.replication_factor:
            # Every acks=all write would fail: the topic could never have that many in sync.
            raise ConfigError(
                f"min_insync_replicas ({self.min_insync_replicas}) must be <= replication_factor ({self.replication_factor})"
            )
        node_ports = [port for pair in self.kafka_node_ports for port in pair]
        if len(set(node_ports)) != len(node_ports) or max(node_ports) >= 65536:
            raise ConfigError(
                f"brokers: {self.brokers} nodes need ports kafka_port + 2(i-1) and kafka_controller_port + 2(i-1), "
                f"all distinct and < 65536; got {node_ports}"
            )
        if self.term_buckets > 128:
            raise ConfigError("term_buckets must be <= 128 (the job's max parallelism)")

    @property
    def allowed_lateness_ms(self) -> int:
        """How long after its end a window still takes events (revisions): `lateness_ms`, else one window."""
        return self.window_ms if self.lateness_ms is None else self.lateness_ms

    @property
    def parquet_path(self) -> Path:
        """Where the Parquet output goes: `parquet_dir`, else `<state_dir>/parquet`."""
        return self.state_dir / "parquet" if self.parquet_dir is None else self.parquet_dir

    @property
    def kafka_node_ports(self) -> list[tuple[int, int]]:
        """(broker port, controller port) of each local Kafka node, node 1 first."""
        return [(self.kafka_port + 2 * i, self.kafka_controller_port + 2 * i) for i in range(self.brokers)]

    @property
    def kafka_bootstrap(self) -> str:
        # Every node, so clients still find the cluster while one of them is down.
        return self.bootstrap or ",".join(f"127.0.0.1:{port}" for port, _ in self.kafka_node_ports)

    @property
    def flink_rest_url(self) -> str:
        return f"http://{self.jobmanager}" if self.jobmanager else f"http://127.0.0.1:{self.flink_rest_port}"

    def as_env(self) -> dict[str, str]:
        """The config as FEEDTRENDS_* variables, to hand to a child process."""
        out = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None:
                continue  # unset: the child derives it, as this process does
            out[ENV_PREFIX + f.name.upper()] = str(value).lower() if isinstance(value, bool) else str(value)
        return out


def _convert(f: dataclasses.Field, raw: Any) -> Any:
    if raw is None:
        return None
    kind = f.metadata.get("kind")
    try:
        if kind == "duration" or f.name.endswith("_ms"):
            return parse_duration_ms(raw)
        if f.type in ("Path", "Path | None") or isinstance(f.default, Path):
            return Path(raw).expanduser().resolve()
        if isinstance(f.default, bool):
            text = str(raw).strip().lower()
            if text in ("1", "true", "yes", "on"):
                return True
            if text in ("0", "false", "no", "off"):
                return False
            raise ConfigError(f"{f.name}: not a boolean: {raw!r}")
        if isinstance(f.default, int):
            return int(raw)
    except ValueError as exc:
        if isinstance(exc, ConfigError):
            raise ConfigError(f"{f.name}: {exc}") from None
        raise ConfigError(f"{f.name}: invalid value {raw!r}") from None
    return str(raw)


def _refuse_unknown_variables(env: Mapping[str, str], known: Mapping[str, Any]) -> None:
    """A FEEDTRENDS_* variable that is no setting is a typo: silently ignoring it would
    run with the default (e.g. send every event to the wrong broker)."""
    names = {ENV_PREFIX + name.upper() for name in known}
    for var in sorted(env):
        if var.startswith(ENV_PREFIX) and var not in names:
            close = difflib.get_close_matches(var, names, n=1, cutoff=0.6)
            hint = f"; did you mean {close[0]}?" if close else f" (settings: {', '.join(sorted(known))})"
            raise ConfigError(f"unknown setting in the environment: {var}{hint}")


def load_config(cli: Mapping[str, Any] | None = None, env: Mapping[str, str] | None = None) -> Config:
    """Build the config: CLI values (None = not given) > FEEDTRENDS_* env > defaults."""
    cli = cli or {}
    env = os.environ if env is None else env
    known = {f.name: f for f in fields(Config)}
    unknown = [k for k in cli if k not in known and cli[k] is not None]
    if unknown:
        raise ConfigError(f"unknown setting(s): {', '.join(sorted(unknown))}")
    _refuse_unknown_variables(env, known)
    values: dict[str, Any] = {}
    for name, f in known.items():
        raw = cli.get(name)
        if raw is None:
            raw = env.get(ENV_PREFIX + name.upper())
        if raw is None or raw == "":
            continue
        values[name] = _convert(f, raw)
    return Config(**values)
