"""`feedtrends serve` as a process over the real job's Parquet output: the JSON API answers
what `query --format json` answers, bad input is a one-line 4xx, no file outside the
assets is served, and it keeps answering while part files appear and when there are none."""

from __future__ import annotations

import io
import json
import threading
from pathlib import Path

import pytest

from core.config import Config
from feedtrends.query_cli import build_query_parser, run_query
from tests.integration.test_query_parquet import oracle_latest
from tests.support.dashboard import commit_part, copy_demo_output, demo_parts, private_config, serving


@pytest.fixture(scope="module", autouse=True)
def flink_classpath() -> None:
    """Overrides the tier's session fixture: serving Parquet needs no JVM or jars."""


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> Config:
    cfg = private_config(tmp_path_factory.mktemp("served"))
    copy_demo_output(cfg.parquet_path)
    return cfg


@pytest.fixture(scope="module")
def server(config: Config):
    with serving(config) as s:
        yield s


def query_json(argv: list[str], config: Config) -> tuple[int, str]:
    args = build_query_parser().parse_args(["query", *argv, "--format", "json"])
    out, err = io.StringIO(), io.StringIO()
    code = run_query(args, config, out=out, err=err)
    return code, out.getvalue()


def test_the_fixture_is_real_job_output_with_stories() -> None:
    latest = oracle_latest(demo_parts()[0].parents[1]).to_pylist()
    assert len({r["window_start"] for r in latest}) >= 5
    assert any(r["aliases"] for r in latest)  # a story ranks once, with its other terms
    # Each example has its article's address (every sample entry has an http(s) link).
    assert all(len(r["links"]) == len(r["examples"]) > 0 for r in latest)
    assert all(link.startswith("https://") for r in latest for link in r["links"])


def _questions(config: Config) -> list[tuple[str, list[str]]]:
    latest = oracle_latest(config.parquet_path).to_pylist()
    windows = sorted({r["window_start"] for r in latest})
    storyish = next(r["term"] for r in latest if r["aliases"])
    feed = next(r["term"] for r in latest if r["term"].startswith("feed:"))
    cases = [("/api/windows", ["windows"]), ("/api/feeds", ["feeds"]), ("/api/top", ["top"])]
    for ws in windows:
        for k in (1, 3, 10):
            cases.append((f"/api/top?window={ws}&k={k}", ["top", "--window", str(ws), "--k", str(k)]))
    cases += [
        ("/api/top?window=2026-11-20T07:30:00Z&k=5", ["top", "--window", "2026-11-20T07:30:00Z", "--k", "5"]),
        (f"/api/term?term={storyish.replace(' ', '%20')}", ["term", storyish]),
        (f"/api/term?term={storyish.upper().replace(' ', '+')}", ["term", storyish.upper()]),
        (f"/api/term?term={feed}", ["term", feed]),
        (
            f"/api/term?term=storm&since={windows[1]}&until=2026-11-20T10:00Z",
            ["term", "storm", "--since", str(windows[1]), "--until", "2026-11-20T10:00Z"],
        ),
    ]
    return cases


def test_every_answer_is_the_bytes_query_json_prints(server, config: Config) -> None:
    cases = _questions(config)
    assert len(cases) > 20
    for path, argv in cases:
        code, expected = query_json(argv, config)
        assert code == 0, argv
        status, body = server.get(path)
        assert (status, body) == (200, expected), path
        assert json.loads(body)  # never an empty answer in these cases


@pytest.mark.parametrize(
    ("path", "status", "message"),
    [
        ("/api/term?term=zzzz", 404, "unknown term 'zzzz'"),
        ("/api/term?term=storm&until=2026-11-19T00:00Z", 404, "has no rows in"),
        ("/api/term", 400, "term is required"),
        ("/api/term?term=storm&since=yesterday", 400, "not a time: 'yesterday'"),
        ("/api/term?term=storm&since=now&until=-1d", 400, "must be before --until"),
        ("/api/top?window=2026-13-01", 400, "not a time"),
        ("/api/top?window=1", 404, "no window at"),
        ("/api/top?k=0", 400, "k must be from 1 to 100, not 0"),
        ("/api/top?k=101", 400, "k must be from 1 to 100, not 101"),
        ("/api/top?k=-3", 400, "k must be from 1 to 100"),
        ("/api/top?k=ten", 400, "k must be an integer"),
        ("/api/nothing-here", 404, "no such page or asset"),
        ("/assets/nope.js", 404, "no such page or asset"),
    ],
)
def test_bad_input_is_a_one_line_4xx(server, path: str, status: int, message: str) -> None:
    got, body = server.get(path)
    assert got == status
    error = json.loads(body)["error"]
    assert message in error and "\n" not in error and "Traceback" not in body


@pytest.mark.parametrize(
    "path",
    [
        "/assets/../serve.py",
        "/assets/../../pyproject.toml",
        "/assets/%2e%2e/serve.py",
        "/assets/..%2fserve.py",
        "/assets/%2e%2e%2f%2e%2e%2fpyproject.toml",
        "/assets//etc/passwd",
        "/assets/....//serve.py",
        "/../../../../etc/passwd",
    ],
)
def test_no_file_outside_the_assets_is_served(server, path: str) -> None:
    status, body = server.get(path)
    assert 400 <= status < 500
    assert "import" not in body and "root:" not in body and "[project]" not in body


def test_the_assets_and_the_page_are_served(server) -> None:
    status, page = server.get("/")
    assert status == 200 and "/assets/dashboard.js" in page and "//" not in page.replace("http://www.w3.org", "")
    for asset in ("dashboard.js", "dashboard.css"):
        assert server.get(f"/assets/{asset}")[0] == 200


def test_status_with_no_stack_says_so(server) -> None:
    status, info = server.json("/api/status")
    assert status == 200
    assert (info["kafka_ready"], info["flink_running"], info["jobs"]) == (False, False, [])
    assert info["current_version"] == "v1"


def test_missing_and_empty_output_are_answers_not_crashes(tmp_path: Path) -> None:
    missing = private_config(tmp_path / "never-ran")
    with serving(missing) as s:
        status, body = s.json("/api/windows")
        assert status == 503 and "does not exist" in body["error"]
        status, changes = s.json("/api/changes")
        assert (status, changes["version"], changes["parts"]) == (200, "v1", 0)
        assert s.get("/")[0] == 200 and s.json("/api/status")[0] == 200
        # The job starts writing: an in-progress file is not output, a committed one is.
        missing.parquet_path.mkdir(parents=True)
        (missing.parquet_path / ".part-x-0-0.inprogress.y").write_bytes(b"not yet")
        status, body = s.json("/api/top")
        assert status == 404 and "no trend rows in" in body["error"]
        commit_part(demo_parts()[0], missing.parquet_path)
        assert s.get("/api/windows") == (200, query_json(["windows"], missing)[1])


def test_it_keeps_answering_while_part_files_appear(tmp_path: Path) -> None:
    config = private_config(tmp_path / "growing")
    config.parquet_path.mkdir(parents=True)
    statuses: list[int] = []
    stop = threading.Event()
    with serving(config) as s:

        def hammer() -> None:
            while not stop.is_set():
                for path in ("/api/windows", "/api/top", "/api/feeds", "/api/changes"):
                    statuses.append(s.get(path)[0])

        readers = [threading.Thread(target=hammer) for _ in range(3)]
        for t in readers:
            t.start()
        try:
            seen = []
            for part in demo_parts():
                commit_part(part, config.parquet_path)
                status, body = s.get("/api/windows")
                assert (status, body) == (200, query_json(["windows"], config)[1])
                seen.append(len(json.loads(body)))
        finally:
            stop.set()
            for t in readers:
                t.join(timeout=30)
        assert seen == sorted(seen) and seen[-1] >= 5
        assert s.get("/api/top?k=10") == (200, query_json(["top", "--k", "10"], config)[1])
    assert statuses and set(statuses) <= {200, 404}  # 404 only before the first part file


def test_a_port_it_cannot_listen_on_is_one_line_and_exit_2(tmp_path: Path) -> None:
    import socket
    import subprocess
    import sys

    from tests.support.dashboard import REPO

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        for flags in (["--port", str(port)], ["--port", "70000"]):
            proc = subprocess.run(
                [sys.executable, "-m", "feedtrends.cli", "--state-dir", str(tmp_path), "serve", *flags],
                cwd=REPO, capture_output=True, text=True, timeout=60,
            )
            assert (proc.returncode, proc.stdout) == (2, "")
            assert proc.stderr.startswith("feedtrends serve: ") and proc.stderr.count("\n") == 1
