"""tern_fpga.explore.schedule: the overlap bound of a decode step, on hand-made programs and the
presets."""

from types import SimpleNamespace

import pytest

from tern_fpga.contracts.isa import Flag, Instruction, Opcode
from tern_fpga.contracts.params import preset
from tern_fpga.explore import cycle_model
from tern_fpga.explore.cycle_model import (
    SEQUENCER_CYCLES,
    cycles_per_token,
    instruction_cycles,
    runs_beside,
)
from tern_fpga.explore.schedule import overlap_bound

PARAMS = preset("micro")


def _compiled(*instructions):
    program = [*instructions, Instruction(Opcode.HALT)]
    return SimpleNamespace(params=PARAMS, program=program, entry_points={"step": 0})


def _cycles(instruction):
    """An instruction's cycles once the sequencer fetches ahead."""
    return instruction_cycles(instruction, PARAMS) - (SEQUENCER_CYCLES - 1)


def test_independent_work_on_two_units_overlaps():
    # QUANT x -> TMV (buffer 1), then a QUANT of other data that overwrites the other buffer
    # while the TMV runs, then its TMV. A third QUANT would wait for the first TMV.
    quant_1 = Instruction(Opcode.QUANT, dst=0, a=0, b=64, length=64, imm=0)
    tmv_1 = Instruction(Opcode.TMV, dst=128, a=2, b=0, length=64, imm=0)
    # Scale register 0 throughout, as the compiler writes it: the bound renames it with the
    # activation buffer.
    quant_2 = Instruction(Opcode.QUANT, dst=0, a=192, b=64, length=64, imm=3)
    tmv_2 = Instruction(Opcode.TMV, dst=256, a=2, b=0, length=64, imm=128)
    bound = overlap_bound(_compiled(quant_1, tmv_1, quant_2, tmv_2))
    assert bound.core == cycles_per_token(_compiled(quant_1, tmv_1, quant_2, tmv_2))
    assert bound.ideal == 2 * 64 * 2
    # The second QUANT runs beside the first TMV; the second TMV follows the first.
    assert bound.overlapped == _cycles(quant_1) + max(_cycles(tmv_1), _cycles(quant_2)) \
        + _cycles(tmv_2)
    assert bound.overlapped < bound.core


def test_the_cycle_model_overlaps_a_tmv_and_an_independent_quant():
    """The core's own overlap (hw/core.py), as the cycle model counts it."""
    quant_1 = Instruction(Opcode.QUANT, dst=0, a=0, b=64, length=64, imm=0)
    tmv_1 = Instruction(Opcode.TMV, dst=128, a=2, b=0, length=64, imm=0)
    independent = Instruction(Opcode.QUANT, dst=0, a=192, b=64, length=64, imm=3)
    dependent = Instruction(Opcode.QUANT, dst=0, a=160, b=64, length=64, imm=3)  # reads 160..
    tmv_2 = Instruction(Opcode.TMV, dst=256, a=2, b=0, length=64, imm=128)
    halt = Instruction(Opcode.HALT)

    def cycles(instruction):
        return instruction_cycles(instruction, PARAMS)

    handover = cycle_model.MATRIX_HANDOVER_CYCLES
    assert runs_beside(tmv_1, independent) and not runs_beside(tmv_1, dependent)
    assert not runs_beside(quant_1, independent)     # only after a TMV
    no_write = Instruction(Opcode.TMV, dst=128, a=2, b=0, length=64, imm=0, flags=Flag.NO_WRITE)
    assert runs_beside(no_write, dependent)
    overlapped = cycles_per_token(_compiled(quant_1, tmv_1, independent, tmv_2))
    assert overlapped == (cycles(quant_1)
                          + max(cycles(tmv_1) - handover, SEQUENCER_CYCLES + cycles(independent))
                          + cycles(tmv_2) - handover + cycles(halt))
    waiting = cycles_per_token(_compiled(quant_1, tmv_1, dependent, tmv_2))
    assert waiting == (cycles(quant_1) + cycles(tmv_1) - handover + cycles(dependent)
                       + cycles(tmv_2) - handover + cycles(halt))
    assert overlapped < waiting


def test_dependences_serialise():
    # Each instruction reads the previous one's result: nothing can overlap.
    chain = [Instruction(Opcode.SIGMOID, dst=64, a=0, length=64),
             Instruction(Opcode.QUANT, dst=0, a=64, b=128, length=64),
             Instruction(Opcode.TMV, dst=192, a=2, b=0, length=64),
             Instruction(Opcode.ADD, dst=0, a=192, b=0, length=64)]
    bound = overlap_bound(_compiled(*chain))
    assert bound.overlapped == bound.critical_path == sum(_cycles(i) for i in chain)


def test_a_write_after_read_waits():
    # Without unit limits, an ADD elsewhere runs beside the SIGMOID; one that overwrites the
    # SIGMOID's operand waits for it.
    sigmoid = Instruction(Opcode.SIGMOID, dst=64, a=0, length=64)
    elsewhere = Instruction(Opcode.ADD, dst=384, a=256, b=320, length=64)
    overwriting = Instruction(Opcode.ADD, dst=0, a=256, b=320, length=64)
    assert overlap_bound(_compiled(sigmoid, elsewhere)).critical_path == _cycles(sigmoid)
    assert overlap_bound(_compiled(sigmoid, overwriting)).critical_path == \
        _cycles(sigmoid) + _cycles(overwriting)


@pytest.mark.parametrize("name", ["micro", "demo"])
def test_the_presets_bounds_are_ordered(name):
    from tern_fpga.quant import compiler
    from tern_fpga.quant.presets import get_preset

    compiled = compiler.compile_layout(get_preset(name).config(), preset(name))
    bound = overlap_bound(compiled)
    assert bound.core == cycles_per_token(compiled)
    assert bound.ideal == compiled.weight_words
    # One matrix unit streams every weight word, so the overlapped schedule is above the ideal;
    # with unlimited units the gate and up projections' TMVs run side by side, so the critical
    # path may be below it (demo at V=8).
    assert 0 < bound.critical_path <= bound.overlapped < bound.core
    assert bound.ideal < bound.overlapped
