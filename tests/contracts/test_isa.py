"""Instruction encoding, assembler and disassembler (tern_fpga/contracts/isa.py)."""

import numpy as np
import pytest

from tern_fpga.contracts.isa import (
    FIELDS,
    OPERANDS,
    AssemblyError,
    Instruction,
    Opcode,
    assemble,
    decode,
    disassemble,
    encode,
)


def random_program(rng, count=200):
    program = []
    for _ in range(count):
        opcode = Opcode(int(rng.integers(0, len(Opcode))))
        fields = {name: int(rng.integers(0, 1 << FIELDS[name][1])) for name in OPERANDS[opcode]}
        program.append(Instruction(opcode, **fields))
    return program


def test_encode_decode_round_trip():
    rng = np.random.default_rng(7)
    program = random_program(rng)
    words = encode(program)
    assert words.dtype == np.uint32 and words.size == 4 * len(program)
    assert decode(words) == program


def test_assemble_disassemble_round_trip():
    words = encode(random_program(np.random.default_rng(8)))
    text = disassemble(words)
    np.testing.assert_array_equal(assemble(text), words)


def test_fields_do_not_overlap_and_fit_128_bits():
    used = 0
    for low, width in FIELDS.values():
        mask = ((1 << width) - 1) << low
        assert not used & mask
        used |= mask
    assert used == (1 << 128) - 1


def test_text_form_is_readable():
    text = "tmv dst=10 a=2 b=1 len=64 imm=0x100 flags=1 ; lm head\nhalt\n"
    program = decode(assemble(text))
    assert program[0] == Instruction(Opcode.TMV, dst=10, a=2, b=1, length=64, imm=256, flags=1)
    assert disassemble(assemble(text)).splitlines()[0].split() == \
        ["tmv", "dst=10", "a=2", "b=1", "len=64", "imm=256", "flags=1"]


@pytest.mark.parametrize("text, message", [
    ("jump dst=1", "line 1: unknown mnemonic 'jump'"),
    ("add dst=1 imm=3", "add takes fields dst, a, b, len, not 'imm=3'"),
    ("add dst=x", "dst='x' is not an integer"),
    ("zero dst=16777216 len=1", "field dst=16777216 does not fit 24 unsigned bits"),
])
def test_assembly_errors_name_the_problem(text, message):
    with pytest.raises(AssemblyError, match=message.replace("(", r"\(").replace(")", r"\)")):
        assemble(text)


def test_decode_refuses_unknown_opcode_and_ragged_program():
    with pytest.raises(AssemblyError, match="instruction 0: unknown opcode 200"):
        decode(np.array([200, 0, 0, 0], dtype=np.uint32))
    with pytest.raises(AssemblyError, match="multiple of 4 words"):
        decode(np.zeros(5, dtype=np.uint32))
