"""The `puewatch` command line.

Each subcommand is registered by a small function that only declares its
arguments; the code that does the work is imported when the subcommand runs.
That keeps `puewatch agent` free of Numba and the collector's imports, and
keeps `puewatch --help` fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence

from puewatch import __version__
from puewatch.errors import UserError

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
    "keys": "puewatch.commands:register_keys",
    "recompute": "puewatch.commands:register_recompute",
    "report": "puewatch.commands:register_report",
    "sign": "puewatch.commands:register_sign",
    "snmp": "puewatch.commands:register_snmp",
    "verify": "puewatch.commands:register_verify",
}


def _entry(target: str) -> Callable[[argparse.Namespace], int]:
    module_name, _, attr = target.partition(":")
    return getattr(importlib.import_module(module_name), attr)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
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
        print(f"puewatch {args.command}: error: {exc}", file=sys.stderr)
        return exc.exit_code
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
