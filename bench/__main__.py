"""`make bench` / `python -m bench`: one run, one private stack, four systems on the same data.

    private stack (temp state dir, free loopback ports) -> preload N events (2 partitions)
      -> feedtrends rebuild (trends job, exactly-once, Kafka + Parquet sinks, parallelism 2)
      -> python-loop (kafka-python, in-memory)  -> quix-streams (exactly-once)
      -> flink-sql (JVM only, same cluster)
      -> live feedtrends run: latency at a steady rate, state size under a short TTL
    prints one `system: N events/s` line per system, then latency and state lines.

Every process started here is stopped by pid (the stack by `connectors.stack.down`,
subprocesses by their timeout), also on failure.  Results: bench/results/<time>.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from bench.common import load_average, machine
from bench.flink_run import inclusive_profile, measure_rebuild, summarize_profile
from bench.preload import preload
from connectors import stack
from connectors.stack.paths import free_ports
from connectors.topics import end_offsets, ensure_topics
from core.config import REPO_ROOT, load_config

SYSTEMS = ("feedtrends", "quix-streams", "python-loop", "flink-sql")
# Measured only when named in --systems: the per-event core of a job that counts
# in the JVM (bench/core_job.py): parse only, parse through revisable window counts,
# the same counts with the window table function (no revisions), with examples, and
# with the rows for fired windows split off.
CORE_STAGES = {"core-parse": "parse", "core-count": "count", "core-tvf": "tvf", "core-tvf-examples": "tvf-examples",
               "core-tvf-split": "tvf-split", "core-tvf-hits": "tvf-hits"}
RESULTS = REPO_ROOT / "bench" / "results"


def log(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": sys.version.split()[0]}
    for dist in ("apache-flink", "kafka-python", "quixstreams", "confluent-kafka", "lz4"):
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            out[dist] = "not installed"
    return out


def _run_module(module: str, args: list[str], timeout_s: float) -> dict:
    """A bench module in a child process (its CPU is its own); killed at the deadline."""
    proc = subprocess.run(
        [sys.executable, "-m", module, *args], capture_output=True, text=True, timeout=timeout_s, cwd=REPO_ROOT
    )
    lines = [l for l in proc.stdout.splitlines() if l.startswith("{")]
    if not lines:
        raise RuntimeError(f"{module} exited {proc.returncode}: {(proc.stderr or proc.stdout)[-1500:]}")
    result = json.loads(lines[-1])
    result["exit_code"] = proc.returncode
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    p.add_argument("--events", type=int, default=1_000_000, help="events to preload (default 1,000,000)")
    p.add_argument("--systems", default=",".join(SYSTEMS),
                   help="comma-separated subset of " + ", ".join((*SYSTEMS, *CORE_STAGES))
                   + " ('' for the live run alone)")
    p.add_argument("--live-seconds", type=float, default=120, help="live run length (0: skip latency and state)")
    p.add_argument("--live-rate", type=float, default=200, help="live input rate, events/s")
    p.add_argument("--dedup-ttl", type=int, default=30_000, help="dedup TTL (ms) of the live run (and of a --soak rebuild)")
    p.add_argument("--soak", action="store_true",
                   help="feedtrends rebuilds under --dedup-ttl; its checkpoint size and TaskManager RSS are sampled")
    p.add_argument("--soak-sample-s", type=float, default=30, help="seconds between --soak samples")
    p.add_argument("--timeout", type=float, default=3 * 3600, help="per-system limit, seconds")
    p.add_argument("--taskmanagers", type=int, default=2,
                   help="TaskManagers of the private cluster (one embedded Python, one GIL, each; default 2)")
    p.add_argument("--no-profile", action="store_true", help="skip py-spy on the TaskManager")
    p.add_argument("--jvm-profile", action="store_true",
                   help="async-profiler on every TaskManager during the feedtrends rebuild (`make profiler` first)")
    p.add_argument("--keep-stack", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    systems = [s.strip() for s in args.systems.split(",") if s.strip()]
    unknown = set(systems) - set(SYSTEMS) - set(CORE_STAGES)
    if unknown:
        p.error(f"unknown systems: {', '.join(sorted(unknown))}")

    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out_path = RESULTS / f"bench-{stamp}.json"
    report: dict = {"n": args.events, "dedup_ttl_ms": args.dedup_ttl, "machine": machine(), "versions": _versions(), "systems": {}}
    log(f"machine: {report['machine']}")

    state_dir = Path(tempfile.mkdtemp(prefix="feedtrends-bench-"))
    kafka, controller, rest, rpc = free_ports(4)
    base = load_config(
        {"state_dir": str(state_dir), "kafka_port": kafka, "kafka_controller_port": controller,
         "flink_rest_port": rest, "flink_rpc_port": rpc, "taskmanagers": args.taskmanagers},
        env={},
    )
    suffix = uuid.uuid4().hex[:8]
    topic = f"bench-events-{suffix}"
    try:
        stack.up(base, echo=log)
        ensure_topics(base, {topic: 2})
        targets: dict[int, int] = {}
        if systems:
            log(f"preloading {args.events} events into {topic}; load {load_average()}")
            report["preload"] = preload(base.kafka_bootstrap, topic, args.events)
            targets = end_offsets(base, topic)
            report["preload"]["end_offsets"] = targets
            log(f"  {report['preload']}")

        def flink_config(name: str):
            return dataclasses.replace(
                base, events_topic=topic, trends_topic=f"bench-{name}-trends-{suffix}",
                dlq_topic=f"bench-{name}-dlq-{suffix}", late_topic=f"bench-{name}-late-{suffix}",
                parquet_dir=state_dir / f"parquet-{name}", parallelism=2, partitions=2,
                job_name=f"bench-{name}-{suffix}", transactional_id_prefix=f"bench-{name}-{suffix}",
            )

        def attempt(name: str, fn) -> None:
            log(f"{name}: load {load_average()}")
            try:
                result = fn()
            except Exception as exc:  # noqa: BLE001 - one system failing must not lose the others
                log(f"{name}: FAILED: {exc}")
                report["systems"][name] = {"error": str(exc), "load": load_average()}
                return
            result.setdefault("load_after", load_average())
            report["systems"][name] = result
            log(f"{name}: {result.get('events_per_s', 0):.0f} events/s ({json.dumps({k: v for k, v in result.items() if k not in ('busy', 'profile')})})")
            out_path.write_text(json.dumps(report, indent=2, default=str))

        profile_path = RESULTS / f"feedtrends-pyspy-{stamp}.txt"
        if "feedtrends" in systems:
            def feedtrends():
                config = flink_config("feedtrends")
                if args.soak:
                    config = dataclasses.replace(config, dedup_ttl_ms=args.dedup_ttl)
                r = measure_rebuild(config, targets, job=None, timeout_s=args.timeout, log=log,
                                    profile_to=None if args.no_profile else profile_path,
                                    state_every_s=args.soak_sample_s if args.soak else None,
                                    jvm_profile_to=RESULTS / f"feedtrends-jvm-{stamp}" if args.jvm_profile else None)
                r["profile_top_leaf"] = summarize_profile(profile_path)
                r["profile_inclusive"] = inclusive_profile(profile_path, (
                    "parse_event", "article_terms", "process_element (jobs/trends.py", "add_article",
                    "dedup_step", "on_timer", "pickle", "to_sink_row", "revise",
                ))
                return r
            attempt("feedtrends", feedtrends)
        python_loop = None
        if "python-loop" in systems or "quix-streams" in systems:
            attempt("python-loop", lambda: _run_module(
                "bench.python_loop", ["--bootstrap", base.kafka_bootstrap, "--topic", topic, "--count", str(args.events)],
                args.timeout))
            python_loop = report["systems"].get("python-loop", {})
        if "quix-streams" in systems:
            attempt("quix-streams", lambda: _run_module("bench.quix_app", [
                "--bootstrap", base.kafka_bootstrap, "--topic", topic, "--output", f"bench-quix-out-{suffix}",
                "--group", f"bench-quix-{suffix}", "--state-dir", str(state_dir / "quix-state"),
                "--count", str(args.events), "--term-hits", str(python_loop.get("term_hits", 0)),
                "--deadline-s", str(args.timeout - 60),
            ], args.timeout))
        if "flink-sql" in systems:
            attempt("flink-sql", lambda: measure_rebuild(
                flink_config("flinksql"), targets, job=REPO_ROOT / "bench" / "flink_sql_job.py",
                timeout_s=args.timeout, log=log))
        for name, stage in CORE_STAGES.items():
            if name in systems:
                os.environ["BENCH_CORE_STAGE"] = stage  # read by the job's client (flink run -py)
                attempt(name, lambda: measure_rebuild(
                    flink_config(name.replace("-", "")), targets, job=REPO_ROOT / "bench" / "core_job.py",
                    timeout_s=args.timeout, log=log))
        if args.live_seconds > 0:
            from bench.live import live_run

            log(f"live: load {load_average()}")
            try:
                ensure_topics(base, {f"bench-live-{suffix}": 2})
                report["live"] = live_run(base, topic=f"bench-live-{suffix}", rate=args.live_rate,
                                          seconds=args.live_seconds, dedup_ttl_ms=args.dedup_ttl, log=log)
            except Exception as exc:  # noqa: BLE001
                log(f"live: FAILED: {exc}")
                report["live"] = {"error": str(exc)}
        out_path.write_text(json.dumps(report, indent=2, default=str))
    finally:
        if not args.keep_stack:
            stack.down(base, echo=log)
            shutil.rmtree(state_dir, ignore_errors=True)
    log(f"results: {out_path}")
    _print_summary(report, systems)
    return 0 if all("error" not in report["systems"].get(s, {}) for s in systems) else 1


THREADS_SHOWN = 8


def _print_summary(report: dict, systems: list[str]) -> None:
    for name in SYSTEMS:
        if name not in systems:
            continue
        r = report["systems"].get(name, {})
        print(f"{name}: {int(r.get('events_per_s', 0))} events/s")
    for name in CORE_STAGES:
        r = report["systems"].get(name, {})
        if name in systems and r.get("events") and "cpu_s" in r:
            print(f"{name}: {int(r['events_per_s'])} events/s, cpu {1000 * r['cpu_s'] / r['events']:.3f} ms/event")
    ft = report["systems"].get("feedtrends", {})
    if "feedtrends" in systems and ft.get("events") and "cpu_s" in ft:
        # TaskManagers + JobManager, from their /proc times; the broker is measured apart.
        print(f"feedtrends cpu: {1000 * ft['cpu_s'] / ft['events']:.3f} ms/event")
        # Where it goes: the busiest threads (a task thread runs its chain's JVM and Python work).
        threads = list(ft.get("thread_cpu_s", {}).items())[:THREADS_SHOWN]
        if threads:
            print("feedtrends cpu by thread (ms/event): " + ", ".join(
                f"{name} {1000 * cpu / ft['events']:.3f}" for name, cpu in threads
            ))
    if ft.get("jvm_profile"):
        shares = sorted(ft["jvm_profile"]["shares"].items(), key=lambda kv: -kv[1])
        print("feedtrends jvm profile (% of samples, inclusive): " + ", ".join(f"{k} {v}" for k, v in shares))
    if ft.get("state_samples"):
        _print_soak(ft["state_samples"], report["dedup_ttl_ms"])
    live = report.get("live")
    if live and "error" not in live:
        print(
            f"feedtrends live latency: p50 {live['close_latency_p50_s']:.1f} s, p99 {live['close_latency_p99_s']:.1f} s "
            f"(window close -> row visible read_committed; {live['windows_closable'] - live['windows_missing']}/"
            f"{live['windows_closable']} windows; produce -> visible p50 {live['event_latency_p50_s']:.1f} s, "
            f"p99 {live['event_latency_p99_s']:.1f} s; {live['rate']:.0f} events/s, {live['window_ms'] // 1000} s windows)"
        )
        sizes = [s for s in live["samples"] if "state_size_kb" in s]
        if sizes:
            ttl_s = live["dedup_ttl_ms"] / 1000
            at_ttl = min(sizes, key=lambda s: abs(s["t_s"] - 2 * ttl_s))
            last = sizes[-1]
            print(
                f"feedtrends state: checkpoint {at_ttl['state_size_kb'] / 1024:.1f} MiB at {at_ttl['t_s']:.0f} s, "
                f"{last['state_size_kb'] / 1024:.1f} MiB at {last['t_s']:.0f} s; TaskManager RSS "
                f"{at_ttl['tm_rss_mb']:.0f} -> {last['tm_rss_mb']:.0f} MiB (dedup TTL {ttl_s:.0f} s)"
            )
    elif live:
        print(f"feedtrends live: FAILED: {live['error']}")


def _print_soak(samples: list[dict], ttl_ms: int) -> None:
    """The soak's samples, and how far the checkpoint size and RSS move once the TTL has expired entries.

    "After the horizon" starts at twice the TTL: by then the first TTL's entries have
    expired and a TTL's worth of newer ones has replaced them.
    """
    print("soak: t s | events read | checkpoint MiB | TaskManager RSS MiB | source subtasks apart (records, event-time h)")
    for s in samples:
        size = f"{s['state_size_kb'] / 1024:.1f}" if "state_size_kb" in s else "-"
        rss = " / ".join(f"{r:.0f}" for r in s.get("tms_rss_mb", []))
        apart_h = f"{s['source_event_time_apart_s'] / 3600:.1f}" if "source_event_time_apart_s" in s else "-"
        print(f"soak: {s['t_s']:.0f} | {s.get('consumed', 0)} | {size} | {rss} | {s.get('source_records_apart', '-')}, {apart_h}")
    after = [s for s in samples if s["t_s"] >= 2 * ttl_ms / 1000 and "state_size_kb" in s]
    if len(after) < 2:
        print("soak: too short to pass the TTL horizon twice")
        return

    def spread(values: list[float]) -> str:
        return f"{min(values):.1f}-{max(values):.1f} ({100 * (max(values) - min(values)) / min(values):.0f} %)"

    sizes = [s["state_size_kb"] / 1024 for s in after]
    print(f"soak: after {2 * ttl_ms / 1000:.0f} s ({len(after)} samples): checkpoint MiB {spread(sizes)}, "
          + ", ".join(f"TaskManager {i + 1} RSS MiB {spread([s['tms_rss_mb'][i] for s in after])}"
                      for i in range(len(after[0].get("tms_rss_mb", [])))))
    vertices = sorted({name for s in after for name in s.get("state_by_vertex_kb", {})})
    for name in vertices:
        mib = [s["state_by_vertex_kb"].get(name, 0.0) / 1024 for s in after if "state_by_vertex_kb" in s]
        if mib and min(mib) > 0:
            print(f"soak: after {2 * ttl_ms / 1000:.0f} s, {name}: checkpoint MiB {spread(mib)}")


if __name__ == "__main__":
    sys.exit(main())
