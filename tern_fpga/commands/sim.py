"""``tern sim``: a unit's or the whole core's RTL in Verilator against its golden function, with
a one-line verdict, and optionally an FST waveform and the timeline of one token."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

from tern_fpga.commands.board import line_rate
from tern_fpga.contracts import tokenizer
from tern_fpga.contracts.boards import DEFAULT_BAUD
from tern_fpga.contracts.errors import TernError
from tern_fpga.contracts.export_format import read_export
from tern_fpga.contracts.params import PRESETS, preset
from tern_fpga.sim.rtl.runs import UNITS, core_timeline, run_core_case, run_unit

DEFAULT_WAVES_CYCLES = 20_000


def register(subparsers):
    parser = subparsers.add_parser(
        "sim", help="simulate a unit or the whole core in Verilator against the golden model",
        description="Run the cocotb testbench of one unit (the tests' own) on random inputs for "
                    "a preset, or the whole core on an export and a prompt (or on a saved case "
                    ".npz) for N tokens, every result checked against its golden function; "
                    "prints a one-line verdict and the cycles simulated. See "
                    "docs/simulation.md.")
    parser.add_argument("what", choices=[*UNITS, "core"], metavar="UNIT",
                        help=f"one of {', '.join(UNITS)}, or core")
    parser.add_argument("source", nargs="?",
                        help="core: a .tern export (with --prompt or --ids) or a case .npz")
    parser.add_argument("--preset", default="micro", choices=sorted(PRESETS),
                        help="a unit's parameters (default micro; the core takes the export's)")
    parser.add_argument("--seed", type=int, default=1, help="a unit's random inputs (default 1)")
    parser.add_argument("--count", type=int, metavar="N",
                        help="how much a unit is sent: rounds of matrices, commands per "
                             "operation, NORM/QUANT rounds, bytes or frames")
    parser.add_argument("--config", metavar="FILE",
                        help="a unit's inputs: a JSON object whose entries replace those of the "
                             "testbench's configuration (e.g. the matrix unit's \"shapes\")")
    parser.add_argument("--baud", type=line_rate, default=DEFAULT_BAUD,
                        help="uart: the line rate (default 3,000,000)")
    tokenizer.add_prompt_arguments(parser, default_tokens=4, required=False)  # core only
    waves = parser.add_argument_group("waves and timeline")
    waves.add_argument("--waves", metavar="FILE.fst",
                       help="write an FST waveform of a window of cycles, and a GTKWave save "
                            "file (FILE.gtkw) beside it")
    waves.add_argument("--from-cycle", type=int, metavar="N",
                       help="the window's first clock cycle (default: 0 for a unit; for the "
                            "core, the steps of --waves-steps)")
    waves.add_argument("--cycles", type=int, metavar="M",
                       help=f"the window's length (default {DEFAULT_WAVES_CYCLES:,})")
    waves.add_argument("--waves-steps", metavar="FIRST[:LAST]",
                       help="core: trace these steps (tokens, from 0) instead of a window of "
                            "cycles (default: the last step)")
    waves.add_argument("--timeline", metavar="FILE.png",
                       help="core: draw where the cycles of one token (the first step) go, "
                            "unit by unit")
    parser.set_defaults(func=run)


def _window(args) -> tuple[int, int] | None:
    if args.from_cycle is None and args.cycles is None:
        return None
    first = 0 if args.from_cycle is None else args.from_cycle
    count = DEFAULT_WAVES_CYCLES if args.cycles is None else args.cycles
    if first < 0 or count < 1:
        raise TernError(f"the waves' window needs --from-cycle >= 0 and --cycles >= 1, not "
                        f"{first} and {count}")
    return first, count


def _steps(text: str | None) -> tuple[int, int] | None:
    if text is None:
        return None
    first, _, last = text.partition(":")
    try:
        steps = int(first), int(last or first)
    except ValueError:
        raise TernError(f"--waves-steps takes FIRST or FIRST:LAST (steps from 0), not "
                        f"{text!r}") from None
    if not 0 <= steps[0] <= steps[1]:
        raise TernError(f"--waves-steps needs 0 <= FIRST <= LAST, not {text!r}")
    return steps


def _config(path: str | None) -> dict | None:
    if path is None:
        return None
    try:
        config = json.loads(Path(path).read_text())
    except (OSError, ValueError) as error:
        raise TernError(f"cannot read --config {path}: {error}") from None
    if not isinstance(config, dict):
        raise TernError(f"--config {path} must hold a JSON object, not {type(config).__name__}")
    return config


def _prompt(args) -> list[int] | None:
    if args.prompt is None and args.ids is None:
        return None
    if args.source is None or Path(args.source).suffix == ".npz":
        raise TernError("--prompt and --ids go with an export; a case file has its own tokens")
    export = read_export(args.source)
    return tokenizer.prompt_from_arguments(args, export.model_config,
                                           tokenizer.for_export(export, args.source))


def _rerun(args) -> str:
    """The command that repeats this core run (without its waves options)."""
    words = ["tern", "sim", "core", str(Path(args.source).resolve())]
    if args.prompt is not None:
        words += ["--prompt", args.prompt]
    elif args.ids is not None:
        words += ["--ids", args.ids]
    if Path(args.source).suffix != ".npz":
        words += ["-n", str(args.tokens)]
    return shlex.join(words)


def _check_options(args) -> None:
    given = [option for option, value in (("--from-cycle", args.from_cycle),
                                          ("--cycles", args.cycles),
                                          ("--waves-steps", args.waves_steps)) if value is not None]
    if given and not args.waves:
        raise TernError(f"{' and '.join(given)} {'go' if len(given) > 1 else 'goes'} with "
                        f"--waves FILE.fst")
    if args.what != "core":
        for option, value in (("--waves-steps", args.waves_steps), ("--timeline", args.timeline),
                              ("--prompt", args.prompt), ("--ids", args.ids)):
            if value is not None:
                raise TernError(f"{option} goes with tern sim core, not {args.what}")
    elif args.waves_steps is not None and (args.from_cycle, args.cycles) != (None, None):
        raise TernError("give --waves-steps or a window of cycles (--from-cycle, --cycles), "
                        "not both")


def run(args) -> int:
    _check_options(args)
    window = _window(args) if args.waves else None
    waves = Path(args.waves) if args.waves else None
    if args.what == "core":
        if args.source is None:
            raise TernError("tern sim core needs an export (.tern, with --prompt or --ids) or "
                            "a case (.npz)")
        verdict = run_core_case(Path(args.source), prompt=_prompt(args), count=args.tokens,
                                rerun=_rerun(args), waves=waves, window=window,
                                waves_steps=_steps(args.waves_steps))
    else:
        if args.source is not None:
            raise TernError(f"tern sim {args.what} takes no export or case; it draws random "
                            f"inputs (--seed, --count, --config)")
        verdict = run_unit(args.what, preset(args.preset), seed=args.seed, count=args.count,
                           baud=args.baud, config=_config(args.config), waves=waves,
                           window=window or (0, DEFAULT_WAVES_CYCLES))
    print(verdict.line())
    if verdict.waves is not None:
        print(f"waves: {verdict.waves} ({verdict.waves.stat().st_size:,} bytes); open with "
              f"`gtkwave {verdict.save_file}` or `surfer {verdict.waves}`")
    if args.timeline and args.what == "core":
        _timeline(args)
    return 0 if verdict.passed else 1


def _timeline(args) -> None:
    from tern_fpga.explore.timeline import plot_timeline  # here, not at the top: loads matplotlib

    rows, about = core_timeline(Path(args.source), prompt=_prompt(args))
    plot_timeline(Path(args.timeline), rows, about)
    print(f"timeline of one token ({about['cycles']:,} cycles from the run command to the "
          f"token): {args.timeline}")
