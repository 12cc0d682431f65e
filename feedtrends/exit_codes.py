"""The one table from errors to exit codes, used by every `feedtrends` command.

    0 ok;  1 refused, failed or nothing to do;  2 bad input (arguments, configuration,
    files);  3 a backend (Kafka, Flink) still unreachable when the retry deadline
    passed;  130 interrupted (Ctrl-C), 143 terminated (SIGTERM).

An error's code follows from its type: the nearest class in its MRO that the table
lists.  Errors of this project derive from a kind in core/errors.py; the built-in
entries cover what reaches the CLI from the standard library.
"""

from __future__ import annotations

import socket
import sys
from typing import TextIO

from core.config import ConfigError
from core.errors import BadInput, Refused, Unreachable

OK = 0
REFUSED = 1
BAD_INPUT = 2
UNREACHABLE = 3
INTERRUPTED = 130
TERMINATED = 143

# What each code means, as the README's table says it (tests compare the two).
MEANINGS: dict[int, str] = {
    OK: "ok",
    REFUSED: "refused, failed or nothing to do",
    BAD_INPUT: "bad input: arguments, configuration, files",
    UNREACHABLE: "a backend (Kafka, Flink) still unreachable when `retry_deadline_ms` passed",
    INTERRUPTED: "interrupted by Ctrl-C",
    TERMINATED: "terminated by SIGTERM",
}

BY_TYPE: dict[type[BaseException], int] = {
    Refused: REFUSED,
    BadInput: BAD_INPUT,
    Unreachable: UNREACHABLE,
    ConfigError: BAD_INPUT,
    # A network error that no retry helper turned into Unreachable is still a backend
    # that cannot be reached, not bad input (these are OSErrors too, listed nearer).
    ConnectionError: UNREACHABLE,
    TimeoutError: UNREACHABLE,
    socket.gaierror: UNREACHABLE,
    OSError: BAD_INPUT,  # a path that cannot be read, written or bound
    ValueError: BAD_INPUT,  # a value the argument parsers let through
    KeyboardInterrupt: INTERRUPTED,
}


def exit_code(exc: BaseException) -> int | None:
    """The documented exit code of an error; None for one nobody expected (a bug)."""
    for cls in type(exc).__mro__:
        if cls in BY_TYPE:
            return BY_TYPE[cls]
    return None


def one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


def report(command: str, exc: BaseException, err: TextIO | None = None) -> int:
    """Say what failed in one line, `feedtrends <command>: <what and why>`; return its code.

    An error the table does not know is a bug: still one line (naming its type), and 1.
    """
    code = exit_code(exc)
    message = "interrupted" if isinstance(exc, KeyboardInterrupt) else one_line(exc)
    if code is None:
        code, message = REFUSED, f"unexpected {type(exc).__name__}: {message}"
    print(f"feedtrends {command}: {message}", file=err if err is not None else sys.stderr)
    return code
