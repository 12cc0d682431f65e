"""What every `feedtrends` parser shares: one-line usage errors, argument types, and
the step from flags to the one configuration (flag > FEEDTRENDS_* > default)."""

from __future__ import annotations

import argparse

from core.config import Config, ConfigError, load_config, parse_duration_ms


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (the usage is in `--help`)."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"{self.prog}: {' '.join(message.split())} (see `{self.prog} --help`)\n")


def config_from(args: argparse.Namespace, **flags: str | int | None) -> Config:
    """The configuration with `--state-dir` and this command's `flags` on top; a flag
    left unset (None) keeps the environment's or the default value."""
    return load_config({"state_dir": getattr(args, "state_dir", None), **flags})


def duration_seconds(text: str) -> float:
    """A flag's duration in seconds; the unit is required (see `parse_duration_ms`)."""
    try:
        ms = parse_duration_ms(text, unit_required=True)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if ms <= 0:
        raise argparse.ArgumentTypeError("duration must be positive")
    return ms / 1000


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be >= 1")
    return value


def fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError("must be a fraction between 0 and 1")
    return value
