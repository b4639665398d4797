"""The golden model: executes an exported program instruction by instruction, exactly.

This is the contract the RTL and the board are checked against. It holds the accelerator's
architectural state (vector memory, int8 activation buffer, scale registers, token register) and
gives every instruction of ``tern_fpga/contracts/isa.py`` its integer meaning through
``tern_fpga/contracts/numerics.py``.
With ``trace=True`` it records, for each executed instruction, the program counter and a copy of
what it wrote, so that a mismatch can be pinned to one instruction and one element.

Without a trace, a run is executed by the batched fast path
(:mod:`tern_fpga.sim.golden.batched_run`), which reaches the same state with fewer NumPy calls;
``batched=False`` keeps every run on this interpreter, the definition the fast path is tested
against.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tern_fpga.contracts import numerics
from tern_fpga.contracts.errors import TernError
from tern_fpga.contracts.export_format import ExportFormatError, TernExport, read_export
from tern_fpga.contracts.isa import ISA_VERSION, SCALE_REGISTERS, Flag, Instruction, Opcode, decode
from tern_fpga.contracts.numerics import Scale
from tern_fpga.contracts.params import AcceleratorParameters
from tern_fpga.contracts.weight_layout import unpack_weight_image
from tern_fpga.sim.golden.batched_run import BatchedRun, compile_batched_run

__all__ = ["ExecutionError", "GoldenModel", "TraceRecord", "golden_from_export", "golden_from_file"]

_UNARY = {Opcode.SIGMOID: numerics.sigmoid, Opcode.SILU: numerics.silu,
          Opcode.ONE_MINUS: numerics.one_minus}
_BINARY = {Opcode.MUL: numerics.multiply, Opcode.ADD: numerics.add,
           Opcode.SUB: numerics.subtract}


class ExecutionError(TernError):
    """The program did something the hardware cannot (an address out of range, no HALT)."""


@dataclass
class TraceRecord:
    """One executed instruction: where, what, and the values it wrote (``None`` if nothing)."""

    pc: int
    instruction: Instruction
    written: np.ndarray | None
    scale: Scale | None = None


class GoldenModel:
    """Bit-exact interpreter of one exported model.

    Parameters
    ----------
    params : AcceleratorParameters
    sections : dict of str to numpy.ndarray
        The export's sections: ``program``, ``weights``, ``vector_init``, ``constants``,
        ``embeddings``; ``entry_points`` (``[reset, step]``).
    trace : bool
        Record a :class:`TraceRecord` per executed instruction in :attr:`trace`; each run of
        the program (one :meth:`step`, or the reset) starts a new trace.
    batched : bool
        Execute runs without a trace on the batched fast path (same bits); ``False``: always
        instruction by instruction.
    """

    def __init__(self, params: AcceleratorParameters, sections: dict, trace: bool = False,
                 batched: bool = True):
        self.params = params
        self.program = decode(sections["program"])
        self.reset_entry, self.step_entry = (int(v) for v in sections["entry_points"])
        self.weights = unpack_weight_image(sections["weights"], params)
        self.constants = np.asarray(sections["constants"], dtype=np.int64)
        self.embeddings = np.asarray(sections["embeddings"], dtype=np.int64)
        self.vector_init = np.asarray(sections["vector_init"], dtype=np.int64)
        self.memory = np.zeros(params.vector_memory_words, dtype=np.int64)
        self.activations = np.zeros(
            -(-params.max_features // params.ternary_lanes) * params.ternary_lanes, np.int64)
        self.scales = [Scale(0, 0)] * SCALE_REGISTERS
        self.activation_length = 0     # elements the last QUANT wrote
        self.token = 0
        self.token_written = False     # a TMV with ARGMAX ran since the run began
        self.record = trace
        self.trace: list[TraceRecord] = []
        self.instructions_executed = 0
        # Exact in float32 while |sum| < 2**24; float BLAS is much faster than int64 matmul.
        exact32 = params.activation_max * params.max_features < (1 << 24)
        self._matrix_dtype = np.float32 if exact32 else np.float64
        self._matrices: dict[tuple[int, int, int], np.ndarray] = {}
        self.batched = batched
        self._batched_runs: dict[int, BatchedRun | None] = {}
        self.reset()
        if batched and 0 <= self.step_entry < len(self.program):
            # Plan the step and stack its matrices now, at load, not in the first token's time.
            self._batched_runs[self.step_entry] = compile_batched_run(self, self.step_entry)

    # Public API ---------------------------------------------------------------------------------

    def reset(self):
        """Load the vector memory's initial image and run the ``reset`` entry (state to zero)."""
        if self.vector_init.size > self.memory.size:
            raise ExecutionError(
                f"the export's vector image has {self.vector_init.size} elements but the "
                f"vector memory holds {self.memory.size}")
        self.memory[:] = 0
        self.memory[:self.vector_init.size] = self.vector_init
        self.run(self.reset_entry)

    def step(self, token: int) -> int:
        """One decode step on input ``token``; returns the greedy next token."""
        if not 0 <= token < self.embeddings.shape[0]:
            raise ExecutionError(
                f"token {token} is outside the vocabulary of {self.embeddings.shape[0]}")
        self.token = int(token)
        self.run(self.step_entry)
        return self.token

    def generate(self, prompt: list[int], count: int, on_token=None) -> list[int]:
        """Feed ``prompt`` then ``count`` greedy tokens; returns the generated tokens."""
        if not prompt:
            raise ExecutionError("the prompt must hold at least one token")
        for token in prompt[:-1]:
            self.step(token)
        generated, token = [], prompt[-1]
        for _ in range(count):
            token = self.step(token)
            generated.append(token)
            if on_token:
                on_token(token)
        return generated

    def vector(self, address: int, length: int) -> np.ndarray:
        return self.memory[address:address + length].copy()

    # Execution ----------------------------------------------------------------------------------

    def run(self, entry: int):
        """Execute from ``entry`` to the first HALT."""
        self.trace.clear()
        self.token_written = False
        if self.batched and not self.record:
            if entry not in self._batched_runs:
                self._batched_runs[entry] = compile_batched_run(self, entry)
            batched_run = self._batched_runs[entry]
            if batched_run is not None and batched_run.execute():
                return
        pc = entry
        while True:
            if pc >= len(self.program):
                raise ExecutionError(f"the program ran past its end at {pc} without a halt")
            instruction = self.program[pc]
            if instruction.opcode == Opcode.HALT:
                return
            written, scale = self.execute(instruction)
            self.instructions_executed += 1
            if self.record:
                self.trace.append(TraceRecord(
                    pc, instruction, None if written is None else written.copy(), scale))
            pc += 1

    def _read(self, address: int, length: int) -> np.ndarray:
        if address + length > self.memory.size:
            raise ExecutionError(
                f"read of {length} elements at {address} is past the vector memory "
                f"({self.memory.size} elements)")
        return self.memory[address:address + length]

    def _read_a(self, address: int, length: int) -> np.ndarray:
        """Operand ``a``: only the work bank has a port for it (the constants bank is read
        through operand ``b`` alone; see ``vector_work_words``)."""
        if address + length > self.params.work_words:
            raise ExecutionError(
                f"operand a reads {length} elements at {address}, past the work bank "
                f"({self.params.work_words} elements): the constants bank is for operand b only")
        return self._read(address, length)

    def _write(self, address: int, values: np.ndarray) -> np.ndarray:
        self._read(address, len(values))
        self.memory[address:address + len(values)] = values
        return values

    def _constants(self, index: int) -> tuple[int, Scale]:
        epsilon_term, mantissa, exponent = (int(v) for v in self.constants[index:index + 3])
        return epsilon_term, Scale(mantissa, exponent)

    def _matrix(self, word: int, rows: int, beats: int) -> np.ndarray:
        key = (word, rows, beats)
        if key not in self._matrices:
            end = word + rows * beats
            if end > len(self.weights):
                raise ExecutionError(
                    f"matrix at word {word} with {rows} rows of {beats} beats ends past the "
                    f"weight image ({len(self.weights)} words)")
            self._matrices[key] = self.weights[word:end].reshape(rows, -1).astype(
                self._matrix_dtype)
        return self._matrices[key]

    def _check_activations_defined(self, ins: Instruction, matrix: np.ndarray):
        """A TMV may read activations past the last QUANT's length only against zero weights:
        the accelerator's activations there are undefined (it double-buffers them, and a
        QUANT writes whole beats), so a program must not let them reach a row sum."""
        defined, width = self.activation_length, matrix.shape[1]
        if width > defined and np.any(matrix[:, defined:]):
            raise ExecutionError(
                f"tmv at weight word {ins.imm} reads {width} activations, but the last quant "
                f"wrote {defined} and the matrix's columns {defined} to {width - 1} are not all "
                f"zero: activations past a quant's length are undefined on the accelerator "
                f"(docs/isa.md); quantise the whole input or pad the matrix with zero weights")

    def execute(self, ins: Instruction) -> tuple[np.ndarray | None, Scale | None]:
        """Execute one instruction; returns what it wrote (and the scale, for QUANT)."""
        p, op, n = self.params, ins.opcode, ins.length
        if op == Opcode.ZERO:
            return self._write(ins.dst, np.zeros(n, np.int64)), None
        if op == Opcode.EMBED:
            if self.token_written:
                raise ExecutionError(
                    "embed after a tmv with argmax in the same run: the dataflow core does not "
                    "order the token register's read after that write (docs/isa.md); embed "
                    "the token first, or end the run and start the next one")
            return self._write(ins.dst, self.embeddings[self.token, :n] << ins.imm), None
        if op == Opcode.NORM:
            epsilon_term, constant = self._constants(ins.imm)
            result = numerics.rmsnorm(self._read_a(ins.a, n), self._read(ins.b, n),
                                      epsilon_term, constant, p)
            return self._write(ins.dst, result), None
        if op == Opcode.QUANT:
            epsilon_term, constant = self._constants(ins.imm)
            q, scale = numerics.quantize_activations(
                self._read_a(ins.a, n), self._read(ins.b, n), epsilon_term, constant, p)
            self.activations[:n] = q
            self.activation_length = n
            self.scales[ins.dst] = scale
            return q.astype(np.int64), scale
        if op == Opcode.TMV:
            matrix = self._matrix(ins.imm, n, ins.a)
            self._check_activations_defined(ins, matrix)
            sums = matrix @ self.activations[:matrix.shape[1]].astype(self._matrix_dtype)
            sums = sums.astype(np.int64)
            if ins.flags & Flag.ARGMAX:
                self.token = int(np.argmax(sums))
                self.token_written = True
            if ins.flags & Flag.NO_WRITE:
                return None, None
            return self._write(ins.dst, numerics.apply_scale(sums, self.scales[ins.b], p)), None
        if op in _UNARY:
            return self._write(ins.dst, _UNARY[op](self._read_a(ins.a, n), p)), None
        if op in _BINARY:
            return self._write(ins.dst, _BINARY[op](self._read_a(ins.a, n),
                                                    self._read(ins.b, n), p)), None
        raise ExecutionError(f"opcode {op!r} has no meaning in the golden model")


def golden_from_export(export: TernExport, trace: bool = False) -> GoldenModel:
    if export.metadata.get("isa_version") != ISA_VERSION:
        raise ExportFormatError(
            f"the export's program is for ISA version {export.metadata.get('isa_version')!r}, "
            f"this tern runs version {ISA_VERSION}; re-export it with this tern")
    missing = [name for name in ("program", "entry_points", "weights", "vector_init",
                                 "constants", "embeddings") if name not in export.sections]
    if missing:
        raise ExportFormatError(
            f"the export lacks section(s) {missing}: it was not written by `tern export`")
    return GoldenModel(export.params, export.sections, trace=trace)


def golden_from_file(path, trace: bool = False) -> tuple[TernExport, GoldenModel]:
    export = read_export(path)
    return export, golden_from_export(export, trace=trace)
