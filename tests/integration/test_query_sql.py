"""`feedtrends query sql`: DuckDB's answers over the `trends` and `revisions` views equal
the same questions computed independently with pyarrow, on hand-laid revisions (the
job's layout, several revisions per key) and on the real job's part files."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pyarrow.compute as pc
import pyarrow.dataset as ds
import pytest

from core.config import Config, load_config
from feedtrends.query import ROW_FIELDS
from feedtrends.query_cli import build_query_parser, run_query
from tests.integration.test_query_parquet import FIRST, LAST, LATER, oracle_latest, write_job_layout
from tests.support.dashboard import copy_demo_output


@pytest.fixture(scope="module", autouse=True)
def flink_classpath() -> None:
    """Overrides the tier's session fixture: DuckDB reads the Parquet itself."""


@pytest.fixture(params=["revised", "demo"])
def config(request, tmp_path: Path) -> Config:
    cfg = load_config({"state_dir": str(tmp_path / "state")}, env={})
    if request.param == "revised":
        write_job_layout(cfg.parquet_path, [FIRST, LATER, LAST])
    else:
        copy_demo_output(cfg.parquet_path)
    return cfg


def sql(statement: str, config: Config, fmt: str = "json") -> tuple[int, str, str]:
    args = build_query_parser().parse_args(["query", "sql", statement, "--format", fmt])
    out, err = io.StringIO(), io.StringIO()
    code = run_query(args, config, out=out, err=err)
    return code, out.getvalue(), err.getvalue()


def answer(statement: str, config: Config) -> list[dict]:
    code, out, err = sql(statement, config)
    assert (code, err) == (0, "")
    return json.loads(out)


def test_trends_is_the_latest_revision_of_every_key(config: Config) -> None:
    got = answer("SELECT * FROM trends ORDER BY window_start, term", config)
    expected = oracle_latest(config.parquet_path).sort_by([("window_start", "ascending"), ("term", "ascending")])
    assert [{f: r[f] for f in ROW_FIELDS} for r in got] == expected.to_pylist()
    assert all(r["window_date"] == "2026-11-20" or r["window_date"] == "2026-11-21" for r in got)


def test_revisions_is_every_committed_row(config: Config) -> None:
    everything = ds.dataset(str(config.parquet_path), format="parquet", partitioning="hive").to_table()
    got = answer("SELECT count(*) AS n, max(revision) AS top_revision FROM revisions", config)
    assert got == [{"n": everything.num_rows, "top_revision": pc.max(everything["revision"]).as_py()}]


def test_terms_in_the_top_three_of_the_most_windows(config: Config) -> None:
    got = answer(
        "SELECT term, count(*) AS windows FROM trends WHERE rank <= 3 GROUP BY term ORDER BY windows DESC, term",
        config,
    )
    latest = oracle_latest(config.parquet_path)
    top3 = latest.filter(pc.less_equal(latest["rank"], 3)).group_by("term").aggregate([("term", "count")])
    expected = sorted(zip(top3["term"].to_pylist(), top3["term_count"].to_pylist()), key=lambda t: (-t[1], t[0]))
    assert [(r["term"], r["windows"]) for r in got] == expected and expected


def test_a_terms_articles_per_day(config: Config) -> None:
    latest = oracle_latest(config.parquet_path)
    term = "bram" if "bram" in latest["term"].to_pylist() else "storm bram"
    got = answer(
        f"SELECT window_date AS day, sum(articles) AS articles, count(*) AS windows FROM trends "
        f"WHERE term = '{term}' GROUP BY day ORDER BY day",
        config,
    )
    rows = latest.filter(pc.equal(latest["term"], term)).to_pylist()
    from udfs.trend_row import utc_date

    days: dict[str, list[int]] = {}
    for r in rows:
        days.setdefault(utc_date(r["window_start"]), []).append(r["articles"])
    assert got == [{"day": d, "articles": sum(a), "windows": len(a)} for d, a in sorted(days.items())]


def test_csv_and_table_formats(config: Config) -> None:
    statement = "SELECT term, articles, score, aliases FROM trends WHERE rank = 1 ORDER BY window_start"
    expected = answer(statement, config)
    code, out, _ = sql(statement, config, "csv")
    parsed = list(csv.DictReader(io.StringIO(out)))
    assert code == 0 and [r["term"] for r in parsed] == [r["term"] for r in expected]
    assert [json.loads(r["aliases"]) for r in parsed] == [r["aliases"] for r in expected]
    code, out, _ = sql(statement, config, "table")
    lines = out.splitlines()
    assert code == 0 and lines[0].split() == ["term", "articles", "score", "aliases"]
    assert len(lines) == len(expected) + 1 and lines[1].startswith(expected[0]["term"])


@pytest.mark.parametrize(
    ("statement", "message"),
    [
        ("SELEC 1", "ParserException"),
        ("SELECT * FROM trend", "CatalogException"),
        ("SELECT nope FROM trends", "BinderException"),
        ("", "no statement"),
    ],
)
def test_a_bad_statement_is_one_line_and_exit_2(config: Config, statement: str, message: str) -> None:
    code, out, err = sql(statement, config)
    assert (code, out) == (2, "")
    assert err.startswith("feedtrends query sql: ") and message in err and err.count("\n") == 1


def test_missing_output_is_exit_3_and_empty_output_has_the_views(tmp_path: Path) -> None:
    missing = load_config({"state_dir": str(tmp_path / "none")}, env={})
    code, out, err = sql("SELECT 1", missing)
    assert (code, out) == (3, "") and "does not exist" in err and err.count("\n") == 1
    empty = load_config({"state_dir": str(tmp_path / "empty")}, env={})
    empty.parquet_path.mkdir(parents=True)
    assert answer("SELECT count(*) AS n FROM trends UNION ALL SELECT count(*) FROM revisions", empty) == [{"n": 0}, {"n": 0}]
    assert [r["column_name"] for r in answer("DESCRIBE revisions", empty)][:3] == ["window_start", "window_end", "term"]
