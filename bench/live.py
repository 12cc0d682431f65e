"""Live run of the trends job: latency at a steady rate, and state size over time.

One job (10 s windows, 1 s out-of-orderness, dedup TTL 30 s by default) reads a fresh
topic while we produce `rate` events/s for `seconds`, each stamped with the wall clock
(published_at = fetched_at = record timestamp = now), so windows close in real time.

Latency: a read_committed consumer notes when each window's first row becomes
visible.  A window can close once an event at window_end + out_of_orderness + 1 ms
has been produced, so `close latency` = visible - (window_end + out_of_orderness + 1)
and is what the target (checkpoint interval + 2 s) is about; `event latency`
= visible - produce time of every event in that window (includes waiting for the
window to end).

State: every `sample_s` seconds, the latest completed checkpoint's full and
incremental size (REST /jobs/<id>/checkpoints) and the TaskManager's RSS.
"""

from __future__ import annotations

import dataclasses
import json
import threading
import time

from bench.common import load_average
from bench.flink_run import state_sample, taskmanager_pids
from connectors import flink_cluster
from connectors.synthetic import GeneratorConfig, iter_synthetic
from feedtrends import operations
from core.config import Config
from udfs.entries import encode_event


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    k = min(len(s) - 1, max(0, round(q / 100 * (len(s) - 1))))
    return s[k]


class _RowWatcher(threading.Thread):
    """Notes the wall time each window's first committed row is seen."""

    def __init__(self, bootstrap: str, topic: str):
        super().__init__(daemon=True)
        self.bootstrap, self.topic = bootstrap, topic
        self.first_seen: dict[int, float] = {}
        self.rows: dict[int, int] = {}
        self.stop_flag = threading.Event()
        self.error: Exception | None = None

    def run(self) -> None:
        from kafka import KafkaConsumer

        try:
            consumer = KafkaConsumer(
                self.topic, bootstrap_servers=self.bootstrap, auto_offset_reset="earliest",
                enable_auto_commit=False, isolation_level="read_committed", fetch_max_wait_ms=50,
            )
        except Exception as exc:  # noqa: BLE001 - reported by the caller
            self.error = exc
            return
        try:
            while not self.stop_flag.is_set():
                for _, messages in consumer.poll(timeout_ms=100).items():
                    now = time.time()
                    for m in messages:
                        ws = int(m.key.decode().split("|", 1)[0])
                        self.first_seen.setdefault(ws, now)
                        self.rows[ws] = self.rows.get(ws, 0) + 1
        finally:
            consumer.close()


def live_run(
    base: Config,
    *,
    topic: str,
    rate: float,
    seconds: float,
    window_ms: int = 10_000,
    out_of_orderness_ms: int = 1_000,
    dedup_ttl_ms: int = 30_000,
    sample_s: float = 5.0,
    log=print,
) -> dict:
    suffix = topic.rsplit("-", 1)[-1]
    config = dataclasses.replace(
        base,
        events_topic=topic,
        trends_topic=f"bench-live-trends-{suffix}",
        dlq_topic=f"bench-live-dlq-{suffix}",
        late_topic=f"bench-live-late-{suffix}",
        parquet_dir=base.state_dir / f"parquet-live-{suffix}",
        window_ms=window_ms,
        lateness_ms=window_ms,
        out_of_orderness_ms=out_of_orderness_ms,
        idleness_ms=5_000,
        dedup_ttl_ms=dedup_ttl_ms,
        parallelism=2,
        partitions=2,
        job_name=f"bench-live-{suffix}",
        transactional_id_prefix=f"bench-live-{suffix}",
    )
    from kafka import KafkaProducer

    tms = taskmanager_pids(config)
    job_id = operations.start_job(config, None, echo=lambda line: None)
    log(f"  job {job_id} running; producing {rate:.0f} events/s for {seconds:.0f}s; load {load_average()}")
    watcher = _RowWatcher(config.kafka_bootstrap, config.trends_topic)
    watcher.start()
    producer = KafkaProducer(bootstrap_servers=config.kafka_bootstrap, acks=1, linger_ms=5)
    produced: dict[int, list[float]] = {}
    samples: list[dict] = []
    n = int(rate * seconds)
    templates = iter_synthetic(GeneratorConfig(count=n, seed=11))
    t_start = time.time()
    next_sample = t_start
    last_ts = 0
    try:
        for i, record in enumerate(templates):
            due = t_start + i / rate
            now = time.time()
            if due > now:
                time.sleep(due - now)
            now = time.time()
            ts = int(now * 1000)
            event = json.loads(record.value)
            event["published_at"] = event["fetched_at"] = ts
            producer.send(config.events_topic, key=record.key, value=encode_event(event), timestamp_ms=ts)
            produced.setdefault(ts - ts % window_ms, []).append(now)
            last_ts = ts
            if now >= next_sample:
                next_sample += sample_s
                samples.append(state_sample(config, job_id, tms, now - t_start))
        producer.flush(timeout=60)
        # Windows that the last event can close; give their rows time to commit.
        closable = [ws for ws in produced if ws + window_ms + out_of_orderness_ms + 1 <= last_ts]
        wait_until = time.monotonic() + 30
        while time.monotonic() < wait_until and not all(ws in watcher.first_seen for ws in closable):
            time.sleep(0.5)
        samples.append(state_sample(config, job_id, tms, time.time() - t_start))
    finally:
        watcher.stop_flag.set()
        watcher.join(timeout=10)
        producer.close(timeout=10)
        try:
            flink_cluster.cancel_job(config, job_id)
        except flink_cluster.ClusterError as exc:
            log(f"  cancel {job_id}: {exc}")
    close_lat, event_lat = [], []
    missing = []
    for ws in sorted(closable):
        seen = watcher.first_seen.get(ws)
        if seen is None:
            missing.append(ws)
            continue
        close_lat.append(seen - (ws + window_ms + out_of_orderness_ms + 1) / 1000)
        event_lat.extend(seen - t for t in produced[ws])
    return {
        "job_id": job_id,
        "rate": rate,
        "seconds": seconds,
        "window_ms": window_ms,
        "out_of_orderness_ms": out_of_orderness_ms,
        "dedup_ttl_ms": dedup_ttl_ms,
        "windows_closable": len(closable),
        "windows_missing": len(missing),
        "close_latency_p50_s": _percentile(close_lat, 50),
        "close_latency_p99_s": _percentile(close_lat, 99),
        "close_latency_max_s": max(close_lat) if close_lat else float("nan"),
        "event_latency_p50_s": _percentile(event_lat, 50),
        "event_latency_p99_s": _percentile(event_lat, 99),
        "samples": samples,
        "load": load_average(),
        "watcher_error": repr(watcher.error) if watcher.error else None,
    }
