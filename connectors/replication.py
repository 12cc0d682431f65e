"""How many copies of each topic we keep, and the warning when an existing topic has fewer.

Every topic the product creates gets `replication_factor` replicas (capped at the
brokers the cluster reports: a one-broker stack cannot hold more) and
`min.insync.replicas`, so an `acks=all` write is acknowledged only once that many
replicas have it.  A topic that already exists is never changed (its data would
have to move); it gets a one-line warning instead.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any, Callable, Iterable

from core.config import Config

MIN_ISR = "min.insync.replicas"


@dataclass(frozen=True)
class Replication:
    factor: int  # replicas per partition
    min_insync: int  # replicas an acks=all write must reach
    wanted: int  # the configured factor, before the cap
    brokers: int  # brokers the cluster reported

    @property
    def capped(self) -> bool:
        """Fewer replicas than configured on a cluster that has more than one broker.

        A one-broker cluster can only ever hold one copy (the local stack): that is
        expected, not worth a warning.  On a bigger cluster it means brokers are
        missing right now, and the topic keeps the lower factor after they return.
        """
        return self.factor < self.wanted and self.brokers > 1

    def topic_configs(self) -> dict[str, str]:
        return {MIN_ISR: str(self.min_insync)}


def replication_for(replication_factor: int, min_insync_replicas: int, brokers: int) -> Replication:
    """The factor and min ISR for a cluster of `brokers` (0 in min_insync_replicas: the default)."""
    factor = max(1, min(replication_factor, brokers))
    default_min = 2 if factor >= 3 else 1
    # An explicit min ISR above a capped factor would make every acks=all write fail.
    min_insync = min(min_insync_replicas or default_min, factor)
    return Replication(factor, min_insync, replication_factor, brokers)


def cluster_brokers(admin: Any) -> int:
    """Brokers the cluster reports (registered and not fenced)."""
    return sum(1 for b in admin.describe_cluster().get("brokers", []) if not b.get("is_fenced"))


def replication_of(config: Config, admin: Any) -> Replication:
    return replication_for(config.replication_factor, config.min_insync_replicas, cluster_brokers(admin))


def new_topic(name: str, partitions: int, replication: Replication) -> Any:
    from kafka.admin import NewTopic

    return NewTopic(name, partitions, replication.factor, topic_configs=replication.topic_configs())


def capped_warning(topic: str, replication: Replication) -> str:
    return (
        f"warning: topic {topic} created with replication factor {replication.factor}, below the configured "
        f"{replication.wanted}: the cluster reports {replication.brokers} broker(s)"
    )


def topic_replicas(admin: Any, topics: Iterable[str]) -> dict[str, int]:
    """Topic -> the fewest replicas any of its partitions has (existing topics only)."""
    out = {}
    for t in admin.describe_topics(list(topics)):
        if t.get("error_code", 0) == 0 and t.get("partitions"):
            out[t["name"]] = min(len(p["replica_nodes"]) for p in t["partitions"])
    return out


def topic_min_insync(admin: Any, topics: Iterable[str]) -> dict[str, int]:
    """Topic -> its effective min.insync.replicas (its own setting or the broker default)."""
    from kafka.admin import ConfigResource, ConfigResourceType

    names = list(topics)
    if not names:
        return {}
    resources = [ConfigResource(ConfigResourceType.TOPIC, name, configs=[MIN_ISR]) for name in names]
    described = admin.describe_configs(resources, config_filter="all").get("topic", {})
    out = {}
    for name, entries in described.items():
        entry = entries.get(MIN_ISR)
        if entry is not None and entry.get("value") is not None:
            out[name] = int(entry["value"])
    return out


def under_replicated(wanted: Replication, admin: Any, topics: Iterable[str]) -> list[str]:
    """One warning line per existing topic with fewer replicas (or a lower min ISR) than `wanted`
    (`replication_of` the config on this cluster)."""
    names = list(topics)
    replicas = topic_replicas(admin, names)
    min_isr = topic_min_insync(admin, list(replicas))
    lines = []
    for topic in names:
        if topic not in replicas:
            continue
        problems = []
        if replicas[topic] < wanted.factor:
            problems.append(f"{replicas[topic]} replica(s), configured {wanted.factor}")
        if min_isr.get(topic, wanted.min_insync) < wanted.min_insync:
            problems.append(f"{MIN_ISR}={min_isr[topic]}, configured {wanted.min_insync}")
        if problems:
            lines.append(
                f"warning: topic {topic} has {' and '.join(problems)} (on {wanted.brokers} brokers); "
                "left as it is: reassign its partitions to add replicas"
            )
    return lines


def warn_stderr(line: str) -> None:
    print(line, file=sys.stderr)


Warn = Callable[[str], None]
