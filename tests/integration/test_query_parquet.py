"""`feedtrends query` over Parquet laid out as the job writes it (no Flink needed).

The files follow the job's FileSink layout: hive partitions `window_date=YYYY-MM-DD/`,
committed `part-*` files, an in-progress `.part-*` file that readers must skip, and
several revisions of some (window, term) keys spread over different files.  The
expected answers are computed here independently with pyarrow.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from connectors.trend_store import FILE_SCHEMA
from core.config import Config, load_config
from feedtrends.query_cli import build_query_parser, query_command, run_query
from connectors.stack.paths import free_ports
from feedtrends.query import ROW_FIELDS

REPO = Path(__file__).resolve().parents[2]
H = 3_600_000
W0 = 1_795_212_000_000  # 2026-11-20T22:00:00Z: windows cross midnight, so two partitions
NOW = W0 + 48 * H

SCHEMA = FILE_SCHEMA  # what the job's Parquet writer writes, from the one spec of the row


@pytest.fixture(scope="module", autouse=True)
def flink_classpath() -> None:
    """Overrides the tier's session fixture: reading Parquet needs no JVM or jars."""


def _row(ws: int, term: str, articles: int, score: float, rank: int | None, revision: int) -> dict:
    return {
        "window_start": ws,
        "window_end": ws + H,
        "term": term,
        "articles": articles,
        "feeds": min(articles, 2),
        "baseline": round(max(articles - score, 0.0), 6),
        "score": score,
        "rank": rank,
        "revision": revision,
        "emitted_at": ws + H + 60_000 * revision,
        "examples": [f"{term} headline {i}" for i in range(min(articles, 3))],
    }


def _date(ws: int) -> str:
    from udfs.trend_row import utc_date

    return utc_date(ws)


# Three windows (22:00 and 23:00 on 2026-11-20, 00:00 on 2026-11-21).  Revision 1 of
# each key goes to one part file; revisions 2-3 (late data re-ranking the window) to others.
FIRST = [
    _row(W0, "storm", 3, 3.0, 1, 1),
    _row(W0, "bram", 3, 2.5, 2, 1),
    _row(W0, "cup", 2, 2.0, 3, 1),
    _row(W0, "ahead", 1, 1.0, None, 1),
    _row(W0, "feed:https://ledger.example/rss", 4, 4.0, None, 1),
    _row(W0, "feed:https://herald.example/rss", 2, 2.0, None, 1),
    _row(W0 + H, "bram", 4, 2.86, 1, 1),
    _row(W0 + H, "pitch", 2, 2.0, 2, 1),
    _row(W0 + H, "final", 2, 1.44, 3, 1),
    _row(W0 + H, "feed:https://ledger.example/rss", 5, 5.0, None, 1),
    _row(W0 + 2 * H, "chip", 2, 2.0, 1, 1),
    _row(W0 + 2 * H, "launch", 2, 1.44, 2, 1),
    _row(W0 + 2 * H, "veyron x9", 2, 1.2, 3, 1),
    _row(W0 + 2 * H, "x9", 1, 0.5, None, 1),
    _row(W0 + 2 * H, "feed:https://techwire.example/rss", 3, 3.0, None, 1),
]
LATER = [
    # window 22:00: a late article lifts "cup" to rank 1; storm/bram move down
    _row(W0, "cup", 4, 3.5, 1, 2),
    _row(W0, "storm", 3, 3.0, 2, 2),
    _row(W0, "bram", 3, 2.5, 3, 2),
    _row(W0, "feed:https://herald.example/rss", 3, 3.0, None, 2),
    # window 00:00: x9 reaches min_support (revision 2, then 3)
    _row(W0 + 2 * H, "x9", 2, 1.3, 3, 2),
    _row(W0 + 2 * H, "veyron x9", 2, 1.2, 4, 2),
]
LAST = [
    _row(W0 + 2 * H, "x9", 3, 2.9, 1, 3),
    _row(W0 + 2 * H, "chip", 2, 2.0, 2, 2),
    _row(W0 + 2 * H, "launch", 2, 1.44, 3, 2),
    _row(W0 + 2 * H, "veyron x9", 2, 1.2, 4, 3),
]


def write_job_layout(parquet_dir: Path, batches: list[list[dict]]) -> None:
    """Each batch is one checkpoint's part files, one per window_date partition."""
    for batch in batches:
        by_date: dict[str, list[dict]] = {}
        for r in batch:
            by_date.setdefault(_date(r["window_start"]), []).append(r)
        for date, rows in by_date.items():
            part_dir = parquet_dir / f"window_date={date}"
            part_dir.mkdir(parents=True, exist_ok=True)
            pq.write_table(pa.Table.from_pylist(rows, schema=SCHEMA), part_dir / f"part-{uuid.uuid4()}-0-0")
    # An in-progress file of the next checkpoint: not committed, never read.
    (parquet_dir / f"window_date={_date(W0)}" / f".part-{uuid.uuid4()}-0-1.inprogress.{uuid.uuid4()}").write_bytes(
        b"not parquet yet"
    )


@pytest.fixture()
def config(tmp_path: Path) -> Config:
    cfg = load_config({"state_dir": str(tmp_path / "state")}, env={})
    write_job_layout(cfg.parquet_path, [FIRST, LATER, LAST])
    return cfg


def query(argv: list[str], config: Config) -> tuple[int, str, str]:
    """Parse as the CLI does, run in-process: (exit code, stdout, stderr)."""
    args = build_query_parser().parse_args(["query", *argv])
    out, err = io.StringIO(), io.StringIO()
    code = run_query(args, config, now_ms=NOW, out=out, err=err)
    return code, out.getvalue(), err.getvalue()


# --------------------------------------------------------------------------- the independent oracle


def oracle_latest(parquet_dir: Path) -> pa.Table:
    """Latest revision per (window_start, term), with pyarrow only."""
    table = ds.dataset(str(parquet_dir), format="parquet", partitioning="hive").to_table()
    table = table.append_column("_i", pa.array(range(table.num_rows), pa.int64()))
    best = table.group_by(["window_start", "term"]).aggregate([("revision", "max")])
    picked = best.join(
        table.select(["window_start", "term", "revision", "_i"]),
        keys=["window_start", "term", "revision_max"],
        right_keys=["window_start", "term", "revision"],
    )
    return table.take(picked["_i"]).select(list(ROW_FIELDS))


def oracle_top(parquet_dir: Path, window_start: int | None, k: int) -> list[dict]:
    latest = oracle_latest(parquet_dir)
    if window_start is None:
        window_start = pc.max(latest["window_start"]).as_py()
    in_window = latest.filter(
        pc.and_(pc.equal(latest["window_start"], window_start), pc.is_valid(latest["rank"]))
    )
    return in_window.sort_by([("rank", "ascending"), ("term", "ascending")]).slice(0, k).to_pylist()


# --------------------------------------------------------------------------- answers


@pytest.mark.parametrize("k", [1, 2, 3, 10])
def test_top_json_equals_pyarrow_latest_revision_then_rank(config: Config, k: int) -> None:
    code, out, err = query(["top", "--format", "json", "--k", str(k)], config)
    assert (code, err) == (0, "")
    expected = oracle_top(config.parquet_path, None, k)
    assert json.loads(out) == expected
    # the latest window's answer depends on revisions 2 and 3 (x9 from unranked to rank 1)
    assert expected[0]["term"] == "x9" and expected[0]["revision"] == 3


def test_windows_json_round_trips_into_top_window(config: Config) -> None:
    code, out, _ = query(["windows", "--format", "json"], config)
    assert code == 0
    windows = json.loads(out)
    assert [w["window_start"] for w in windows] == [W0, W0 + H, W0 + 2 * H]
    assert windows[0] == {
        "window_start": W0,
        "window_end": W0 + H,
        "window_start_utc": "2026-11-20T22:00:00Z",
        "terms": 4,
        "articles": 4 + 3,  # feed: rows, latest revisions
        "max_revision": 2,
    }
    assert windows[2]["max_revision"] == 3
    for w in windows:
        for form in (str(w["window_start"]), w["window_start_utc"]):
            code, out, err = query(["top", "--window", form, "--format", "json", "--k", "5"], config)
            assert (code, err) == (0, "")
            assert json.loads(out) == oracle_top(config.parquet_path, w["window_start"], 5)
    # the first window after late data: cup first
    _, out, _ = query(["top", "--window", str(W0), "--format", "json"], config)
    assert [r["term"] for r in json.loads(out)] == ["cup", "storm", "bram"]


def test_window_accepts_an_instant_inside_and_an_offset(config: Config) -> None:
    _, inside, _ = query(["top", "--window", "2026-11-20T23:59:59Z", "--format", "json"], config)
    _, offset, _ = query(["top", "--window", "2026-11-21T00:00:00+01:00", "--format", "json"], config)
    assert json.loads(inside) == json.loads(offset) == oracle_top(config.parquet_path, W0 + H, 10)


def test_latest_flag_is_the_default(config: Config) -> None:
    assert query(["top", "--latest"], config) == query(["top"], config)


def test_relative_window_after_a_space_separated_flag(config: Config) -> None:
    # NOW - 48h = W0: `--window -48h` must not be taken for an option
    _, out, err = query(["top", "--window", "-48h", "--format", "json"], config)
    assert err == "" and {r["window_start"] for r in json.loads(out)} == {W0}
    _, out, err = query(["term", "bram", "--since", "-47h", "--until=-46h", "--format", "json"], config)
    assert err == "" and [r["window_start"] for r in json.loads(out)] == [W0 + H]


def test_term_history_is_the_latest_revision_of_each_window(config: Config) -> None:
    code, out, _ = query(["term", "X9", "--format", "json"], config)
    assert code == 0
    latest = oracle_latest(config.parquet_path)
    expected = latest.filter(pc.equal(latest["term"], "x9")).sort_by("window_start").to_pylist()
    assert json.loads(out) == expected and [r["revision"] for r in expected] == [3]


def test_feeds_lists_articles_per_window_and_feed(config: Config) -> None:
    code, out, _ = query(["feeds", "--format", "csv"], config)
    assert code == 0
    assert out.splitlines() == [
        "window_start,window_end,window_start_utc,feed,articles,revision",
        f"{W0},{W0 + H},2026-11-20T22:00:00Z,https://ledger.example/rss,4,1",
        f"{W0},{W0 + H},2026-11-20T22:00:00Z,https://herald.example/rss,3,2",
        f"{W0 + H},{W0 + 2 * H},2026-11-20T23:00:00Z,https://ledger.example/rss,5,1",
        f"{W0 + 2 * H},{W0 + 3 * H},2026-11-21T00:00:00Z,https://techwire.example/rss,3,1",
    ]


def test_top_table_has_a_title_and_one_line_per_term(config: Config) -> None:
    code, out, _ = query(["top", "--window", str(W0), "--k", "2"], config)
    lines = out.splitlines()
    assert code == 0 and len(lines) == 4
    assert lines[0] == f"top 2 terms of window 2026-11-20 22:00 - 2026-11-20 23:00 UTC (window_start {W0})"
    assert lines[2].split()[:3] == ["1", "cup", "4"] and lines[3].split()[:3] == ["2", "storm", "3"]


# --------------------------------------------------------------------------- plots


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


@pytest.mark.parametrize("argv", [["top", "--window", str(W0)], ["term", "bram"]])
def test_plot_writes_a_1000x500_png_that_decodes(config: Config, tmp_path: Path, argv: list[str]) -> None:
    from matplotlib.image import imread

    path = tmp_path / "plot.png"
    code, out, err = query([*argv, "--plot", str(path)], config)
    assert (code, err) == (0, "") and out
    assert _png_size(path) == (1000, 500)
    pixels = imread(path)
    assert pixels.shape[:2] == (500, 1000)
    assert pixels.std() > 0  # something was drawn


# --------------------------------------------------------------------------- errors


def _empty_state(tmp_path: Path) -> Config:
    cfg = load_config({"state_dir": str(tmp_path / "empty")}, env={})
    cfg.parquet_path.mkdir(parents=True)
    (cfg.parquet_path / ".part-1-0.inprogress.x").write_bytes(b"")  # only uncommitted output
    return cfg


def _missing_state(tmp_path: Path) -> Config:
    return load_config({"state_dir": str(tmp_path / "never-ran")}, env={})


def _unreachable_kafka(tmp_path: Path) -> Config:
    (port,) = free_ports(1)  # nothing listens there
    return load_config({"state_dir": str(tmp_path / "k"), "bootstrap": f"127.0.0.1:{port}"}, env={})


@pytest.mark.parametrize(
    ("argv", "make_config", "code", "message"),
    [
        (["windows"], _empty_state, 1, "no trend rows in "),
        (["top"], _empty_state, 1, "no trend rows in "),
        (["top", "--window", "2026-11-19T12:00Z"], None, 1, "no window at 2026-11-19T12:00:00Z"),
        (["term", "hurricane"], None, 1, "unknown term 'hurricane'"),
        (["term", "bram", "--until", "2026-11-20T20:00Z"], None, 1, "'bram' has no rows in"),
        (["top", "--window", "yesterday"], None, 2, "not a time: 'yesterday'"),
        (["top", "--window", "2026-11-32"], None, 2, "not a time"),
        (["term", "bram", "--since", "bogus"], None, 2, "not a time: 'bogus'"),
        (["term", "bram", "--since", "now", "--until", "-1d"], None, 2, "must be before --until"),
        (["top", "--k", "0"], None, 2, "--k must be at least 1"),
        (["top", "--plot", "top.jpg"], None, 2, "must end in .png"),
        (["term", "bram", "--plot", "/nonexistent-dir/x.png"], None, 2, "cannot write plot"),
        (["windows"], _missing_state, 3, "does not exist"),
        (["feeds"], _missing_state, 3, "does not exist"),
        (["windows", "--source", "kafka"], _unreachable_kafka, 3, "is unreachable"),
    ],
)
def test_each_error_is_one_line_and_its_exit_code(
    config: Config, tmp_path: Path, argv: list[str], make_config, code: int, message: str
) -> None:
    cfg = make_config(tmp_path) if make_config else config
    got, out, err = query(argv, cfg)
    assert got == code
    assert out == ""
    assert err.count("\n") == 1 and err.startswith(f"feedtrends query {argv[0]}: ") and message in err
    assert "Traceback" not in err


def test_parquet_of_another_shape_is_a_backend_error(tmp_path: Path) -> None:
    cfg = load_config({"state_dir": str(tmp_path / "bad")}, env={})
    part_dir = cfg.parquet_path / "window_date=2026-11-20"
    part_dir.mkdir(parents=True)
    pq.write_table(pa.table({"window_start": [W0], "count": [3]}), part_dir / "part-other-0-0")
    code, out, err = query(["windows"], cfg)
    assert (code, out) == (3, "")
    assert err.startswith("feedtrends query windows: cannot read Parquet in ") and "missing column" in err
    assert err.count("\n") == 1


def test_bad_flag_is_an_argparse_usage_error() -> None:
    with pytest.raises(SystemExit) as info:
        build_query_parser().parse_args(["query", "top", "--format", "xml"])
    assert info.value.code == 2


def test_query_command_reads_state_dir_from_the_flag(config: Config, monkeypatch, capsys) -> None:
    for name in [n for n in os.environ if n.startswith("FEEDTRENDS_")]:
        monkeypatch.delenv(name)
    args = build_query_parser().parse_args(
        ["--state-dir", str(config.state_dir), "query", "top", "--window", str(W0), "--format", "json"]
    )
    assert isinstance(args, argparse.Namespace) and args.func is query_command
    assert args.func(args) == 0
    assert json.loads(capsys.readouterr().out) == oracle_top(config.parquet_path, W0, 10)


def test_real_process_error_has_no_traceback(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FEEDTRENDS_")}
    proc = subprocess.run(
        [sys.executable, "-m", "feedtrends.query_cli", "--state-dir", str(tmp_path / "none"), "query", "windows"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 3 and proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and "does not exist" in proc.stderr and "Traceback" not in proc.stderr
