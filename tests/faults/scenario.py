"""One fault scenario's frame: its own topics and job, progress lines and timings, the
common tail (all input sent, outputs converge, job ended, every check), and cleanup.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

from connectors import flink_cluster
from connectors.flink_cluster import ClusterError
from connectors.topics import delete_topics, ensure_topics
from core.config import Config
from tests.faults.checks import assert_input_is_reference, check_against_reference, wait_for_reference
from tests.faults.reference import JOB_SETTINGS, Reference, Trickle
from tests.support.stack import job_config, topic_names

# Seed of the fault points (which batch, how long after it); printed by every scenario.
FAULT_SEED = int(os.environ.get("FAULTS_SEED", "20261126"))

QUIET = lambda line: None  # noqa: E731


def log(message: str) -> None:
    print(f"[faults {time.strftime('%H:%M:%S')}] {message}", flush=True)


def capture() -> tuple[list[str], Callable[[str], None]]:
    lines: list[str] = []
    return lines, lambda line: (lines.append(line), log(f"  {line}"))


def scenario_config(stack: Config, tmp_path: Path, name: str, *, parallelism: int) -> Config:
    """Fresh uuid topics, job name, transactional id prefix and Parquet dir for one scenario."""
    topics = topic_names(f"{name}-{uuid.uuid4().hex[:8]}")
    return job_config(stack, topics, tmp_path / "parquet", "faults", parallelism=parallelism, **JOB_SETTINGS)


def cleanup(config: Config) -> None:
    """Cancel every job of this scenario (all versions) and delete its topics; never raises."""
    tag = config.job_name.removeprefix("feedtrends-faults-")
    try:
        for job in flink_cluster.list_jobs(config):
            if tag in job["name"] and job["state"] in ("CREATED", "INITIALIZING", "RUNNING", "RESTARTING"):
                try:
                    flink_cluster.cancel_job(config, job["jid"])
                except ClusterError as exc:
                    log(f"cleanup: cancelling {job['jid']} failed: {exc}")
    except ClusterError as exc:
        log(f"cleanup: cannot list jobs: {exc}")
    topics = [config.events_topic]
    for t in (config.trends_topic, config.dlq_topic, config.late_topic):
        topics += [t, f"{t}-v2"]
    try:
        delete_topics(config, topics)
    except Exception as exc:  # noqa: BLE001 - cleanup must not hide the test's own failure
        log(f"cleanup: deleting topics failed: {exc}")


class Phases:
    """Wall-clock time per phase of a scenario, printed at the end."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.start = self.mark = time.monotonic()
        self.spans: list[tuple[str, float]] = []

    def done(self, phase: str) -> None:
        now = time.monotonic()
        self.spans.append((phase, now - self.mark))
        self.mark = now
        log(f"{self.name}: {phase} took {self.spans[-1][1]:.1f}s")

    def report(self, extra: str = "") -> str:
        total = time.monotonic() - self.start
        parts = ", ".join(f"{phase} {secs:.1f}s" for phase, secs in self.spans)
        line = f"TIMING {self.name}: total {total:.1f}s ({parts}){' ' + extra if extra else ''}"
        log(line)
        return line


def end_job(config: Config) -> None:
    """Cancel the scenario's running job (as `feedtrends stop` does) and wait until it is gone."""
    from feedtrends import operations

    operations.stop(config, savepoint=False, echo=QUIET)
    assert flink_cluster.running_job(config) is None


BATCH = 16


def n_batches(reference: Reference) -> int:
    return math.ceil(len(reference.planned) / BATCH)


def now_ms() -> int:
    return int(time.time() * 1000)


@contextlib.contextmanager
def scenario(stack: Config, tmp_path, name: str, *, parallelism: int) -> Iterator[tuple[Config, Phases]]:
    config = scenario_config(stack, tmp_path, name, parallelism=parallelism)
    # The output-version registry is per state dir: a leftover one would redirect this scenario.
    assert not (config.state_dir / "versions.json").exists()
    phases = Phases(name)
    log(f"{name}: topics *-{config.job_name.removeprefix('feedtrends-faults-')}, parallelism {parallelism}, seed {FAULT_SEED}")
    ensure_topics(config)
    try:
        yield config, phases
    finally:
        cleanup(config)
        phases.report()


def finish(config: Config, reference: Reference, job_id: str, trickle: Trickle, phases: Phases) -> None:
    """Common tail: all input sent, rows converge, job ended, every check."""
    trickle.join()
    phases.done("rest of the input sent")
    assert_input_is_reference(config, reference)
    converge_and_check(config, reference, job_id, phases)


def converge_and_check(config: Config, reference: Reference, job_id: str, phases: Phases) -> None:
    """Once all input is in: rows converge, job ended, every check."""
    secs, diff = wait_for_reference(config, reference, job_id)
    log(f"{phases.name}: outputs {diff} after {secs:.1f}s")
    phases.done("outputs converge")
    end_job(config)
    phases.done("job cancelled")
    outcome = check_against_reference(config, reference)
    log(f"{phases.name}: {outcome}")
    phases.done("checks")
