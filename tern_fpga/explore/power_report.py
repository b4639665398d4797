"""The power report behind ``tern power`` and ``make bench``: utilisation (the bitstream's
manifest, a file, or the recorded counts), switching activity from a Verilator run of real
generation (:mod:`tern_fpga.explore.activity`) and the model of :mod:`tern_fpga.explore.power`.
"""

from __future__ import annotations

import json
from pathlib import Path

from tern_fpga.contracts.bitstreams import BITSTREAMS, manifest
from tern_fpga.contracts.boards import BOARDS
from tern_fpga.contracts.errors import TernError
from tern_fpga.contracts.params import preset
from tern_fpga.explore.power import (
    FAMILIES,
    PAPER_BOARD_W,
    PAPER_MACHINE,
    RECORDED_UTILISATION,
    estimate,
    tokens_per_joule,
    tokens_per_joule_range,
)
from tern_fpga.explore.report import Figure

__all__ = ["CONFIGURATIONS", "activity_by_cell", "format_report", "load_utilisation",
           "power_report", "run"]

CONFIGURATIONS = (("ulx3s-85f", "micro"), ("ulx3s-85f", "demo"), ("icebreaker", "micro"))
# Cells driven by a unit rather than by the design as a whole: multipliers live in the row and
# norm units, block RAM behind the memory ports.
_UNITS_OF_CELL = {"MULT18X18D": ("row", "norm"), "ICESTORM_DSP": ("row", "norm"),
                  "DP16KD": ("memory_ports",), "ICESTORM_RAM": ("memory_ports",),
                  "ICESTORM_SPRAM": ("memory_ports",)}


def load_utilisation(board: str, preset_name: str, path: str | Path | None = None
                     ) -> tuple[dict[str, int], str]:
    """Cell type -> used, and where the numbers came from: the bitstream manifest, ``path``,
    or :data:`tern_fpga.explore.power.RECORDED_UTILISATION`, in that order.

    Raises
    ------
    TernError
        If ``path`` is unreadable or not cell counts, or nothing is known for the pair.
    """

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
    """Toggle rate per cell type from :meth:`tern_fpga.explore.activity.Activity.to_dict`: the whole
    core's
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

    if board not in BOARDS:
        raise TernError(f"unknown board {board!r}; choose one of {', '.join(BOARDS)}")
    try:
        params = preset(preset_name)
    except ValueError as error:
        raise TernError(str(error)) from None
    cells, source = load_utilisation(board, preset_name, utilisation_file)
    if toggle_rate is None:
        # here, not at the top: loads cocotb
        from tern_fpga.explore.activity import measure_activity

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
        report["projected"] = projected(params.clock_hz * len(steps) / sum(steps), power)
    return report


def projected(tokens_per_s: float, power) -> dict:
    """Tokens/s and tokens/J over the FPGA alone and, where the board's power is modelled,
    over the board at its supply input; each tokens/J with its range under the assumptions."""
    out = {"tokens_per_s": tokens_per_s,
           "tokens_per_joule": tokens_per_joule(tokens_per_s, power, "fpga"),
           "tokens_per_joule_range": list(tokens_per_joule_range(tokens_per_s, power, "fpga"))}
    if power.board_w > 0:
        out["board_tokens_per_joule"] = tokens_per_joule(tokens_per_s, power, "total")
        out["board_tokens_per_joule_range"] = list(tokens_per_joule_range(tokens_per_s, power,
                                                                          "total"))
    return out


def _span(pair) -> str:
    return f"{pair[0]:.4f}-{pair[1]:.4f}"


def format_report(report: dict) -> str:
    """The readable table of :func:`power_report`."""

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
    paper, ranges = report["paper"], power.get("ranges", {})
    lines += [f"{'':<50}{'estimated W':>14}  {'range under the assumptions':>28}"]
    for label, key in (("core dynamic", "core_dynamic_w"),
                       ("device static (" + power["device"] + ")", "device_static_w"),
                       ("FPGA alone (core dynamic + device static)", "fpga_w"),
                       ("board: regulator losses + idle draw", "board_w"),
                       ("total (estimated)", "total_w")):
        span = _span(ranges[key]) if key in ranges else ""
        lines.append(f"{label:<50}{power[key]:>14.4f}  {span:>28}")
    lines += [f"{'paper: ' + paper['machine'] + ' board (measured)':<50}{paper['board_w']:>14.2f}",
              ""]
    if "projected" in report:
        projected = report["projected"]
        low, high = projected["tokens_per_joule_range"]
        lines.append(f"projected: {projected['tokens_per_s']:,.0f} tokens/s at {mhz:g} MHz "
                     f"(simulated cycles per token); {projected['tokens_per_joule']:,.0f} "
                     f"tokens/J over the FPGA alone ({low:,.0f}-{high:,.0f} under the "
                     f"assumptions' ranges)")
        if "board_tokens_per_joule" in projected:
            low, high = projected["board_tokens_per_joule_range"]
            lines.append(f"projected: {projected['board_tokens_per_joule']:,.0f} tokens/J over "
                         f"the board at its supply input ({low:,.0f}-{high:,.0f})")
    lines += [f"covers: {power['covers']}", *(f"note: {note}" for note in power["notes"]),
              "model, coefficients and their sources: docs/power.md (tern_fpga/explore/power.py)"]
    return "\n".join(lines)


def run(quick: bool = False) -> list:
    """``tern bench`` provider: the estimate for ulx3s-85f/demo and icebreaker/micro (toggle
    rates from Verilator runs of 2 tokens, 4 when not quick), tokens/s and tokens per joule
    projected from them (points of the Pareto plot), and the paper's board power."""
    source = "tern_fpga.explore.power_report.run"
    figures = []
    for board, preset_name in CONFIGURATIONS:
        report = power_report(board, preset_name, tokens=2 if quick else 4)
        power, activity = report["estimate"], report["activity"]
        prefix = f"power.{board}.{preset_name}"
        notes = (f"{power['device']} at {power['clock_hz'] / 1e6:g} MHz, utilisation from "
                 f"{report['utilisation_source']}; coefficients and their sources in "
                 f"docs/power.md; {power['covers']}")
        machine = f"{board} ({power['device']}), model"
        ranges = power.get("ranges", {})
        for key in ("total_w", "fpga_w", "core_dynamic_w", "device_static_w", "board_w"):
            if key not in power:
                continue
            span = (f"; {_span(ranges[key])} W with every assumption at the low and at the high "
                    f"end of its range" if key in ranges else "")
            figures.append(Figure(f"{prefix}.{key}", round(power[key], 4), "W", "estimated",
                                  source, notes + span, machine=machine))
        figures.append(Figure(f"{prefix}.toggle_rate", round(activity["toggle_rate"], 4),
                              "toggles/bit/cycle", "simulated",
                              "tern_fpga.explore.activity.measure_activity",
                              f"Verilator toggle coverage of the core over {activity['tokens']} "
                              f"tokens ({activity['cycles']} cycles) of the {preset_name} "
                              f"checkpoint"))
        if "projected" in report:
            figures += _projected_figures(prefix, report["projected"], power, source, machine)
    figures.append(Figure("power.paper.board_w", PAPER_BOARD_W, "W", "measured",
                          "shared/MODEL.md", "Zhu et al. 2024: board power running one d=512 "
                          "block (idle 13.68 W: dynamic power not distinguishable; their "
                          "measurement, quoted)", machine=PAPER_MACHINE))
    return figures


def _projected_figures(prefix: str, projected: dict, power: dict, source: str, machine: str
                       ) -> list:
    """tokens/s, tokens/J over the FPGA alone and, where modelled, over the board."""
    mhz = power["clock_hz"] / 1e6
    low, high = projected["tokens_per_joule_range"]
    figures = [
        Figure(f"{prefix}.tokens_per_s", round(projected["tokens_per_s"], 1), "tokens/s",
               "projected", source, f"clock / simulated cycles per token at {mhz:g} MHz",
               machine=machine),
        Figure(f"{prefix}.tokens_per_joule", round(projected["tokens_per_joule"], 1),
               "tokens/J", "projected", source,
               f"FPGA alone: projected tokens/s over the estimated FPGA power (core dynamic + "
               f"device static, {power['fpga_w']:.3f} W); {low:,.0f}-{high:,.0f} tokens/J "
               f"under the assumptions' ranges (docs/power.md)", machine=machine)]
    if "board_tokens_per_joule" in projected:
        low, high = projected["board_tokens_per_joule_range"]
        figures.append(Figure(
            f"{prefix}.board_tokens_per_joule", round(projected["board_tokens_per_joule"], 1),
            "tokens/J", "projected", source,
            f"whole board at its supply input: projected tokens/s over the estimated FPGA power "
            f"through the board's regulators plus its idle draw ({power['total_w']:.3f} W); "
            f"{low:,.0f}-{high:,.0f} tokens/J under the assumptions' ranges (docs/power.md)",
            machine=machine))
    return figures
