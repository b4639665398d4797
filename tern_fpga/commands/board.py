"""``tern flash``, ``tern load`` and ``tern generate``: a board (or the virtual board) at work."""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path

from tern_fpga.contracts import tokenizer
from tern_fpga.contracts.bitstreams import (
    BITSTREAMS,  # (tests point it elsewhere)
    manifest,
)
from tern_fpga.contracts.boards import BOARDS, DEFAULT_BAUD, LINE_RATES, board
from tern_fpga.contracts.errors import TernError
from tern_fpga.contracts.export_format import check_compiled, read_export
from tern_fpga.contracts.params import preset
from tern_fpga.host import session
from tern_fpga.host.meters import measure_generation, open_meter
from tern_fpga.host.programmer import find_programmer, run_programmer


def line_rate(text: str) -> int:
    """The argparse type of ``--baud``: a whole number of baud in :data:`LINE_RATES`."""
    low, high = LINE_RATES
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of baud") from None
    if not low <= value <= high:
        raise argparse.ArgumentTypeError(
            f"{value:,} baud is not a line rate tern uses: give {low:,} to {high:,} (the "
            f"bitstream's own rate, {DEFAULT_BAUD:,} unless it was built with another)")
    return value


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
        parser.add_argument("--baud", type=line_rate, default=DEFAULT_BAUD,
                            help="line rate of the bitstream (the virtual board uses its own)")
        parser.add_argument("--core", choices=session.CORES, default=None,
                            help="the core: by default the preset's ('dataflow' for a board's "
                                 "dataflow presets, e.g. micro-dataflow, else 'instruction'); "
                                 "'dataflow' runs any block-RAM preset on issue 15's dataflow "
                                 "core with --port sim. For the dataflow core the export is "
                                 "rewritten into its segmented weight layout as it is loaded")
        parser.add_argument("--abort", action="store_true",
                            help="if the board is still running an earlier generation (its host "
                                 "was killed, say), end that run first instead of stopping with "
                                 "an error; on a terminal you are asked")
        if name == "generate":
            tokenizer.add_prompt_arguments(parser)
            parser.add_argument("--meter", help="power meter spec, e.g. hwmon:ina219 "
                                "(see `tern meters`): adds watts and joules per token")
            _add_waves_arguments(parser)
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


@contextlib.contextmanager
def _connect(args, export):
    """The board, idle: an earlier run still going is ended if ``--abort`` (or the user) says so."""
    with session.connect(args.port, export.params, baud=args.baud,
                         waves=_waves_file(args), export=export,
                         core=args.core) as (board, virtual):
        if board.status().running:
            question = "the board is still running an earlier generation; end it (ABORT)?"
            if not (args.abort or _yes(question)):
                raise TernError("the board is still running an earlier generation (its host "
                                "left without ending it); pass --abort to end that run, or wait "
                                "until it finishes")
            steps = board.abort()
            if steps is None:     # it finished by itself between STATUS and ABORT
                print("the board's earlier run ended by itself; its memories are as that run "
                      "left them", file=sys.stderr)
            else:
                print(f"ended the board's earlier run after {steps} steps (ABORT); its "
                      f"memories are as that run left them", file=sys.stderr)
        yield board, virtual


def _yes(question: str) -> bool:
    """The user's answer on a terminal; no without one."""
    if not (sys.stdin.isatty() and sys.stderr.isatty()):
        return False
    print(f"{question} [y/N] ", end="", file=sys.stderr, flush=True)
    return sys.stdin.readline().strip().lower() in ("y", "yes")


def _read(args):
    """The export, checked whole before a board is touched."""
    export = read_export(args.export)
    check_compiled(export, args.export)
    try:
        return session.export_for_core(export, session.resolve_core(export.params, args.core))
    except TernError as error:
        raise TernError(f"{args.export}: {error}") from None


def run_load(args) -> int:

    export = _read(args)
    with _connect(args, export) as (board, _):
        result = session.load(board, export)
    print(f"loaded and verified {result['bytes']:,} bytes in {result['seconds']:.2f} s "
          f"({result['bytes_per_s'] / 1e3:.1f} kB/s at the host)")
    return 0


def run_generate(args) -> int:

    export = _read(args)
    text_tokenizer = tokenizer.for_export(export, args.export)
    prompt = tokenizer.prompt_from_arguments(args, export.model_config, text_tokenizer)
    if text_tokenizer is None:
        print(tokenizer.no_tokenizer_note(export.model_config, args.export), file=sys.stderr)
    with _connect(args, export) as (board, virtual):
        restored = session.reuse_if_loaded(board, export)
        if restored is not None:
            print(f"the board already holds {args.export} (every section's CRC matches): not "
                  f"loading it again, only its working memory ({restored:,} bytes)",
                  file=sys.stderr)
        else:
            result = session.load(board, export)
            print(f"loaded and verified {args.export}: {result['bytes']:,} bytes in "
                  f"{result['seconds']:.2f} s", file=sys.stderr)
        if virtual is not None and args.waves:
            virtual.trace(args.waves_cycles)   # from here: the generation, not the load
        if args.prompt is not None:
            sys.stdout.write(args.prompt)
        # The meter's idle baseline before the run: Ctrl-C there ends no run.
        meter = _idle_meter(args.meter) if args.meter else None
        try:
            report, energy = _generate(args, board, export, prompt, meter)
        except KeyboardInterrupt:
            # The driver has ended the board's run (ABORT) as the generator closed.
            print("\ninterrupted: the board's run was ended at a token boundary (ABORT); the "
                  "export is still loaded", file=sys.stderr)
            return 130
        finally:
            if meter is not None:
                meter.close()
    where = "virtual board" if args.port == "sim" else args.port
    for line in report.lines(where):
        print(line)
    if virtual is not None and virtual.save_file:
        print(f"waves: {args.waves}; open with `gtkwave {virtual.save_file}`")
    if energy is not None:
        print(f"power measured by {args.meter}: {energy.mean_watts:.2f} W mean, "
              f"{energy.joules_per_token:.4f} J per token")
    return 0


def _idle_meter(spec: str):
    """The power meter ``spec`` names, its idle baseline taken (closed if that fails)."""
    meter = open_meter(spec)
    try:
        meter.idle_baseline(3.0)
    except BaseException:
        meter.close()
        raise
    return meter


def _generate(args, board, export, prompt, meter):
    """The generation's report, and its energy measured by ``meter`` if there is one."""
    if meter is None:
        return session.generate_text(board, export, prompt, args.tokens), None
    holder = {}

    def generate():
        holder["report"] = session.generate_text(board, export, prompt, args.tokens)
        return holder["report"].generated

    energy = measure_generation(meter, generate)
    return holder["report"], energy


# `tern generate --port sim --waves FILE.fst` (issue 22) ----------------------------------------

def _add_waves_arguments(parser) -> None:
    parser.add_argument("--waves", metavar="FILE.fst",
                        help="with --port sim: write an FST waveform of the generation's first "
                             "cycles (not the load's) and a GTKWave save file (FILE.gtkw) beside "
                             "it; see docs/simulation.md")
    parser.add_argument("--waves-cycles", type=int, default=20_000, metavar="N",
                        help="how many cycles the waveform holds (default 20,000: about a "
                             "token of the micro preset)")


def _waves_file(args) -> Path | None:
    if not getattr(args, "waves", None):
        return None
    if args.port != "sim":
        raise TernError("--waves needs --port sim: only the virtual board can be traced")
    if args.waves_cycles < 1:
        raise TernError(f"--waves-cycles must be at least 1, not {args.waves_cycles}")
    return Path(args.waves)
