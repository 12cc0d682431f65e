"""The kinds of failure a command can end with, one base class per kind.

Errors raised anywhere below the CLI (connectors/, udfs/) say which kind they are
by deriving from one of these, so the CLI needs no knowledge of each module's
errors to pick the exit code: `feedtrends/exit_codes.py` maps kinds to codes.
They live in core/ because every layer may raise them and core/ imports nothing.
"""

from __future__ import annotations


class Refused(Exception):
    """The request was understood and declined, failed, or had nothing to do."""


class BadInput(Exception):
    """Arguments, configuration or files that cannot be used as given."""


class Unreachable(Exception):
    """A backend (Kafka, Flink, the output store) could not be reached or read."""
