"""A small local HTTP server for feed files, with real conditional GET.

Used by tests and demos so the ingester runs its genuine HTTP path (ETag,
Last-Modified, 304) against loopback instead of the internet:

    with FeedServer("samples/feeds") as server:
        url = server.url_for("storm-desk.xml")

Extra routes (path -> handler function) let tests add misbehaving endpoints
(redirect loops, slow responses) next to the plain files.
"""

from __future__ import annotations

import email.utils
import hashlib
import mimetypes
import os
import threading
import urllib.parse
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

RouteHandler = Callable[[BaseHTTPRequestHandler], None]

_CONTENT_TYPES = {
    ".rss": "application/rss+xml",
    ".atom": "application/atom+xml",
    ".xml": "application/xml",
    ".opml": "text/x-opml",
    ".html": "text/html",
}


def _make_handler(root: str, routes: dict[str, RouteHandler]) -> type[BaseHTTPRequestHandler]:
    class FeedFileHandler(BaseHTTPRequestHandler):
        server_version = "feedtrends-feed-server/1"
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
            pass  # tests and demos do not want an access log on stderr

        def do_HEAD(self) -> None:
            self._serve(send_body=False)

        def do_GET(self) -> None:
            self._serve(send_body=True)

        def _serve(self, *, send_body: bool) -> None:
            path = urllib.parse.urlsplit(self.path).path
            if path in routes:
                routes[path](self)
                return
            relative = urllib.parse.unquote(path).lstrip("/")
            full = os.path.realpath(os.path.join(root, relative))
            # realpath + prefix check: no "../" or symlink escapes from root.
            if not full.startswith(root + os.sep) or not os.path.isfile(full):
                self._plain(404, b"not found\n")
                return
            with open(full, "rb") as handle:
                body = handle.read()
            mtime = int(os.stat(full).st_mtime)
            etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
            last_modified = email.utils.formatdate(mtime, usegmt=True)
            if self._not_modified(etag, mtime):
                self.send_response(304)
                self.send_header("ETag", etag)
                self.send_header("Last-Modified", last_modified)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            ext = os.path.splitext(full)[1].lower()
            content_type = _CONTENT_TYPES.get(ext) or mimetypes.guess_type(full)[0] or "application/octet-stream"
            self.send_response(200)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("ETag", etag)
            self.send_header("Last-Modified", last_modified)
            self.end_headers()
            if send_body:
                self.wfile.write(body)

        def _not_modified(self, etag: str, mtime: int) -> bool:
            # RFC 9110: If-None-Match wins; If-Modified-Since only without it.
            if_none_match = self.headers.get("If-None-Match")
            if if_none_match is not None:
                tags = [t.strip() for t in if_none_match.split(",")]
                return "*" in tags or etag in tags or ("W/" + etag) in tags
            if_modified_since = self.headers.get("If-Modified-Since")
            if if_modified_since:
                try:
                    since = email.utils.parsedate_to_datetime(if_modified_since)
                except (TypeError, ValueError):
                    return False
                return mtime <= int(since.timestamp())
            return False

        def _plain(self, status: int, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    return FeedFileHandler


class _QuietThreadingHTTPServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients that hang up early (size limits, timeouts) are expected here.
        import sys

        if not isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError, TimeoutError)):
            super().handle_error(request, client_address)


class FeedServer:
    """Threaded loopback HTTP server for a directory; port 0 picks a free port."""

    def __init__(
        self,
        directory: str,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        routes: dict[str, RouteHandler] | None = None,
    ) -> None:
        self.directory = os.path.realpath(directory)
        if not os.path.isdir(self.directory):
            raise NotADirectoryError(self.directory)
        self.routes = dict(routes or {})
        self._httpd = _QuietThreadingHTTPServer((host, port), _make_handler(self.directory, self.routes))
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    @property
    def base_url(self) -> str:
        host = self._httpd.server_address[0]
        return f"http://{host}:{self.port}"

    def url_for(self, relative_path: str) -> str:
        return f"{self.base_url}/{urllib.parse.quote(relative_path.lstrip('/'))}"

    def start(self) -> FeedServer:
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="feed-server", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def serve_forever(self) -> None:
        try:
            self._httpd.serve_forever()
        finally:
            self._httpd.server_close()

    def __enter__(self) -> FeedServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

