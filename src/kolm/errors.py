"""Errors a user can cause and fix. The CLI prints them as one line and exits with code 2."""

from __future__ import annotations

__all__ = ["KolmError", "ConfigError", "DataError", "CheckpointError", "UsageError"]


class KolmError(Exception):
    """A problem the user can fix; the message says how. Shown without a traceback."""

    exit_code = 2


class ConfigError(KolmError):
    """Invalid configuration: unknown key, wrong type, value out of range."""


class DataError(KolmError):
    """Missing, unreadable, empty or malformed input data."""


class CheckpointError(KolmError):
    """Missing or corrupt checkpoint, or one that does not match the config."""


class UsageError(KolmError, ValueError):
    """A value passed to a function or option that it cannot take (e.g. top_p outside (0, 1]).

    Also a ValueError, so library callers that catch ValueError keep working.
    """
