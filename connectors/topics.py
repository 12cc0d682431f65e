"""The product's Kafka topics: created once with the partition counts we want, their
offsets and consumer lag, and reading a topic back to its end.

The functions that take a `Config` run their Kafka calls through
`connectors.retry.kafka_call`: a broker that is still starting (no controller, no
group coordinator yet) is retried until the configured deadline instead of failing
the operation.
"""

from __future__ import annotations

import time

from kafka import KafkaAdminClient
from kafka.errors import TopicAlreadyExistsError

from connectors.replication import (
    Warn,
    capped_warning,
    new_topic,
    replication_of,
    topic_replicas,
    under_replicated,
    warn_stderr,
)
from connectors.retry import KafkaTimeouts, kafka_call
from core.config import Config


def _kafka(config: Config, what: str, call):
    return kafka_call(what, call, bootstrap=config.kafka_bootstrap, deadline_s=config.retry_deadline_ms / 1000)


def product_topics(config: Config) -> dict[str, int]:
    """Topic -> partitions.  Events are keyed by article, so more partitions spread the work."""
    return {
        config.events_topic: config.partitions,
        config.trends_topic: config.partitions,
        config.dlq_topic: 1,
        config.late_topic: 1,
    }


def ensure_topics(
    config: Config, topics: dict[str, int] | None = None, *, warn: Warn = warn_stderr
) -> dict[str, bool]:
    """Create missing topics with the configured replication and min ISR.  Returns topic -> created.

    Existing topics are left alone; one with fewer replicas than configured gets a
    warning line, and so does a topic created below the configured factor.
    """
    return _kafka(config, "create topics", lambda timeouts: _ensure_topics(config, topics, timeouts, warn))


def _ensure_topics(
    config: Config, topics: dict[str, int] | None, timeouts: KafkaTimeouts, warn: Warn
) -> dict[str, bool]:
    topics = topics or product_topics(config)
    admin = KafkaAdminClient(bootstrap_servers=config.kafka_bootstrap, **timeouts.client_options())
    try:
        existing = set(admin.list_topics())
        replication = replication_of(config, admin)
        missing = [new_topic(name, partitions, replication) for name, partitions in topics.items() if name not in existing]
        if missing:
            try:
                admin.create_topics(missing)
            except TopicAlreadyExistsError:
                pass  # created concurrently (or by an earlier attempt): that is what we wanted
            if replication.capped:
                for t in missing:
                    warn(capped_warning(t.name, replication))
            wait_until_described(admin, [t.name for t in missing], timeouts.request_timeout_ms / 1000)
        for line in under_replicated(replication, admin, [name for name in topics if name in existing]):
            warn(line)
        return {name: name not in existing for name in topics}
    finally:
        admin.close()


DESCRIBE_POLL_S = 0.2


def wait_until_described(
    admin, names: list[str], timeout_s: float, *, sleep=time.sleep, clock=time.monotonic
) -> None:
    """Return once every topic in `names` is described with its partitions.

    A broker learns of a created topic from the controller a moment later and
    answers for it as unknown until then (seen on a freshly started three-node
    cluster): waiting here means that whoever calls `ensure_topics` next finds
    the topics.  Past `timeout_s` it raises TimeoutError, which `kafka_call`
    retries: the whole creation is tried again within its deadline.
    """
    if not names:
        return  # describe_topics([]) would describe every topic
    deadline = clock() + timeout_s
    while True:
        described = topic_replicas(admin, names)
        missing = [name for name in names if name not in described]
        if not missing:
            return
        if clock() >= deadline:
            raise TimeoutError(f"created, but not yet described by the brokers: {', '.join(missing)}")
        sleep(DESCRIBE_POLL_S)


def delete_topics(config: Config, names: list[str]) -> None:
    _kafka(config, "delete topics", lambda timeouts: _delete_topics(config, names, timeouts))


def _delete_topics(config: Config, names: list[str], timeouts: KafkaTimeouts) -> None:
    admin = KafkaAdminClient(bootstrap_servers=config.kafka_bootstrap, **timeouts.client_options())
    try:
        present = [n for n in names if n in set(admin.list_topics())]
        if present:
            admin.delete_topics(present)
    finally:
        admin.close()


def consumer_lag(config: Config, group_id: str, topic: str) -> dict[int, dict[str, int | None]]:
    """Per partition: end offset, the group's committed offset (None: nothing committed yet), lag."""
    return _kafka(config, f"offsets of group {group_id}", lambda timeouts: _consumer_lag(config, group_id, topic, timeouts))


def _consumer_lag(config: Config, group_id: str, topic: str, timeouts: KafkaTimeouts) -> dict[int, dict[str, int | None]]:
    from kafka import KafkaConsumer, TopicPartition

    admin = KafkaAdminClient(bootstrap_servers=config.kafka_bootstrap, **timeouts.client_options())
    try:
        consumer = KafkaConsumer(bootstrap_servers=config.kafka_bootstrap, enable_auto_commit=False, **timeouts.client_options())
    except BaseException:
        admin.close()
        raise
    try:
        # A brand-new group has no coordinator for a moment after a broker start
        # (CoordinatorNotAvailableError, retriable): kafka_call retries it.
        committed = admin.list_group_offsets(group_id).get(group_id, {})
        partitions = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        ends = consumer.end_offsets(tps) if tps else {}
        out: dict[int, dict[str, int | None]] = {}
        for tp in tps:
            meta = committed.get(tp)
            done = meta.offset if meta is not None and meta.offset >= 0 else None
            out[tp.partition] = {
                "end": ends[tp],
                "committed": done,
                "lag": ends[tp] - (done or 0),
            }
        return out
    finally:
        consumer.close()
        admin.close()


def end_offsets(config: Config, topic: str) -> dict[int, int]:
    return _kafka(config, f"end offsets of {topic}", lambda timeouts: _end_offsets(config, topic, timeouts))


def _end_offsets(config: Config, topic: str, timeouts: KafkaTimeouts) -> dict[int, int]:
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=config.kafka_bootstrap, enable_auto_commit=False, **timeouts.client_options())
    try:
        partitions = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        return {tp.partition: offset for tp, offset in (consumer.end_offsets(tps) if tps else {}).items()}
    finally:
        consumer.close()


def read_topic(
    bootstrap: str, topic: str, isolation: str = "read_committed", *, timeout_s: float = 90.0, missing_ok: bool = False
) -> list:
    """Every record of `topic` up to its end offsets, sorted by (partition, offset).

    The end offsets are taken at the start and depend on the isolation level
    (read_committed: the last stable offset, so open transactions are not waited
    for); reading to them instead of stopping on a quiet poll means a slow broker
    cannot cut the read short.  A topic the cluster does not list is an empty topic
    with `missing_ok`; otherwise it is waited for.  TimeoutError once `timeout_s` passed.
    """
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, isolation_level=isolation, request_timeout_ms=30000
    )
    try:
        deadline = time.monotonic() + timeout_s
        partitions = consumer.partitions_for_topic(topic)
        while not partitions:
            if missing_ok:
                return []
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
