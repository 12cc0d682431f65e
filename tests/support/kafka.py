"""Producing test events to a real broker, and putting them back in production order."""

from __future__ import annotations

Planned = tuple[int | None, bytes | None, int, bytes]  # (partition or None, key, timestamp_ms, value)
Record = tuple[int, int, int, bytes]  # (partition, offset, timestamp_ms, value)


def produce(bootstrap: str, topic: str, records: list[Planned]) -> list[Record]:
    """Produce (partition, key, timestamp, value) in order; returns oracle records with real offsets."""
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    futures = [
        (producer.send(topic, key=key, value=value, partition=partition, timestamp_ms=ts), ts, value)
        for partition, key, ts, value in records
    ]
    producer.flush()
    out = []
    for future, ts, value in futures:
        meta = future.get(timeout=30)
        out.append((meta.partition, meta.offset, ts, value))
    producer.close()
    return out


def in_production_order(messages, values_in_order: list[bytes]) -> list[Record]:
    """Merge the partitions back into the order the records were produced (the oracle's input order)."""
    queues: dict[int, list] = {}
    for m in sorted(messages, key=lambda m: (m.partition, m.offset)):
        queues.setdefault(m.partition, []).append(m)
    heads = dict.fromkeys(queues, 0)
    out = []
    for value in values_in_order:
        for partition, queue in queues.items():
            if heads[partition] < len(queue) and queue[heads[partition]].value == value:
                m = queue[heads[partition]]
                heads[partition] += 1
                out.append((m.partition, m.offset, m.timestamp, m.value))
                break
        else:
            raise AssertionError("a produced record is missing from the topic")
    return out
