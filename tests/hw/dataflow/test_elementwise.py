"""The dataflow core's element-wise unit (hw/dataflow/elementwise.py) against
sim/golden/row_unit.row_operation: every operation but SCALE, the sigmoid table's every segment
boundary, operands at the int limits (products and sums that saturate), random stalls on every
stream in Amaranth's simulator; one beat a cycle without them; and a long random run in
Verilator through cocotb (the row unit's testbench, demo preset), in the fabric form and in
the ECP5 form (MULT18X18D instances)."""

from pathlib import Path

import numpy as np
import pytest

from tern_fpga.contracts.isa import RowOperation
from tern_fpga.contracts.params import PRESETS
from tern_fpga.hw.dataflow.elementwise import OPERATIONS, ElementwiseUnit, command_layout
from tern_fpga.sim import rtl
from tern_fpga.sim.rtl.cocotb_support import build_component
from tern_fpga.sim.rtl.testbenches.row_unit import check_results, make_jobs, simulate


def _simulate(params, jobs, *, probability: float, seed: int):
    """Run ``jobs`` through a new unit; returns the results, the moments and the unit."""
    unit = ElementwiseUnit(params)
    results, moments = simulate(unit, params, jobs, probability=probability, seed=seed,
                                layout=command_layout(params))
    return results, moments, unit


def test_refuses_widths_it_cannot_split():
    with pytest.raises(TypeError, match="AcceleratorParameters"):
        ElementwiseUnit("demo")
    with pytest.raises(ValueError, match=r"vector_bits=24 needs another split"):
        ElementwiseUnit(PRESETS["demo"].replace(vector_bits=24, frac_bits=12))
    with pytest.raises(ValueError, match=r"frac_bits=18 .* at most 16"):
        ElementwiseUnit(PRESETS["demo"].replace(frac_bits=18))


def test_operations_are_all_but_scale():
    assert set(OPERATIONS) == set(RowOperation) - {RowOperation.SCALE}


@pytest.mark.parametrize("lanes", [2, 8])
def test_results_equal_golden_under_random_stalls(lanes):
    params = PRESETS["demo"].replace(vector_lanes=lanes)
    jobs = make_jobs(params, np.random.default_rng(40 + lanes), repeats=2,
                     sweep=lanes == 2, operations=OPERATIONS)
    results, _, _ = _simulate(params, jobs, probability=0.6, seed=lanes)
    check_results(params, jobs, results)


def test_one_beat_a_cycle_across_commands():
    """Without stalls the first result leaves ``latency`` + 1 cycles (the FIFO) after the first
    beat, and the rest follow one a cycle, across commands of every operation."""
    params = PRESETS["micro"]
    jobs = make_jobs(params, np.random.default_rng(7), repeats=2, sweep=False,
                     operations=OPERATIONS)
    results, moments, unit = _simulate(params, jobs, probability=1.0, seed=0)
    check_results(params, jobs, results)
    assert moments["result"] - moments["a"] == unit.latency + 1
    assert moments["final"] - moments["result"] == len(results) - 1


@pytest.mark.parametrize("target", [None, "ecp5"])
def test_verilator_demo(target):
    """The row unit's testbench; ``"ecp5"``: the multiplier's partial products as MULT18X18D
    instances on sim/rtl/models/MULT18X18D.v, which checks their wiring."""
    params = PRESETS["demo"]
    model = Path(rtl.__file__).parent / "models" / "MULT18X18D.v"
    build = build_component(ElementwiseUnit(params, target=target), "elementwise",
                            f"V{params.vector_lanes}-{target or 'fabric'}-{params.hash:016x}",
                            verilator_args=(str(model),) if target else ())
    build.run("tern_fpga.sim.rtl.testbenches.row_unit",
              {"params": params.to_dict(), "seed": 61, "repeats": 10, "probability": 0.7,
               "unit": "elementwise"})
