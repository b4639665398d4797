"""The accelerator's instruction set: encoding, assembler and disassembler.

An instruction is one 128-bit word (stored as four little-endian ``uint32``) with fixed fields::

    bits   0..7    opcode
    bits   8..31   dst      vector-memory address of the result (or a scale register)
    bits  32..55   a        first operand address (or, for TMV, beats per row)
    bits  56..79   b        second operand address (or a scale register)
    bits  80..95   length   elements (rows for TMV)
    bits  96..119  imm      constant-table index, weight-memory word address, or a shift
    bits 120..127  flags

The text form is one instruction a line, ``mnemonic field=value ...`` with only the fields the
instruction uses, in any order; ``;`` starts a comment. The disassembler writes the same form,
so ``assemble(disassemble(words)) == words``. Semantics are in ``sim/golden/model.py`` and
``docs/isa.md``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

import numpy as np

from tern_fpga.contracts.errors import TernError

__all__ = [
    "BINARY_OPERATIONS",
    "FIELDS",
    "OPERANDS",
    "OPERATION_OF_OPCODE",
    "SCALE_REGISTERS",
    "WORDS_PER_INSTRUCTION",
    "AssemblyError",
    "Flag",
    "Instruction",
    "Opcode",
    "RowOperation",
    "assemble",
    "decode",
    "disassemble",
    "encode",
]

# Per-token scale registers (the operand of QUANT's ``dst`` and TMV's ``b``).
SCALE_REGISTERS = 4

ISA_VERSION = 1
WORDS_PER_INSTRUCTION = 4  # uint32 words

# name: (lowest bit, width)
FIELDS = {
    "opcode": (0, 8),
    "dst": (8, 24),
    "a": (32, 24),
    "b": (56, 24),
    "length": (80, 16),
    "imm": (96, 24),
    "flags": (120, 8),
}


class Opcode(enum.IntEnum):
    HALT = 0      # end of program
    ZERO = 1      # dst[0:length] = 0
    EMBED = 2     # dst[0:length] = embedding[token] << imm
    NORM = 3      # dst = rmsnorm(a) * b; constants at imm (eps term, scale)
    QUANT = 4     # activations = int8(a * b); scale register dst; constants at imm
    TMV = 5       # dst[0:length] = (W[imm..] @ activations) * scale register b; a = beats
    SIGMOID = 6   # dst = sigmoid(a)
    SILU = 7      # dst = a * sigmoid(a)
    MUL = 8       # dst = a * b
    ADD = 9       # dst = a + b
    SUB = 10      # dst = a - b
    ONE_MINUS = 11  # dst = 1 - a


class Flag(enum.IntFlag):
    ARGMAX = 1      # TMV: write the argmax of the raw products to the token register
    NO_WRITE = 2    # TMV: do not write dst (greedy decoding without logits)


# The fields each instruction uses, as they appear in the text form (``length`` is ``len``).
OPERANDS = {
    Opcode.HALT: (),
    Opcode.ZERO: ("dst", "length"),
    Opcode.EMBED: ("dst", "length", "imm"),
    Opcode.NORM: ("dst", "a", "b", "length", "imm"),
    Opcode.QUANT: ("dst", "a", "b", "length", "imm"),
    Opcode.TMV: ("dst", "a", "b", "length", "imm", "flags"),
    Opcode.SIGMOID: ("dst", "a", "length"),
    Opcode.SILU: ("dst", "a", "length"),
    Opcode.MUL: ("dst", "a", "b", "length"),
    Opcode.ADD: ("dst", "a", "b", "length"),
    Opcode.SUB: ("dst", "a", "b", "length"),
    Opcode.ONE_MINUS: ("dst", "a", "length"),
}

_TEXT_NAME = {"length": "len"}
_FIELD_NAME = {text: name for name, text in _TEXT_NAME.items()}


class AssemblyError(TernError):
    """Malformed assembly text or an operand that does not fit its field."""


@dataclass(frozen=True)
class Instruction:
    opcode: Opcode
    dst: int = 0
    a: int = 0
    b: int = 0
    length: int = 0
    imm: int = 0
    flags: int = 0
    comment: str = field(default="", compare=False)

    def __post_init__(self):
        for name in FIELDS:
            if name == "opcode":
                continue
            value = getattr(self, name)
            width = FIELDS[name][1]
            if not (isinstance(value, (int, np.integer)) and 0 <= value < (1 << width)):
                raise AssemblyError(
                    f"{self.opcode.name.lower()}: field {name}={value!r} does not fit "
                    f"{width} unsigned bits")

    def text(self) -> str:
        operands = " ".join(f"{_TEXT_NAME.get(name, name)}={getattr(self, name)}"
                            for name in OPERANDS[self.opcode])
        line = f"{self.opcode.name.lower():<9} {operands}".rstrip()
        return f"{line:<60} ; {self.comment}" if self.comment else line


def encode(instructions: list[Instruction]) -> np.ndarray:
    """Instructions to ``uint32`` words, four per instruction."""
    words = np.zeros((len(instructions), WORDS_PER_INSTRUCTION), dtype=np.uint32)
    for row, instruction in enumerate(instructions):
        value = 0
        for name, (low, _width) in FIELDS.items():
            value |= int(getattr(instruction, name)) << low
        for index in range(WORDS_PER_INSTRUCTION):
            words[row, index] = (value >> (32 * index)) & 0xFFFF_FFFF
    return words.reshape(-1)


def decode(words: np.ndarray) -> list[Instruction]:
    """``uint32`` words to instructions; an unknown opcode is an :class:`AssemblyError`."""
    words = np.asarray(words, dtype=np.uint32)
    if words.size % WORDS_PER_INSTRUCTION:
        raise AssemblyError(
            f"a program is a multiple of {WORDS_PER_INSTRUCTION} words, not {words.size}")
    instructions = []
    for row, chunk in enumerate(words.reshape(-1, WORDS_PER_INSTRUCTION)):
        value = sum(int(word) << (32 * index) for index, word in enumerate(chunk))
        fields = {name: (value >> low) & ((1 << width) - 1)
                  for name, (low, width) in FIELDS.items()}
        try:
            fields["opcode"] = Opcode(fields["opcode"])
        except ValueError:
            raise AssemblyError(
                f"instruction {row}: unknown opcode {fields['opcode']}") from None
        instructions.append(Instruction(**fields))
    return instructions


def disassemble(words: np.ndarray, comments: list[str] | None = None) -> str:
    """Program words to text, one instruction a line (optionally with a comment each)."""
    instructions = decode(words)
    comments = comments or [""] * len(instructions)
    return "\n".join(Instruction(**{**vars(instruction), "comment": comment}).text()
                     for instruction, comment in zip(instructions, comments)) + "\n"


def assemble(text: str) -> np.ndarray:
    """Text to program words; errors name the line and the bad token."""
    instructions = []
    for number, raw in enumerate(text.splitlines(), start=1):
        code, _, comment = raw.partition(";")
        tokens = code.split()
        if not tokens:
            continue
        try:
            opcode = Opcode[tokens[0].upper()]
        except KeyError:
            known = ", ".join(op.name.lower() for op in Opcode)
            raise AssemblyError(
                f"line {number}: unknown mnemonic {tokens[0]!r}; known: {known}") from None
        fields = {}
        for token in tokens[1:]:
            key, equals, value = token.partition("=")
            name = _FIELD_NAME.get(key, key)
            if not equals or name not in OPERANDS[opcode]:
                used = ", ".join(_TEXT_NAME.get(n, n) for n in OPERANDS[opcode]) or "none"
                raise AssemblyError(
                    f"line {number}: {opcode.name.lower()} takes fields {used}, "
                    f"not {token!r}")
            try:
                fields[name] = int(value, 0)
            except ValueError:
                raise AssemblyError(
                    f"line {number}: {key}={value!r} is not an integer") from None
        try:
            instructions.append(Instruction(opcode, **fields, comment=comment.strip()))
        except AssemblyError as error:
            raise AssemblyError(f"line {number}: {error}") from None
    return encode(instructions)


class RowOperation(enum.IntEnum):
    """What the row-wise unit computes; the value is its 3-bit hardware code."""

    SIGMOID = 0
    SILU = 1
    MUL = 2
    ADD = 3
    SUB = 4
    ONE_MINUS = 5
    SCALE = 6
    EMBED = 7


# The operations that read a second operand ``b``.
BINARY_OPERATIONS = frozenset({RowOperation.MUL, RowOperation.ADD, RowOperation.SUB})

# The instructions that the row-wise unit executes whole (``tmv`` uses SCALE for its output).
OPERATION_OF_OPCODE = {
    Opcode.SIGMOID: RowOperation.SIGMOID,
    Opcode.SILU: RowOperation.SILU,
    Opcode.MUL: RowOperation.MUL,
    Opcode.ADD: RowOperation.ADD,
    Opcode.SUB: RowOperation.SUB,
    Opcode.ONE_MINUS: RowOperation.ONE_MINUS,
    Opcode.EMBED: RowOperation.EMBED,
}
