"""The ISA's region rule (docs/isa.md) that the dataflow core's scoreboard relies on: every two
vector ranges of a program are the same words or share none. ``run_plan.vector_regions``
finds the regions and names the two instructions that break it; ``compile_model`` writes only
programs that keep it (the shipped presets' models and the released 370M shape)."""

import pytest

from tern_fpga.contracts.isa import Flag, Instruction, Opcode
from tern_fpga.contracts.params import PRESETS
from tern_fpga.quant.compiler import compile_layout
from tern_fpga.quant.config import HGRNBitConfig
from tern_fpga.sim.golden.run_plan import vector_regions


def test_same_and_disjoint_ranges_make_regions_in_words():
    program = [
        Instruction(Opcode.ADD, dst=16, a=16, b=32, length=12),    # words 2-3, 4-5 at V=8
        Instruction(Opcode.SIGMOID, dst=48, a=32, length=16),      # 12 or 16 elements: 2 words
        Instruction(Opcode.TMV, dst=16, a=2, b=0, length=10),
        Instruction(Opcode.TMV, dst=0, a=2, b=0, length=99, flags=Flag.NO_WRITE),
        Instruction(Opcode.HALT),                                  # no range at all
    ]
    assert vector_regions(program, 8) == [range(2, 4), range(4, 6), range(6, 8)]


@pytest.mark.parametrize("second, lanes", [
    (Instruction(Opcode.SIGMOID, dst=64, a=16, length=8), 8),       # a prefix of a region
    (Instruction(Opcode.SIGMOID, dst=64, a=24, length=16), 8),      # starts inside it
    (Instruction(Opcode.ZERO, dst=8, length=16), 8),                # ends inside it
    (Instruction(Opcode.SIGMOID, dst=64, a=16, length=12), 4),      # the same only in words of 8
])
def test_ranges_that_share_some_words_but_not_all_are_named(second, lanes):
    first = Instruction(Opcode.ADD, dst=16, a=16, b=32, length=16)
    with pytest.raises(ValueError, match=r"instructions 0 \(.*ADD.*\) and 1 \(.*\) use vector "
                                         rf"ranges that share some words of {lanes} elements"):
        vector_regions([first, second], lanes)


@pytest.mark.parametrize("preset, config", [
    ("micro", HGRNBitConfig(vocab_size=256, hidden_size=64, num_hidden_layers=2)),
    ("demo", HGRNBitConfig(vocab_size=256, hidden_size=128, num_hidden_layers=4)),
    ("large", HGRNBitConfig(vocab_size=32000, hidden_size=1024, num_hidden_layers=24,
                            intermediate_size=2816)),
])
def test_the_compiler_keeps_the_rule(preset, config):
    params = PRESETS[preset]
    compiled = compile_layout(config, params)
    regions = vector_regions(compiled.program, params.vector_lanes)
    # Each layer's state and buffers are their own regions.
    assert len(regions) > 4 * config.num_hidden_layers
