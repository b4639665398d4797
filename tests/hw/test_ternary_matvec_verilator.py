"""TernaryMatVec on Verilator through cocotb: every result compared bit for bit with the golden.

One Verilator build per lane count (the cases of one lane count share a pytest-xdist group, so
one worker builds it and runs them); each case is one simulator run of several seeds.
"""

import functools

import pytest

from tern_fpga.contracts.params import PRESETS
from tern_fpga.hw.ternary_matvec import TernaryMatVec
from tern_fpga.sim.rtl.cocotb_support import build_component
from tern_fpga.sim.rtl.testbenches.ternary_matvec import TOPLEVEL

LANES = [16, 128]
SEEDS_PER_CASE = 6

# Matrix shapes [rows, in_features] sent back to back, one command each, by lane count P.
SHAPES = {
    "one_beat": lambda lanes: [(24, lanes), (16, lanes - 3)],
    "several_beats": lambda lanes: [(12, 4 * lanes)],
    "ragged": lambda lanes: [(10, 2 * lanes + lanes // 2 + 3), (3, lanes + 1)],
    "mixed": lambda lanes: [(3, lanes), (5, 3 * lanes + 1), (1, 1), (7, lanes // 2),
                            (2, 4 * lanes), (4, 2 * lanes)],
}


def parameters(lanes):
    """The demo preset with ``lanes`` lanes and rows of at most four words."""
    return PRESETS["demo"].replace(name=f"test-p{lanes}", ternary_lanes=lanes,
                                   max_features=4 * lanes)


@functools.cache
def verilator_build(lanes):
    params = parameters(lanes)
    return build_component(TernaryMatVec(params), TOPLEVEL,
                           f"P{lanes}-{params.hash:016x}", optimize="-O0")


def by_lanes(*names):
    return [pytest.param(lanes, name, marks=pytest.mark.xdist_group(f"verilator-p{lanes}"),
                         id=f"p{lanes}-{name}")
            for lanes in LANES for name in names]


def run(lanes, testcase, shapes, first_seed):
    verilator_build(lanes).run("tern_fpga.sim.rtl.testbenches.ternary_matvec_checks", {
        "params": parameters(lanes).to_dict(),
        "shapes": shapes,
        "seeds": list(range(first_seed, first_seed + SEEDS_PER_CASE)),
    }, testcase=testcase)


@pytest.mark.parametrize("lanes, shape", by_lanes(*SHAPES))
def test_random_matrices(lanes, shape):
    run(lanes, "random_matrices", SHAPES[shape](lanes), 100 * list(SHAPES).index(shape))


@pytest.mark.parametrize("lanes, shape", by_lanes("mixed"))
def test_extremes_and_reserved_code(lanes, shape):
    run(lanes, "extremes", SHAPES[shape](lanes), 1000)
