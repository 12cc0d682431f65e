"""Brokers lost on a three-node cluster (`brokers: 3`): no acknowledged row is lost, none doubled.

Same reference input, oracle and end-of-run checks as test_faults.py, on a stack
of its own with three combined broker + controller nodes; every topic has three
replicas and min.insync.replicas 2.

    g  SIGKILL the broker leading most partitions of the events and trends topics
       while events flow; the producer and the job carry on (or recover by
       themselves) on the other two; `up` brings the node back later.
    h  two brokers down: a write is not acknowledged (it would be on one replica
       only), the job cannot commit; after `up` the output converges to the oracle.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Iterator

import pytest

from connectors.stack.paths import broker_role
from connectors.producer import KafkaSink, make_producer
from connectors.replication import topic_min_insync, topic_replicas
from connectors.topics import ensure_topics
from feedtrends import operations
from core.config import Config
from tests.support.stack import running_stack
from tests.faults.inject import kill, num_restarts, restart, wait_recovered
from tests.faults.reference import Trickle
from tests.faults.scenario import BATCH, FAULT_SEED, QUIET, finish, log, n_batches, now_ms, scenario

pytestmark = pytest.mark.faults


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Config]:
    with running_stack(tmp_path_factory.mktemp("cluster-stack"), brokers=3, taskmanagers=1) as config:
        yield config


def _leaders(config: Config, topics: list[str]) -> Counter:
    """Node id -> partitions of `topics` it leads."""
    from kafka import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=config.kafka_bootstrap, request_timeout_ms=15000)
    try:
        return Counter(p["leader_id"] for t in admin.describe_topics(topics) for p in t["partitions"])
    finally:
        admin.close()


def _assert_replicated(config: Config) -> None:
    from kafka import KafkaAdminClient

    topics = [config.events_topic, config.trends_topic, config.dlq_topic, config.late_topic]
    admin = KafkaAdminClient(bootstrap_servers=config.kafka_bootstrap, request_timeout_ms=15000)
    try:
        assert topic_replicas(admin, topics) == {t: 3 for t in topics}
        assert topic_min_insync(admin, topics) == {t: 2 for t in topics}
    finally:
        admin.close()


@pytest.mark.ci
def test_g_lead_broker_killed_while_events_flow(cluster, reference, tmp_path) -> None:
    rng = random.Random(f"{FAULT_SEED}:g")
    point = rng.randint(6, n_batches(reference) - 20)
    down_s = 20.0
    max_stall_s = 90.0
    with scenario(cluster, tmp_path, "g-lead-broker", parallelism=2) as (config, phases):
        _assert_replicated(config)
        job_id = operations.submit(config, echo=QUIET)
        phases.done("submit")
        trickle = Trickle(config.kafka_bootstrap, config.events_topic, reference.planned, batch=BATCH).start()
        try:
            trickle.wait_batches(point)
            leaders = _leaders(config, [config.events_topic, config.trends_topic])
            node = leaders.most_common(1)[0][0]
            role = broker_role(node)
            # The producer is not paused: it must carry on through the leader change.
            pid = kill(config, role)
            at = trickle.batches_done
            log(f"g: SIGKILL broker {node} ({role}, pid {pid}; leads {leaders[node]} of {sum(leaders.values())} "
                f"partitions) after batch {at}; down for {down_s:.0f}s")
            # acks=all waits for every in-sync replica, the dead one too, until the
            # controller fences it (broker.session.timeout.ms, 9 s) and the ISR shrinks:
            # a stall of 9-12 s is expected here, more on a loaded machine.  What must
            # not happen is that the producer never resumes while the node is down.
            killed_at = time.monotonic()
            try:
                trickle.wait_batches(at + 1, timeout_s=max_stall_s)
            except TimeoutError:
                raise AssertionError(
                    f"the producer sent nothing for {max_stall_s:.0f}s with one broker of three down") from None
            stall_s = time.monotonic() - killed_at
            time.sleep(max(0.0, down_s - stall_s))
            assert trickle.error is None, trickle.error
            log(f"g: producer stalled {stall_s:.1f}s, then went on from batch {at} to {trickle.batches_done} "
                f"with broker {node} down")
            restart(config)
            back_at = now_ms()
            phases.done(f"broker {node} killed, {trickle.batches_done - at} batches sent meanwhile, restarted")
            secs = wait_recovered(config, job_id, back_at)
            log(f"g: job restarts: {num_restarts(config, job_id)}")
            phases.done(f"job recovered ({secs:.0f}s to a checkpoint after the broker returned)")
            finish(config, reference, job_id, trickle, phases)
        finally:
            trickle.stop()


def test_h_two_brokers_down_nothing_acknowledged_then_converges(cluster, reference, tmp_path) -> None:
    rng = random.Random(f"{FAULT_SEED}:h")
    point = rng.randint(6, n_batches(reference) - 20)
    with scenario(cluster, tmp_path, "h-two-brokers", parallelism=2) as (config, phases):
        probe_topic = f"probe-{config.events_topic}"
        ensure_topics(config, {probe_topic: 1})
        job_id = operations.submit(config, echo=QUIET)
        phases.done("submit")
        trickle = Trickle(config.kafka_bootstrap, config.events_topic, reference.planned, batch=BATCH).start()
        try:
            trickle.wait_batches(point)
            # The reference input goes in whole or not at all: hold it between two batches.
            trickle.pause()
            leaders = _leaders(config, [config.events_topic, config.trends_topic])
            first = leaders.most_common(1)[0][0]
            second = next(n for n in (1, 2, 3) if n != first)
            pids = [kill(config, broker_role(n)) for n in (first, second)]
            log(f"h: SIGKILL brokers {first} and {second} (pids {pids}) after batch {trickle.batches_done}")

            # The product's own producer (acks=all, idempotent): with one replica left
            # no write may be acknowledged.  Two of three nodes are also two of three
            # controller voters, so the quorum is gone too: the partition leader cannot
            # shrink its ISR, and the write times out instead of being refused.
            sink = KafkaSink(
                config.kafka_bootstrap, probe_topic,
                producer=make_producer(config.kafka_bootstrap, request_timeout_ms=10_000,
                                       delivery_timeout_ms=25_000, max_block_ms=25_000),
            )
            try:
                for i in range(5):
                    sink.send(f"probe-{i}".encode(), b"{}", now_ms(), tag=i)
                report = sink.flush(timeout_s=40)
            finally:
                sink.producer.close(timeout=5)
            log(f"h: writes with two brokers down: sent {report.sent}, failed {report.failed}, {dict(report.errors)}")
            assert report.sent == 0 and report.failed == 5 and report.failed_tags == set(range(5))
            phases.done("two brokers down: no write acknowledged")

            restart(config)
            back_at = now_ms()
            trickle.resume()
            phases.done("both brokers back")
            secs = wait_recovered(config, job_id, back_at, timeout_s=420)
            log(f"h: job restarts: {num_restarts(config, job_id)}")
            phases.done(f"job recovered ({secs:.0f}s to a checkpoint after the brokers returned)")
            finish(config, reference, job_id, trickle, phases)
        finally:
            trickle.stop()
