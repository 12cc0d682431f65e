"""async-profiler on the TaskManagers: where the JVM side of the job spends its CPU.

py-spy sees the job's Python only; most of the job's CPU is Java (the table operators,
RocksDB, the sinks, pemja between them) and the JIT compiler.  async-profiler
(tools.profiler:async-profiler, resolved from Maven Central by `make profiler` into
.cache/jars/profiler) is attached to each running TaskManager with `jcmd
JVMTI.agent_load`, samples every thread on CPU time (`itimer`: no perf events needed)
and writes collapsed stacks, one file per TaskManager.  `shares` sums them into the
share of samples whose stack holds each frame of interest.
"""

from __future__ import annotations

import re
import subprocess
import zipfile
from collections.abc import Iterable
from pathlib import Path

from bench.common import collapsed_samples

ROOT = Path(__file__).resolve().parent.parent
JARS = ROOT / ".cache" / "jars" / "profiler"
NATIVE = "linux-x64/libasyncProfiler.so"

# Frames the summary counts (regular expressions on a whole stack), by what they stand for.
FRAMES = {
    "JIT compiler": r"CompileBroker::",
    "JVM GC workers": r"GangWorker|ConcurrentGCThread|G1ServiceThread",
    "pemja (Python operators and function)": r"pemja/",
    "Python GC": r"gc_collect_main",
    "parse-record (Python scalar function)": r"EmbeddedPythonScalarFunctionOperator",
    "keyed Python operators": r"EmbeddedPythonKeyedProcessOperator",
    "Kafka source": r"KafkaRecordEmitter",
    "Deduplicate": r"ProcTimeDeduplicate",
    "window function + UNNEST": r"UnnestRowsFunction",
    "window aggregation": r"WindowAggOperator",
    "fold_term_hits": r"FoldTermHits",
    "TrendRows": r"TrendRows",
    "RocksDB (JNI)": r"RocksDB|rocksdb",
    "record copies between chained operators": r"RowDataSerializer\.copy",
    "network output": r"RecordWriter\.emit",
    "checkpointing": r"[Cc]heckpoint|snapshot",
}


def native_library(dest: Path) -> Path:
    """The profiler's native library, unpacked from its jar into `dest`."""
    jars = sorted(JARS.glob("async-profiler-*.jar"))
    if not jars:
        raise FileNotFoundError(f"no async-profiler jar in {JARS}: run `make profiler`")
    dest.mkdir(parents=True, exist_ok=True)
    lib = dest / "libasyncProfiler.so"
    with zipfile.ZipFile(jars[-1]) as jar:
        lib.write_bytes(jar.read(NATIVE))
    return lib


def _agent(pid: int, lib: Path, command: str) -> None:
    # jcmd splits its arguments at '=' unless the option string is quoted.
    done = subprocess.run(
        ["jcmd", str(pid), "JVMTI.agent_load", str(lib), f'"{command}"'],
        capture_output=True, text=True, timeout=60,
    )
    if done.returncode != 0 or "return code: 0" not in done.stdout:
        raise RuntimeError(f"async-profiler {command.split(',')[0]} on {pid}: {done.stdout.strip()} {done.stderr.strip()}")


def start(pids: Iterable[int], lib: Path, interval_ms: int = 5) -> None:
    for pid in pids:
        _agent(pid, lib, f"start,event=itimer,interval={interval_ms}ms")


def stop(pids: Iterable[int], lib: Path, out_prefix: Path) -> list[Path]:
    """Stop and write each TaskManager's collapsed stacks, each stack under its thread's name."""
    paths = []
    for pid in pids:
        path = out_prefix.with_name(f"{out_prefix.name}-{pid}.collapsed")
        _agent(pid, lib, f"stop,file={path},collapsed,threads")
        paths.append(path)
    return paths


def shares(paths: Iterable[Path], frames: dict[str, str] = FRAMES) -> dict[str, float]:
    """Per frame of interest, the per cent of all samples whose stack holds it (inclusive)."""
    patterns = {name: re.compile(rx) for name, rx in frames.items()}
    hits = dict.fromkeys(frames, 0)
    total = 0
    for path in paths:
        for stack_text, n in collapsed_samples(path):
            total += n
            for name, pattern in patterns.items():
                if pattern.search(stack_text):
                    hits[name] += n
    return {name: round(100.0 * n / total, 1) for name, n in hits.items()} if total else {}
