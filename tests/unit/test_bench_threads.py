"""The bench's CPU-per-thread breakdown (bench/common.py): what it groups and that it counts."""

from __future__ import annotations

import os
import time

from bench.common import ThreadCpu, thread_group


def test_subtasks_and_pool_threads_add_up_under_one_name() -> None:
    assert thread_group("pool-3-thread-1") == thread_group("pool-12-thread-7") == "pool-N-thread-N"
    assert thread_group("rank -> *anonym") == "rank -> *anonym"


def test_it_counts_the_cpu_a_thread_spent_since_start() -> None:
    threads = ThreadCpu((os.getpid(),))
    threads.start()
    deadline = time.process_time() + 0.3
    while time.process_time() < deadline:  # bounded: 0.3 s of this process's CPU
        pass
    spent = threads.by_name()
    assert 0.2 <= sum(spent.values()) < 5.0, spent
    assert list(spent.values()) == sorted(spent.values(), reverse=True)
