"""`feedtrends serve`: the trends dashboard and its JSON API, on 127.0.0.1:8090 by default.

    GET /                         the dashboard (feedtrends/static/: one page, one script, one style sheet)
    GET /api/windows              = query windows --format json
    GET /api/top?window=T&k=N     = query top [--window T] [--k N] --format json   (k: 1..100, default 10)
    GET /api/term?term=X&since=T&until=T
                                  = query term X [--since T] [--until T] --format json
    GET /api/feeds                = query feeds --format json
    GET /api/status               = status --json
    GET /api/changes              {"version", "parts", "stamp"}: what the page polls to refresh itself

The answers are not re-implemented here: each goes through `query_cli.answer` and
`query.render(kind, records, "json")`, the path `query --format json` takes, so the
bytes are the same.  An error is JSON `{"error": "<one line>"}` with a 4xx/5xx status:
400 bad input (a time, `k`, a missing `term`), 404 nothing found (unknown term, no such
window, no output yet), 503 the output cannot be read (its directory is missing).

Library: Starlette on uvicorn.  Starlette is small, typed, maintained by the Encode
team (who also maintain uvicorn and httpx), and gives us routing, exception handlers
and `StaticFiles`, which resolves every asset path and refuses any that leaves its
directory (`..`, encoded slashes, symlinks out).  uvicorn is the ASGI server it is
usually run on: one dependency, h11, no C extension needed, graceful shutdown on
SIGTERM.  The stdlib `http.server` would do for JSON, but safe static serving and
sane error handling would be ours to write and test; here they are the library's.
The page refreshes by polling `/api/changes` (every 5 s): plain requests that any proxy
passes and that never keep a connection open across a shutdown, which server-sent
events would.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import socket
import threading
import time
from pathlib import Path
from typing import Any, Callable

from core.config import Config
from feedtrends.query import BackendUnavailable, NothingFound, QueryError, QueryInputError, render
from feedtrends.query_cli import Question, answer, current_output, current_rows
from feedtrends.query_store import part_files

STATIC_DIR = Path(__file__).resolve().parent / "static"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8090
MAX_K = 100
POLL_MS = 5000

_STATUS_BY_ERROR: tuple[tuple[type[BaseException], int], ...] = (
    (QueryInputError, 400),
    (NothingFound, 404),
    (BackendUnavailable, 503),
)


# --------------------------------------------------------------------------- rows


def committed_parts(parquet_dir: Path) -> list[tuple[str, int, int]]:
    """(relative path, size, mtime ns) of each committed part file; [] if the dir is missing."""
    out = []
    for path in part_files(parquet_dir):
        try:
            st = path.stat()
        except OSError:  # renamed or removed while listing
            continue
        out.append((str(path.relative_to(parquet_dir)), st.st_size, st.st_mtime_ns))
    return out


class RowsCache:
    """The current version's final rows, read again only when its committed part files change.

    The job commits part files by renaming them into place, so a listing of `part-*`
    names, sizes and mtimes changes exactly when there is something new to read.  An
    error (no output yet, a missing dir) is cached like rows, so a page polling an
    empty output does not re-read it.
    """

    def __init__(self, config: Config, read: Callable[[Config], list[dict[str, Any]]] = current_rows):
        self.config = config
        self._read = read
        self._lock = threading.Lock()
        self._stamp: str | None = None
        self._value: list[dict[str, Any]] | QueryError = []

    def changes(self) -> dict[str, Any]:
        version = current_output(self.config)
        parts = committed_parts(version.parquet_dir)
        listing = json.dumps([version.name, str(version.parquet_dir), version.parquet_dir.is_dir(), parts])
        return {"version": version.name, "parts": len(parts), "stamp": hashlib.sha256(listing.encode()).hexdigest()[:16]}

    def rows(self) -> list[dict[str, Any]]:
        with self._lock:
            stamp = self.changes()["stamp"]
            if stamp != self._stamp:
                try:
                    self._value = self._read(self.config)
                except QueryError as exc:
                    self._value = exc
                self._stamp = stamp
            if isinstance(self._value, QueryError):
                raise self._value
            return self._value


# --------------------------------------------------------------------------- the app


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _k(text: str | None) -> int:
    if text is None or text == "":
        return 10
    try:
        k = int(text)
    except ValueError:
        raise QueryInputError(f"k must be an integer from 1 to {MAX_K}, not {text!r}") from None
    if not 1 <= k <= MAX_K:
        raise QueryInputError(f"k must be from 1 to {MAX_K}, not {k}")
    return k


def question_of(kind: str, params: dict[str, str]) -> Question:
    """A URL's query parameters as the question `feedtrends query` would be asked."""
    if kind == "top":
        return Question("top", window=params.get("window") or None, k=_k(params.get("k")))
    if kind == "term":
        term = params.get("term", "").strip()
        if not term:
            raise QueryInputError("term is required: /api/term?term=bram")
        return Question("term", term=term, since=params.get("since") or None, until=params.get("until") or None)
    return Question(kind)


def create_app(config: Config, *, status_of: Callable[[Config], dict] | None = None):
    """The Starlette app over `config`'s current output version."""
    from starlette.applications import Starlette
    from starlette.exceptions import HTTPException
    from starlette.requests import Request
    from starlette.responses import FileResponse, JSONResponse, Response
    from starlette.routing import Mount, Route
    from starlette.staticfiles import StaticFiles

    cache = RowsCache(config)
    if status_of is None:
        from feedtrends.operations import status as status_of

    def error(status: int, message: str) -> Response:
        return JSONResponse({"error": message}, status_code=status)

    def json_text(text: str) -> Response:
        return Response(text + "\n", media_type="application/json")

    def query_endpoint(kind: str):
        def endpoint(request: Request) -> Response:
            try:
                question = question_of(kind, dict(request.query_params))
                result = answer(question, cache.rows, config, int(time.time() * 1000))
            except QueryError as exc:
                status = next(code for cls, code in _STATUS_BY_ERROR if isinstance(exc, cls))
                return error(status, _one_line(exc))
            return json_text(render(kind, result.records, "json"))

        return endpoint

    def status_endpoint(request: Request) -> Response:
        # What `status --json` prints: with no stack it says so (kafka_ready, flink_running false).
        try:
            info = status_of(config)
        except Exception as exc:  # a backend half up; the page shows the line
            return error(503, f"status: {_one_line(exc)}")
        return json_text(json.dumps(info, indent=2, default=str))

    def changes_endpoint(request: Request) -> Response:
        try:
            return JSONResponse(cache.changes())
        except QueryError as exc:
            return error(503, _one_line(exc))

    def index(request: Request) -> Response:
        return FileResponse(STATIC_DIR / "index.html", media_type="text/html")

    async def http_error(request: Request, exc: HTTPException) -> Response:
        reason = {404: f"no such page or asset: {request.url.path}", 405: f"{request.method} is not allowed here"}
        return error(exc.status_code, reason.get(exc.status_code, _one_line(exc.detail)))

    async def unexpected(request: Request, exc: Exception) -> Response:
        return error(500, f"unexpected {type(exc).__name__}: {_one_line(exc)}")

    routes = [
        Route("/", index),
        *(Route(f"/api/{kind}", query_endpoint(kind)) for kind in ("windows", "top", "term", "feeds")),
        Route("/api/status", status_endpoint),
        Route("/api/changes", changes_endpoint),
        Mount("/assets", StaticFiles(directory=STATIC_DIR), name="assets"),
    ]
    return Starlette(routes=routes, exception_handlers={HTTPException: http_error, Exception: unexpected})


# --------------------------------------------------------------------------- the command


def listening_socket(host: str, port: int) -> socket.socket:
    """Bound and listening before uvicorn starts, so a busy port is one clear error."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise QueryInputError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock.listen(128)
    return sock


def dashboard_url(host: str, port: int) -> str:
    return f"http://{f'[{host}]' if ':' in host else host}:{port}/"


def serve(config: Config, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT) -> int:
    import uvicorn

    sock = listening_socket(host, port)
    bound_port = sock.getsockname()[1]
    print(f"dashboard: {dashboard_url(host, bound_port)}  (API under /api/; stop with Ctrl-C)", flush=True)
    server = uvicorn.Server(uvicorn.Config(create_app(config), log_level="warning", access_log=False))
    server.run(sockets=[sock])
    return 0


def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default=DEFAULT_HOST, help=f"address to listen on (default {DEFAULT_HOST})")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT}; 0 = any free port)")


def serve_command(args: argparse.Namespace, config: Config) -> int:
    if not 0 <= args.port < 65536:
        raise QueryInputError(f"--port must be 0-65535, not {args.port}")
    return serve(config, args.host, args.port)
