"""Output versions: where the trends of the current (and older) job versions live.

A replay rebuilds the trends from the earliest offset into a *new* version: its
own Kafka topic (`<trends_topic>-v<N>`) and Parquet directory (`<parquet_dir>-v<N>`),
so the live version stays readable while the new one catches up.  The registry is a
small JSON file in the state dir; `query` reads the version marked current.

Without a registry (a fresh deployment) there is one implicit version, "v1",
using `trends_topic` and `parquet_dir` as configured.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from core.config import Config

REGISTRY_NAME = "versions.json"


@dataclass(frozen=True)
class OutputVersion:
    name: str  # "v1", "v2", ...
    trends_topic: str
    parquet_dir: Path
    job_name: str
    transactional_id_prefix: str
    dlq_topic: str
    late_topic: str
    state: str = "live"  # "live" | "building" | "failed"
    # For "building": the pid of the replay building it, so a replay that died
    # without cleaning up (SIGKILL, power loss) is recognised later.
    owner_pid: int = 0
    # What happened to a failed version, for `feedtrends versions`.
    note: str = ""


def _registry_path(config: Config) -> Path:
    return config.state_dir / REGISTRY_NAME


def default_version(config: Config) -> OutputVersion:
    return OutputVersion(
        "v1",
        config.trends_topic,
        config.parquet_path,
        config.job_name,
        config.transactional_id_prefix,
        config.dlq_topic,
        config.late_topic,
    )


def load_versions(config: Config) -> tuple[str, dict[str, OutputVersion]]:
    """(name of the current version, all versions by name)."""
    path = _registry_path(config)
    if not path.exists():
        v = default_version(config)
        return v.name, {v.name: v}
    data = json.loads(path.read_text())
    known = {f.name for f in dataclasses.fields(OutputVersion)}
    versions = {
        name: OutputVersion(**{k: v for k, v in raw.items() if k in known} | {"parquet_dir": Path(raw["parquet_dir"])})
        for name, raw in data["versions"].items()
    }
    return data["current"], versions


def current_version(config: Config) -> OutputVersion:
    current, versions = load_versions(config)
    return versions[current]


def save_versions(config: Config, current: str, versions: dict[str, OutputVersion]) -> None:
    """Write atomically: a reader never sees half a registry."""
    path = _registry_path(config)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "current": current,
        "versions": {name: {**asdict(v), "parquet_dir": str(v.parquet_dir)} for name, v in versions.items()},
    }
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(payload, indent=2))
    os.replace(tmp, path)


def next_version(config: Config) -> OutputVersion:
    """The version a replay would build next (not registered yet)."""
    _, versions = load_versions(config)
    number = 1 + max(int(name[1:]) for name in versions)
    name = f"v{number}"
    return OutputVersion(
        name,
        f"{config.trends_topic}-{name}",
        config.parquet_path.with_name(f"{config.parquet_path.name}-{name}"),
        f"{config.job_name}-{name}",
        f"{config.transactional_id_prefix}-{name}",
        f"{config.dlq_topic}-{name}",
        f"{config.late_topic}-{name}",
        state="building",
    )


def config_for(config: Config, version: OutputVersion) -> Config:
    """The config a job of `version` runs with: its own topics, Parquet dir, name and transactions."""
    return dataclasses.replace(
        config,
        trends_topic=version.trends_topic,
        parquet_dir=version.parquet_dir,
        job_name=version.job_name,
        transactional_id_prefix=version.transactional_id_prefix,
        dlq_topic=version.dlq_topic,
        late_topic=version.late_topic,
    )
