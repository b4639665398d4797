"""``tern power``: an *estimated* power figure for a board and preset, beside the paper's.

Utilisation from the board's bitstream manifest, a JSON file or the numbers recorded in
:data:`tern_fpga.explore.power.RECORDED_UTILISATION`; switching activity from a Verilator run of
real generation (:mod:`tern_fpga.explore.activity`); the model and its sourced coefficients in
:mod:`tern_fpga.explore.power`
and docs/power.md.
"""

from __future__ import annotations

import json
from pathlib import Path

from tern_fpga.contracts.boards import BOARDS, runs_dataflow_core
from tern_fpga.contracts.errors import TernError
from tern_fpga.contracts.output_paths import OutputKind, add_force_argument, check_output_file
from tern_fpga.contracts.params import PRESETS, preset
from tern_fpga.explore.power_report import format_report, power_report

# What --json writes, which a later run may overwrite.
REPORT_KIND = OutputKind.json_with_keys("a tern power report", ("board", "preset", "estimate"))


def add_arguments(parser):

    parser.add_argument("--board", required=True, choices=sorted(BOARDS),
                        help="the board: selects the FPGA family's coefficients and the board's "
                             "own power")
    parser.add_argument("--preset", required=True, choices=sorted(set(PRESETS) - {"large"}),
                        help="the accelerator preset: its clock_hz is the clock, its shipped "
                             "checkpoint is generated with")
    parser.add_argument("--activity-tokens", type=int, default=2, metavar="N",
                        help="tokens of greedy generation simulated for the toggle rates "
                             "(default 2; micro takes about a minute, demo several)")
    parser.add_argument("--toggle-rate", type=float, metavar="RATE",
                        help="use this toggle rate (0 to 1) for every cell instead of "
                             "simulating")
    parser.add_argument("--utilisation", metavar="FILE.json",
                        help="cell counts when bitstreams/BOARD-PRESET.json does not exist: a "
                             "manifest, or {cell type: used or [used, available]}")
    parser.add_argument("--json", metavar="OUT", help="also write the whole report as JSON")
    add_force_argument(parser, "an existing --json file that is not a power report")
    parser.set_defaults(func=run)


def register(subparsers):
    parser = subparsers.add_parser(
        "power", help="estimate the FPGA's power from utilisation and simulated activity",
        description=(
            "An ESTIMATED power figure (not a measurement) for a board running a preset: "
            "P = device static + clock network + sum over nextpnr cell types of cells x "
            "coefficient x clock (MHz) x toggle rate, plus the board's own power where known. "
            "Utilisation comes from the bitstream manifest bitstreams/BOARD-PRESET.json when "
            "it exists, else from --utilisation, else from the counts recorded in "
            "tern_fpga/explore/power.py (from a build that did not complete place and route); the "
            "output "
            "says which. The toggle rates come from a Verilator run of real generation of "
            "the shipped checkpoint with toggle coverage (tern_fpga/explore/activity.py): logic "
            "cells take "
            "the whole core's rate, multipliers that of the row and norm units, block RAM "
            "that of the memory ports. Coefficients and their sources (vendor data sheet, a "
            "public iCE40UP5K measurement, and labelled assumptions where nothing is "
            "published) are in docs/power.md. The result covers the FPGA (dynamic and "
            "static); the board's regulators, USB bridge, oscillator and LEDs are not "
            "estimated (0 W, said so), and neither are I/O switching and glitches. The "
            "paper's measured 13.67 W (Zhu et al. 2024, a whole Intel D5005 Stratix 10 "
            "board) is printed beside it, and the tokens/s and tokens per joule projected from "
            "the simulated cycles per token."),
        epilog="Example: tern power --board icebreaker --preset micro --json power.json")
    add_arguments(parser)


def run(args) -> int:
    if runs_dataflow_core(preset(args.preset)):
        raise TernError(f"tern power models the instruction core (its activity from a Verilator "
                        f"run of that core, its cycles from that core's model); preset "
                        f"{args.preset!r} runs the dataflow core, whose power is not modelled "
                        f"yet: its resources and cycles are in docs/dataflow.md")
    if args.json:
        check_output_file(args.json, REPORT_KIND, force=args.force, inputs=[args.utilisation],
                          option="--json")
    report = power_report(args.board, args.preset, tokens=args.activity_tokens,
                          utilisation_file=args.utilisation, toggle_rate=args.toggle_rate)
    print(format_report(report))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0
