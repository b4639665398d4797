"""The ``tern`` command line: one entry point, one subcommand per job.

Each subcommand lives in its own module with a ``register(subparsers)`` function that adds its
parser and sets ``func``; this file only collects them. A user's mistake (a bad file, a wrong
preset) is raised as :class:`tern_fpga.contracts.errors.TernError` and printed as one line, not a
traceback; so is a bad option (exit status 2), and a reader that goes away (``tern golden ... |
head``) ends the command quietly.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from tern_fpga.commands.version import VersionAction
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
    "tern_fpga.commands.sim",
]

# The exit status of a command whose output pipe was closed: that of a death by SIGPIPE, as the
# shell reports it for any other program before ``| head``.
BROKEN_PIPE_STATUS = 128 + 13


class ArgumentParser(argparse.ArgumentParser):
    """argparse's parser, but a usage mistake is one line (what and how to fix, not the whole
    usage), exit status 2."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog="tern",
        description="From a MatMul-free (ternary) language model in PyTorch to tokens on an FPGA: "
                    "train, export, simulate, build, flash, generate and measure.",
        epilog="Run 'tern COMMAND --help' for the options of one command.")
    parser.add_argument("--version", action=VersionAction,
                        help="print the version, the presets' parameter hashes and the "
                             "toolchain's versions, and exit")
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
        status = args.func(args) or 0
        sys.stdout.flush()  # here, where a closed pipe is caught, not at the interpreter's exit
        return status
    except TernError as error:
        print(f"tern {args.command}: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"tern {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader is gone: nothing more can be said to it, and Python's final flush of
        # stdout must not fail again (and print a traceback) at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return BROKEN_PIPE_STATUS


if __name__ == "__main__":
    sys.exit(main())
