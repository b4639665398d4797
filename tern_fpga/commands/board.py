"""``tern flash``, ``tern load`` and ``tern generate``: a board (or the virtual board) at work."""

from __future__ import annotations

import sys
from pathlib import Path

from tern_fpga.contracts import tokenizer
from tern_fpga.contracts.bitstreams import (
    BITSTREAMS,  # (tests point it elsewhere)
    manifest,
)
from tern_fpga.contracts.boards import BOARDS, board
from tern_fpga.contracts.errors import TernError
from tern_fpga.contracts.export_format import read_export
from tern_fpga.contracts.params import preset
from tern_fpga.host import session
from tern_fpga.host.meters import measure_generation, open_meter
from tern_fpga.host.programmer import find_programmer, run_programmer


def register(subparsers):

    flash = subparsers.add_parser(
        "flash", help="program a board with a shipped or built bitstream",
        description="Program the board's FPGA (volatile SRAM by default) with "
                    "bitstreams/<board>-<preset> through openFPGALoader (ULX3S) or iceprog "
                    "(iCEBreaker).")
    flash.add_argument("--board", required=True, choices=sorted(BOARDS))
    flash.add_argument("--preset", help="default: the board's own preset")
    flash.add_argument("--bitstream", help="a bitstream file instead of the shipped one")
    flash.add_argument("--write-flash", action="store_true",
                       help="write the configuration flash, so it survives a power cycle")
    flash.add_argument("--timeout", type=float, default=300.0, metavar="SECONDS",
                       help="stop the programmer if it has not finished by then (default 300 s; "
                            "writing the ULX3S's flash takes tens of seconds)")
    flash.set_defaults(func=run_flash)

    for name, helptext in (("load", "stream an export's weights to a board and verify them"),
                           ("generate", "generate text on a board, with three speed figures")):
        parser = subparsers.add_parser(
            name, help=helptext,
            description=helptext[0].upper() + helptext[1:] + ". PORT is a serial port "
            "(/dev/ttyUSB0), any pyserial URL, or 'sim' for a virtual board (the board's top "
            "level simulated by Verilator, same driver).")
        parser.add_argument("export", help="a .tern file from `tern export`")
        parser.add_argument("--port", required=True, help="serial port, pyserial URL or 'sim'")
        parser.add_argument("--baud", type=int, default=3_000_000,
                            help="line rate of the bitstream (the virtual board uses its own)")
        if name == "generate":
            tokenizer.add_prompt_arguments(parser)
            parser.add_argument("--meter", help="power meter spec, e.g. hwmon:ina219 "
                                "(see `tern meters`): adds watts and joules per token")
            parser.set_defaults(func=run_generate)
        else:
            parser.set_defaults(func=run_load)


def run_flash(args) -> int:

    target = board(args.board)
    preset_name = args.preset or target.default_preset
    bitstream = Path(args.bitstream) if args.bitstream else \
        BITSTREAMS / f"{args.board}-{preset_name}{target.bitstream_suffix}"
    if not bitstream.exists():
        raise TernError(f"no bitstream {bitstream}; build it with `tern build --board "
                        f"{args.board} --preset {preset_name}`")
    if not args.bitstream:
        # A committed bitstream of an older preset would answer IDENTIFY with another
        # parameter hash, and every export of today's preset would be refused: say so now.

        try:
            params = preset(preset_name)
        except ValueError as error:
            raise TernError(str(error)) from None
        if manifest(args.board, params, BITSTREAMS, strict=True) is None:
            raise TernError(f"{bitstream} has no manifest ({bitstream.with_suffix('.json').name})"
                            f", so nothing says which design it is; rebuild it with `tern build "
                            f"--board {args.board} --preset {preset_name}`, or pass it as "
                            f"--bitstream FILE to flash it anyway")

    programmer = find_programmer(target.programmer)
    if target.programmer == "openFPGALoader":
        command = [str(programmer), "--board", "ulx3s"] + \
            (["--write-flash"] if args.write_flash else []) + [str(bitstream)]
    else:
        command = [str(programmer)] + ([] if args.write_flash else ["-S"]) + [str(bitstream)]
    run_programmer(command, timeout_s=args.timeout)
    print(f"programmed {bitstream.name} into the {target.name} "
          f"({'configuration flash' if args.write_flash else 'FPGA, until power-off'})")
    return 0


def _connect(args, export):

    return session.connect(args.port, export.params, baud=args.baud)


def run_load(args) -> int:

    export = read_export(args.export)
    with _connect(args, export) as (board, _):
        result = session.load(board, export)
    print(f"loaded and verified {result['bytes']:,} bytes in {result['seconds']:.2f} s "
          f"({result['bytes_per_s'] / 1e3:.1f} kB/s at the host)")
    return 0


def run_generate(args) -> int:

    export = read_export(args.export)
    prompt = tokenizer.prompt_from_arguments(args, export.model_config)
    with _connect(args, export) as (board, _):
        if not session.is_loaded(board, export):
            session.load(board, export)
        else:
            board.load_export(export, progress=False)  # cheap: verifies by CRC, sets entries
        if args.prompt is not None:
            sys.stdout.write(args.prompt)
        if args.meter:

            meter = open_meter(args.meter)
            meter.idle_baseline(3.0)
            holder = {}

            def generate():
                holder["report"] = session.generate_text(board, export, prompt, args.tokens)
                return holder["report"].generated

            energy = measure_generation(meter, generate)
            report = holder["report"]
        else:
            report = session.generate_text(board, export, prompt, args.tokens)
    where = "virtual board" if args.port == "sim" else args.port
    for line in report.lines(where):
        print(line)
    if args.meter:
        print(f"power measured by {args.meter}: {energy.mean_watts:.2f} W mean, "
              f"{energy.joules_per_token:.4f} J per token")
    return 0
