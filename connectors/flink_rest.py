"""The one client of Flink's REST API, for the job operations and for the local stack.

`call` retries (connectors/retry.py) while the cluster is unreachable or busy, until
the configured deadline: what an operation wants.  `call_once` makes one attempt:
what a probe wants (`feedtrends up` waiting for the cluster, `status`), which asks
again on its own schedule or reports the cluster as down.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

from connectors.retry import FlinkUnreachable, flink_call
from core.config import Config
from core.errors import Refused


class ClusterError(Refused):
    """The Flink cluster refused or failed a request (message says why)."""


# Worth retrying: a proxy or a JobManager that is (re)starting.  Anything else (404 for
# an unknown job, 400 for a bad request, 500 from a failed operation) retrying cannot fix.
_RETRIABLE_HTTP = (502, 503, 504)


def call(config: Config, path: str, method: str = "GET", body: dict | None = None, timeout_s: float = 10.0) -> Any:
    """One REST call, retried while the cluster is unreachable or busy; the decoded JSON answer."""
    return flink_call(
        f"{method} {path}",
        lambda left_s: call_once(config, path, method, body, max(1.0, min(timeout_s, left_s))),
        url=config.flink_rest_url,
        deadline_s=config.retry_deadline_ms / 1000,
    )


def call_once(config: Config, path: str, method: str = "GET", body: dict | None = None, timeout_s: float = 10.0) -> Any:
    """One attempt: FlinkUnreachable if it may succeed later, ClusterError if it cannot."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        config.flink_rest_url + path, data=data, method=method, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as resp:
            raw = resp.read()
    except urllib.error.HTTPError as exc:
        if exc.code in _RETRIABLE_HTTP:
            raise FlinkUnreachable(f"HTTP {exc.code}") from None
        raise ClusterError(f"Flink REST {method} {path}: HTTP {exc.code} {exc.read()[:300]!r}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        # A request that never reached the server is safe to send again; a timed-out
        # GET is too.  A timed-out PATCH/POST (cancel, stop) may have been acted on.
        if method == "GET" or isinstance(reason, ConnectionRefusedError):
            raise FlinkUnreachable(str(reason)) from None
        raise ClusterError(f"Flink cluster at {config.flink_rest_url}: {method} {path} failed: {reason}") from None
    return json.loads(raw) if raw else {}


def probe(config: Config, path: str, timeout_s: float = 3.0) -> Any | None:
    """One GET that answers None when the cluster does not (down, starting, or refusing)."""
    try:
        return call_once(config, path, timeout_s=timeout_s)
    except (FlinkUnreachable, ClusterError, ValueError):  # ValueError: an answer that is not JSON
        return None
