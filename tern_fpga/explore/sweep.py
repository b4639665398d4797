"""Design-space sweep: lanes ``P`` x model preset x board, each point with its utilisation,
Fmax, cycles per token, tokens/s and tokens per joule, and a Pareto plot (``make bench``
provider :func:`run`; method and results in ``docs/sweep.md``).

How each number is obtained, cheapest first:

- **cycles per token**: :func:`cycles_per_token`, an instruction-level model of the core's
  sequencer (``hw/core.py``) summed over the compiled program's step; where the core was
  simulated in Verilator (:func:`simulate_cycles`, the testbench's per-instruction profile of
  one step) the simulated count is reported and the model's error against it is a figure.
- **block RAM and DSP cells**: Yosys's own memory and DSP mapping of the whole
  :class:`tern_fpga.hw.board.Accelerator` at that point (``synth_<family> -run begin:map_gates``,
  :func:`map_memories`); flip-flops from the same netlist (bits of its register cells, before
  mapping).
- **logic (LUT4)**: the last whole-design synthesis of the family (:data:`WHOLE_DESIGNS`) plus
  the difference of the three units synthesised alone (:func:`unit_logic`) between that design
  and the point.
- **Fmax**: nextpnr's figure of a built bitstream for the point when there is one, else the
  lowest figure known of the design or its units (:data:`FMAX_MHZ`).
- **power**: ``tern_fpga.explore.power.estimate`` at the utilisation, the clock and a toggle rate of
  :data:`TOGGLE_RATE`.

Syntheses and simulations are cached in :data:`CACHE`, keyed on the parameters and a hash of
the sources each is made from (:func:`design_key`), so a second ``make bench`` re-runs none
of them. Those not in the cache run in parallel, on this machine's cores or on a Dask cluster
(:mod:`tern_fpga.explore.sweep_parallel`).
"""

from __future__ import annotations

import dataclasses
import functools
import tempfile
from concurrent.futures import Executor
from pathlib import Path
from types import MappingProxyType

from tern_fpga.contracts import paths
from tern_fpga.contracts.bitstreams import (
    BITSTREAMS,  # (tests point it elsewhere)
    manifest,
)
from tern_fpga.contracts.boards import BOARDS, Device
from tern_fpga.contracts.params import AcceleratorParameters, preset
from tern_fpga.explore.cycle_model import (
    compiled_layout,
    cycles_per_token,
    instruction_cycles,
    runs_beside,
    simulate_cycles,
)
from tern_fpga.explore.report import Figure, format_value
from tern_fpga.explore.sweep_parallel import compute_missing, executor_for
from tern_fpga.explore.sweep_plot import fitting_front, plot
from tern_fpga.explore.synthesis_cache import (
    ResultCache,
    design_key,
    map_memories,
    unit_logic,
    unit_module,
)

__all__ = ["BOARD_DEVICES", "LANES", "SweepPoint", "cycles_per_token", "evaluate",
           "figures", "fits", "fitting_front", "instruction_cycles", "map_memories",
           "model_errors", "plot", "point_params", "run", "runs_beside", "simulate_cycles",
           "sweep", "table", "unit_logic", "unit_module"]

PLOT = (paths.BENCH or paths.BUILD) / "sweep.png"

LANES = (16, 32, 64, 128, 256, 512)
PRESET_NAMES = ("micro", "demo")
# Points simulated in Verilator by the full run: both presets at their own P (their builds are
# shared with the tests and tern_fpga.explore.bench_core) and P=512, where every matrix row is one
# word and the row unit's packing sets the pace (a build of 2-5 minutes, once). micro P=128 and demo
# P=16 were also simulated once: the model was exact there too (docs/sweep.md).
SIMULATED = (("micro", 32), ("demo", 128), ("demo", 512))
QUICK_POINTS = (("micro", 32), ("demo", 128), ("demo", 512))
# No toggle rate has been measured on the design yet: a common default for estimators.
TOGGLE_RATE = 0.125
# The matrix unit is synthesised alone with the demo preset's other parameters (its size
# depends on P; max_features and the memory depth change only a few counter bits).
MATVEC_BASE_PRESET = "demo"


# The boards' FPGAs, from the one board table.
BOARD_DEVICES = MappingProxyType({name: entry.device for name, entry in BOARDS.items()})

# The last whole-design Yosys syntheses (docs/boards.md): LUT4s, with each ECP5 CCU2C carry
# cell counted as the two LUT4s it holds (nextpnr's TRELLIS_COMB).
WHOLE_DESIGNS = {
    "ecp5": {"preset": "demo", "lut": 22_469 + 2 * 5_357,
             "source": "ULX3S demo board design (P=128, V=8), Yosys 0.70 synth_ecp5 "
                       "(bitstreams/ulx3s-85f-demo.stat.txt)"},
    "ice40": {"preset": "micro", "lut": 8_914,
              "source": "iCEBreaker micro board design, Yosys 0.70 synth_ice40 "
                        "(docs/boards.md)"},
}

# nextpnr's Fmax figures of what has been placed and routed (ECP5-85F, speed 6): the whole
# ULX3S designs of the committed bitstreams (2026-11-29, static placer; the critical path of
# both: the sequencer's decode, from the program memory through the overlap check) and the
# units alone (docs/hardware.md; the row unit's critical path is one lane's multiplier stage,
# so its figure holds for any V).
FMAX_MHZ = {
    "ecp5": {"whole ULX3S demo design (P=128, V=8), routed": 33.5,
             "whole ULX3S micro design (P=32, V=2), routed": 38.5, "row unit (V=8)": 65.6,
             "matrix unit P=128": 189.0, "matrix unit P=512": 140.0},
    # Nothing of this design has been placed and routed on the iCE40 (the row and norm units
    # need more SB_MAC16 than it has); an unpipelined 8-lane ternary dot product reached about
    # 24 MHz there (/work/shared/TOOLCHAIN.md).
    "ice40": {"8-lane ternary dot product": 24.0},
}


# Parameters of a point ----------------------------------------------------------------------
def point_params(preset_name: str, lanes: int) -> AcceleratorParameters:
    """The preset itself at its own ``P``; otherwise the preset with ``ternary_lanes = P`` and
    a weight memory of exactly the model's weight words at that ``P`` (named
    ``<preset>-p<P>``)."""
    base = preset(preset_name)
    if lanes == base.ternary_lanes:
        return base
    roomy = base.replace(name=f"{preset_name}-p{lanes}", ternary_lanes=lanes,
                         weight_memory_words=1 << 22)
    return roomy.replace(weight_memory_words=compiled_layout(preset_name, roomy).weight_words)


# Evaluation of one point ----------------------------------------------------------------------


@dataclasses.dataclass
class SweepPoint:
    """One design point and what is known of it; each number has a label and a note."""

    preset: str
    lanes: int
    board: str
    params: AcceleratorParameters
    values: dict = dataclasses.field(default_factory=dict)     # name -> number or text
    labels: dict = dataclasses.field(default_factory=dict)     # name -> label
    notes: dict = dataclasses.field(default_factory=dict)      # name -> notes

    @property
    def prefix(self) -> str:
        return f"sweep.{self.board}.{self.preset}.p{self.lanes}"

    def set(self, name: str, value, label: str, notes: str):
        self.values[name], self.labels[name], self.notes[name] = value, label, notes


def fits(usage: dict, available: dict) -> list[str]:
    """The resources ``usage`` needs beyond ``available`` (both keyed ``lut``, ``ff``,
    ``bram``, ``dsp``), as ``"bram 242/208"``; empty when everything fits. A resource missing
    from ``usage`` is not checked."""
    return [f"{name} {usage[name]:,}/{available[name]:,}" for name in available
            if usage.get(name) is not None and usage[name] > available[name]]


def _manifest(board: str, params: AcceleratorParameters) -> dict | None:
    """The manifest of a built bitstream of exactly this board and these parameters."""

    found = manifest(board, params, BITSTREAMS)
    if found is None or not found.get("fmax_mhz") or not found.get("utilisation"):
        return None
    return found


def _manifest_usage(manifest: dict, device: Device) -> dict:
    used = {cell: counts[0] for cell, counts in manifest["utilisation"].items()}
    return {name: used.get(cell, 0) for name, cell in device.nextpnr_cells.items()}


def _projected_lut(point: SweepPoint, family: str, cache: ResultCache,
                   synthesize: bool) -> tuple[int, str, str] | None:
    """The family's whole-design LUT4 count plus each unit's difference between that design
    and the point: (value, label, notes), or None if a unit is neither cached nor to be
    synthesised."""
    whole = dict(WHOLE_DESIGNS[family])
    reference = preset(whole["preset"])
    board = next(name for name, device in BOARD_DEVICES.items() if device.family == family)
    manifest = _manifest(board, reference)
    if manifest is not None:    # a newer whole design than the recorded one
        whole.update(lut=_manifest_usage(manifest, BOARD_DEVICES[board])["lut"],
                     source=f"nextpnr, bitstream {manifest['bitstream']}")
    total, parts = whole["lut"], []
    for unit in ("matvec", "row", "norm"):
        # The row and norm units depend on the preset (V), not on P.
        pair = [reference, preset(point.preset)]
        if unit == "matvec":
            base = preset(MATVEC_BASE_PRESET)
            pair = [base.replace(name=f"{base.name}-p{p.ternary_lanes}",
                                 ternary_lanes=p.ternary_lanes)
                    for p in (reference, point.params)]
        if pair[0].hash == pair[1].hash:
            continue
        counts = [cache.get(design_key(p, f"unit-{unit}-{family}"),
                            functools.partial(unit_logic, unit, p, family) if synthesize
                            else None) for p in pair]
        if None in counts:
            return None
        total += counts[1] - counts[0]
        parts.append(f"{unit} {counts[1] - counts[0]:+,}")
    note = f"{whole['source']}: {whole['lut']:,} LUT4 at {whole['preset']} " \
           f"P={reference.ternary_lanes}"
    return total, "projected", note + (f"; units synthesised alone: {', '.join(parts)}"
                                       if parts else "")


def _fmax(point: SweepPoint, family: str) -> tuple[float, str]:
    """The lowest Fmax known of the design or its units (:data:`FMAX_MHZ`); a matrix unit's
    figure counts only at its own P."""
    known = {name: mhz for name, mhz in FMAX_MHZ[family].items()
             if not name.startswith("matrix unit") or name.endswith(f"P={point.lanes}")}
    slowest = min(known, key=known.get)
    listed = ", ".join(f"{name} {mhz:g} MHz" for name, mhz in known.items())
    return known[slowest], (f"lowest nextpnr figure known ({slowest}), assumed to hold at this "
                            f"point; known: {listed}; the norm unit was never placed alone")


def evaluate(point: SweepPoint, *, cache: ResultCache, synthesize: bool = True,
             simulated: dict | None = None) -> SweepPoint:
    """Fill in ``point``: cycles (``simulated`` maps ``(preset, P)`` to Verilator counts),
    utilisation (Yosys runs only with ``synthesize``, else from the cache), Fmax, speed, power
    and whether it fits."""
    device = BOARD_DEVICES[point.board]
    family, params = device.family, point.params
    modelled = cycles_per_token(compiled_layout(point.preset, params))
    if simulated and (point.preset, point.lanes) in simulated:
        point.set("cycles_per_token", simulated[point.preset, point.lanes], "simulated",
                  f"Verilator, core's per-instruction profile of one step; the cycle model "
                  f"gives {modelled:,}")
    else:
        point.set("cycles_per_token", modelled, "projected",
                  "instruction-level cycle model (tern_fpga.explore.cycle_model.cycles_per_token), "
                  "checked against the Verilator runs (sweep.cycle_model.max_error)")

    manifest = _manifest(point.board, params)
    if manifest is not None:
        usage = _manifest_usage(manifest, device)
        note = f"nextpnr, placed and routed bitstream {manifest['bitstream']}"
        for name, value in usage.items():
            point.set(name, value, "estimated", note)
        fmax = min(manifest["fmax_mhz"].values())
        point.set("fmax_mhz", round(fmax, 1), "estimated", note)
    else:
        memories = cache.get(design_key(params, f"memories-{family}"),
                             functools.partial(map_memories, params, family)
                             if synthesize else None)
        if memories is not None:
            yosys = f"Yosys synth_{family} of the whole Accelerator up to memory and DSP mapping"
            point.set("bram", memories["bram"], "estimated", yosys)
            point.set("dsp", memories["dsp"], "estimated", yosys)
            point.set("ff", memories["ff"], "projected",
                      "register bits of the same netlist, before flip-flop mapping")
            projection = _projected_lut(point, family, cache, synthesize)
            if projection is not None:
                point.set("lut", *projection)
        fmax, note = _fmax(point, family)
        point.set("fmax_mhz", fmax, "projected", note)

    clock_hz = min(fmax * 1e6, params.clock_hz)
    clock_note = f"at the preset's {params.clock_hz / 1e6:g} MHz clock" \
        if clock_hz == params.clock_hz else f"at Fmax {fmax:g} MHz (below the preset's " \
                                            f"{params.clock_hz / 1e6:g} MHz clock)"
    tokens_per_s = clock_hz / point.values["cycles_per_token"]
    point.set("tokens_per_s", round(tokens_per_s, 1), "projected",
              f"{clock_note} / cycles per token ({point.labels['cycles_per_token']})")
    usage = {name: point.values.get(name) for name in ("lut", "ff", "bram", "dsp")}
    if all(value is not None for value in usage.values()):
        over = fits(usage, device.available)
        point.set("fits", "yes" if not over else "no: " + ", ".join(over),
                  "estimated" if manifest else "projected",
                  f"each resource within the {device.description}'s")
        watts = _watts(device, usage, clock_hz, point.board)
        if watts is not None:
            point.set("tokens_per_joule", round(tokens_per_s / watts, 2), "projected",
                      f"tokens/s / {watts:.3f} W from tern_fpga.explore.power.estimate at the "
                      f"utilisation, "
                      f"{clock_hz / 1e6:g} MHz and a toggle rate of {TOGGLE_RATE} (assumed: "
                      f"none measured)")
    return point


def _watts(device: Device, usage: dict, clock_hz: float, board: str) -> float | None:
    """``tern_fpga.explore.power.estimate``'s total, or None while that module does not exist."""
    try:
        from tern_fpga.explore.power import estimate
    except ImportError:
        return None
    utilisation = {}
    for name, cell in device.nextpnr_cells.items():
        utilisation[cell] = max(utilisation.get(cell, 0), usage[name])
    return estimate(device.family, utilisation, clock_hz, TOGGLE_RATE, board=board).total_w


# Figures and the plot ---------------------------------------------------------------------------

_UNITS = {"lut": "LUT4", "ff": "FF", "bram": "cells", "dsp": "cells", "fmax_mhz": "MHz",
          "cycles_per_token": "cycles", "tokens_per_s": "tokens/s",
          "tokens_per_joule": "tokens/J", "fits": ""}


def figures(points: list[SweepPoint], source: str = "tern_fpga.explore.sweep.run") -> list:
    """Every point's numbers as :class:`tern_fpga.explore.report.Figure`, named
    ``<prefix>.<name>``."""

    result = []
    for point in points:
        machine = f"{BOARD_DEVICES[point.board].description} ({point.params.name} parameters)"
        for name, unit in _UNITS.items():
            if name in point.values:
                result.append(Figure(f"{point.prefix}.{name}", point.values[name], unit,
                                     point.labels[name], source, point.notes[name],
                                     machine=machine))  # here, not at the top: loads matplotlib
    return result


# The provider ---------------------------------------------------------------------------------


def sweep_points(quick: bool) -> list[SweepPoint]:
    """Every (preset, P, board), or in quick mode :data:`QUICK_POINTS` on every board. A P
    that the core does not take (below 16) or that a model cannot use is left out."""

    pairs = QUICK_POINTS if quick else [(name, lanes) for name in PRESET_NAMES
                                        for lanes in LANES]
    boards = [name for name in BOARDS if name in BOARD_DEVICES]  # here, not at the top: loads torch
    return [SweepPoint(name, lanes, board, point_params(name, lanes))
            for name, lanes in pairs if lanes >= 16 for board in boards]


def _simulate(name: str, params: AcceleratorParameters) -> int:
    """Verilator's cycles per token of the shipped model ``name`` at ``params``."""
    from tern_fpga.quant.checkpoint import load_pretrained  # here, not at the top: loads torch

    with tempfile.TemporaryDirectory() as work:
        return simulate_cycles(load_pretrained(paths.CHECKPOINTS / name), params, Path(work))


def _simulations(quick: bool, cache: ResultCache) -> dict:
    """Verilator cycle counts of :data:`SIMULATED` (cached; none are run in quick mode)."""
    counts = {}
    for name, lanes in SIMULATED:
        params = point_params(name, lanes)
        key = design_key(params, "cycles")
        if quick and key not in cache.data:
            continue
        count = cache.get(key, functools.partial(_simulate, name, params))
        if count is not None:       # None: not yet known (while the sweep finds what to run)
            counts[name, lanes] = count
    return counts


def _ask_for_everything(cache, quick: bool):
    """Ask ``cache`` for every result the sweep needs, as :func:`sweep` does."""
    simulated = _simulations(quick, cache)
    for point in sweep_points(quick):
        evaluate(point, cache=cache, synthesize=not quick, simulated=simulated)


def sweep(quick: bool = False, executor: Executor | None = None,
          cache: ResultCache | None = None) -> tuple[list[SweepPoint], dict]:
    """Every point evaluated, and the Verilator cycle counts ``{(preset, P): cycles}``. Quick:
    :data:`QUICK_POINTS`, the cycle model, and only what the cache already holds.

    The syntheses and simulations not in the cache, then the points, run on ``executor``
    (:func:`tern_fpga.explore.sweep_parallel.executor_for`; ``None``: here, in order); the
    results do not depend on it. ``cache``: default :data:`CACHE`."""
    cache = ResultCache() if cache is None else cache
    if not quick:
        compute_missing(functools.partial(_ask_for_everything, quick=quick), cache, executor)
    simulated = _simulations(quick, cache)
    evaluate_point = functools.partial(evaluate, cache=cache, synthesize=False,
                                       simulated=simulated)
    points = sweep_points(quick)
    if executor is None:
        return [evaluate_point(point) for point in points], simulated
    return list(executor.map(evaluate_point, points)), simulated


def model_errors(simulated: dict) -> dict:
    """``{(preset, P): model / Verilator - 1}`` for the simulated points."""
    return {pair: cycles_per_token(compiled_layout(pair[0], point_params(*pair))) / count - 1
            for pair, count in simulated.items()}


def table(points: list[SweepPoint]) -> str:
    """A Markdown table of the points, each number followed by its label's initial (measured,
    simulated, projected, estimated)."""
    columns = {"lut": "LUT4", "ff": "FF", "bram": "BRAM", "dsp": "DSP", "fmax_mhz": "Fmax MHz",
               "cycles_per_token": "cycles/token", "tokens_per_s": "tokens/s",
               "tokens_per_joule": "tokens/J"}
    lines = ["| board | model | P | fits | " + " | ".join(columns.values()) + " |",
             "|---|---|---:|---|" + "---:|" * len(columns)]
    for point in points:
        cells = [f"{format_value(point.values[name])} {point.labels[name][0]}"
                 if name in point.values else "-" for name in columns]
        lines.append(f"| {point.board} | {point.preset} | {point.lanes} | "
                     f"{point.values.get('fits', '-')} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def run(quick: bool = False, output=None) -> list:
    """``make bench`` provider: the sweep's figures, ``sweep.png`` in ``output`` (default
    ``bench/``), and the cycle model's error against the Verilator runs (quick: see
    :func:`sweep`)."""

    with executor_for() as executor:
        points, simulated = sweep(quick, executor)
    result = figures(points)
    if simulated:
        errors = model_errors(simulated)
        worst = max(errors, key=lambda pair: abs(errors[pair]))
        result.append(Figure(
            "sweep.cycle_model.max_error", round(100 * abs(errors[worst]), 3), "%", "projected",
            "tern_fpga.explore.cycle_model.cycles_per_token",
            f"largest |model / Verilator - 1| over {len(errors)} simulated points "
            f"({', '.join(f'{name} P={lanes}' for name, lanes in sorted(errors))}); worst "
            f"{worst[0]} P={worst[1]}"))
    if not any("tokens_per_joule" in point.values for point in points):
        result.append(Figure("sweep.power.status",
                             "no tokens/J: tern_fpga.explore.power is not available"
                             if _watts_missing() else "no point has a complete utilisation",
                             "", "projected", "tern_fpga.explore.sweep.run"))
    plot(PLOT if output is None else Path(output) / PLOT.name, points)
    return result


def _watts_missing() -> bool:
    try:
        import tern_fpga.explore.power  # noqa: F401
    except ImportError:
        return True
    return False
