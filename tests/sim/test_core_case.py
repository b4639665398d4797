"""The core testbench's host side: a timeline's samples turned into what each unit did."""

import numpy as np

from tern_fpga.contracts.params import PRESETS
from tern_fpga.sim.rtl.core_case import Segment, unit_timeline

# The core's sequencer states (hw/core.py's FSM, in the order Amaranth numbers them).
FETCH, DECODE, DONE, CONSTANT, ROW, NORM = 1, 2, 3, 5, 7, 10


def test_unit_timeline_names_what_each_unit_serves(tmp_path):
    """A TMV in the matrix context (its SCALE holding the row unit), a QUANT beside it, an ADD
    that waits in DECODE for the matrix unit, then runs on the row unit."""
    case = tmp_path / "case.npz"
    np.savez(case, program_text=np.array(["tmv dst=0", "quant dst=0", "add dst=0"]))
    samples = [  # cycle, pc, state, matrix busy, matrix pc, matrix/row/norm unit busy
        [0, 0, FETCH, 0, 0, 0, 0, 0], [1, 0, DECODE, 0, 0, 0, 0, 0],
        [2, 1, FETCH, 1, 0, 1, 1, 0], [4, 1, CONSTANT, 1, 0, 1, 1, 0],
        [5, 1, NORM, 1, 0, 1, 1, 1], [20, 2, DECODE, 1, 0, 1, 1, 0],
        [30, 2, ROW, 0, 0, 0, 1, 0], [40, 2, DONE, 0, 0, 0, 0, 0], [41, 2, DONE, 0, 0, 0, 0, 0]]
    rows = unit_timeline(PRESETS["micro"], case, samples)
    assert rows == {
        "sequencer": [Segment(0, 4, "fetch/decode"), Segment(4, 5, "reads constants"),
                      Segment(5, 20, "runs an instruction"),
                      Segment(20, 30, "waits for the matrix unit"),
                      Segment(30, 40, "runs an instruction"), Segment(40, 41, "done")],
        "matrix unit": [Segment(2, 30, "TMV")],
        "row unit": [Segment(2, 30, "TMV scale"), Segment(30, 40, "ADD")],
        "norm/quantiser": [Segment(5, 20, "QUANT")]}
