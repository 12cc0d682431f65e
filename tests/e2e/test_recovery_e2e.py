"""Recovery on the real stack (tier 3): a replay right after `down` + `up` converges on
its own, and a replay that is interrupted or killed leaves no running job and a
version that says what happened.

The module runs its own stack (it takes it down and up again), through the CLI as a
user would, in a subprocess.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from connectors import flink_cluster
from connectors import stack as local_stack
from connectors.synthetic import GeneratorConfig, generate
from connectors.topics import ensure_topics
from connectors.versions import load_versions
from tests.support.kafka import produce
from tests.support.stack import running_stack

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def recovery_stack(tmp_path_factory):
    with running_stack(tmp_path_factory.mktemp("recovery"), idleness_ms=3_000) as config:
        ensure_topics(config)
        records, _ = generate(GeneratorConfig(count=200, seed=3, rate=0.05))
        produce(config.kafka_bootstrap, config.events_topic, [(None, r.key, r.timestamp_ms, r.value) for r in records])
        yield config


def _cli(config, *args: str, **kwargs) -> subprocess.Popen:
    env = {**os.environ, **config.as_env()}
    return subprocess.Popen(
        [sys.executable, "-m", "feedtrends.cli", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # Ctrl-C as a terminal delivers it: a shell without job control starts
        # background commands with SIGINT ignored, and Python then never raises
        # KeyboardInterrupt, so a test run from such a shell would see no interrupt.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        **kwargs,
    )


def _running_jobs(config) -> list[dict]:
    return [j for j in flink_cluster.list_jobs(config) if j["state"] in ("CREATED", "INITIALIZING", "RUNNING", "RESTARTING")]


def _wait_for_job(config, name: str, proc: subprocess.Popen, timeout_s: float = 180) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if any(j["name"] == name and j["state"] == "RUNNING" for j in flink_cluster.list_jobs(config)):
            return
        assert proc.poll() is None, proc.communicate()
        time.sleep(1)
    raise AssertionError(f"job {name} not running after {timeout_s}s")


def test_bounded_replay_right_after_down_and_up_succeeds(recovery_stack) -> None:
    config = recovery_stack
    local_stack.down(config, echo=lambda line: None)
    local_stack.up(config, echo=lambda line: None)
    proc = _cli(config, "replay", "--bounded", "--timeout", "300")
    try:
        out, err = proc.communicate(timeout=420)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert "Traceback" not in err, err
    assert proc.returncode == 0, err
    current, versions = load_versions(config)
    assert current == "v2" and versions["v2"].state == "live"
    assert _running_jobs(config) == []  # --bounded stopped it


@pytest.mark.parametrize("how", ["interrupt", "kill"])
def test_a_replay_stopped_midway_leaves_no_job_and_a_failed_version(recovery_stack, how) -> None:
    config = recovery_stack
    before, _ = load_versions(config)
    _, versions = load_versions(config)
    name = f"v{1 + max(int(n[1:]) for n in versions)}"
    proc = _cli(config, "replay", "--bounded", "--timeout", "300")
    try:
        _wait_for_job(config, f"{config.job_name}-{name}", proc)
        proc.send_signal(signal.SIGINT if how == "interrupt" else signal.SIGKILL)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    if how == "interrupt":
        assert proc.returncode == 130, err
        assert "Traceback" not in err, err
    else:
        # Nothing runs in a SIGKILLed process: the next command that reads the
        # versions notices the replay is gone and cleans up after it.
        listing = _cli(config, "versions")
        out, err = listing.communicate(timeout=180)
        assert listing.returncode == 0, err
        assert name in out and "failed" in out
    current, versions = load_versions(config)
    assert current == before  # the failed build never became current
    assert versions[name].state == "failed"
    assert ("interrupted" if how == "interrupt" else "exited before it finished") in versions[name].note
    assert "cancelled" in versions[name].note
    assert _running_jobs(config) == []
    # A failed version can be removed.
    removal = _cli(config, "versions", "remove", name)
    out, err = removal.communicate(timeout=180)
    assert removal.returncode == 0, err
    assert name not in load_versions(config)[1]
    print(json.dumps({"version": name, "how": how}))
