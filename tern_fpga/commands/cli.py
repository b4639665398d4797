"""The ``tern`` command line: one entry point, one subcommand per job.

Each subcommand lives in its own module with a ``register(subparsers)`` function that adds its
parser and sets ``func``; this file only collects them. A user's mistake (a bad file, a wrong
preset) is raised as :class:`tern_fpga.contracts.errors.TernError` and printed as one line, not a
traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from tern_fpga.contracts.errors import TernError

# Modules that define subcommands, in the order ``tern --help`` lists them.
COMMAND_MODULES = [
    "tern_fpga.commands.train",
    "tern_fpga.commands.export",
    "tern_fpga.commands.inspect",
    "tern_fpga.commands.golden",
    "tern_fpga.commands.bench",
    "tern_fpga.commands.meters",
    "tern_fpga.commands.verilog",
    "tern_fpga.commands.build",
    "tern_fpga.commands.board",
    "tern_fpga.commands.power",
    "tern_fpga.commands.sweep",
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
