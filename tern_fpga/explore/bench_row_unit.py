"""Benchmarks of the row-wise unit: throughput and latency in simulation, size on ECP5 and iCE40,
Fmax on the ECP5-85F.

:func:`run` returns a dict of plain numbers; each measurement is also a function of its own:

- :func:`measure_throughput`: elements per cycle over back-to-back commands of every operation
  with no stalls (Amaranth's simulator; the results themselves are checked by the tests);
- :func:`measure_size`: Yosys cell counts of the unit alone, summarised as logic, flip-flops,
  DSPs and block RAMs;
- :func:`measure_fmax_ecp5`: nextpnr's Fmax of the unit between registers
  (:class:`tern_fpga.hw.synthesis.RegisteredHarness`) on an ECP5-85F.
"""

from __future__ import annotations

import numpy as np
from amaranth.hdl import Const
from amaranth.sim import Simulator

from tern_fpga.contracts import paths
from tern_fpga.contracts.isa import RowOperation
from tern_fpga.contracts.params import PRESETS, AcceleratorParameters
from tern_fpga.hw.row_unit import RowUnit, command_layout
from tern_fpga.hw.synthesis import RegisteredHarness, place_and_route_ecp5, synthesize

__all__ = ["measure_fmax_ecp5", "measure_size", "measure_throughput", "run"]

# Cell names per family: (logic, carry cells that hold two LUT4s each, flip-flop prefix, DSP,
# block RAM).
_CELLS = {
    "ecp5": ("LUT4", "CCU2C", "TRELLIS_FF", "MULT18X18D", "DP16KD"),
    "ice40": ("SB_LUT4", None, "SB_DFF", "SB_MAC16", "SB_RAM40_4K"),
}


def measure_throughput(params: AcceleratorParameters, *, length: int | None = None,
                       repeats: int = 2, seed: int = 0) -> dict:
    """Run ``repeats`` commands of each operation on ``length`` elements (default: one vector
    of ``8 * V``), back to back, with every stream always ready, in Amaranth's simulator.

    Returns
    -------
    dict
        ``elements_per_cycle`` (elements over the cycles from the first operand beat taken to
        the last, both included), ``beats``, ``input_cycles``, ``latency`` (cycles from the
        first operand beat to its result).
    """
    lanes = params.vector_lanes
    length = 8 * lanes if length is None else length
    unit = RowUnit(params)
    layout = command_layout(params)
    rng = np.random.default_rng(seed)
    order = [RowOperation(value) for value in rng.permutation(list(RowOperation) * repeats)]
    commands = [Const.cast(layout.const({"operation": operation, "length": length,
                                         "scale": {"mantissa": 40000, "exponent": -20},
                                         "shift": 2})).value for operation in order]
    beats = len(commands) * -(-length // lanes)
    taken, results = [], []

    async def testbench(ctx):
        for port in (unit.a, unit.b):
            ctx.set(port.payload.as_value(), int(rng.integers(0, 1 << len(port.payload))))
            ctx.set(port.valid, 1)
        ctx.set(unit.result.ready, 1)
        pending = list(commands)
        ctx.set(unit.command.payload.as_value(), pending.pop(0))
        ctx.set(unit.command.valid, 1)
        cycle = 0
        while len(results) < beats:
            _, _, command_taken, a_taken, result_taken = await ctx.tick().sample(
                unit.command.ready & unit.command.valid, unit.a.ready, unit.result.valid)
            cycle += 1
            if command_taken:
                if pending:
                    ctx.set(unit.command.payload.as_value(), pending.pop(0))
                else:
                    ctx.set(unit.command.valid, 0)
            if a_taken:
                taken.append(cycle)
            if result_taken:
                results.append(cycle)

    simulator = Simulator(unit)
    simulator.add_clock(1e-8)
    simulator.add_testbench(testbench)
    simulator.run()
    input_cycles = taken[-1] - taken[0] + 1
    return {"elements_per_cycle": len(commands) * length / input_cycles, "beats": len(taken),
            "input_cycles": input_cycles, "latency": results[0] - taken[0]}


def measure_size(params: AcceleratorParameters, family: str) -> dict:
    """Yosys cell counts of the unit for ``family`` (``"ecp5"`` or ``"ice40"``).

    Returns
    -------
    dict
        ``lanes``, ``cells`` (every mapped cell type), ``logic`` (LUT4s, with each ECP5 CCU2C
        carry cell counted as the two LUT4s it holds), ``ff``, ``dsp`` (MULT18X18D or
        SB_MAC16), ``bram`` (DP16KD or SB_RAM40_4K), and ``logic_per_lane``.
    """
    lut, carry, flip_flop, dsp, bram = _CELLS[family]
    cells = synthesize(RowUnit(params), family).mapped
    logic = cells.get(lut, 0) + (2 * cells.get(carry, 0) if carry else 0)
    return {
        "lanes": params.vector_lanes, "cells": cells, "logic": logic,
        "ff": sum(count for name, count in cells.items() if name.startswith(flip_flop)),
        "dsp": cells.get(dsp, 0), "bram": cells.get(bram, 0),
        "logic_per_lane": logic / params.vector_lanes,
    }


def measure_fmax_ecp5(params: AcceleratorParameters, *, frequency_mhz: float = 100.0) -> dict:
    """nextpnr's Fmax of the unit in a :class:`~tern_fpga.hw.synthesis.RegisteredHarness` on an
    ECP5-85F.

    Returns
    -------
    dict
        :func:`tern_fpga.hw.synthesis.place_and_route_ecp5`'s ``fmax_mhz``, ``constraint_mhz`` and
        ``utilisation``.
    """
    folder = paths.BUILD / "bench" / f"row_unit-ecp5-V{params.vector_lanes}"
    netlist = synthesize(RegisteredHarness(RowUnit(params)), "ecp5", keep=folder).netlist
    result = place_and_route_ecp5(netlist, frequency_mhz=frequency_mhz)
    return {name: result[name] for name in ("fmax_mhz", "constraint_mhz", "utilisation")}


def run(*, fmax: bool = True) -> dict:
    """All row-unit benchmarks, as ``make bench`` reports them: the demo preset (``V`` = 8) on
    the ECP5-85F and the micro preset (``V`` = 2) on the iCE40UP5K. Place and route takes
    nearly all of the time (minutes); ``fmax=False`` skips it.

    Returns
    -------
    dict
        ``latency`` (the unit's :attr:`~tern_fpga.hw.row_unit.RowUnit.latency`), ``throughput`` (one
        :func:`measure_throughput` per preset), ``ecp5`` (:func:`measure_size` of the demo
        unit, with :func:`measure_fmax_ecp5`'s numbers if ``fmax``) and ``ice40``
        (:func:`measure_size` of the micro unit).
    """
    demo, micro = PRESETS["demo"], PRESETS["micro"]
    ecp5 = measure_size(demo, "ecp5")
    if fmax:
        ecp5.update(measure_fmax_ecp5(demo))
    return {
        "latency": RowUnit.latency,
        "throughput": {name: measure_throughput(PRESETS[name]) for name in ("demo", "micro")},
        "ecp5": ecp5,
        "ice40": measure_size(micro, "ice40"),
    }
