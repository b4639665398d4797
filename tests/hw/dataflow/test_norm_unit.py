"""The dataflow core's norm and quantiser unit (hw/dataflow/norm_unit.py) on the committed
unit's own cases (sim/rtl/testbenches/norm_quantizer_cases.py): both operations, every
distribution, other lane counts, Newton steps and seed tables, random stalls on all four
streams; results and scales bit for bit as numerics gives them."""

from pathlib import Path

import numpy as np
import pytest

from tern_fpga.contracts.params import PRESETS
from tern_fpga.hw.dataflow.norm_unit import NormUnit
from tern_fpga.hw.norm_quantizer import Operation
from tern_fpga.sim import rtl
from tern_fpga.sim.rtl.testbenches.norm_quantizer_cases import (
    DISTRIBUTIONS,
    make_case,
    run_in_amaranth,
)

SMALL = PRESETS["micro"].replace(name="test-norm-unit", max_features=40)
VARIANTS = {
    "v2": SMALL,
    "v8-demo": PRESETS["demo"].replace(max_features=70),
    "v1-one-newton-step": SMALL.replace(vector_lanes=1, max_features=9, rsqrt_newton_steps=1),
    "v4-coarse-table": SMALL.replace(vector_lanes=4, max_features=30, rsqrt_table_bits=4,
                                     rsqrt_newton_steps=3, square_shift=4),
}


@pytest.mark.parametrize("variant, probability", [
    ("v2", 1.0), ("v2", 0.6), ("v8-demo", 1.0), ("v8-demo", 0.7),
    ("v1-one-newton-step", 0.8), ("v4-coarse-table", 0.8)])
def test_equals_numerics_on_the_committed_units_cases(variant, probability):
    params = VARIANTS[variant]
    rng = np.random.default_rng(list(VARIANTS).index(variant) + int(probability * 10))
    cases = [make_case(Operation(index % 2), int(rng.integers(1, params.max_features + 1)),
                       distribution, params, rng)
             for index, distribution in enumerate(DISTRIBUTIONS * 2)]
    lanes, scales = run_in_amaranth(NormUnit(params), cases, probability, 3, params)
    assert lanes == [lane for case in cases for lane in case.expected]
    assert scales == [case.scale for case in cases if case.scale is not None]


@pytest.mark.parametrize("target", [None, "ecp5"])
def test_verilator_lengths_and_distributions(target):
    """The committed unit's cocotb testbench on the dataflow unit in Verilator (demo preset,
    V = 8): lengths 1, V - 1, 3V + 1 and max_features, every distribution, both operations,
    fast and stalling streams. ``"ecp5"``: with its partial products as MULT18X18D instances,
    run on sim/rtl/models/MULT18X18D.v (the cell's documented behaviour in the configuration
    used), which checks the instances' wiring."""
    from tern_fpga.sim.rtl.cocotb_support import build_component  # here: loads cocotb

    params = PRESETS["demo"]
    lanes = params.vector_lanes
    lengths = sorted({1, lanes - 1, 3 * lanes + 1, params.max_features})
    distributions = iter(DISTRIBUTIONS * 4)
    commands = [[operation, length, next(distributions)]
                for length in lengths for operation in ("NORM", "QUANT")]
    rng = np.random.default_rng(8)
    commands += [[operation, int(rng.integers(1, 40 * lanes + 1)), distribution]
                 for distribution in DISTRIBUTIONS for operation in ("NORM", "QUANT")]
    model = Path(rtl.__file__).parent / "models" / "MULT18X18D.v"
    build = build_component(NormUnit(params, target=target), "norm_unit",
                            f"V{lanes}-{target or 'fabric'}-{params.hash:016x}", optimize="-O0",
                            verilator_args=(str(model),) if target else ())
    build.run("tern_fpga.sim.rtl.testbenches.norm_quantizer", {
        "params": params.to_dict(), "commands": commands,
        "probabilities": [[1, 1, 1, 1], [0.8, 0.7, 0.6, 0.5]], "seed": 8,
    }, testcase="random_commands")


@pytest.mark.parametrize("operation", [Operation.NORM, Operation.QUANT])
def test_the_schedule_model_with_the_measured_timing_finishes_as_the_unit_does(operation):
    """A lone NORM or QUANT of 128 elements: the schedule model, given the latencies that
    norm_unit_timing measures, finishes (the last value written) when the unit does; and the
    unit gives one result a cycle."""
    from types import SimpleNamespace

    from tern_fpga.contracts.isa import Instruction, Opcode
    from tern_fpga.explore.dataflow_schedule import DataflowTiming, dataflow_schedule
    from tern_fpga.sim.rtl.norm_unit_timing import measure_norm_unit, norm_unit_timing

    params = PRESETS["demo"]
    beats = 128 // params.vector_lanes
    events = measure_norm_unit(params, operation, 128)
    assert events["exact"]
    assert events["last_result"] - events["first_result"] == beats - 1
    opcode = Opcode.NORM if operation == Operation.NORM else Opcode.QUANT
    compiled = SimpleNamespace(params=params, entry_points={"step": 0}, program=[
        Instruction(opcode, dst=512, a=0, b=256, length=128), Instruction(Opcode.HALT)])
    timing = DataflowTiming(**norm_unit_timing(params))
    schedule = dataflow_schedule(compiled, timing=timing)
    first_beat = events["pass_one_last"] - (beats - 1)
    assert schedule.timeline[0][2] == events["last_result"] + 1 - first_beat
