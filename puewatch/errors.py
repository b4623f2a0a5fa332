"""Errors meant for the person running puewatch, not for a traceback."""

from __future__ import annotations


class UserError(Exception):
    """Bad input (config, arguments, data) that the user must fix.

    The CLI prints the message on one line and exits with `exit_code`.
    """

    exit_code = 2


class ConfigError(UserError):
    """A configuration file is invalid; the message names file, key and allowed values."""
