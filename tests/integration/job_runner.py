"""Run the trends job's `build()` on a MiniCluster and collect its three outputs."""

from __future__ import annotations

import json
from dataclasses import dataclass

from core.config import Config
from tests.support.rows import latest_trend_rows
from udfs.trend_row import TrendRow

Record = tuple[int, int, int, bytes]  # (partition, offset, timestamp_ms, value)


@dataclass
class JobResult:
    emitted: list[TrendRow]  # every revision, in emission order
    dead_letters: list[dict]
    late: list[dict]

    def latest(self) -> dict[str, TrendRow]:
        return latest_trend_rows(self.emitted)

    def final_contents(self) -> dict[str, tuple]:
        return {key: row.content() for key, row in self.latest().items()}


def run_job(records: list[Record], config: Config, *, bundle_size: int | None = None) -> JobResult:
    """Run the job to the end of `records`.

    `bundle_size=1` makes each Python operator hand on the watermark right after
    each record (PyFlink holds watermarks back while a bundle is open), so the
    sequence of revisions, not just the final rows, is reproducible.
    """
    from pyflink.common import Row, Types
    from pyflink.datastream import StreamExecutionEnvironment
    from pyflink.table import StreamTableEnvironment

    from connectors.flink_io import CollectionRecordSource
    from connectors.stack.flink import python_worker_settings
    from jobs.trends import build

    env = StreamExecutionEnvironment.get_execution_environment()
    t_env = StreamTableEnvironment.create(env)
    # As on the cluster (flink-conf/config.yaml): Python in thread mode.
    t_env.get_config().set("python.execution-mode", "thread")
    for key, value in python_worker_settings().items():
        t_env.get_config().set(key, value)
    if bundle_size is not None:
        t_env.get_config().set("python.fn-execution.bundle.size", str(bundle_size))
    outputs = build(env, t_env, config, CollectionRecordSource(tuple(records), config))
    tagged = Types.ROW([Types.STRING(), Types.STRING()])
    # New chains: a Python map fused into the uid'd rank operator collides with its uid.
    # A trends record is a batch of rows (JSON); the sinks' unpack_trend_rows is held to Python's
    # reading of it in tests/integration/test_trend_rows_jvm.py.
    collected = (
        outputs.trends.map(lambda batch: Row("trend", batch), output_type=tagged).uid("test-trends").start_new_chain()
    ).union(
        outputs.dead_letters.map(lambda r: Row("dlq", r[1]), output_type=tagged).uid("test-dlq").start_new_chain(),
        outputs.late.map(lambda r: Row("late", r[1]), output_type=tagged).uid("test-late").start_new_chain(),
    )
    result = JobResult([], [], [])
    with collected.execute_and_collect() as results:
        for kind, value in results:
            if kind == "trend":
                result.emitted.extend(TrendRow.from_json(json.dumps(obj)) for obj in json.loads(value))
            elif kind == "dlq":
                result.dead_letters.append(json.loads(value))
            else:
                result.late.append(json.loads(value))
    return result
