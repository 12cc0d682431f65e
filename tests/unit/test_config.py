"""The configuration: derived values follow what they derive from, and it sits at the bottom of the imports."""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import pytest

from core.config import REPO_ROOT, Config, ConfigError, load_config, parse_duration_ms

H = 3_600_000


def test_lateness_follows_the_window_unless_set() -> None:
    config = Config(window_ms=H)
    assert config.lateness_ms is None and config.allowed_lateness_ms == H
    # A derived value must not be frozen at construction: a new window size brings its lateness.
    assert dataclasses.replace(config, window_ms=10_000).allowed_lateness_ms == 10_000
    assert dataclasses.replace(config, lateness_ms=0, window_ms=10_000).allowed_lateness_ms == 0


def test_parquet_follows_the_state_dir_unless_set(tmp_path: Path) -> None:
    config = Config(state_dir=tmp_path / "a")
    assert config.parquet_path == tmp_path / "a" / "parquet"
    assert dataclasses.replace(config, state_dir=tmp_path / "b").parquet_path == tmp_path / "b" / "parquet"
    assert Config(state_dir=tmp_path, parquet_dir=tmp_path / "out").parquet_path == tmp_path / "out"


def test_the_environment_of_a_child_rebuilds_the_same_config(tmp_path: Path) -> None:
    base = Config(state_dir=tmp_path, jars_dir=tmp_path / "jars")
    for config in (base, dataclasses.replace(base, lateness_ms=5, parquet_dir=tmp_path / "p")):
        env = config.as_env()
        assert load_config(env=env) == config
        # Unset values are left out, so the child derives them from its own settings.
        assert ("FEEDTRENDS_LATENESS_MS" in env) == (config.lateness_ms is not None)


@pytest.mark.parametrize(
    ("text", "ms"), [("500ms", 500), ("30s", 30_000), ("5m", 300_000), ("1h", H), ("1.5h", 5_400_000), ("7d", 604_800_000), ("250", 250), (42, 42)]
)
def test_durations(text: str | int, ms: int) -> None:
    assert parse_duration_ms(text) == ms


def test_a_flag_duration_needs_its_unit() -> None:
    assert parse_duration_ms("30s", unit_required=True) == 30_000
    with pytest.raises(ConfigError, match="not a duration"):
        parse_duration_ms("30", unit_required=True)


@pytest.mark.parametrize(
    ("name", "raw"),
    [("lateness_ms", "-1"), ("window_ms", "soon"), ("lateness_ms", "1 hour"), ("max_source_drift_ms", "-1")],
)
def test_bad_durations_name_the_setting(name: str, raw: str) -> None:
    with pytest.raises(ConfigError, match=name):
        load_config({name: raw}, env={})


def _imported_packages(path: Path) -> set[str]:
    """Top-level names a module imports (absolute imports only; the repo uses no relative ones)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


# What each package may import of ours: core at the bottom, the CLI at the top.
ALLOWED = {
    "core": set(),
    "udfs": {"core", "udfs"},
    "connectors": {"core", "udfs", "connectors"},
    "jobs": {"core", "udfs", "connectors", "jobs"},
}
OURS = {"core", "udfs", "connectors", "jobs", "feedtrends", "bench", "tests"}


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_imports_only_point_down(package: str) -> None:
    # The job and the connectors ship to the cluster: importing the CLI package from
    # them would ship it too, and a cycle would follow sooner or later.
    wrong = {
        str(path.relative_to(REPO_ROOT)): sorted((_imported_packages(path) & OURS) - ALLOWED[package])
        for path in sorted((REPO_ROOT / package).rglob("*.py"))
    }
    assert {path: names for path, names in wrong.items() if names} == {}
