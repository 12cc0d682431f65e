"""The I/O half of `feedtrends query`: the current version's rows as the query's errors
see them, and drawing plots.

Rows come from the current output version (`connectors/versions.py`): its Parquet
directory, or its Kafka topic read with `isolation.level=read_committed`, both read by
`connectors/trend_store.py`; here a source that cannot be read becomes the query's
BackendUnavailable (exit 3).  Either way the caller gets every revision as plain
output-row dicts; choosing the latest revision and everything after it is pure
(`feedtrends/query.py`).
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any, Sequence

from connectors import trend_store
from feedtrends.query import BackendUnavailable, QueryInputError, output_row, utc_iso, utc_text

# A plot is always this size, so it looks the same in every report: 1000 x 500 px.
PLOT_SIZE_IN = (10.0, 5.0)
PLOT_DPI = 100


def require_dir(parquet_dir: Path) -> Path:
    """The output dir, or BackendUnavailable if it is missing (wrong state dir, or the job never wrote)."""
    parquet_dir = Path(parquet_dir)
    if not parquet_dir.is_dir():
        raise BackendUnavailable(f"Parquet dir {parquet_dir} does not exist (has the trends job written yet? right --state-dir?)")
    return parquet_dir


def part_files(parquet_dir: Path) -> list[Path]:
    """The committed part files of an output dir, sorted; [] if it is missing (in-progress files start with '.')."""
    parquet_dir = Path(parquet_dir)
    if not parquet_dir.is_dir():
        return []
    return sorted(p for p in parquet_dir.rglob("part-*") if p.is_file())


def read_parquet_rows(parquet_dir: Path) -> list[dict[str, Any]]:
    """Every committed row (all revisions) of a Parquet output dir.

    A missing dir means the source is not there (wrong state dir, or the job never
    wrote): BackendUnavailable.  An existing dir without committed part files is just
    empty: [] (the caller reports "no data yet").
    """
    parquet_dir = require_dir(parquet_dir)
    import pyarrow as pa

    try:
        table = trend_store.read_parquet(parquet_dir)
        return [output_row(raw) for raw in table.to_pylist()]
    except (pa.ArrowException, OSError, KeyError) as exc:
        detail = f"missing column {exc}" if isinstance(exc, KeyError) else str(exc).splitlines()[0]
        raise BackendUnavailable(f"cannot read Parquet in {parquet_dir}: {detail}") from None


def _host_port(address: str) -> tuple[str, int]:
    host, _, port = address.strip().rpartition(":")
    return host.strip("[]") or "127.0.0.1", int(port)


def _any_broker_reachable(bootstrap: str, timeout_s: float) -> bool:
    """A TCP connect to any bootstrap address.  kafka-python itself takes ~30 s to give up."""
    for address in bootstrap.split(","):
        try:
            with socket.create_connection(_host_port(address), timeout=timeout_s):
                return True
        except (OSError, ValueError):
            continue
    return False


def read_kafka_rows(bootstrap: str, topic: str, *, timeout_s: float = 60.0) -> list[dict[str, Any]]:
    """Every committed row (all revisions) of a trends topic, read with read_committed."""
    if not _any_broker_reachable(bootstrap, timeout_s=3.0):
        raise BackendUnavailable(f"Kafka at {bootstrap} is unreachable")
    from kafka.errors import KafkaError

    try:
        raw_rows = trend_store.read_kafka_rows(bootstrap, topic, timeout_s=timeout_s)
        return [output_row(raw) for raw in raw_rows]
    except (KafkaError, TimeoutError) as exc:
        raise BackendUnavailable(f"Kafka at {bootstrap}: {exc}") from None
    except (ValueError, TypeError, KeyError) as exc:
        raise BackendUnavailable(f"topic {topic} holds a record that is not a trend row: {exc}") from None


# --------------------------------------------------------------------------- plots


def _figure():
    # The Agg canvas directly, not pyplot: no global backend switch, no GUI, thread-safe enough.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=PLOT_SIZE_IN, dpi=PLOT_DPI)
    FigureCanvasAgg(figure)
    return figure


def _save(figure, path: Path) -> None:
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise QueryInputError(f"--plot writes PNG: {path} must end in .png")
    try:
        # No bbox_inches="tight": it would change the pixel size.
        figure.savefig(path, dpi=PLOT_DPI, format="png")
    except OSError as exc:
        raise QueryInputError(f"cannot write plot {path}: {exc.strerror or exc}") from None


def plot_term_history(history: Sequence[dict[str, Any]], path: Path) -> None:
    """Articles per window (bars) and score (line) of one term, oldest window left."""
    from matplotlib.ticker import MaxNLocator

    term = history[0]["term"]
    figure = _figure()
    ax = figure.add_subplot()
    x = list(range(len(history)))
    ax.bar(x, [r["articles"] for r in history], color="#4c72b0", label="articles")
    ax.set_ylabel("articles")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xticks(x, [utc_text(r["window_start"]) for r in history], rotation=30, ha="right", fontsize=8)
    score_ax = ax.twinx()
    score_ax.plot(x, [r["score"] for r in history], color="#dd8452", marker="o", label="score")
    score_ax.set_ylabel("score")
    ax.set_title(f"{term}: articles and score per window (UTC)")
    handles = ax.get_legend_handles_labels()[0] + score_ax.get_legend_handles_labels()[0]
    score_ax.legend(handles, [h.get_label() for h in handles], loc="best", fontsize=8)
    figure.tight_layout()
    _save(figure, path)


def plot_top_terms(top: Sequence[dict[str, Any]], path: Path) -> None:
    """A window's top terms by score (horizontal bars, rank 1 on top), with article counts."""
    window_start = top[0]["window_start"]
    figure = _figure()
    ax = figure.add_subplot()
    y = list(range(len(top)))
    bars = ax.barh(y, [r["score"] for r in top], color="#4c72b0")
    ax.set_yticks(y, [f"{r['rank']}. {r['term']}" for r in top], fontsize=8)
    ax.invert_yaxis()
    ax.bar_label(bars, labels=[f"{r['articles']} art." for r in top], padding=3, fontsize=8)
    ax.set_xlabel("score")
    ax.margins(x=0.08)  # room for the article labels
    ax.set_title(f"top terms of window {utc_iso(window_start)} ({window_start})")
    figure.tight_layout()
    _save(figure, path)
