"""The dataflow core (hw/dataflow/core.py, run by sim/rtl/dataflow_core.py: the vector slice with the matrix reader, the
matrix pipe, the activation writer and scale registers, weights in the segmented layout) in
Amaranth's simulator, on random programs of every opcode but HALT: TMVs of the latest QUANT's
activations (long ones in one row a word, short ones in two), with ARGMAX and NO_WRITE,
between NORM, QUANT (a compiled model's weights and constants) and element-wise work. The
vector memory afterwards must equal the golden model's element for element, and the token
register its token: every hazard the scoreboard resolves, the activation buffers' reuse and the
scale registers included, is on real values here. The committed checkpoints' steps through the
same core run on its virtual board (tests/host/test_dataflow_board.py: 64 micro tokens)."""

import random

import numpy as np
import pytest

from tern_fpga.contracts.isa import Instruction, Opcode
from tern_fpga.contracts.params import PRESETS
from tern_fpga.quant.compiler import compile_model
from tern_fpga.sim.rtl.dataflow_core import run_program

from support.dataflow_programs import SHORT, D, compiled_norms, golden_for_program, random_program
from support.random_model import random_model

PARAMS = PRESETS["micro"]
ROWS = 6
SEGMENTS = 2             # micro's V = 2 allows two rows a word
LIMIT = 20_000           # cycles: the programs take about 3,000


def _run(rng, compiled, program, matrices):
    """``program`` through the core and the golden model: they must agree on every element
    of the vector memory and on the token."""
    golden = golden_for_program(rng, compiled, matrices, rows=ROWS)
    try:
        run = run_program(golden, program, max_segments=SEGMENTS, limit=LIMIT)
    except RuntimeError as error:
        raise AssertionError(f"the program did not finish: {error}") from None
    for instruction in program:
        golden.execute(instruction)
    differing = np.flatnonzero(run.memory != golden.memory)
    assert differing.size == 0, (
        f"{differing.size} elements differ from the golden model's, the first at "
        f"{differing[0]}: {run.memory[differing[0]]} against {golden.memory[differing[0]]}")
    assert run.token == golden.token
    return run.cycles


@pytest.mark.parametrize("seed", range(2))
def test_random_programs_with_tmvs_leave_the_golden_models_memory(seed):
    rng = random.Random(f"dataflow-core{seed}")
    compiled = compile_model(random_model(3, layers=1), PARAMS)
    program, matrices = random_program(rng, PARAMS, 40, compiled_norms(compiled), tmv=0.25)
    _run(rng, compiled, program, matrices)
    kinds = [instruction.opcode for instruction in program]
    assert kinds.count(Opcode.TMV) >= 6 and kinds.count(Opcode.QUANT) >= 3


def _directed(rng_name, steps):
    """A program of QUANTs and long TMVs (``steps``: ``("quant", source, length, register)``
    or ``("tmv", dst, in_features)``, each TMV D rows, scale register 0) through the core."""
    rng = random.Random(rng_name)
    compiled = compile_model(random_model(3, layers=1), PARAMS)
    quant = next(norm for norm in compiled_norms(compiled) if norm.opcode == Opcode.QUANT)
    lanes, words = PARAMS.ternary_lanes, 0
    program, matrices = [], {}
    for kind, *fields in steps:
        if kind == "quant":
            source, length, register = fields
            program.append(Instruction(Opcode.QUANT, dst=register, a=source, b=quant.b,
                                       length=length, imm=quant.imm))
            continue
        dst, in_features = fields
        beats = -(-in_features // lanes)
        matrix = np.zeros((D, beats * lanes), dtype=np.int8)
        matrix[:, :in_features] = np.random.default_rng(words).integers(-1, 2,
                                                                       (D, in_features))
        matrices[words] = matrix
        program.append(Instruction(Opcode.TMV, dst=dst, a=beats, b=0, length=D, imm=words))
        words += D * beats
    _run(rng, compiled, program, matrices)


def test_a_quant_waits_for_every_tmv_still_reading_its_buffer():
    """Three long TMVs read a buffer; two QUANTs later the buffer is filled again: its second
    pass must wait for the last TMV's last read (the matrix pipe's ``released``), not for the
    TMVs' hand-over to the pipe, which comes hundreds of cycles sooner."""
    _directed("dataflow-core-release", [
        ("quant", 0, D, 0), ("tmv", 64, D), ("tmv", 128, D), ("tmv", 192, D),
        ("quant", 8 * D, SHORT, 1), ("quant", 256, D, 0), ("tmv", 320, D)])


def test_a_quants_scale_waits_for_every_tmv_that_reads_its_register():
    """Six long TMVs read scale register 0; the next QUANT writes register 0 (and the other
    buffer): its first pass and its scale come while the last TMVs still wait in the matrix
    reader's queue, and its scale must not reach the register before they have sent theirs."""
    _directed("dataflow-core-scale", [
        ("quant", 0, D, 0), *(("tmv", 64 * index, D) for index in range(1, 7)),
        ("quant", 8 * D, SHORT, 0), ("tmv", 448, SHORT)])
