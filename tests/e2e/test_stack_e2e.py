"""`feedtrends up | status --json | down` on a stack of its own (tier 3)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest

from connectors.stack.paths import StackPaths
from connectors.stack.processes import is_zombie
from tests.support.stack import run_cli, stack_config

pytestmark = pytest.mark.e2e


def test_up_is_idempotent_restarts_a_dead_taskmanager_and_down_leaves_nothing(tmp_path) -> None:
    # Two TaskManagers: up starts both, down stops both.
    config = stack_config(tmp_path / "state", taskmanagers=2)
    paths = StackPaths(config.state_dir)
    try:
        first = run_cli(config, "up")
        assert first.returncode == 0, first.stderr
        assert "kafka: started; jobmanager: started; taskmanager: started; taskmanager-2: started" in first.stdout
        assert f"http://127.0.0.1:{config.flink_rest_port}" in first.stdout

        status = json.loads(run_cli(config, "status", "--json").stdout)
        assert status["kafka_bootstrap"] == f"127.0.0.1:{config.kafka_port}"
        assert status["kafka_ready"] and status["flink_running"]
        assert status["flink_rest_url"] == f"http://127.0.0.1:{config.flink_rest_port}"
        assert status["slots_available"] >= 1 and status["jobs"] == []
        pids = status["pids"]
        assert set(pids) == {"kafka", "jobmanager", "taskmanager", "taskmanager-2"}
        assert status["taskmanagers"] == 2

        again = run_cli(config, "up")
        assert again.returncode == 0, again.stderr
        assert "kafka: already running; jobmanager: already running; taskmanager: already running" in again.stdout

        # A TaskManager that died is started again by the next `up`.
        os.killpg(pids["taskmanager"], signal.SIGKILL)
        deadline = time.monotonic() + 20
        while not is_zombie(pids["taskmanager"]) and time.monotonic() < deadline:
            time.sleep(0.2)
        revived = run_cli(config, "up")
        assert revived.returncode == 0, revived.stderr
        assert "taskmanager: started" in revived.stdout and "jobmanager: already running" in revived.stdout
        new_tm = json.loads(run_cli(config, "status", "--json").stdout)["pids"]["taskmanager"]
        assert new_tm != pids["taskmanager"]
        pids["taskmanager"] = new_tm
    finally:
        down = run_cli(config, "down")
    assert down.returncode == 0, down.stderr
    for role, pid in pids.items():
        assert is_zombie(pid), f"{role} (pid {pid}) still running after down"
    # Nothing at all of this stack: no process mentions its state dir any more.
    leftovers = subprocess.run(["pgrep", "-f", str(paths.root)], capture_output=True, text=True).stdout.split()
    assert leftovers == []
    # down is idempotent.
    assert "not running" in run_cli(config, "down").stdout
    # Kafka's data survives down: formatted once, kept for the next up.
    assert (paths.kafka / "data" / "meta.properties").exists()

