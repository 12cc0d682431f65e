"""The product's Kafka topics, created once with the partition counts we want."""

from __future__ import annotations

from kafka import KafkaAdminClient
from kafka.admin import NewTopic
from kafka.errors import TopicAlreadyExistsError

from feedtrends.config import Config


def product_topics(config: Config) -> dict[str, int]:
    """Topic -> partitions.  Events are keyed by article, so more partitions spread the work."""
    return {
        config.events_topic: config.partitions,
        config.trends_topic: config.partitions,
        config.dlq_topic: 1,
        config.late_topic: 1,
    }


def ensure_topics(config: Config, topics: dict[str, int] | None = None) -> dict[str, bool]:
    """Create missing topics (replication 1: one local broker).  Returns topic -> created."""
    topics = topics or product_topics(config)
    admin = KafkaAdminClient(bootstrap_servers=config.kafka_bootstrap, request_timeout_ms=15000)
    try:
        existing = set(admin.list_topics())
        missing = [NewTopic(name, partitions, 1) for name, partitions in topics.items() if name not in existing]
        if missing:
            try:
                admin.create_topics(missing)
            except TopicAlreadyExistsError:
                pass  # created concurrently: fine, that is what we wanted
        return {name: name not in existing for name in topics}
    finally:
        admin.close()


def delete_topics(config: Config, names: list[str]) -> None:
    admin = KafkaAdminClient(bootstrap_servers=config.kafka_bootstrap, request_timeout_ms=15000)
    try:
        present = [n for n in names if n in set(admin.list_topics())]
        if present:
            admin.delete_topics(present)
    finally:
        admin.close()
