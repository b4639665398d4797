"""Tests of :class:`tern_fpga.hw.row_unit.RowUnit` against
:func:`tern_fpga.sim.golden.row_unit.row_operation`.

Construction and its refusals; a quick run in Amaranth's simulator (``V`` = 1 and 2, random
stalls, and the latency); and, in Verilator through cocotb, long random runs at ``V`` = 2 (the
micro preset) and ``V`` = 8 (the demo preset), one build each (see ``row_unit_cocotb.py``).
"""


import numpy as np
import pytest

from tern_fpga.contracts.isa import RowOperation
from tern_fpga.contracts.numerics import Scale
from tern_fpga.contracts.params import PRESETS
from tern_fpga.hw.row_unit import (
    RowUnit,
    command_layout,
    max_length,
    operand_layout,
    result_layout,
    scale_fields,
)
from tern_fpga.sim.golden.row_unit import row_operation
from tern_fpga.sim.rtl.cocotb_support import build_component
from tern_fpga.sim.rtl.testbenches.row_unit import (
    check_results,
    make_jobs,
    simulate,
)


def test_init():
    params = PRESETS["demo"]
    unit = RowUnit(params)
    assert unit.params is params
    assert unit.a.payload.shape() == operand_layout(params)
    assert unit.result.payload.shape() == result_layout(params)
    assert unit.command.payload.shape() == command_layout(params)
    assert max_length(params) == params.vector_memory_words
    # The ISA's 16-bit length field limits a vector in the large preset's 2**21-word memory.
    assert max_length(PRESETS["large"]) == (1 << 16) - 1


def test_init_wrong_params():
    with pytest.raises(TypeError, match=r"^params must be an AcceleratorParameters, not 'demo'$"):
        RowUnit("demo")


@pytest.mark.parametrize("changes, message", [
    ({"vector_bits": 40},
     (r"^vector_bits=40 is too wide for the row unit: numerics multiplies two vector elements in "
     r"int64, so use at most 32$")),
    ({"vector_bits": 16, "frac_bits": 8},
     (r"^the row unit takes the matrix unit's sums in vector_bits=16 lanes, but "
     r"max_features=1024 makes them 19 bits; lower max_features or widen vector_bits$")),
    ({"embedding_bits": 33},
     r"^embedding_bits=33 does not fit the vector_bits=32 lanes; use at most 32$"),
    ({"scale_mantissa_bits": 32},
     (r"^scale_mantissa_bits=32 does not fit the signed vector_bits=32 multiplier port; use at "
     r"most 31$")),
])
def test_init_wrong_widths(changes, message):
    with pytest.raises(ValueError, match=message):
        RowUnit(PRESETS["demo"].replace(**changes))


def test_scale_fields():
    params = PRESETS["demo"]
    assert scale_fields(Scale(40000, -300), params) == {"mantissa": 40000, "exponent": -128}
    assert scale_fields(Scale(1, 500), params) == {"mantissa": 1, "exponent": 127}
    with pytest.raises(ValueError, match=r"^a scale mantissa must fit 16 unsigned bits, not "
                                         r"65536; normalise it with numerics.scale_from_int$"):
        scale_fields(Scale(1 << 16, 0), params)


def test_golden_refuses_wrong_operands():
    with pytest.raises(ValueError, match=r"^MUL needs second operand b$"):
        row_operation(RowOperation.MUL, [1], params=PRESETS["demo"])
    with pytest.raises(ValueError, match=r"^SIGMOID takes no second operand b$"):
        row_operation(RowOperation.SIGMOID, [1], [2], params=PRESETS["demo"])
    with pytest.raises(ValueError, match=r"^SCALE needs a scale$"):
        row_operation(RowOperation.SCALE, [1], params=PRESETS["demo"])


def _simulate(params, jobs, *, probability: float, seed: int):
    return simulate(RowUnit(params), params, jobs, probability=probability, seed=seed)


@pytest.mark.parametrize("lanes", [1, 2])
def test_simulation(lanes):
    params = PRESETS["micro"].replace(vector_lanes=lanes)
    jobs = make_jobs(params, np.random.default_rng(10 + lanes), repeats=1, sweep=False)
    results, _ = _simulate(params, jobs, probability=0.7, seed=lanes)
    check_results(params, jobs, results)


def test_latency():
    """With no stalls a beat's result can be taken ``latency`` cycles after the beat."""
    params = PRESETS["micro"]
    jobs = make_jobs(params, np.random.default_rng(3), repeats=1, sweep=False)[:3]
    results, first = _simulate(params, jobs, probability=1.0, seed=0)
    check_results(params, jobs, results)
    assert first["result"] - first["a"] == RowUnit.latency


@pytest.mark.parametrize("preset", ["micro", "demo"])
def test_verilator(preset):
    params = PRESETS[preset]
    build = build_component(RowUnit(params), "row_unit",
                            f"V{params.vector_lanes}-{params.hash:016x}")
    build.run("tern_fpga.sim.rtl.testbenches.row_unit",
              {"params": params.to_dict(), "seed": 20 + params.vector_lanes, "repeats": 12,
               "probability": 0.7})
