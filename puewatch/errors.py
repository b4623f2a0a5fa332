"""Errors meant for the person running puewatch, not for a traceback."""

from __future__ import annotations


class UserError(Exception):
    """Bad input (config, arguments, data) that the user must fix.

    The CLI prints the message on one line and exits with `exit_code`.
    """

    exit_code = 2


class ConfigError(UserError):
    """A configuration file is invalid; the message names file, key and allowed values."""


def describe_os_error(exc: OSError) -> str:
    """An OSError on one line, naming the file it is about: `/var/lib/x: Permission denied`."""
    reason = exc.strerror or " ".join(str(exc).split()) or type(exc).__name__
    if exc.filename is None:
        return reason
    where = str(exc.filename) + (f" -> {exc.filename2}" if exc.filename2 is not None else "")
    return f"{where}: {reason}"


def startup_error(exc: OSError, what: str = "cannot start") -> UserError:
    """What a daemon raises for an OSError before it is up (a file it cannot read, a directory it
    cannot write): one line and exit 2, as for a bad config, instead of a traceback."""
    return UserError(f"{what}: {describe_os_error(exc)}")
