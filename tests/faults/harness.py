"""Helpers of the fault-injection suite: the reference input, a trickling producer,
fault injection by pid, bounded waits, and the checks every scenario ends with.

Everything here is bounded: each wait has a deadline, each loop a count or a
deadline, and only processes of this suite's own stack are signalled (by the pid
`connectors.stack` recorded when it started them).
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import signal
import threading
import time
import urllib.error
import uuid
import zlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow.parquet as pq

from connectors import flink_cluster
from connectors import stack as local_stack
from connectors.flink_cluster import ClusterError
from connectors.topics import delete_topics
from connectors.trend_store import read_parquet
from core.config import Config, load_config
from tests.e2e.test_trends_e2e import HOUR, _latest, _parquet_rows
from tests.eventgen import encode, event
from tests.integration.job_runner import oracle_params
from tests.oracle import run_oracle
from udfs.synthetic import GeneratorConfig, generate
from udfs.windows import window_start

PARTITIONS = 2
# The job's semantics, the same in every scenario (and for the oracle).
JOB_SETTINGS = {
    "window_ms": HOUR,
    "lateness_ms": HOUR,
    "out_of_orderness_ms": 5 * 60_000,
    "baseline_windows": 3,
    "min_support": 1,
    "partitions": PARTITIONS,
}
# 30% duplicates, 10% out of order within the bound, 2% beyond the allowed lateness, 1% malformed.
GENERATOR = GeneratorConfig(
    count=800, seed=6, rate=0.02, duplicates=0.30, out_of_order=0.10, late=0.02, malformed=0.01
)
# Seed of the fault points (which batch, how long after it); printed by every scenario.
FAULT_SEED = int(os.environ.get("FAULTS_SEED", "20261126"))

Planned = tuple[int, bytes | None, int, bytes]  # (partition, key, timestamp_ms, value)
Record = tuple[int, int, int, bytes]  # (partition, offset, timestamp_ms, value)

_QUIET = lambda line: None  # noqa: E731


def log(message: str) -> None:
    print(f"[faults {time.strftime('%H:%M:%S')}] {message}", flush=True)


# --------------------------------------------------------------------------- the reference


@dataclass(frozen=True)
class Reference:
    """The one input of every scenario and what the batch oracle makes of it.

    Partitions are assigned here (crc32 of the key; keyless records alternate), so
    a fresh topic written by one producer in this order holds exactly `records`:
    the same offsets in every scenario, hence the same oracle answer.
    """

    planned: tuple[Planned, ...]
    records: tuple[Record, ...]
    rows: dict[str, tuple]  # window_start|term -> final content, windows before the sentinels'
    dlq: dict[tuple[int, int], str]
    late: dict[tuple[int, int], int]
    injected: dict[str, int]


def build_reference() -> Reference:
    synthetic, injected = generate(GENERATOR)
    planned: list[Planned] = []
    for index, r in enumerate(synthetic):
        partition = zlib.crc32(r.key) % PARTITIONS if r.key is not None else index % PARTITIONS
        planned.append((partition, r.key, r.timestamp_ms, r.value))
    # One valid sentinel per partition, far ahead, closes every data window.
    sentinel_ts = max(r.timestamp_ms for r in synthetic) + 10 * HOUR
    for p in range(PARTITIONS):
        obj = event(f"url:sentinel-{p}", title=f"sentinel {p}", published_at=sentinel_ts)
        planned.append((p, obj["article_id"].encode(), sentinel_ts, encode(obj)))
    next_offset = Counter()
    records: list[Record] = []
    for partition, _, ts, value in planned:
        records.append((partition, next_offset[partition], ts, value))
        next_offset[partition] += 1
    expected = run_oracle(records, oracle_params(load_config(JOB_SETTINGS, env={})))
    cutoff = window_start(sentinel_ts, HOUR)
    rows = {k: v for k, v in expected.rows.items() if v[0] < cutoff}
    return Reference(tuple(planned), tuple(records), rows, dict(expected.dlq), dict(expected.late), injected)


# --------------------------------------------------------------------------- scenario config and cleanup


def scenario_config(stack: Config, tmp_path: Path, name: str, *, parallelism: int) -> Config:
    """Fresh uuid topics, job name, transactional id prefix and Parquet dir for one scenario."""
    tag = f"{name}-{uuid.uuid4().hex[:8]}"
    return dataclasses.replace(
        stack,
        events_topic=f"events-{tag}",
        trends_topic=f"trends-{tag}",
        dlq_topic=f"dlq-{tag}",
        late_topic=f"late-{tag}",
        parquet_dir=tmp_path / "parquet",
        transactional_id_prefix=f"faults-{tag}",
        job_name=f"feedtrends-faults-{tag}",
        parallelism=parallelism,
        **JOB_SETTINGS,
    )


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


# --------------------------------------------------------------------------- producing


def _producer(bootstrap: str):
    from kafka import KafkaProducer

    # One request in flight: a retried batch can never overtake the next one.  Idempotent:
    # a batch retried after its leader died (its ack lost) is not written twice, so
    # the topic stays exactly the reference input when a broker is lost mid-stream.
    return KafkaProducer(
        bootstrap_servers=bootstrap, acks="all", linger_ms=5, max_in_flight_requests_per_connection=1,
        enable_idempotence=True,
    )


def produce(bootstrap: str, topic: str, planned: list[Planned] | tuple[Planned, ...]) -> None:
    producer = _producer(bootstrap)
    try:
        futures = [producer.send(topic, key=k, value=v, partition=p, timestamp_ms=ts) for p, k, ts, v in planned]
        producer.flush(timeout=60)
        for f in futures:
            f.get(timeout=30)
    finally:
        producer.close(timeout=10)


class Trickle:
    """Produces the planned records in a background thread: small batches with a sleep between.

    `holds` are batch indices where the thread waits until `release(j)` (for the
    j-th hold): the fault injector lets the stream run up to its next fault point
    only once the job has recovered from the previous fault.  `pause()`/`resume()`
    hold it between two batches (used while the broker is down, so the harness
    itself never re-sends a batch and the input stays exactly the reference).
    """

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        planned: tuple[Planned, ...],
        *,
        batch: int = 16,
        pause_s: float = 0.25,
        holds: tuple[int, ...] = (),
        timeout_s: float = 900.0,
    ) -> None:
        self.bootstrap, self.topic = bootstrap, topic
        self.batches = [planned[i:i + batch] for i in range(0, len(planned), batch)]
        self.pause_s = pause_s
        self.holds = holds
        self._released = [threading.Event() for _ in holds]
        self._open = threading.Event()
        self._open.set()
        self._idle = threading.Event()
        self._idle.set()
        self.batches_done = 0
        self.error: BaseException | None = None
        self._deadline = time.monotonic() + timeout_s
        self._thread = threading.Thread(target=self._run, name=f"trickle-{topic}", daemon=True)

    def start(self) -> "Trickle":
        self._thread.start()
        return self

    def _wait(self, ev: threading.Event, what: str) -> None:
        if not ev.wait(timeout=max(0.0, self._deadline - time.monotonic())):
            raise TimeoutError(f"trickle: {what} not signalled before the deadline")

    def _run(self) -> None:
        try:
            producer = _producer(self.bootstrap)
            try:
                for index, batch in enumerate(self.batches):
                    if index in self.holds:
                        self._wait(self._released[self.holds.index(index)], f"release of hold at batch {index}")
                    self._wait(self._open, "resume")
                    self._idle.clear()
                    try:
                        futures = [
                            producer.send(self.topic, key=k, value=v, partition=p, timestamp_ms=ts)
                            for p, k, ts, v in batch
                        ]
                        producer.flush(timeout=60)
                        for f in futures:
                            f.get(timeout=30)
                        self.batches_done = index + 1
                    finally:
                        self._idle.set()
                    time.sleep(self.pause_s)
            finally:
                producer.close(timeout=10)
        except BaseException as exc:  # noqa: BLE001 - re-raised by join()
            self.error = exc

    def release(self, j: int) -> None:
        self._released[j].set()

    def release_all(self) -> None:
        for ev in self._released:
            ev.set()

    def pause(self, timeout_s: float = 60.0) -> None:
        """Hold the producer after its current batch; returns once it is between batches."""
        self._open.clear()
        deadline = time.monotonic() + timeout_s
        while not self._idle.wait(timeout=0.5):
            if time.monotonic() > deadline:
                raise TimeoutError("trickle did not finish its batch")
        # A batch may have started just before the gate closed: wait for it too.
        time.sleep(0.1)
        if not self._idle.wait(timeout=timeout_s):
            raise TimeoutError("trickle did not finish its batch")

    def resume(self) -> None:
        self._open.set()

    def wait_batches(self, n: int, timeout_s: float = 300.0) -> None:
        deadline = time.monotonic() + timeout_s
        while self.batches_done < n:
            if self.error:
                raise self.error
            if time.monotonic() > deadline:
                raise TimeoutError(f"trickle reached batch {self.batches_done}, wanted {n}")
            time.sleep(0.05)

    def join(self, timeout_s: float = 300.0) -> None:
        self.release_all()
        self.resume()
        self._thread.join(timeout=timeout_s)
        if self._thread.is_alive():
            raise TimeoutError("trickle still producing after the deadline")
        if self.error:
            raise self.error

    def stop(self) -> None:
        """For `finally`: let the thread run out quickly (it is a daemon; bounded by its deadline)."""
        self._deadline = time.monotonic()
        self.release_all()
        self.resume()
        self._thread.join(timeout=30)


def fault_points(rng, count: int, n_batches: int, *, first: int = 4, gap: int = 8) -> list[int]:
    """`count` batch indices in [first, n_batches - gap), at least `gap` apart (seeded)."""
    for _ in range(1000):
        points = sorted(rng.sample(range(first, n_batches - gap), count))
        if all(b - a >= gap for a, b in zip(points, points[1:])):
            return points
    raise ValueError("cannot place the fault points; use fewer faults or more batches")


# --------------------------------------------------------------------------- faults


def kill(config: Config, role: str) -> int:
    """SIGKILL the process group of `role` (kafka, jobmanager, taskmanager) of this stack; returns its pid."""
    pid = local_stack.status(config)["pids"].get(role)
    assert pid, f"{role} is not running"
    os.killpg(pid, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            os.waitpid(pid, os.WNOHANG)  # reap it: the stack fixture's process started it
        except ChildProcessError:
            pass
        if not Path(f"/proc/{pid}").exists() or _is_zombie(pid):
            return pid
        time.sleep(0.1)
    raise TimeoutError(f"{role} (pid {pid}) still alive 30 s after SIGKILL")


def _is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1].startswith("Z")
    except (OSError, IndexError):
        return True


def restart(config: Config) -> None:
    """`feedtrends up`: starts only the dead part(s)."""
    local_stack.up(config, timeout_s=180, echo=lambda line: log(f"up: {line}") if "started" in line else None)


def num_restarts(config: Config, job_id: str) -> int | None:
    try:
        metrics = local_stack.rest_get(config, f"/jobs/{job_id}/metrics?get=numRestarts", timeout_s=10)
        return int(float(metrics[0]["value"])) if metrics else None
    except (urllib.error.URLError, OSError, ValueError, KeyError, IndexError):
        return None


def wait_recovered(config: Config, job_id: str, since_ms: int, timeout_s: float = 300.0) -> float:
    """Until the job runs all its tasks and a checkpoint completed after `since_ms` (wall clock)."""
    start = time.monotonic()
    deadline = start + timeout_s
    last = "no answer"
    while time.monotonic() < deadline:
        try:
            details = flink_cluster.job_details(config, job_id)
            if details["state"] in ("FAILED", "CANCELED", "FINISHED"):
                raise AssertionError(f"job {job_id} is {details['state']} instead of recovering")
            checkpoint = flink_cluster.last_checkpoint(config, job_id)
            running = all(v["status"] == "RUNNING" for v in details.get("vertices", []))
            last = f"state {details['state']}, tasks running {running}, last checkpoint {checkpoint}"
            if running and checkpoint and (checkpoint["completed_at"] or 0) > since_ms:
                return time.monotonic() - start
        except ClusterError as exc:
            last = str(exc)
        time.sleep(1.0)
    raise TimeoutError(f"job {job_id} did not recover within {timeout_s:.0f}s: {last}")


# --------------------------------------------------------------------------- reading back


def read_topic(bootstrap: str, topic: str, isolation: str, timeout_s: float = 90.0) -> list:
    """Every record of `topic` up to its end offset for this isolation level (read_committed: the LSO).

    Reads to the end offsets taken at the start instead of stopping on a quiet
    poll, so a slow broker cannot cut the read short.
    """
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, isolation_level=isolation, request_timeout_ms=30000
    )
    try:
        deadline = time.monotonic() + timeout_s
        partitions = consumer.partitions_for_topic(topic)
        while not partitions:
            if time.monotonic() > deadline:
                raise TimeoutError(f"no metadata for topic {topic}")
            time.sleep(0.5)
            partitions = consumer.partitions_for_topic(topic)
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        ends = consumer.end_offsets(tps)
        out = []
        while any(consumer.position(tp) < ends[tp] for tp in tps):
            if time.monotonic() > deadline:
                positions = {tp.partition: consumer.position(tp) for tp in tps}
                raise TimeoutError(f"reading {topic} ({isolation}): at {positions}, end {ends}")
            for records in consumer.poll(timeout_ms=500).values():
                out.extend(records)
        return sorted(out, key=lambda m: (m.partition, m.offset))
    finally:
        consumer.close()


def committed_rows(config: Config) -> list[dict]:
    return [json.loads(m.value) for m in read_topic(config.kafka_bootstrap, config.trends_topic, "read_committed")]


def wait_for_reference(
    config: Config, reference: Reference, job_id: str | None, timeout_s: float = 300.0
) -> tuple[float, str]:
    """Until Kafka (read_committed) and Parquet both hold the reference's final rows.

    Returns (seconds, what differed last).  Does not assert: the caller's checks
    show the difference.  While waiting, a job that failed for good ends the wait.
    """
    start = time.monotonic()
    deadline = start + timeout_s
    diff = "not read yet"
    while time.monotonic() < deadline:
        kafka = _latest(committed_rows(config))
        parquet = _latest(_parquet_rows(read_parquet(config.parquet_path)))
        if kafka == reference.rows and parquet == reference.rows:
            return time.monotonic() - start, "equal"
        diff = f"kafka {_describe_diff(kafka, reference.rows)}; parquet {_describe_diff(parquet, reference.rows)}"
        if job_id is not None:
            try:
                state = flink_cluster.job_details(config, job_id)["state"]
            except ClusterError:
                state = "unreachable"
            if state in ("FAILED", "CANCELED"):
                return time.monotonic() - start, f"job {state}; {diff}"
        time.sleep(3)
    return time.monotonic() - start, f"timed out; {diff}"


def _describe_diff(got: dict, want: dict) -> str:
    missing = want.keys() - got.keys()
    extra = got.keys() - want.keys()
    changed = [k for k in want.keys() & got.keys() if got[k] != want[k]]
    if not (missing or extra or changed):
        return "equal"
    return f"{len(got)} rows: missing {len(missing)}, extra {len(extra)}, different {len(changed)}" + (
        f" (e.g. {sorted(changed)[:3]})" if changed else ""
    )


def assert_input_is_reference(config: Config, reference: Reference) -> None:
    """The events topic holds exactly the reference records (the harness re-sent nothing)."""
    got = [
        (m.partition, m.offset, m.timestamp, m.value)
        for m in read_topic(config.kafka_bootstrap, config.events_topic, "read_uncommitted")
    ]
    assert got == sorted(reference.records, key=lambda r: (r[0], r[1])), "the events topic is not the reference input"


# --------------------------------------------------------------------------- open transactions


_OPEN_STATES = {"Ongoing", "PrepareCommit", "PrepareAbort", "PrepareEpochFence"}


def open_transactions(config: Config, prefixes: list[str]) -> dict[str, object]:
    """What is still open on the output topics; empty when every transaction ended.

    Three views, all from the broker:
    * per partition, the read_committed end offset (the last stable offset, LSO)
      against the read_uncommitted end offset (the high watermark): an open
      transaction pins the LSO at its first record, so LSO == HW means none;
    * DescribeProducers per partition: a producer with a current transaction
      start offset >= 0 has a transaction open on that partition;
    * ListTransactions (KIP-1152 pattern filter, Kafka 4.1+) on the coordinator:
      transactional ids with our prefixes in an Ongoing/Prepare* state.
    """
    from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition

    topics = [config.trends_topic, config.dlq_topic, config.late_topic]
    found: dict[str, object] = {}
    consumers = {
        iso: KafkaConsumer(bootstrap_servers=config.kafka_bootstrap, enable_auto_commit=False, isolation_level=iso)
        for iso in ("read_committed", "read_uncommitted")
    }
    admin = KafkaAdminClient(bootstrap_servers=config.kafka_bootstrap, request_timeout_ms=15000)
    try:
        tps = []
        for topic in topics:
            partitions = consumers["read_uncommitted"].partitions_for_topic(topic) or set()
            tps += [TopicPartition(topic, p) for p in sorted(partitions)]
        lso = consumers["read_committed"].end_offsets(tps)
        hw = consumers["read_uncommitted"].end_offsets(tps)
        pinned = {f"{tp.topic}/{tp.partition}": (lso[tp], hw[tp]) for tp in tps if lso[tp] != hw[tp]}
        if pinned:
            found["lso_behind_high_watermark"] = pinned
        producers = admin.describe_producers(tps)
        active = {
            f"{tp.topic}/{tp.partition}": [
                (p.producer_id, p.producer_epoch, p.current_transaction_start_offset)
                for p in state.active_producers
                if p.current_transaction_start_offset >= 0
            ]
            for tp, state in producers.items()
        }
        active = {k: v for k, v in active.items() if v}
        if active:
            found["producers_with_open_transaction"] = active
        pattern = "|".join(re.escape(p) for p in prefixes)
        listings = admin.list_transactions(transactional_id_pattern=f"({pattern}).*")
        ongoing = sorted(
            (t.transactional_id, t.state.value)
            for rows in listings.values()
            for t in rows
            if t.state.value in _OPEN_STATES
        )
        if ongoing:
            found["coordinator_open_transactions"] = ongoing
        return found
    finally:
        for c in consumers.values():
            c.close()
        admin.close()


def wait_no_open_transactions(config: Config, prefixes: list[str], timeout_s: float = 60.0) -> dict[str, object]:
    """Empty dict once nothing is open (markers are written asynchronously: allow a moment)."""
    deadline = time.monotonic() + timeout_s
    found = open_transactions(config, prefixes)
    while found and time.monotonic() < deadline:
        time.sleep(2)
        found = open_transactions(config, prefixes)
    return found


# --------------------------------------------------------------------------- the checks of every scenario


@dataclass
class Outcome:
    kafka_rows: int = 0
    parquet_rows: int = 0
    parquet_files: int = 0
    dlq: int = 0
    late: int = 0
    notes: list[str] = field(default_factory=list)


def check_against_reference(config: Config, reference: Reference, *, prefixes: list[str] | None = None) -> Outcome:
    """All the assertions a scenario ends with, once its job has ended."""
    out = Outcome()
    committed = read_topic(config.kafka_bootstrap, config.trends_topic, "read_committed")
    kafka_rows = [json.loads(m.value) for m in committed]
    parquet_rows = _parquet_rows(read_parquet(config.parquet_path))
    out.kafka_rows, out.parquet_rows = len(kafka_rows), len(parquet_rows)

    # Final rows (latest revision per window_start|term) equal the oracle, in both sinks.
    assert _describe_diff(_latest(kafka_rows), reference.rows) == "equal"
    assert _describe_diff(_latest(parquet_rows), reference.rows) == "equal"
    assert _latest(kafka_rows) == reference.rows
    assert _latest(parquet_rows) == reference.rows
    assert all(
        m.key.decode() == f"{json.loads(m.value)['window_start']}|{json.loads(m.value)['term']}" for m in committed
    )
    # Exactly once: no (window_start, term, revision) committed twice, in either sink.
    for name, rows in (("kafka", kafka_rows), ("parquet", parquet_rows)):
        revisions = Counter((r["window_start"], r["term"], r["revision"]) for r in rows)
        twice = {k: n for k, n in revisions.items() if n > 1}
        assert not twice, f"{name}: {len(twice)} revisions committed more than once, e.g. {list(twice.items())[:5]}"

    # Every committed Parquet file reads whole on its own.
    files = sorted(f for f in Path(config.parquet_path).rglob("part-*") if not f.name.startswith("."))
    assert files, "no committed Parquet file"
    assert sum(pq.read_table(f).num_rows for f in files) == len(parquet_rows)
    out.parquet_files = len(files)

    # The DLQ and late topics hold exactly the injected events: each once, none missing.
    for topic, expected in ((config.dlq_topic, reference.dlq), (config.late_topic, reference.late)):
        got = [json.loads(m.value) for m in read_topic(config.kafka_bootstrap, topic, "read_committed")]
        places = Counter((d["partition"], d["offset"]) for d in got)
        assert places == Counter(expected.keys()), (
            f"{topic}: missing {sorted(set(expected) - set(places))}, "
            f"unexpected {sorted(set(places) - set(expected))}, twice {sorted(k for k, n in places.items() if n > 1)}"
        )
        if topic == config.dlq_topic:
            assert [d["reason"] for d in sorted(got, key=lambda d: (d["partition"], d["offset"]))] == [
                expected[k] for k in sorted(expected)
            ]
            out.dlq = len(got)
        else:
            out.late = len(got)

    # No transaction left open on any output topic once the job has ended.
    found = wait_no_open_transactions(config, prefixes or [config.transactional_id_prefix])
    assert not found, f"transactions left open after the job ended: {found}"
    return out


def end_job(config: Config) -> None:
    """Cancel the scenario's running job (as `feedtrends stop` does) and wait until it is gone."""
    from feedtrends import operations

    operations.stop(config, savepoint=False, echo=_QUIET)
    assert flink_cluster.running_job(config) is None


def capture() -> tuple[list[str], Callable[[str], None]]:
    lines: list[str] = []
    return lines, lambda line: (lines.append(line), log(f"  {line}"))
