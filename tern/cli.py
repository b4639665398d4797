"""The ``tern`` command line: one entry point, one subcommand per job.

Each subcommand lives in its own module with a ``register(subparsers)`` function that adds its
parser and sets ``func``; this file only collects them. A user's mistake (a bad file, a wrong
preset) is raised as :class:`tern.errors.TernError` and printed as one line, not a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from tern.errors import TernError

# Modules that define subcommands, in the order ``tern --help`` lists them.
COMMAND_MODULES = [
    "quant.train_command",
    "quant.export_command",
    "tern.inspect_command",
    "sim.golden_command",
    "tern.bench_command",
    "host.meters_command",
    "hw.verilog_command",
    "hw.build_command",
    "host.board_commands",
    "tern.power_command",
    "tern.sweep_command",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tern",
        description="From a MatMul-free (ternary) language model in PyTorch to tokens on an FPGA: "
                    "train, export, simulate, build, flash, generate and measure.",
        epilog="Run 'tern COMMAND --help' for the options of one command.")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return args.func(args) or 0
    except TernError as error:
        print(f"tern {args.command}: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"tern {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
