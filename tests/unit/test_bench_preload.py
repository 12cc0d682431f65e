"""The benchmark's generated timeline ends a day before the wall clock (bench/preload.py)."""

from __future__ import annotations

from bench.preload import start_ms
from connectors.synthetic import DEFAULT_START_MS

DAY_MS = 24 * 3_600_000


def test_small_runs_keep_the_default_start() -> None:
    now = DEFAULT_START_MS + 10 * DAY_MS
    assert start_ms(200_000, 1.0, now) == DEFAULT_START_MS


def test_large_runs_move_back_so_every_window_can_fire() -> None:
    now = DEFAULT_START_MS + 6 * DAY_MS + 12_345
    start = start_ms(1_000_000, 1.0, now)
    assert start % 3_600_000 == 0
    assert start + 1_000_000 * 1000 <= now - DAY_MS
    assert start > now - DAY_MS - 1_000_000 * 1000 - 3_600_000
