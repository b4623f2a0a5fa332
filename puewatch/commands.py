"""Argument declarations for each subcommand (no heavy imports here)."""

from __future__ import annotations

import argparse


def register_bench(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="measure speed against baselines measured in the same run")
    bsub = p.add_subparsers(dest="bench_target", metavar="TARGET", required=True)
    k = bsub.add_parser(
        "kernels",
        help="kernel throughput vs a plain array copy and pandas",
        description=(
            "Times every kernel on N samples and prints samples/s and effective GB/s beside "
            "a plain array copy's GB/s and the pandas equivalent's time, measured in the same run."
        ),
    )
    k.add_argument("-n", "--samples", type=int, default=10_000_000, help="samples per kernel (default 10,000,000)")
    k.add_argument("--repeat", type=int, default=5, help="timed repetitions; the best is reported (default 5)")
    k.add_argument("--json", action="store_true", help="print machine-readable JSON")
    k.add_argument("--no-pandas", action="store_true", help="skip the pandas baselines")
    k.set_defaults(handler="puewatch.benchmarks.kernels:main")
