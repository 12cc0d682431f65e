"""Small measuring helpers shared by the benchmark steps: CPU and RSS from /proc, machine load."""

from __future__ import annotations

import os
import re
import subprocess
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """utime + stime of one process (all its threads), in seconds; 0.0 if it is gone."""
    try:
        return _stat_cpu(f"/proc/{pid}/stat")
    except OSError:
        return 0.0


def _stat_cpu(path: str) -> float:
    """utime + stime, in seconds, from a /proc stat file (a process's or one thread's)."""
    with open(path) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # After "pid (comm)": state is field 3, utime field 14, stime field 15.
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def _thread_times(pids: Iterable[int]) -> dict[tuple[int, int], tuple[str, float]]:
    """(pid, tid) -> (thread name, utime + stime in seconds) of every live thread of `pids`."""
    out: dict[tuple[int, int], tuple[str, float]] = {}
    for pid in pids:
        try:
            tids = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for tid in tids:
            try:
                with open(f"/proc/{pid}/task/{tid}/comm") as f:
                    name = f.read().strip()
                cpu = _stat_cpu(f"/proc/{pid}/task/{tid}/stat")
            except OSError:  # the thread ended between listing and reading
                continue
            out[(pid, int(tid))] = (name, cpu)
    return out


def thread_group(name: str) -> str:
    """A thread's name with its numbers as N: "rank -> *anonym" stays, "pool-3-thread-1" is "pool-N-thread-N"."""
    return re.sub(r"\d+", "N", name)


@dataclass
class ThreadCpu:
    """CPU per thread name between start() and by_name(): which task chain of the job burns the cores.

    Flink names each task thread after its operator chain, and in thread mode a chain's
    Python runs on that thread too, so a task thread's time is the chain's JVM and
    Python work together.  Linux keeps the first 15 bytes of a name; digits become N,
    so the subtasks of one chain (and the threads of one pool) add up under one name.
    A thread that ended before by_name() is not counted.
    """

    pids: tuple[int, ...]
    before: dict[tuple[int, int], tuple[str, float]] = field(default_factory=dict)

    def start(self) -> None:
        self.before = _thread_times(self.pids)

    def by_name(self) -> dict[str, float]:
        totals: dict[str, float] = {}
        for key, (name, cpu) in _thread_times(self.pids).items():
            spent = cpu - self.before.get(key, (name, 0.0))[1]
            group = thread_group(name)
            totals[group] = totals.get(group, 0.0) + spent
        return dict(sorted(totals.items(), key=lambda kv: -kv[1]))


def rss_bytes(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def load_average() -> str:
    """The `uptime` load figures, recorded next to every measurement (the machine is shared)."""
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"


def machine() -> dict[str, str]:
    mem_kb = 0
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
    java = subprocess.run(["java", "-version"], capture_output=True, text=True).stderr.splitlines()
    return {
        "nproc": str(os.cpu_count()),
        "memory_gib": f"{mem_kb / 1024 / 1024:.1f}",
        "uptime": subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip(),
        "java": java[0] if java else "?",
    }


@dataclass
class Stopwatch:
    """Wall time and the CPU time of a set of processes, between start() and stop()."""

    pids: tuple[int, ...]
    t0: float = 0.0
    cpu0: float = 0.0

    def start(self) -> None:
        self.t0 = time.time()
        self.cpu0 = sum(cpu_seconds(p) for p in self.pids)

    def cpu(self) -> float:
        return sum(cpu_seconds(p) for p in self.pids) - self.cpu0


def collapsed_samples(path: Path) -> Iterable[tuple[str, int]]:
    """(stack, samples) per line of a collapsed profile (py-spy raw, async-profiler collapsed);
    nothing if the file is missing, and lines without a count are skipped."""
    if not path.exists():
        return
    for line in path.read_text().splitlines():
        stack_text, _, count = line.rpartition(" ")
        if count.isdigit():
            yield stack_text, int(count)
