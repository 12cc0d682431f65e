"""Preload N generated events (udfs.synthetic: Zipf vocabulary, bursts, ~600-byte JSON) into a fresh topic.

Same producer contract as `feedtrends generate` (key = article id, record timestamp =
published_at) but tuned for volume: acks=1, big batches, lz4 when the lz4 package is
installed (kafka-python needs it for lz4), else no compression.
"""

from __future__ import annotations

import time

from udfs.synthetic import GeneratorConfig, iter_synthetic

# What a realistic rebuild sees: re-posted articles and a little disorder, no bad input.
def generator_config(count: int, seed: int = 7) -> GeneratorConfig:
    return GeneratorConfig(count=count, seed=seed, rate=1.0, duplicates=0.10, out_of_order=0.05)


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
