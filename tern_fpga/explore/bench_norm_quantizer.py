"""Benchmarks of the norm and quantiser unit: Yosys cell counts and cycles per vector.

:func:`run` is what ``make bench`` calls; it returns a dict of plain numbers:

- :func:`measure_cells`: Yosys cells of the unit alone, ECP5 at the demo preset (V = 8) and
  iCE40 at the micro preset (V = 2), with the LUT4, flip-flop and DSP totals;
- :func:`measure_cycles`: cycles per vector in Verilator for NORM and QUANT at n = 128 and 512.
"""

from __future__ import annotations

import json
import re

from tern_fpga.contracts import paths
from tern_fpga.contracts.params import PRESETS, AcceleratorParameters
from tern_fpga.hw.norm_quantizer import NormQuantizer, beats_per_pass
from tern_fpga.hw.synthesis import DSP_CELLS, synthesize
from tern_fpga.sim.rtl.cocotb_support import build_component

__all__ = ["measure_cells", "measure_cycles", "run"]

# The preset each family is measured at: the board it is for.
FAMILY_PRESETS = {"ecp5": "demo", "ice40": "micro"}
LENGTHS = (128, 512)
# Back-to-back vectors per (operation, length); the interval between the last two is the
# steady-state cost of one vector.
REPEATS = 3


def _lut_count(family: str, cells: dict) -> int:
    # An ECP5 CCU2C is two LUT4s working as a 2-bit adder; an iCE40 SB_CARRY rides beside the
    # LUT4 that computes its sum bit, so it adds none.
    if family == "ecp5":
        return cells.get("LUT4", 0) + 2 * cells.get("CCU2C", 0)
    return cells.get("SB_LUT4", 0)


def _flip_flops(family: str, cells: dict) -> int:
    pattern = r"TRELLIS_FF" if family == "ecp5" else r"SB_DFF\w*"
    return sum(count for name, count in cells.items() if re.fullmatch(pattern, name))


def measure_cells(family: str) -> dict:
    """Yosys cells of :class:`~tern_fpga.hw.norm_quantizer.NormQuantizer` for ``family`` at its
    preset.

    Returns
    -------
    dict
        ``preset``, ``vector_lanes``, ``cells`` (Yosys's mapped cell counts), ``lut4``,
        ``flip_flops`` and ``dsp`` (hard multiplier cells).
    """
    params = PRESETS[FAMILY_PRESETS[family]]
    component = NormQuantizer(params)
    # ECP5: Yosys's classic ABC LUT mapping. synth_ecp5's ABC9 in YoWASP's Yosys 0.70 exits
    # with status 1 and no message on this design (at every lane count; docs/toolchain.md).
    cells = synthesize(component, family, mapping="abc" if family == "ecp5" else "abc9",
                       keep=paths.BUILD / "synth-norm-quantizer" if family == "ecp5"
                       else None).mapped
    return {
        "preset": params.name, "vector_lanes": params.vector_lanes, "cells": cells,
        "lut4": _lut_count(family, cells), "flip_flops": _flip_flops(family, cells),
        "dsp": sum(cells.get(name, 0) for name in DSP_CELLS[family]),
    }


def measure_cycles(params: AcceleratorParameters, *, seed: int = 0) -> dict:
    """Cycles per vector in Verilator, streams never stalling, results checked.

    Returns
    -------
    dict
        For each ``"<operation>_<n>"`` (NORM and QUANT, n in :data:`LENGTHS`): ``interval``
        (cycles between the last results of consecutive back-to-back vectors: the
        steady-state cost of a vector) and ``latency`` (cycles from a vector's first operand
        beat taken to its last result taken, both included), with ``beats`` per pass.
    """
    build = build_component(NormQuantizer(params), "norm_quantizer",
                            f"V{params.vector_lanes}-{params.hash:016x}", optimize="-O0")
    groups = [(operation, length) for length in LENGTHS if length <= params.max_features
              for operation in ("NORM", "QUANT")]
    commands = [[operation, length, "normal"] for operation, length in groups
                for _ in range(REPEATS)]
    report = build.build_dir / "throughput.json"
    build.run("tern_fpga.sim.rtl.testbenches.norm_quantizer", {
        "params": params.to_dict(), "commands": commands,
        "seed": seed, "report": str(report),
    }, testcase="throughput")
    cycles = json.loads(report.read_text())
    results, operands = iter(cycles["result"]), iter(cycles["operands"])
    measured = {}
    for operation, length in groups:
        beats = beats_per_pass(length, params)
        firsts, lasts = [], []
        for _ in range(REPEATS):
            passes = [next(operands) for _ in range(2 * beats)]
            firsts.append(passes[0])
            lasts.append([next(results) for _ in range(beats)][-1])
        measured[f"{operation.lower()}_{length}"] = {
            "beats": beats,
            "interval": lasts[-1] - lasts[-2],
            "latency": lasts[0] - firsts[0] + 1,
        }
    return measured


def run() -> dict:
    """Every measurement of this module, as plain numbers."""
    return {
        "cells": {family: measure_cells(family) for family in FAMILY_PRESETS},
        "cycles": {f"V{PRESETS[name].vector_lanes}": measure_cycles(PRESETS[name])
                   for name in ("demo", "micro")},
    }


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
