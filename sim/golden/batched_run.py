"""The golden model's fast path: one run of a program (one token's step, or the reset) executed
group by group instead of instruction by instruction, with the same bits.

:func:`tern_fpga.sim.golden.run_plan.plan_run` orders the run's instructions into groups of
independent instructions of one kind; each group is compiled once into a closure over views of
the vector memory, the weight matrices (as float32, exact for ternary row sums below 2**24) and
its constants, and computes all its instructions with one set of NumPy calls
(:class:`~tern_fpga.sim.golden.batched_numerics.BatchedNumerics`). The interpreter in
:mod:`tern_fpga.sim.golden.model` stays the definition: a program the compiler cannot prove
runs cleanly (an address out of range, undefined activations, anything the interpreter would
refuse) is left to it, and a run that fails midway is undone and handed to it, so that it
fails at the same instruction with the same message.
"""

from __future__ import annotations

import numpy as np

from tern_fpga.contracts import numerics
from tern_fpga.contracts.errors import TernError
from tern_fpga.contracts.isa import Flag, Opcode
from tern_fpga.sim.golden.batched_numerics import BatchedNumerics
from tern_fpga.sim.golden.run_plan import Group, RunPlan, plan_run

__all__ = ["BatchedRun", "compile_batched_run"]

# What the interpreter raises for a program it cannot run (besides ExecutionError, a TernError).
_PROGRAM_ERRORS = (TernError, ArithmeticError, IndexError, KeyError, ValueError)
_UNARY = {Opcode.SIGMOID: "sigmoid", Opcode.SILU: "silu", Opcode.ONE_MINUS: "one_minus"}
_BINARY = {Opcode.MUL: "multiply", Opcode.ADD: "add", Opcode.SUB: "subtract"}


def compile_batched_run(golden, entry: int) -> BatchedRun | None:
    """The batched run of ``golden``'s program from ``entry``, or ``None`` where the
    interpreter must run it (no HALT after ``entry``, or a program it would refuse)."""
    program = golden.program
    if not any(ins.opcode == Opcode.HALT for ins in program[entry:]):
        return None
    if _embeds_after_argmax(program, entry):
        return None                    # the interpreter names the rule (docs/isa.md)
    try:
        return BatchedRun(golden, plan_run(program, entry))
    except _PROGRAM_ERRORS:
        return None


def _embeds_after_argmax(program, entry: int) -> bool:
    """Whether the run from ``entry`` has an EMBED after a TMV with ARGMAX (the ISA forbids it:
    the dataflow core does not order the two)."""
    argmax = False
    for instruction in program[entry:]:
        if instruction.opcode == Opcode.HALT:
            return False
        if instruction.opcode == Opcode.EMBED and argmax:
            return True
        argmax |= instruction.opcode == Opcode.TMV and bool(instruction.flags & Flag.ARGMAX)
    return False


class BatchedRun:
    """One entry point's run, compiled against one :class:`GoldenModel`'s state."""

    def __init__(self, golden, plan: RunPlan):
        self._golden = golden
        self._numerics = BatchedNumerics(golden.params)
        self._memory = golden.memory
        self._plan = plan
        self._count = sum(len(group.pcs) for group in plan.groups)
        lanes = golden.params.ternary_lanes
        self._widths: dict[int | None, int] = {}       # activation source -> columns read
        for group in plan.groups:
            for pc, ins in zip(group.pcs, group.instructions):
                if ins.opcode == Opcode.TMV:
                    source = plan.activation_source[pc]
                    self._widths[source] = max(self._widths.get(source, 0), ins.a * lanes)
        if self._widths.get(None, 0) > golden.activations.size:
            raise ValueError("a tmv reads past the activation buffer")
        self._initial_activations = np.zeros(golden.activations.size, np.float32)
        self._initial_needed = 0      # activations a TMV reads from before the run's first QUANT
        self._activation_rows: dict[int, np.ndarray] = {}   # QUANT pc -> its float32 row
        self._scales: dict[int, numerics.Scale] = {}        # QUANT pc -> its scale
        self._quant_groups: dict[tuple[int, ...], np.ndarray] = {}  # their pcs -> their rows
        self._steps = [self._compile(group) for group in plan.groups]
        self._final_quants = self._quants_left_in_the_buffer()

    def execute(self) -> bool:
        """Run once; ``False`` (and the state untouched) where the interpreter must run it."""
        golden = self._golden
        if golden.memory is not self._memory or golden.activation_length < self._initial_needed:
            return False
        if None in self._widths:
            np.copyto(self._initial_activations, golden.activations, casting="unsafe")
        memory_before, token_before = self._memory.copy(), golden.token
        try:
            for step in self._steps:
                step()
        except _PROGRAM_ERRORS:
            self._memory[:] = memory_before
            golden.token = token_before
            return False
        for pc in self._final_quants:
            length = self._plan_length(pc)
            golden.activations[:length] = self._activation_rows[pc][:length]
        if self._plan.quants:
            golden.activation_length = self._plan_length(self._plan.quants[-1])
            for pc in self._plan.quants:
                golden.scales[golden.program[pc].dst] = self._scales[pc]
        golden.instructions_executed += self._count
        return True

    # Compilation ----------------------------------------------------------------------------

    def _plan_length(self, pc: int) -> int:
        return self._golden.program[pc].length

    def _quants_left_in_the_buffer(self) -> list[int]:
        """The QUANTs whose values the activation buffer holds after the run, in program order
        (each writes its first ``length`` elements over the earlier ones)."""
        kept, longest = [], 0
        for pc in reversed(self._plan.quants):
            if self._plan_length(pc) > longest:
                kept.append(pc)
                longest = self._plan_length(pc)
        return kept[::-1]

    def _rows(self, addresses: list[int], length: int) -> np.ndarray | None:
        """A view of the vector memory with ``addresses``' rows, where there is one."""
        start, count = addresses[0], len(addresses)
        if addresses == [start + i * length for i in range(count)]:
            return self._memory[start:start + count * length].reshape(count, length)
        if len(set(addresses)) == 1:
            return np.broadcast_to(self._memory[start:start + length], (count, length))
        return None

    def _reader(self, addresses: list[int], length: int, operand_a: bool):
        golden, memory = self._golden, self._memory
        for address in addresses:
            (golden._read_a if operand_a else golden._read)(address, length)
        rows = self._rows(addresses, length)
        if rows is not None:
            return lambda: rows
        index = np.add.outer(np.array(addresses), np.arange(length))
        return lambda: memory[index]

    def _writer(self, addresses: list[int], length: int):
        """``(out, finish)``: a function computes its result into ``out`` (a view of the rows
        written, or ``None`` where they are not one view), then ``finish(result)`` stores it."""
        memory = self._memory
        for address in addresses:
            self._golden._read(address, length)
        rows = self._rows(addresses, length) if len(set(addresses)) == len(addresses) else None
        if rows is not None:
            return rows, lambda values: None
        index = np.add.outer(np.array(addresses), np.arange(length))
        return None, lambda values: memory.__setitem__(index, values)

    def _compile(self, group: Group):
        op, n, members = group.opcode, group.length, group.instructions
        compile_kind = {Opcode.ZERO: self._zero, Opcode.EMBED: self._embed,
                        Opcode.NORM: self._norm, Opcode.QUANT: self._quant,
                        Opcode.TMV: self._tmv}.get(op)
        if compile_kind is not None:
            return compile_kind(group)
        out, finish = self._writer([ins.dst for ins in members], n)
        a = self._reader([ins.a for ins in members], n, operand_a=True)
        if op in _UNARY:
            function = getattr(self._numerics, _UNARY[op])
            return lambda: finish(function(a(), out))
        if op in _BINARY:
            function = getattr(self._numerics, _BINARY[op])
            b = self._reader([ins.b for ins in members], n, operand_a=False)
            return lambda: finish(function(a(), b(), out))
        raise ValueError(f"opcode {op!r} has no meaning in the golden model")

    def _zero(self, group: Group):
        out, finish = self._writer([ins.dst for ins in group.instructions], group.length)
        zeros = np.zeros((len(group.pcs), group.length), np.int64)
        return lambda: finish(zeros) if out is None else np.copyto(out, zeros)

    def _embed(self, group: Group):
        golden = self._golden
        if group.length > golden.embeddings.shape[1]:
            raise ValueError("an embed longer than an embedding row")
        writes = [(self._writer([ins.dst], group.length)[0], ins.imm)
                  for ins in group.instructions]

        def step():
            row = golden.embeddings[golden.token, :group.length]
            for out, shift in writes:
                np.left_shift(row, shift, out=out[0], dtype=np.int64)
        return step

    def _norm_inputs(self, group: Group):
        members, n = group.instructions, group.length
        x = self._reader([ins.a for ins in members], n, operand_a=True)
        weight = self._reader([ins.b for ins in members], n, operand_a=False)
        constants = [self._golden._constants(ins.imm) for ins in members]
        return x, weight, constants

    def _norm(self, group: Group):
        numerics_ = self._numerics
        x, weight, constants = self._norm_inputs(group)
        out, finish = self._writer([ins.dst for ins in group.instructions], group.length)

        def step():
            rows = x()
            scales = [numerics_.norm_scale(total, epsilon_term, constant) for total,
                      (epsilon_term, constant) in zip(numerics_.sums_of_squares(rows), constants)]
            finish(numerics_.apply_scales(numerics_.multiply(rows, weight()), scales, out))
        return step

    def _quant(self, group: Group):
        numerics_, n, pcs = self._numerics, group.length, group.pcs
        scale_arithmetic = numerics_.scales
        if n > self._golden.activations.size or any(
                ins.dst >= len(self._golden.scales) for ins in group.instructions):
            raise ValueError("a quant past the activation buffer or the scale registers")
        x, weight, constants = self._norm_inputs(group)
        width = max([n] + [self._widths.get(pc, 0) for pc in pcs])
        rows = np.zeros((len(pcs), width), np.float32)    # zero past n: see _tmv
        defined = rows[:, :n]
        self._activation_rows.update(zip(pcs, rows))
        self._quant_groups[pcs] = rows
        scales = self._scales

        def step():
            inputs = x()
            largest = numerics_.quantize(inputs, weight(), defined)
            for pc, total, (epsilon_term, constant), peak in zip(
                    pcs, numerics_.sums_of_squares(inputs), constants, largest):
                scales[pc] = scale_arithmetic.multiply(
                    numerics_.norm_scale(total, epsilon_term, constant),
                    scale_arithmetic.from_int(peak))
        return step

    def _tmv(self, group: Group):
        """Columns past a QUANT's length are zero in its row here and stale in the buffer on
        the interpreter; both meet only zero weights (checked), so the sums are equal."""
        golden, plan, members = self._golden, self._plan, group.instructions
        n, beats, flags = group.length, members[0].a, members[0].flags
        matrices = [golden._matrix(ins.imm, n, beats) for ins in members]
        sources = [plan.activation_source[pc] for pc in group.pcs]
        for matrix, source in zip(matrices, sources):
            columns = np.flatnonzero(matrix.any(axis=0))
            needed = int(columns[-1]) + 1 if columns.size else 0
            if source is None:
                self._initial_needed = max(self._initial_needed, needed)
            elif self._plan_length(source) < needed:
                raise ValueError("a tmv reads activations its quant did not define")
        width = matrices[0].shape[1]
        vectors = [(self._initial_activations if s is None else self._activation_rows[s])[:width]
                   for s in sources]
        if len(set(sources)) == 1:
            stacked, vector = np.concatenate(matrices), vectors[0]
            products = lambda: (stacked @ vector).reshape(len(members), n)
        elif tuple(sources) in self._quant_groups:     # one QUANT group's rows, in order
            stacked = np.stack(matrices)
            rows = self._quant_groups[tuple(sources)][:, :width, None]
            products = lambda: np.matmul(stacked, rows)[:, :, 0]
        else:
            stacked = np.stack(matrices)
            products = lambda: np.matmul(stacked, np.stack(vectors)[:, :, None])[:, :, 0]
        argmax = [i for i, _ in enumerate(members)] if flags & Flag.ARGMAX else []
        out, finish = (None, None) if flags & Flag.NO_WRITE else \
            self._writer([ins.dst for ins in members], n)
        scale_of = [self._scale_reader(pc, ins.b) for pc, ins in zip(group.pcs, members)]
        numerics_ = self._numerics

        def step():
            sums = products().astype(np.int64)
            for row in argmax:
                golden.token = int(np.argmax(sums[row]))
            if finish is not None:
                finish(numerics_.apply_scales(sums, [scale() for scale in scale_of], out))
        return step

    def _scale_reader(self, pc: int, register: int):
        golden, source, scales = self._golden, self._plan.scale_source[pc], self._scales
        if register >= len(golden.scales):
            raise ValueError("a tmv reads a scale register that does not exist")
        if source is None:
            return lambda: golden.scales[register]
        return lambda: scales[source]
