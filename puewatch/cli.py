"""The `puewatch` command line.

Each subcommand is registered by a small function that only declares its
arguments; the code that does the work is imported when the subcommand runs.
That keeps `puewatch agent` free of Numba and the collector's imports, and
keeps `puewatch --help` fast.
"""

from __future__ import annotations

import argparse
import difflib
import importlib
import sys
from collections.abc import Callable, Sequence

from puewatch import __version__
from puewatch.errors import UserError
from puewatch.terminal import shown

# name -> "module:function" registering the subcommand's parser.
_COMMANDS: dict[str, str] = {
    "agent": "puewatch.commands:register_agent",
    "bench": "puewatch.commands:register_bench",
    "check": "puewatch.commands:register_check",
    "city": "puewatch.commands:register_city",
    "collector": "puewatch.commands:register_collector",
    "demo": "puewatch.commands:register_demo",
    "export": "puewatch.commands:register_export",
    "influx": "puewatch.commands:register_influx",
    "jobs": "puewatch.commands:register_jobs",
    "keys": "puewatch.commands:register_keys",
    "recompute": "puewatch.commands:register_recompute",
    "report": "puewatch.commands:register_report",
    "sign": "puewatch.commands:register_sign",
    "snmp": "puewatch.commands:register_snmp",
    "statement": "puewatch.commands:register_statement",
    "token": "puewatch.commands:register_token",
    "verify": "puewatch.commands:register_verify",
}


# The third-party modules each extra brings (pyproject.toml): a command run on an install without its
# extra (an agent-only node asked for `puewatch report`) says which one to install, not a traceback.
_EXTRA_OF_MODULE: dict[str, str] = {
    **dict.fromkeys(("pynvml", "psutil"), "agent"),
    **dict.fromkeys(("numpy", "numba", "llvmlite", "pysnmp", "pyasn1", "cryptography", "rfc8785", "influxdb_client",
                     "urllib3", "prometheus_client", "rich"), "collector"),
    "matplotlib": "report",
    "pandas": "bench",
    **dict.fromkeys(("snmpsim", "pysmi"), "demo"),
}


def missing_extra(exc: ModuleNotFoundError) -> str | None:
    """The extra that installs the module `exc` misses, or None when it is none of theirs."""
    return _EXTRA_OF_MODULE.get((exc.name or "").partition(".")[0])


def _entry(target: str) -> Callable[[argparse.Namespace], int]:
    module_name, _, attr = target.partition(":")
    return getattr(importlib.import_module(module_name), attr)


class _Parser(argparse.ArgumentParser):
    """argparse, naming a misspelt option. Where a command misses a required option, argparse says only
    that (`--confg x` gave "the following arguments are required: --config"), not that it did not know
    `--confg`: the error then names the options it did not know first, each with the nearest one it has.
    Subcommands' parsers are of this class too (add_subparsers makes its parsers of the parent's class)."""

    def parse_known_args(self, args=None, namespace=None):  # type: ignore[override]
        self._given = list(sys.argv[1:] if args is None else args)
        return super().parse_known_args(args, namespace)

    def _unknown_options(self) -> list[str]:
        unknown = []
        for arg in getattr(self, "_given", []):
            if arg == "--":
                break
            name = arg.partition("=")[0]
            if not name.startswith("-") or name == "-" or self._negative_number_matcher.match(name):
                continue
            if name in self._option_string_actions:
                continue
            if self.allow_abbrev and name.startswith("--") and any(o.startswith(name) for o in self._option_string_actions):
                continue  # an abbreviation argparse takes (or calls ambiguous itself)
            unknown.append(name)
        return unknown

    def error(self, message: str):  # type: ignore[override]
        if message.startswith("the following arguments are required"):
            options = [o for o in self._option_string_actions if o.startswith("--")]
            notes = []
            for name in self._unknown_options():
                near = difflib.get_close_matches(name, options, n=1)
                notes.append(f"unknown option {name}" + (f" (did you mean {near[0]}?)" if near else ""))
            if notes:
                message = "; ".join(notes) + "; " + message
        super().error(message)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="puewatch",
        description=(
            "Measure how efficiently a data centre turns electricity into computing: "
            "GPU node agent, site collector, standards-grade PUE reports."
        ),
    )
    parser.add_argument("--version", action="version", version=f"puewatch {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for target in _COMMANDS.values():
        _entry(target)(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    handler: str = args.handler
    try:
        return int(_entry(handler)(args) or 0)
    except UserError as exc:
        # Bad input from the person running the command: a clear message, no traceback.
        # One line, whatever a document's strings in the message hold (puewatch.terminal).
        print(f"puewatch {args.command}: error: {shown(exc)}", file=sys.stderr)
        return exc.exit_code
    except ModuleNotFoundError as exc:
        extra = missing_extra(exc)
        if extra is None:
            raise
        if args.command == "demo":
            extra = "demo"  # the demo extra brings the agent's and the collector's with snmpsim
        print(f"puewatch {args.command}: error: this needs the '{extra}' extra (Python module {exc.name!r} is not "
              f"installed): pip install \"puewatch[{extra}]\"", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # `puewatch export ... | head`: the reader has what it wanted. Point stdout at /dev/null so the
        # interpreter's last flush does not fail again, and end quietly with a SIGPIPE death's status.
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
