"""What one PyFlink primitive costs in thread mode: a MiniCluster job per variant.

    .venv/bin/python -m bench.micro [--records N] [--backend rocksdb|hashmap] [VARIANT ...]

Each variant pushes N small records (int key, ~25-char string) from a collection
through one Python step at parallelism 1 and prints records/s, job start
included (~3-4 s; use N >= 100,000).  The figures in BENCHMARKS.md ("what a
keyed record costs") come from here: they are why the job sends one record per
(article, term bucket) rather than one per term.
"""

from __future__ import annotations

import argparse
import pickle
import time

VARIANTS = ("map", "key", "value-state", "map-state", "timer", "put-11", "put-all-11", "pickle-11",
            "trend-row", "trend-json", "trend-rows-10", "trend-batch-10")
_STATE_VALUE = (1, ["a", "b"], [[1, "x", "title"]])


def _functions():
    from pyflink.common import Types
    from pyflink.datastream import KeyedProcessFunction, ProcessFunction
    from pyflink.datastream.state import MapStateDescriptor, ValueStateDescriptor

    class Nothing(KeyedProcessFunction):
        def process_element(self, value, ctx):
            return iter(())

    class Drop(ProcessFunction):
        def process_element(self, value, ctx):
            return iter(())

    class ValueGetUpdate(KeyedProcessFunction):
        def open(self, runtime_context):
            self.state = runtime_context.get_state(ValueStateDescriptor("s", Types.LONG()))

        def process_element(self, value, ctx):
            self.state.update((self.state.value() or 0) + 1)
            return iter(())

    class MapGetPut(KeyedProcessFunction):
        def open(self, runtime_context):
            self.state = runtime_context.get_map_state(MapStateDescriptor("s", Types.STRING(), Types.PICKLED_BYTE_ARRAY()))

        def process_element(self, value, ctx):
            self.state.get("k")
            self.state.put("k", _STATE_VALUE)
            return iter(())

    class Timer(KeyedProcessFunction):
        def process_element(self, value, ctx):
            ctx.timer_service().register_event_time_timer(10**12)
            return iter(())

    class Put11(MapGetPut):
        def process_element(self, value, ctx):
            for j in range(11):
                self.state.put(f"1700000000000 term{j}", _STATE_VALUE)
            return iter(())

    class PutAll11(MapGetPut):
        def process_element(self, value, ctx):
            self.state.put_all({f"1700000000000 term{j}": _STATE_VALUE for j in range(11)})
            return iter(())

    class Pickle11(KeyedProcessFunction):
        def process_element(self, value, ctx):
            for _ in range(11):
                pickle.dumps(_STATE_VALUE)
            return iter(())

    return {
        "key": Nothing, "value-state": ValueGetUpdate, "map-state": MapGetPut, "timer": Timer,
        "put-11": Put11, "put-all-11": PutAll11, "pickle-11": Pickle11, "drop": Drop,
    }


def _trend_row():
    from udfs.trend_row import TrendRow

    return TrendRow(
        window_start=1_700_000_000_000, window_end=1_700_003_600_000, term="storm bram", articles=12, feeds=4,
        baseline=2.25, score=3.4142, rank=7, revision=1, emitted_at=1_700_003_700_000,
        examples=("Storm Bram hits the coast", "Ferries cancelled as storm nears", "Red warning issued"),
        aliases=("bram", "ferries"), links=("https://a.example/1", "https://b.example/2", ""),
    )


def run(variant: str, backend: str, records: int) -> float:
    from pyflink.common import Configuration, Types
    from pyflink.datastream import StreamExecutionEnvironment

    from connectors.stack.flink import python_worker_settings

    conf = Configuration()
    conf.set_string("python.execution-mode", "thread")
    conf.set_string("state.backend.type", backend)
    for key, value in python_worker_settings().items():
        conf.set_string(key, value)
    env = StreamExecutionEnvironment.get_execution_environment(conf)
    env.set_parallelism(1)
    functions = _functions()
    source = env.from_collection(
        [(i % 5000, f"some title text here {i}") for i in range(records)],
        type_info=Types.TUPLE([Types.INT(), Types.STRING()]),
    )
    if variant == "map":
        source.map(lambda v: v).process(functions["drop"]())
    elif variant.startswith("trend-"):
        # Output rows out of Python: each with all its columns as a Flink row (what the sinks
        # took before the JVM unpacked the ranker's batches), or only its JSON text; "-10": ten
        # rows per record, as ten Flink rows or as one batch string (`batch_json`).
        from pyflink.common import Row

        from connectors.flink_io import TREND_TYPE
        from udfs.trend_row import batch_json

        row = _trend_row()

        def to_sink_row(r):
            return Row(*r.column_values(), r.key(), r.json_text())

        if variant == "trend-row":
            source.map(lambda v: to_sink_row(row), output_type=TREND_TYPE)
        elif variant == "trend-json":
            source.map(lambda v: row.json_text(), output_type=Types.STRING())
        elif variant == "trend-rows-10":
            source.flat_map(lambda v: (to_sink_row(row) for _ in range(10)), output_type=TREND_TYPE)
        else:
            source.map(lambda v: batch_json(row for _ in range(10)), output_type=Types.STRING())
    else:
        source.key_by(lambda v: v[0], key_type=Types.INT()).process(functions[variant]())
    start = time.monotonic()
    env.execute(f"micro-{variant}")
    return records / (time.monotonic() - start)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.micro", description=__doc__.split("\n\n")[0])
    parser.add_argument("variants", nargs="*", metavar="VARIANT", help="default: all of " + ", ".join(VARIANTS))
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--backend", default="rocksdb", choices=("rocksdb", "hashmap"))
    args = parser.parse_args(argv)
    unknown = set(args.variants) - set(VARIANTS)
    if unknown:
        parser.error(f"unknown variants: {', '.join(sorted(unknown))} (choose from {', '.join(VARIANTS)})")
    for variant in args.variants or VARIANTS:
        rate = run(variant, args.backend, args.records)
        print(f"{variant} ({args.backend}, {args.records} records): {rate:,.0f} records/s", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
