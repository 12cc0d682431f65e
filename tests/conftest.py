"""Puts the repository on sys.path, so `tests.support`, `tests.oracle` etc. import in every tier."""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))  # `tests.oracle` etc. import as a namespace package
