"""``tern power``: an *estimated* power figure for a board and preset, beside the paper's.

Utilisation from the board's bitstream manifest, a JSON file or the numbers recorded in
:data:`tern.power.RECORDED_UTILISATION`; switching activity from a Verilator run of real
generation (:mod:`sim.activity`); the model and its sourced coefficients in :mod:`tern.power`
and docs/power.md.
"""

from __future__ import annotations

import json
from pathlib import Path

from tern.bitstreams import BITSTREAMS  # (tests point it elsewhere)
from tern.errors import TernError

# The supported pairs: the board and the preset built for it.
CONFIGURATIONS = (("ulx3s-85f", "micro"), ("ulx3s-85f", "demo"), ("icebreaker", "micro"))
# Cells driven by a unit rather than by the design as a whole: multipliers live in the row and
# norm units, block RAM behind the memory ports.
_UNITS_OF_CELL = {"MULT18X18D": ("row", "norm"), "ICESTORM_DSP": ("row", "norm"),
                  "DP16KD": ("memory_ports",), "ICESTORM_RAM": ("memory_ports",),
                  "ICESTORM_SPRAM": ("memory_ports",)}


def add_arguments(parser):
    from tern.params import PRESETS
    from tern.power import BOARDS

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
            "tern/power.py (from a build that did not complete place and route); the output "
            "says which. The toggle rates come from a Verilator run of real generation of "
            "the shipped checkpoint with toggle coverage (sim/activity.py): logic cells take "
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


def load_utilisation(board: str, preset_name: str, path: str | Path | None = None
                     ) -> tuple[dict[str, int], str]:
    """Cell type -> used, and where the numbers came from: the bitstream manifest, ``path``,
    or :data:`tern.power.RECORDED_UTILISATION`, in that order.

    Raises
    ------
    TernError
        If ``path`` is unreadable or not cell counts, or nothing is known for the pair.
    """
    from tern.bitstreams import manifest
    from tern.params import preset
    from tern.power import RECORDED_UTILISATION

    manifest_path = BITSTREAMS / f"{board}-{preset_name}.json"
    stale = ""
    if manifest_path.exists():
        found = manifest(board, preset(preset_name), BITSTREAMS)
        if found is not None:
            return _cell_counts(manifest_path, found), f"the bitstream manifest {manifest_path}"
        stale = (f" ({manifest_path} was built for other parameters than the current "
                 f"{preset_name!r} preset: rebuild it with tern build --board {board} "
                 f"--preset {preset_name})")
    if path is not None:
        if not Path(path).exists():
            raise TernError(f"no utilisation file {path}")
        return _cell_counts(Path(path)), f"the file {path}{stale}"
    if (board, preset_name) in RECORDED_UTILISATION:
        cells, source = RECORDED_UTILISATION[board, preset_name]
        return dict(cells), f"recorded counts: {source}{stale}"
    raise TernError(f"no utilisation known for {board} with preset {preset_name}{stale}: build it "
                    f"(tern build --board {board} --preset {preset_name}) or pass "
                    f"--utilisation FILE.json")


def _cell_counts(path: Path, data=None) -> dict[str, int]:
    """The cell counts in ``path`` (a manifest or a counts file), or in ``data`` already read
    from it."""
    if data is None:
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as error:
            raise TernError(f"cannot read utilisation from {path}: {error}") from None
    data = data.get("utilisation", data) if isinstance(data, dict) else data
    if not isinstance(data, dict):
        raise TernError(f"{path}: expected {{cell type: used or [used, available]}}")
    counts = {}
    for cell, value in data.items():
        used = value[0] if isinstance(value, list) and value else value
        if not (isinstance(used, int) and used >= 0):
            raise TernError(f"{path}: the count of {cell} must be a non-negative integer or "
                            f"[used, available], not {value!r}")
        counts[cell] = used
    return counts


def activity_by_cell(activity: dict) -> dict[str, float]:
    """Toggle rate per cell type from :meth:`sim.activity.Activity.to_dict`: the whole core's
    as the default, the units' own for multipliers and block RAM."""
    rates = {"default": activity["toggle_rate"]}
    units = activity.get("units", {})
    for cell, names in _UNITS_OF_CELL.items():
        bits = sum(units[name]["bits"] for name in names if name in units)
        if bits:
            rates[cell] = sum(units[name]["toggles"] for name in names if name in units) / \
                (bits * activity["cycles"])
    return rates


def power_report(board: str, preset_name: str, *, tokens: int = 2,
                 utilisation_file: str | Path | None = None,
                 toggle_rate: float | None = None) -> dict:
    """Everything ``tern power`` prints, as a JSON-ready dict."""
    from tern.params import preset
    from tern.power import BOARDS, PAPER_BOARD_W, PAPER_MACHINE, estimate, tokens_per_joule

    if board not in BOARDS:
        raise TernError(f"unknown board {board!r}; choose one of {', '.join(BOARDS)}")
    try:
        params = preset(preset_name)
    except ValueError as error:
        raise TernError(str(error)) from None
    cells, source = load_utilisation(board, preset_name, utilisation_file)
    if toggle_rate is None:
        from sim.activity import measure_activity

        if tokens < 1:
            raise TernError(f"--activity-tokens must be at least 1, not {tokens}")
        activity = measure_activity(preset_name, tokens).to_dict()
        rates = activity_by_cell(activity)
    else:
        activity = {"toggle_rate": toggle_rate, "given": True}
        rates = toggle_rate
    power = estimate(BOARDS[board].family, cells, params.clock_hz, rates, board=board)
    report = {"board": board, "preset": preset_name, "label": "estimated",
              "utilisation": cells, "utilisation_source": source, "activity": activity,
              "toggle_rates": rates if isinstance(rates, dict) else {"default": rates},
              "estimate": power.to_dict(),
              "paper": {"board_w": PAPER_BOARD_W, "label": "measured", "machine": PAPER_MACHINE,
                        "source": "shared/MODEL.md (Zhu et al. 2024)"}}
    steps = activity.get("step_cycles")
    if steps:
        tokens_per_s = params.clock_hz * len(steps) / sum(steps)
        report["projected"] = {"tokens_per_s": tokens_per_s,
                               "tokens_per_joule": tokens_per_joule(tokens_per_s, power)}
    return report


def format_report(report: dict) -> str:
    """The readable table of :func:`power_report`."""
    from tern.power import FAMILIES

    power = report["estimate"]
    coefficients = FAMILIES[power["family"]]
    rates, activity = report["toggle_rates"], report["activity"]
    mhz = power["clock_hz"] / 1e6
    lines = [(f"tern power: {report['board']} ({power['device']}), preset {report['preset']}, "
             f"{mhz:g} MHz -- ESTIMATED, not measured"),
             f"utilisation: {report['utilisation_source']}"]
    if activity.get("given"):
        lines.append(f"activity: toggle rate {activity['toggle_rate']:.3f} as given (not "
                     f"simulated)")
    else:
        units = ", ".join(f"{name} {unit['toggle_rate']:.3f}"
                          for name, unit in activity["units"].items())
        lines.append(f"activity (simulated, Verilator toggle coverage): "
                     f"{activity['toggle_rate']:.3f} toggles per bit per cycle over "
                     f"{activity['tokens']} tokens ({activity['cycles']:,} cycles); {units}")
    lines += ["", (f"{'':<16}{'cells':>8}{'toggle rate':>13}{'uW/MHz/cell':>13}"
                  f"{'estimated W':>14}")]
    for name, watts in power["breakdown"].items():
        if name == "clock_network":
            lines.append(f"{'clock network':<16}{'':>8}{'':>13}"
                         f"{coefficients.clock_uw_per_mhz.value:>13.1f}{watts:>14.4f}")
            continue
        rate = rates.get(name, rates["default"])
        lines.append(f"{name:<16}{report['utilisation'][name]:>8,}{rate:>13.3f}"
                     f"{coefficients.cells[name].value:>13.3f}{watts:>14.4f}")
    paper = report["paper"]
    lines += [f"{'core dynamic':<50}{power['core_dynamic_w']:>14.4f}",
              f"{'device static (' + power['device'] + ')':<50}{power['device_static_w']:>14.4f}",
              f"{'board':<50}{power['board_w']:>14.4f}",
              f"{'total (estimated)':<50}{power['total_w']:>14.4f}",
              f"{'paper: ' + paper['machine'] + ' board (measured)':<50}{paper['board_w']:>14.2f}",
              ""]
    if "projected" in report:
        projected = report["projected"]
        lines.append(f"projected: {projected['tokens_per_s']:,.0f} tokens/s at {mhz:g} MHz "
                     f"(simulated cycles per token), {projected['tokens_per_joule']:,.0f} "
                     f"tokens/J at the estimated total")
    lines += [f"covers: {power['covers']}", *(f"note: {note}" for note in power["notes"]),
              "model, coefficients and their sources: docs/power.md (tern/power.py)"]
    return "\n".join(lines)


def run(args) -> int:
    report = power_report(args.board, args.preset, tokens=args.activity_tokens,
                          utilisation_file=args.utilisation, toggle_rate=args.toggle_rate)
    print(format_report(report))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0
