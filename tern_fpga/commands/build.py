"""``tern build``: a bitstream and its manifest for a board, with the open toolchain."""

from __future__ import annotations

import re
import threading
import time
from pathlib import Path

from tern_fpga.commands.board import line_rate
from tern_fpga.contracts.boards import BOARDS, board, runs_dataflow_core
from tern_fpga.contracts.errors import TernError
from tern_fpga.contracts.output_paths import (
    OutputKind,
    add_force_argument,
    check_output_folder,
)
from tern_fpga.contracts.params import PRESETS, preset
from tern_fpga.explore import sweep, synthesis_cache

# nextpnr's log lines that start a phase, in order; routing iterations are reported as well.
_PHASES = (("Running main analytical placer", "nextpnr: placing"),
           ("Running Static placer", "nextpnr: placing"),
           ("Running simulated annealing placer", "nextpnr: refining the placement"),
           ("Running main router loop", "nextpnr: routing"),
           ("Running router1 to check", "nextpnr: checking the routes"),
           ("Critical path report", "nextpnr: timing analysis"))
_ROUTER_ITERATION = re.compile(r"iter=(\d+) wires=\d+ overused=(\d+)")
# router2 stalls: no new low of overused wires for this many iterations while still at least
# STALLED_OVERUSED of them. A converging run can spend 25 iterations on its last few wires
# (the demo design's trial: 1 wire from iteration 64 to 98), never on hundreds; the runs that
# never routed sat at about 1,300 and 8,000 (docs/boards.md).
STALLED_ITERATIONS = 15
STALLED_OVERUSED = 100
# Where the toolchain runs, a folder per board and preset (relative to the working directory).
BUILD_ROOT = Path("build/bitstreams")
# What a build writes into -o DIR (by suffix), and how an earlier build's file is recognised:
# ecppack's and icepack's bitstreams start with a comment block (0xff 0x00) or the sync word.
_BITSTREAM = OutputKind.starting_with("a bitstream", b"\xff\x00", b"\x7e\xaa\x99\x7e")
OUTPUT_KINDS = {
    ".bit": _BITSTREAM,
    ".bin": _BITSTREAM,
    ".json": OutputKind.json_with_keys("a bitstream manifest", ("board", "preset", "build_id")),
    ".stat.txt": OutputKind.text_matching("Yosys's statistics", rb"\s*\d+\. Printing statistics"),
}


def build_phase(build_dir: Path) -> str | None:
    """What the toolchain is doing in ``build_dir``, from its logs (Yosys writes ``top.rpt``,
    nextpnr ``top.tim``, ecppack/icepack the bitstream); None before anything started."""
    build_dir = Path(build_dir)
    nextpnr_log = build_dir / "top.tim"
    if not nextpnr_log.exists():
        return "Yosys: synthesis" if (build_dir / "top.rpt").exists() else None
    text = nextpnr_log.read_text(errors="replace")
    phase = "nextpnr: packing"
    for marker, name in _PHASES:
        if marker in text:
            phase = name
    if phase == "nextpnr: routing":
        iterations = [(int(number), int(overused))
                      for number, overused in _ROUTER_ITERATION.findall(text)]
        if iterations:
            number, overused = iterations[-1]
            phase += f", iteration {number}: {overused:,} wires overused (0 is done)"
            best = min(iterations, key=lambda item: (item[1], item[0]))
            if number - best[0] >= STALLED_ITERATIONS and overused >= STALLED_OVERUSED:
                phase += (f"; no new low since iteration {best[0]} ({best[1]:,}): the router "
                          f"may never finish. Stop it and try another placement "
                          f"(tern build --seed N)")
    return phase


class _ProgressPrinter(threading.Thread):
    """Prints each new phase of a build (and, while routing, the router's progress at most
    once a minute), with the time since the build started."""

    def __init__(self, build_dir: Path, interval: float = 5.0):
        super().__init__(daemon=True)
        self.build_dir, self.interval = build_dir, interval
        self.stopped = threading.Event()

    def run(self):
        start, last, last_printed = time.monotonic(), None, 0.0
        while not self.stopped.wait(self.interval):
            try:
                phase = build_phase(self.build_dir)
            except OSError:
                continue
            now = time.monotonic()
            head = phase.split(",")[0] if phase else None
            if phase and (head != (last or "").split(",")[0] or
                          (phase != last and now - last_printed >= 60)):
                minutes, seconds = divmod(int(now - start), 60)
                print(f"  [{minutes:3d}:{seconds:02d}] {phase}", flush=True)
                last, last_printed = phase, now


def register(subparsers):

    parser = subparsers.add_parser(
        "build", help="build a bitstream for a dev board (Yosys + nextpnr, no vendor tools)",
        description="Elaborate the accelerator for a board and a preset, synthesise and place "
                    "and route it with Yosys and nextpnr (YoWASP builds), and write "
                    "bitstreams/<board>-<preset>.bit|.bin with a JSON manifest (parameters "
                    "and hash, build id, Fmax, utilisation, tool versions). Fails when timing "
                    "is not met. Takes minutes; the tools' WebAssembly is compiled once per "
                    "cache (YOWASP_CACHE_DIR).")
    parser.add_argument("--board", required=True, choices=sorted(BOARDS))
    parser.add_argument("--preset", choices=sorted(PRESETS),
                        help="accelerator preset (default: the board's own: "
                        + ", ".join(f"{b.name} -> {b.default_preset}" for b in BOARDS.values())
                        + ")")
    parser.add_argument("--baud", type=line_rate, help="UART rate (default 3000000)")
    parser.add_argument("-o", "--output-dir", default="bitstreams",
                        help="where the bitstream and manifest go (default bitstreams/)")
    parser.add_argument("--seed", type=int,
                        help="nextpnr's placement seed (default: the committed bitstream's, "
                             "tern_fpga.hw.build.NEXTPNR_SEEDS, else 1); try another when routing "
                             "stalls with overused wires")
    parser.add_argument("--skip-fit-check", action="store_true",
                        help="go straight to Yosys and nextpnr, without first checking the "
                             "block RAM and DSP count against the FPGA (about half a minute)")
    add_force_argument(parser, "files in -o DIR that an earlier build did not write")
    parser.set_defaults(func=run)


def check_fit(board_name: str, preset_name: str, progress=print) -> None:
    """Refuse, before Yosys's long run, a preset whose block RAM or DSPs exceed the board's
    FPGA: Yosys's own memory and DSP mapping of the whole design (about half a minute; the
    sweep uses the same figure, see :func:`tern_fpga.explore.synthesis_cache.map_memories`). On the
    iCE40 the mapping puts the activation buffer in flip-flops, as the sweep does; the build itself
    still asks for LUT RAM there, which the iCE40 lacks, so a preset that passes this check can
    still stop in Yosys.

    Raises
    ------
    TernError
        Naming what is over and by how much.
    """

    device = sweep.BOARD_DEVICES.get(board_name)
    if device is None:
        return
    if runs_dataflow_core(preset(preset_name)):
        progress(f"{preset_name} runs the dataflow core: no quick fit check (the memory "
                 f"mapping models the instruction core); its size is in docs/dataflow.md")
        return
    progress(f"checking that {preset_name} fits the {device.description} (Yosys memory "
             f"mapping) ...")
    usage = synthesis_cache.map_memories(preset(preset_name), device.family)
    over = sweep.fits({"bram": usage["bram"], "dsp": usage["dsp"]}, device.available)
    if over:
        raise TernError(
            f"the {preset_name} preset does not fit the {device.description}: it needs "
            f"{', '.join(over)} (used/available); nothing was built. See docs/boards.md for "
            f"what this board needs, or choose another preset (--preset)")


def check_arguments(args) -> str:
    """Refuse, in seconds, what would stop the build minutes later: an output folder that must
    not be written, a line rate the preset's clock cannot make, a bad seed. Returns the preset's
    name."""
    # here, not at the top: loads Amaranth
    from tern_fpga.hw.build import nextpnr_options
    from tern_fpga.hw.uart import bit_period  # here, not at the top: loads Amaranth

    target = board(args.board)
    preset_name = args.preset or target.default_preset
    name = f"{args.board}-{preset_name}"
    suffixes = (target.bitstream_suffix, ".json", ".stat.txt")
    check_output_folder(args.output_dir, {name + suffix: OUTPUT_KINDS[suffix]
                                          for suffix in suffixes}, force=args.force)
    if args.baud is not None:
        try:
            bit_period(preset(preset_name).clock_hz, args.baud)
        except ValueError as error:
            raise TernError(f"--baud {args.baud}: {error}") from None
    if args.seed is not None:
        nextpnr_options(args.seed)
    return preset_name


def run(args) -> int:
    # here, not at the top: loads Amaranth
    from tern_fpga.hw.build import build_bitstream

    preset_name = check_arguments(args)
    if not args.skip_fit_check:
        check_fit(args.board, preset_name)
    # The build directory is watched for progress (its stale logs from an earlier build are
    # removed first, so that they do not read as this build's).
    build_dir = BUILD_ROOT / f"{args.board}-{preset_name}"
    for stale in ("top.tim", "top.rpt"):
        (build_dir / stale).unlink(missing_ok=True)
    printer = _ProgressPrinter(build_dir)
    printer.start()
    try:
        manifest = build_bitstream(args.board, preset_name, output_dir=args.output_dir,
                                   build_root=BUILD_ROOT, baud=args.baud, seed=args.seed)
    finally:
        printer.stopped.set()
        printer.join()
    fmax = ", ".join(f"{clock}: {mhz:.1f} MHz" for clock, mhz in manifest["fmax_mhz"].items())
    print(f"wrote {args.output_dir}/{manifest['bitstream']} (build id {manifest['build_id']}); "
          f"Fmax {fmax} against {manifest['clock_mhz']:.1f} MHz")
    for cell, (used, available) in sorted(manifest["utilisation"].items()):
        if used:
            print(f"  {cell:<16} {used:>7} / {available:<7} ({100 * used / available:.0f} %)")
    return 0
