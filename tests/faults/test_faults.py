"""Differential fault injection: the trends job under failures must end exactly where
the batch oracle says, as the plain run does.

One reference input (tests/faults/reference.py: 800 generated events with 30%
duplicates, 10% out of order within the bound, 2% beyond the allowed lateness, 1%
malformed, and no record after them that would move the watermark on) goes into fresh
topics for each scenario while the job runs; a fault is injected while events flow:

    plain  no fault
    a      SIGKILL the TaskManager 3 times at seeded points; `up` restarts it
    b      SIGKILL the JobManager; `up` restarts it; `feedtrends submit` resumes
    c      SIGKILL the Kafka broker; `up` restarts it; the job's restart strategy recovers
    d      stop-with-savepoint, then resume
    e      rescale 1 -> 2 through a savepoint
    f      replay --bounded from the earliest offset into a new version
    i      SIGKILL the TaskManager once a checkpoint holds all the input, before the
           last windows close; `up` restarts it; no input follows
    j      no fault: a partition goes idle, the watermark follows the other one, and the
           idle partition comes back behind it (its own crafted log)

No scenario sends anything after its input: the job must close the windows its final
watermark passes on its own, from the state it restored.  After each run the job is ended and the same checks run (checks.check_against_reference):
Kafka read_committed final rows == Parquet final rows == oracle; no (window_start,
term, revision) twice in either sink; DLQ and late topics hold exactly the injected
(partition, offset)s; every committed Parquet file reads whole; no transaction left
open (LSO == high watermark, DescribeProducers, ListTransactions).

Seeds: FAULTS_SEED (default in scenario.py) picks the fault points; every scenario
prints them and its timing.
"""

from __future__ import annotations

import dataclasses
import random
import time

import pytest

from connectors import flink_cluster
from connectors.flink_cluster import ClusterError, _local_path
from connectors.versions import config_for, current_version
from feedtrends import operations
from connectors.topics import consumer_lag
from tests.faults.checks import (
    assert_input_is_reference,
    check_against_reference,
    committed_rows,
    open_transactions,
    wait_for_reference,
    wait_no_open_transactions,
)
from tests.faults.inject import fault_points, kill, num_restarts, restart, wait_recovered
from tests.eventgen import encode, event
from tests.faults.reference import Planned, Trickle, produce, reference_of
from tests.support.rows import HOUR, final_contents
from udfs.windows import window_start
from tests.faults.scenario import (
    BATCH,
    FAULT_SEED,
    QUIET,
    capture,
    converge_and_check,
    finish,
    log,
    n_batches,
    now_ms,
    scenario,
)

pytestmark = pytest.mark.faults


def test_plain_run_equals_oracle(stack, reference, tmp_path) -> None:
    assert len(reference.rows) > 100 and reference.late and reference.dlq
    log(f"reference: {len(reference.records)} records {reference.injected}; oracle: {len(reference.rows)} rows, "
        f"{len(reference.dlq)} dead letters, {len(reference.late)} late")
    with scenario(stack, tmp_path, "plain", parallelism=2) as (config, phases):
        job_id = operations.submit(config, echo=QUIET)
        phases.done("submit")
        trickle = Trickle(config.kafka_bootstrap, config.events_topic, reference.planned, batch=BATCH).start()
        try:
            finish(config, reference, job_id, trickle, phases)
        finally:
            trickle.stop()


@pytest.mark.ci
def test_a_taskmanager_killed_three_times(stack, reference, tmp_path) -> None:
    rng = random.Random(f"{FAULT_SEED}:a")
    points = fault_points(rng, 3, n_batches(reference))
    with scenario(stack, tmp_path, "a-tm-kill", parallelism=2) as (config, phases):
        job_id = operations.submit(config, echo=QUIET)
        phases.done("submit")
        trickle = Trickle(
            config.kafka_bootstrap, config.events_topic, reference.planned, batch=BATCH, holds=tuple(points)
        ).start()
        try:
            for j, point in enumerate(points):
                # The stream runs up to this fault point only once the job is back from the last fault.
                trickle.release(j)
                extra, delay = rng.randint(0, 3), rng.uniform(0.0, 1.0)
                trickle.wait_batches(point + 1 + extra)
                time.sleep(delay)
                killed_at = now_ms()
                pid = kill(config, "taskmanager")
                log(f"a: kill {j + 1}/3: SIGKILL TaskManager pid {pid} after batch {trickle.batches_done} (+{delay:.2f}s)")
                restart(config)
                secs = wait_recovered(config, job_id, killed_at)
                phases.done(f"kill {j + 1} -> recovered ({secs:.0f}s after up)")
            log(f"a: fault points (batches) {points}; job restarts: {num_restarts(config, job_id)}")
            finish(config, reference, job_id, trickle, phases)
        finally:
            trickle.stop()


def test_b_jobmanager_killed_then_submit_resumes_from_checkpoint(stack, reference, tmp_path) -> None:
    """No HA is configured: a restarted JobManager knows no jobs.  The recovery path is
    `feedtrends submit`, which resumes from the latest retained checkpoint of the job
    name (the journal in the state dir maps the name to the old job id's checkpoints)."""
    rng = random.Random(f"{FAULT_SEED}:b")
    point = rng.randint(6, n_batches(reference) - 12)
    with scenario(stack, tmp_path, "b-jm-kill", parallelism=2) as (config, phases):
        job_id = operations.submit(config, echo=QUIET)
        phases.done("submit")
        started = now_ms()
        trickle = Trickle(config.kafka_bootstrap, config.events_topic, reference.planned, batch=BATCH).start()
        try:
            trickle.wait_batches(point)
            # A checkpoint taken while events flow, so there is a restore point with state in it.
            wait_recovered(config, job_id, started)
            time.sleep(rng.uniform(0.0, 1.0))
            killed_at = now_ms()
            pid = kill(config, "jobmanager")
            log(f"b: SIGKILL JobManager pid {pid} after batch {trickle.batches_done}")
            restart(config)
            phases.done("JobManager killed and restarted")
            # Without HA the job is gone with the JobManager.
            assert flink_cluster.running_job(config) is None
            with pytest.raises(ClusterError, match="404"):
                flink_cluster.job_details(config, job_id)
            lines, echo = capture()
            new_id = operations.submit(config, echo=echo)
            assert new_id != job_id
            assert lines[0].startswith("resuming from the latest retained checkpoint: ")
            assert f"/checkpoints/{job_id}/chk-" in lines[0], lines[0]
            secs = wait_recovered(config, new_id, killed_at)
            phases.done(f"submit resumed from checkpoint ({secs:.0f}s to first checkpoint)")
            finish(config, reference, new_id, trickle, phases)
        finally:
            trickle.stop()


def test_c_kafka_broker_killed_and_restarted(stack, reference, tmp_path) -> None:
    rng = random.Random(f"{FAULT_SEED}:c")
    point = rng.randint(6, n_batches(reference) - 12)
    down_s = 5.0
    with scenario(stack, tmp_path, "c-broker-kill", parallelism=2) as (config, phases):
        job_id = operations.submit(config, echo=QUIET)
        phases.done("submit")
        trickle = Trickle(config.kafka_bootstrap, config.events_topic, reference.planned, batch=BATCH).start()
        try:
            trickle.wait_batches(point)
            # The producer waits between two batches while the broker is away, so the
            # input stays exactly the reference (no re-sent batch).
            trickle.pause()
            pid = kill(config, "kafka")
            log(f"c: SIGKILL broker pid {pid} after batch {trickle.batches_done}; down for {down_s:.0f}s")
            time.sleep(down_s)
            restart(config)
            back_at = now_ms()
            trickle.resume()
            phases.done("broker killed and restarted")
            secs = wait_recovered(config, job_id, back_at)
            log(f"c: job restarts: {num_restarts(config, job_id)}")
            phases.done(f"job recovered ({secs:.0f}s to first checkpoint)")
            finish(config, reference, job_id, trickle, phases)
        finally:
            trickle.stop()


@pytest.mark.ci
def test_d_stop_with_savepoint_and_resume(stack, reference, tmp_path) -> None:
    rng = random.Random(f"{FAULT_SEED}:d")
    point = rng.randint(6, n_batches(reference) - 12)
    with scenario(stack, tmp_path, "d-savepoint", parallelism=1) as (config, phases):
        job_id = operations.submit(config, echo=QUIET)
        phases.done("submit")
        trickle = Trickle(config.kafka_bootstrap, config.events_topic, reference.planned, batch=BATCH).start()
        try:
            trickle.wait_batches(point)
            savepoint = operations.stop(config, savepoint=True, echo=QUIET)
            assert savepoint and flink_cluster.running_job(config) is None
            log(f"d: stopped after batch {trickle.batches_done} with savepoint {savepoint}")
            phases.done("stop with savepoint")
            lines, echo = capture()
            new_id = operations.resume(config, None, echo=echo)
            assert new_id != job_id and str(_local_path(savepoint)) in lines[0]
            phases.done("resume")
            finish(config, reference, new_id, trickle, phases)
        finally:
            trickle.stop()


def test_e_rescale_one_to_two_through_savepoint(stack, reference, tmp_path) -> None:
    """Every operator has a stable uid, so the savepoint of the p=1 job maps onto the p=2 job."""
    rng = random.Random(f"{FAULT_SEED}:e")
    point = rng.randint(6, n_batches(reference) - 12)
    with scenario(stack, tmp_path, "e-rescale", parallelism=1) as (config, phases):
        job_id = operations.submit(config, echo=QUIET)
        phases.done("submit at p=1")
        trickle = Trickle(config.kafka_bootstrap, config.events_topic, reference.planned, batch=BATCH).start()
        try:
            trickle.wait_batches(point)
            savepoint = operations.stop(config, savepoint=True, echo=QUIET)
            log(f"e: stopped p=1 after batch {trickle.batches_done} with savepoint {savepoint}")
            phases.done("stop with savepoint")
            rescaled = dataclasses.replace(config, parallelism=2)
            lines, echo = capture()
            new_id = operations.resume(rescaled, None, echo=echo)
            assert str(_local_path(savepoint)) in lines[0]
            vertices = flink_cluster.job_details(rescaled, new_id)["vertices"]
            stateful = [v for v in vertices if any(uid in v["name"] for uid in ("OverAggregate", "Deduplicate", "term-windows", "rank"))]
            assert len(stateful) >= 3 and all(v["parallelism"] == 2 for v in stateful), [
                (v["name"], v["parallelism"]) for v in vertices
            ]
            phases.done("resume at p=2")
            finish(rescaled, reference, new_id, trickle, phases)
        finally:
            trickle.stop()


def test_f_bounded_replay_into_new_version(stack, reference, tmp_path) -> None:
    with scenario(stack, tmp_path, "f-replay", parallelism=1) as (config, phases):
        registry = config.state_dir / "versions.json"
        try:
            produce(config.kafka_bootstrap, config.events_topic, reference.planned)
            assert_input_is_reference(config, reference)
            v1_id = operations.submit(config, echo=QUIET)
            phases.done("input sent, v1 submitted")
            secs, diff = wait_for_reference(config, reference, v1_id)
            log(f"f: v1 outputs {diff} after {secs:.1f}s")
            phases.done("v1 outputs converge")

            # Rebuild from the earliest offset, beside the live v1, into v2; v2 becomes current.
            name = operations.replay(config, bounded=True, timeout_s=300, echo=lambda line: log(f"  {line}"))
            assert name == "v2" and current_version(config).name == "v2"
            v2 = config_for(config, current_version(config))
            assert flink_cluster.running_job(v2) is None  # --bounded stopped it with a savepoint
            phases.done("replay --bounded into v2")
            secs, diff = wait_for_reference(v2, reference, None, timeout_s=60)
            log(f"f: v2 outputs {diff} after {secs:.1f}s")
            outcome = check_against_reference(v2, reference)
            log(f"f: v2 {outcome}")
            phases.done("v2 checks")

            # v1 is not current any more: cancel it by id, then check it too.
            flink_cluster.cancel_job(config, v1_id)
            outcome = check_against_reference(config, reference)
            log(f"f: v1 {outcome}")
            phases.done("v1 cancelled, checks")
        finally:
            registry.unlink(missing_ok=True)


@pytest.mark.ci
def test_i_taskmanager_killed_after_the_last_input_is_checkpointed(stack, reference, tmp_path) -> None:
    """The restored job has no record left to read: its watermark comes from the restored state.

    The kill comes after a checkpoint that holds every input record (the job's committed
    offsets are the topic's end) and before the last windows are out (their watermark
    comes only when all partitions have been idle for `idleness_ms`).
    """
    with scenario(stack, tmp_path, "i-tm-kill-after-input", parallelism=2) as (config, phases):
        produce(config.kafka_bootstrap, config.events_topic, reference.planned)
        assert_input_is_reference(config, reference)
        job_id = operations.submit(config, echo=QUIET)
        phases.done("input sent, submit")
        deadline = time.monotonic() + 120
        lag = None
        while time.monotonic() < deadline:
            lag = consumer_lag(config, config.job_name, config.events_topic)
            if lag and all(p["committed"] == p["end"] for p in lag.values()):
                break
            time.sleep(0.5)
        assert lag and all(p["committed"] == p["end"] for p in lag.values()), lag
        # Offsets are committed when a checkpoint completes: one holds all the input now.
        before = final_contents(committed_rows(config))
        killed_at = now_ms()
        pid = kill(config, "taskmanager")
        log(f"i: SIGKILL TaskManager pid {pid} with all input checkpointed; {len(before)} of "
            f"{len(reference.rows)} final rows committed")
        # The case under test: the last windows had not closed yet.
        assert before != reference.rows
        phases.done("all input checkpointed, TaskManager killed")
        restart(config)
        secs = wait_recovered(config, job_id, killed_at)
        phases.done(f"recovered ({secs:.0f}s after up)")
        log(f"i: job restarts: {num_restarts(config, job_id)}")
        converge_and_check(config, reference, job_id, phases)


def _idle_partition_input(start_ms: int) -> tuple[list, list, list]:
    """Three phases of a crafted log: both partitions for hours 0-2, partition 0 alone for
    hours 3-5, then partition 1 again with hour 4: behind the job's watermark (hour 4 has
    closed by then), within partition 1's own lateness, and within the window's lateness
    of the job's watermark (the horizon in which the result is exact, README).  The
    words recur across hours, so the late-coming articles revise a closed window."""
    words = ["storm", "harbor", "council", "bridge", "cup"]

    def article(p: int, hour: int, i: int) -> Planned:
        title = f"{words[(hour + i) % 5]} {words[(hour * 2 + i) % 5]} update {p}-{hour}-{i}"
        obj = event(f"url:idle-{p}-{hour}-{i}", title=title, published_at=start_ms + hour * HOUR + i * 7 * 60_000)
        return p, obj["article_id"].encode(), obj["published_at"], encode(obj)

    both = [article(p, hour, i) for hour in range(3) for i in range(4) for p in (0, 1)]
    alone = [article(0, hour, i) for hour in range(3, 6) for i in range(4)]
    back = [article(1, 4, i) for i in range(3)]
    return both, alone, back


def test_j_a_partition_idle_then_back_behind_the_watermark(stack, tmp_path) -> None:
    both, alone, back = _idle_partition_input(window_start(now_ms() - 48 * HOUR, HOUR))
    reference = reference_of(both + alone + back, {"ok": len(both) + len(alone) + len(back)})
    assert not reference.late and not reference.dlq
    hour4 = window_start(back[0][2], HOUR)
    assert any(v[0] == hour4 for v in reference.rows.values())
    with scenario(stack, tmp_path, "j-idle-partition", parallelism=2) as (config, phases):
        job_id = operations.submit(config, echo=QUIET)
        produce(config.kafka_bootstrap, config.events_topic, both + alone)
        phases.done("submit, both partitions then partition 0 alone")
        # Partition 1 goes idle: the watermark follows partition 0, and hour 4 closes.
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and not any(
            r["window_start"] == hour4 for r in committed_rows(config)
        ):
            time.sleep(2)
        closed = [r for r in committed_rows(config) if r["window_start"] == hour4]
        assert closed, "hour 4 never closed"
        # Its rows do not hold partition 1's articles yet: they come after it closed.
        assert all("update 1-4-" not in " ".join(r["examples"]) for r in closed)
        phases.done("partition 1 idle, watermark follows partition 0")
        produce(config.kafka_bootstrap, config.events_topic, back)
        phases.done("partition 1 back behind the watermark")
        assert_input_is_reference(config, reference)
        converge_and_check(config, reference, job_id, phases)


def test_open_transaction_check_sees_an_open_transaction(stack, tmp_path) -> None:
    """The "no transaction left open" check can fail: a transaction left open on purpose is seen."""
    from kafka import KafkaProducer


    with scenario(stack, tmp_path, "txn-check", parallelism=1) as (config, phases):
        producer = KafkaProducer(
            bootstrap_servers=config.kafka_bootstrap, transactional_id=f"{config.transactional_id_prefix}-probe"
        )
        try:
            producer.init_transactions()
            producer.begin_transaction()
            producer.send(config.trends_topic, key=b"k", value=b"{}", partition=0).get(timeout=30)
            producer.flush()
            found = open_transactions(config, [config.transactional_id_prefix])
            log(f"txn-check: open: {found}")
            assert set(found) == {
                "lso_behind_high_watermark", "producers_with_open_transaction", "coordinator_open_transactions"
            }
            producer.abort_transaction()
            assert wait_no_open_transactions(config, [config.transactional_id_prefix], timeout_s=30) == {}
            phases.done("open transaction seen, then gone after abort")
        finally:
            producer.close(timeout=10)
