"""Preload N generated events (connectors.synthetic: Zipf vocabulary, bursts, ~600-byte JSON) into a fresh topic.

Same producer contract as `feedtrends generate` (key = article id, record timestamp =
published_at) but tuned for volume: acks=1, big batches, lz4 when the lz4 package is
installed (kafka-python needs it for lz4), else no compression.
"""

from __future__ import annotations

import time

from connectors.synthetic import DEFAULT_START_MS, GeneratorConfig, iter_synthetic

_HOUR_MS = 3_600_000
_DAY_MS = 24 * _HOUR_MS


def start_ms(count: int, rate: float, now_ms: int) -> int:
    """The generator's default start, moved back if the timeline would end less than a day before now.

    The job's source does not let a timestamp more than a day past the wall clock
    move the watermark (connectors/flink_io.py), so windows after that never fire:
    the first N=1M run ended 4 days in the future and emitted 805,095 of its
    1,251,123 rows.  Whole hours, so window boundaries stay where they were.
    """
    latest = now_ms - _DAY_MS - int(count * 1000 / rate)
    return min(DEFAULT_START_MS, latest - latest % _HOUR_MS)


# What a realistic rebuild sees: re-posted articles and a little disorder, no bad input.
def generator_config(count: int, seed: int = 7, now_ms: int | None = None) -> GeneratorConfig:
    now = int(time.time() * 1000) if now_ms is None else now_ms
    return GeneratorConfig(
        count=count, seed=seed, rate=1.0, duplicates=0.10, out_of_order=0.05, start_ms=start_ms(count, 1.0, now)
    )


def compression() -> str | None:
    try:
        import lz4.frame  # noqa: F401
    except ImportError:
        return None
    return "lz4"


def preload(bootstrap: str, topic: str, count: int, *, seed: int = 7) -> dict:
    from kafka import KafkaProducer

    producer = KafkaProducer(
        bootstrap_servers=bootstrap,
        acks=1,
        linger_ms=50,
        batch_size=512 * 1024,
        max_request_size=4 * 1024 * 1024,
        compression_type=compression(),
    )
    t0 = time.time()
    sent = size = 0
    try:
        for record in iter_synthetic(generator_config(count, seed)):
            producer.send(topic, key=record.key, value=record.value, timestamp_ms=record.timestamp_ms)
            sent += 1
            size += len(record.value)
        producer.flush(timeout=600)
    finally:
        producer.close(timeout=30)
    seconds = time.time() - t0
    return {"events": sent, "bytes": size, "seconds": seconds, "compression": compression() or "none"}
