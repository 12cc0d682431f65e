"""The one input of every fault scenario, the batch oracle's answer for it, and its delivery.

800 generated events (30% duplicates, 10% out of order within the bound, 2% beyond
the allowed lateness, 1% malformed), and nothing after them: no record from the
harness moves the watermark on.  The windows the job must close are the ones its
final watermark passes once the input has stopped and every partition has gone
idle (the highest record timestamp - out-of-orderness - 1 ms), after a fault too.
`produce` writes it at once; `Trickle` writes it in small batches while a scenario
injects its faults, holding where the scenario says.
"""

from __future__ import annotations

import threading
import time
import zlib
from collections import Counter
from dataclasses import dataclass

from connectors.synthetic import GeneratorConfig, generate
from core.config import load_config
from tests.oracle import run_oracle
from tests.support.rows import HOUR, oracle_params
from udfs.event import MIN_PUBLISHED_AT_MS
from udfs.windows import fire_time

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

Planned = tuple[int, bytes | None, int, bytes]  # (partition, key, timestamp_ms, value)
Record = tuple[int, int, int, bytes]  # (partition, offset, timestamp_ms, value)


@dataclass(frozen=True)
class Reference:
    """The one input of every scenario and what the batch oracle makes of it.

    Partitions are assigned here (crc32 of the key; keyless records alternate), so
    a fresh topic written by one producer in this order holds exactly `records`:
    the same offsets in every scenario, hence the same oracle answer.
    """

    planned: tuple[Planned, ...]
    records: tuple[Record, ...]
    rows: dict[str, tuple]  # window_start|term -> final content, windows the final watermark closes
    dlq: dict[tuple[int, int], str]
    late: dict[tuple[int, int], int]
    injected: dict[str, int]


def build_reference() -> Reference:
    synthetic, injected = generate(GENERATOR)
    planned: list[Planned] = []
    for index, r in enumerate(synthetic):
        partition = zlib.crc32(r.key) % PARTITIONS if r.key is not None else index % PARTITIONS
        planned.append((partition, r.key, r.timestamp_ms, r.value))
    return reference_of(planned, injected)


def reference_of(planned: list[Planned], injected: dict[str, int]) -> Reference:
    """`planned`, written in this order into a fresh topic, and what the oracle makes of it."""
    next_offset = Counter()
    records: list[Record] = []
    for partition, _, ts, value in planned:
        records.append((partition, next_offset[partition], ts, value))
        next_offset[partition] += 1
    config = load_config(JOB_SETTINGS, env={})
    expected = run_oracle(records, oracle_params(config))
    watermark = final_watermark([ts for _, _, ts, _ in records], config.out_of_orderness_ms)
    # A window fires when the watermark reaches its last millisecond; its ranked rows go
    # out on the next watermark after that, so one ending exactly at the final watermark waits.
    rows = {k: v for k, v in expected.rows.items() if fire_time(v[0], HOUR) < watermark}
    return Reference(tuple(planned), tuple(records), rows, dict(expected.dlq), dict(expected.late), injected)


def final_watermark(timestamps: list[int], out_of_orderness_ms: int) -> int:
    """The job's watermark once every partition has gone idle: the highest record timestamp
    the source counts - out-of-orderness - 1 ms.  Like the source, it counts a timestamp
    before 2000 or more than a day ahead of the wall clock as the epoch."""
    horizon = int(time.time() * 1000) + 86_400_000
    counted = [ts if MIN_PUBLISHED_AT_MS <= ts <= horizon else 0 for ts in timestamps]
    return max(counted) - out_of_orderness_ms - 1


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
