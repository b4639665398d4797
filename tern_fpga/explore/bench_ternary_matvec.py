"""Benchmarks of the ternary matrix-vector unit: throughput in Verilator, size and Fmax on ECP5.

:func:`run` is what ``make bench`` calls; it returns a dict of plain numbers. Each measurement
is also a function of its own:

- :func:`measure_matvec_throughput`: MACs per cycle over one whole matrix in Verilator;
- :func:`measure_ecp5`: Yosys cells per lane of the unit alone, and nextpnr's Fmax of the unit
  in a small registered wrapper (:class:`tern_fpga.hw.synthesis.RegisteredWrapper`) on an ECP5-85F.
"""

from __future__ import annotations

import json

from tern_fpga.contracts import paths
from tern_fpga.contracts.params import PRESETS, AcceleratorParameters
from tern_fpga.hw.synthesis import RegisteredHarness, place_and_route_ecp5, synthesize
from tern_fpga.hw.ternary_matvec import TernaryMatVec
from tern_fpga.sim.rtl.cocotb_support import build_component
from tern_fpga.sim.rtl.testbenches.ternary_matvec import TOPLEVEL

__all__ = ["measure_ecp5", "measure_matvec_throughput", "run"]

# The parameter set that the lane sweeps start from: the demo board's.
BASE_PRESET = "demo"


def _params_with_lanes(lanes: int, in_features: int) -> AcceleratorParameters:
    base = PRESETS[BASE_PRESET]
    return base.replace(name=f"{base.name}-p{lanes}", ternary_lanes=lanes,
                        max_features=max(base.max_features, in_features))


def measure_matvec_throughput(params: AcceleratorParameters, out_features: int,
                              in_features: int, *, seed: int = 0) -> dict:
    """Run one random ``out_features x in_features`` matrix through the unit in Verilator.

    Streams never stall (weights, activations always valid; results always taken), and the
    results are checked against the golden model.

    Returns
    -------
    dict
        ``macs_per_cycle`` (``out_features * in_features`` over the cycles from the first weight
        word taken to the last one, both included: the sustained rate), ``macs_per_cycle_total``
        (over the cycles from the first word to the last result: includes the pipeline's
        latency), ``words``, ``input_cycles``, ``total_cycles``.
    """
    # Cycles, not simulation speed, are measured: compile the model's C++ quickly.
    build = build_component(TernaryMatVec(params), TOPLEVEL,
                            f"P{params.ternary_lanes}-{params.hash:016x}", optimize="-O0")
    report = build.build_dir / f"throughput-{out_features}x{in_features}.json"
    build.run("tern_fpga.sim.rtl.testbenches.ternary_matvec", {
        "params": params.to_dict(), "seed": seed, "report": str(report),
        "out_features": out_features, "in_features": in_features,
    }, testcase="throughput")
    cycles = json.loads(report.read_text())
    first, last = cycles["weights"][0], cycles["weights"][-1]
    input_cycles = last - first + 1
    total_cycles = cycles["result"][-1] - first + 1
    macs = out_features * in_features
    return {"words": len(cycles["weights"]), "input_cycles": input_cycles,
            "total_cycles": total_cycles, "macs_per_cycle": macs / input_cycles,
            "macs_per_cycle_total": macs / total_cycles}


def measure_ecp5(params: AcceleratorParameters, *, levels_per_stage: int = 1,
                 place_and_route: bool = True, frequency_mhz: float = 100.0) -> dict:
    """Cells per lane of the unit on ECP5, and Fmax of the unit in a registered harness.

    Returns
    -------
    dict
        ``lanes``, ``cells`` (Yosys ``synth_ecp5`` counts of the unit alone), ``lut4_per_lane``,
        ``ccu2c_per_lane`` (a CCU2C carry cell holds two LUT4s' worth of logic),
        ``logic_per_lane`` (LUT4 + 2 CCU2C, per lane), ``ff_per_lane``; with
        ``place_and_route``, also ``fmax_mhz`` and ``constraint_mhz`` from nextpnr on an
        ECP5-85F (CABGA381) and its ``utilisation``.
    """
    lanes = params.ternary_lanes
    unit = synthesize(TernaryMatVec(params, levels_per_stage=levels_per_stage), "ecp5").mapped
    result = {
        "lanes": lanes, "levels_per_stage": levels_per_stage, "cells": unit,
        "lut4_per_lane": unit.get("LUT4", 0) / lanes,
        "ccu2c_per_lane": unit.get("CCU2C", 0) / lanes,
        "logic_per_lane": (unit.get("LUT4", 0) + 2 * unit.get("CCU2C", 0)) / lanes,
        "ff_per_lane": unit.get("TRELLIS_FF", 0) / lanes,
    }
    if place_and_route:
        folder = paths.BUILD / "bench" / f"ecp5-P{lanes}-L{levels_per_stage}"
        harness = RegisteredHarness(TernaryMatVec(params, levels_per_stage=levels_per_stage))
        netlist = synthesize(harness, "ecp5", keep=folder).netlist
        result.update(place_and_route_ecp5(netlist, frequency_mhz=frequency_mhz))
    return result


def run(*, lanes=(16, 64, 256, 1024), rows: int = 64, beats: int = 4,
        fmax_preset: str = "large") -> dict:
    """All ternary-unit benchmarks, as ``make bench`` reports them.

    Parameters
    ----------
    lanes : sequence of int
        Lane counts for the throughput runs. Each runs a ``rows x (beats * P)`` matrix, and a
        ``(beats * rows) x P`` one (one word per row: the case where a bubble per row would
        halve the rate).
    rows, beats : int
        Matrix shape of the throughput runs, in rows and words per row.
    fmax_preset : str
        Preset whose unit is synthesised, placed and routed on the ECP5-85F (``large``: P=512).

    Returns
    -------
    dict
        ``throughput`` and ``throughput_one_beat``: one :func:`measure_matvec_throughput` dict
        per lane count (keyed ``P<lanes>``); ``ecp5``: :func:`measure_ecp5` of the preset's unit.
    """
    result = {"throughput": {}, "throughput_one_beat": {}}
    for count in lanes:
        params = _params_with_lanes(count, beats * count)
        result["throughput"][f"P{count}"] = measure_matvec_throughput(
            params, rows, beats * count)
        result["throughput_one_beat"][f"P{count}"] = measure_matvec_throughput(
            params, beats * rows, count)
    result["ecp5"] = measure_ecp5(PRESETS[fmax_preset])
    return result
