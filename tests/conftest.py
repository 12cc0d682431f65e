"""Shared test helpers: free loopback ports and the Flink environment for PyFlink."""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))  # `tests.oracle` etc. import as a namespace package


from connectors.stack import free_ports  # noqa: E402  (re-exported for the test tiers)
