"""The dataflow core's schedule model (explore/dataflow_schedule.py): a small program worked out
by hand, the drain constant against the matrix pipe in simulation, and the demo model's step
(the matrix side's words, and no instruction before what it depends on)."""

import dataclasses
import random
from types import SimpleNamespace

import pytest

from tern_fpga.contracts.isa import Flag, Instruction, Opcode
from tern_fpga.contracts.params import preset
from tern_fpga.explore.dataflow_schedule import (
    ELEMENTWISE_LATENCY,
    MATRIX_DRAIN,
    DataflowTiming,
    dataflow_schedule,
)

#: V = 8: EMBED (2 beats) -> ADD streams behind it -> NORM (two passes around the scalar
#: engine) -> QUANT -> a 128 x 128 TMV at P = 256, two rows a word (64 words).
HAND_PROGRAM = [
    Instruction(Opcode.EMBED, dst=0, length=16),
    Instruction(Opcode.ADD, dst=32, a=0, b=16, length=16),
    Instruction(Opcode.NORM, dst=64, a=32, b=200, length=16),
    Instruction(Opcode.QUANT, dst=0, a=64, b=300, length=16),
    Instruction(Opcode.TMV, dst=96, a=1, length=128),
]


def _compiled(program, params=None):
    return SimpleNamespace(params=params or preset("demo"), entry_points={"step": 0},
                           program=[*program, Instruction(Opcode.HALT)])


def test_elementwise_latency_is_the_units():
    from tern_fpga.hw.dataflow.elementwise import ElementwiseUnit  # loads Amaranth

    # The unit, its output FIFO's two cycles, a vector-memory read and a write.
    assert ELEMENTWISE_LATENCY == ElementwiseUnit.latency + 4


def test_a_small_program_worked_by_hand():
    """HAND_PROGRAM, with an element-wise latency of 16."""
    schedule = dataflow_schedule(_compiled(HAND_PROGRAM), ternary_lanes=256,
                                 timing=DataflowTiming(elementwise_latency=16))
    # EMBED issues at 0 and 1, written 16 later; ADD's beats wait for them (16, 17) and write
    # at 32, 33; NORM's first pass reads them (32, 33), its second starts after 13 + log2 8 +
    # 23 cycles (73, 74) and writes 5 later; QUANT's first pass takes them at 78, 79, its second
    # at 79 + 1 + 13 + 3 + 27 = 123, 124, the buffer full at 129; the TMV starts then and its
    # last values are written 64 words and the drain later.
    assert schedule.timeline == (("EMBED", 0, 17), ("ADD", 16, 33), ("NORM", 32, 79),
                                 ("QUANT", 78, 129),
                                 ("TMV", 129, 129 + 64 + MATRIX_DRAIN))
    assert schedule.cycles == 129 + 64 + MATRIX_DRAIN
    assert schedule.matrix_busy == 64 and schedule.matrix_idle == 129


def test_a_tmv_waits_for_the_readers_of_its_destination():
    """Write after read: the TMV would overwrite elements 0..127 before an ADD, which waits for
    a NORM, has read them; its rows (and so the whole TMV) move behind those reads."""
    program = [
        Instruction(Opcode.EMBED, dst=0, length=128),
        Instruction(Opcode.QUANT, dst=0, a=0, b=600, length=128),
        Instruction(Opcode.NORM, dst=400, a=0, b=700, length=128),
        Instruction(Opcode.ADD, dst=800, a=0, b=400, length=128),   # reads 0..127 late
        Instruction(Opcode.TMV, dst=0, a=1, length=128),            # writes 0..127
    ]
    free = dataflow_schedule(_compiled(program[:3] + program[4:]), ternary_lanes=256)
    blocked = dataflow_schedule(_compiled(program), ternary_lanes=256)
    _, add_start, add_finish = blocked.timeline[3]
    _, tmv_start, _ = blocked.timeline[4]
    assert tmv_start > free.timeline[-1][1]
    # Row r (two a word, one beat a group) is written at start + r // 2 + 1 + drain; the ADD
    # reads elements 8j..8j+7 at add_start + j.
    for row in range(128):
        assert tmv_start + row // 2 + 1 + MATRIX_DRAIN > add_start + row // 8
    assert add_finish - ELEMENTWISE_LATENCY == add_start + 15
    # The tightest row decides: the TMV is no later than it must be.
    assert min(tmv_start + row // 2 + 1 + MATRIX_DRAIN - (add_start + row // 8)
               for row in range(128)) == 1


def test_matrix_drain_is_the_pipes():
    """One TMV alone in MatrixPipe (P = 256, two rows a word): from its command to its done,
    its words plus the drain and the command's take."""
    from tern_fpga.sim.rtl.dataflow_pipe import run_tmvs, tmv_case  # loads Amaranth

    demo = preset("demo")
    wide = dataclasses.replace(demo, ternary_lanes=256,
                               weight_memory_words=demo.weight_memory_words // 2)
    case = tmv_case(wide, 2, [(128, 0, False)], random.Random(3), buffers=[(2, 128), (1, 512)])
    run = run_tmvs(wide, 2, case)
    assert run.cycles == case.words + MATRIX_DRAIN + 1


@pytest.fixture(scope="module")
def demo_program():
    """The demo model's compiled program, from its shipped checkpoint."""
    from tern_fpga.contracts import paths
    from tern_fpga.explore.bench_core import compile_model  # loads torch
    from tern_fpga.quant.checkpoint import load_pretrained  # loads torch

    folder = paths.CHECKPOINTS / "demo"
    if not (folder / "config.json").exists():
        pytest.skip("the demo checkpoint is not here")
    return compile_model(load_pretrained(folder), preset("demo"))


def test_demo_step_reads_half_the_words_at_p256_and_keeps_dependences(demo_program):
    schedule = dataflow_schedule(demo_program, ternary_lanes=256)
    assert schedule.matrix_busy == 4224
    assert schedule.cycles >= schedule.matrix_busy + schedule.matrix_idle
    names = [name for name, _, _ in schedule.timeline]
    assert names.count("TMV") == 29
    # Each TMV starts after the QUANT before it finished (its activations are complete).
    last_quant_finish = None
    for name, start, finish in schedule.timeline:
        assert start < finish
        if name == "QUANT":
            last_quant_finish = finish
        elif name == "TMV":
            assert start >= last_quant_finish
    # More lanes in the vector units never make a step longer.
    wider = dataflow_schedule(demo_program, ternary_lanes=256, vector_lanes=16)
    assert wider.cycles <= schedule.cycles
    faster_engine = dataflow_schedule(demo_program, ternary_lanes=256,
                                      timing=DataflowTiming(engine_latency=(0, 0)))
    assert faster_engine.cycles < schedule.cycles


def test_no_write_tmv_ends_the_step():
    program = [Instruction(Opcode.QUANT, dst=0, a=0, b=600, length=128),
               Instruction(Opcode.TMV, dst=0, a=1, length=256, flags=Flag.NO_WRITE)]
    schedule = dataflow_schedule(_compiled(program), ternary_lanes=256)
    quant_finish = schedule.timeline[0][2]
    assert schedule.cycles == quant_finish + 128 + MATRIX_DRAIN


def test_fusing_folds_only_norms_that_quants_alone_read():
    """NORM -> two QUANTs: folded (both QUANTs read the NORM's input, one pass each). NORM ->
    MUL: kept. The folded step is shorter."""
    from tern_fpga.explore.dataflow_schedule import fused_step

    program = [
        Instruction(Opcode.EMBED, dst=0, length=128),
        Instruction(Opcode.NORM, dst=200, a=0, b=600, length=128),
        Instruction(Opcode.QUANT, dst=0, a=200, b=700, length=128),
        Instruction(Opcode.TMV, dst=400, a=1, length=128),
        Instruction(Opcode.QUANT, dst=0, a=200, b=800, length=128),
        Instruction(Opcode.TMV, dst=600, a=1, length=128),
        Instruction(Opcode.NORM, dst=1000, a=400, b=900, length=128),
        Instruction(Opcode.MUL, dst=1200, a=1000, b=600, length=128),
    ]
    fused = fused_step(program)
    assert [instruction.opcode for instruction in fused] == [
        Opcode.EMBED, Opcode.QUANT, Opcode.TMV, Opcode.QUANT, Opcode.TMV, Opcode.NORM,
        Opcode.MUL]
    assert [instruction.a for instruction in fused if instruction.opcode == Opcode.QUANT] \
        == [0, 0]
    plain = dataflow_schedule(_compiled(program), ternary_lanes=256)
    folded = dataflow_schedule(_compiled(program), ternary_lanes=256,
                               timing=DataflowTiming(fuse_norm_into_quant=True))
    assert folded.cycles < plain.cycles


def test_demo_step_fused_keeps_the_norms_that_element_wise_work_reads(demo_program):
    from tern_fpga.explore.dataflow_schedule import fused_step
    from tern_fpga.sim.golden.run_plan import step_instructions

    step = step_instructions(demo_program)
    fused = fused_step(step)
    norms = [instruction for instruction in step if instruction.opcode == Opcode.NORM]
    kept = [instruction for instruction in fused if instruction.opcode == Opcode.NORM]
    assert len(norms) == 13 and len(kept) == 4
    assert len(fused) == len(step) - 9


def test_quant_second_pass_on_the_reciprocal_alone():
    """With the reciprocal in 5 cycles QUANT's second pass starts at 79 + 1 + 16 + 5 = 101 (not
    123) and fills the buffer at 107, but the TMV's scaler needs the scale (the engine's 27
    cycles, at 123) with its first group's sums, one activation beat in: it starts at 122."""
    schedule = dataflow_schedule(_compiled(HAND_PROGRAM), ternary_lanes=256,
                                 timing=DataflowTiming(elementwise_latency=16,
                                                       reciprocal_latency=5))
    assert schedule.timeline[3] == ("QUANT", 78, 107)
    assert schedule.timeline[4] == ("TMV", 122, 122 + 64 + MATRIX_DRAIN)
