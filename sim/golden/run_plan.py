"""The order in which :mod:`tern_fpga.sim.golden.batched_run` executes one run of a program.

A run is the straight line of instructions from an entry point to the first HALT. Two of its
instructions *depend* on each other when the later one reads what the earlier one writes, or
writes what it reads or writes: a range of the vector memory, or the token register (EMBED
reads it, a TMV with ARGMAX writes it). The activation buffer and the scale registers are
renamed: every QUANT gets a buffer and a scale of its own, and a TMV depends only on the QUANT
whose results it reads (the last one before it, and for the scale the last one that wrote its
register), so the three QUANT-TMV pairs of a recurrent layer's input projections are
independent of each other.

Each instruction is put on the first level after every instruction it depends on; the
instructions of one level that do the same thing on vectors of the same length form a
:class:`Group`, executed as one batch. Executing the groups level by level gives the same
memory, token and final activation and scale state as executing the instructions in program
order (``tests/sim/test_golden_batched_run.py`` checks it on every prefix of a program).
"""

from __future__ import annotations

from dataclasses import dataclass

from tern_fpga.contracts.isa import Flag, Instruction, Opcode

__all__ = ["Group", "RunPlan", "plan_run"]

_READS_A = {Opcode.NORM, Opcode.QUANT, Opcode.SIGMOID, Opcode.SILU, Opcode.MUL, Opcode.ADD,
            Opcode.SUB, Opcode.ONE_MINUS}
_READS_B = {Opcode.NORM, Opcode.QUANT, Opcode.MUL, Opcode.ADD, Opcode.SUB}


@dataclass(frozen=True)
class Group:
    """Instructions of one kind and length that can run as one batch, with their pcs."""

    pcs: tuple[int, ...]
    instructions: tuple[Instruction, ...]

    @property
    def opcode(self) -> Opcode:
        return self.instructions[0].opcode

    @property
    def length(self) -> int:
        return self.instructions[0].length


@dataclass(frozen=True)
class RunPlan:
    """One run: its groups in execution order, and where each TMV's operands come from.

    Members
    -------
    groups : list of Group
    activation_source, scale_source : dict of int to int or None
        For each TMV's pc, the pc of the QUANT whose activations (scale) it reads, or ``None``
        where it reads what the buffer (register) held when the run began.
    quants : list of int
        The pcs of the run's QUANTs in program order.
    """

    groups: list[Group]
    activation_source: dict[int, int | None]
    scale_source: dict[int, int | None]
    quants: list[int]


def _memory_ranges(ins: Instruction) -> tuple[list[range], list[range]]:
    """The vector-memory ranges ``ins`` reads and writes."""
    op, n = ins.opcode, ins.length
    reads = [range(ins.a, ins.a + n)] if op in _READS_A else []
    if op in _READS_B:
        reads.append(range(ins.b, ins.b + n))
    writes_memory = op != Opcode.QUANT and not (op == Opcode.TMV and ins.flags & Flag.NO_WRITE)
    return reads, [range(ins.dst, ins.dst + n)] if writes_memory else []


def _overlap(first: list[range], second: list[range]) -> bool:
    return any(x.start < y.stop and y.start < x.stop for x in first for y in second)


def _token_use(ins: Instruction) -> tuple[bool, bool]:
    """Whether ``ins`` reads and whether it writes the token register."""
    return ins.opcode == Opcode.EMBED, ins.opcode == Opcode.TMV and bool(ins.flags & Flag.ARGMAX)


def _depends(later: Instruction, earlier: Instruction) -> bool:
    reads, writes = _memory_ranges(later)
    earlier_reads, earlier_writes = _memory_ranges(earlier)
    if _overlap(reads, earlier_writes) or _overlap(writes, earlier_reads + earlier_writes):
        return True
    (reads_token, writes_token), (earlier_reads_token, earlier_writes_token) = \
        _token_use(later), _token_use(earlier)
    return (reads_token and earlier_writes_token) or \
        (writes_token and (earlier_reads_token or earlier_writes_token))


def plan_run(program: list[Instruction], entry: int) -> RunPlan:
    """Plan the run of ``program`` from ``entry`` to its first HALT.

    The caller has checked that a HALT follows ``entry``.
    """
    pcs, levels = [], {}
    activation_source, scale_source, last_quant, last_scale_write = {}, {}, None, {}
    pc = entry
    while program[pc].opcode != Opcode.HALT:
        ins, level = program[pc], 0
        for earlier in pcs:
            if _depends(ins, program[earlier]):
                level = max(level, levels[earlier] + 1)
        if ins.opcode == Opcode.TMV:
            activation_source[pc] = last_quant
            scale_source[pc] = last_scale_write.get(ins.b)
            for source in (last_quant, last_scale_write.get(ins.b)):
                if source is not None:
                    level = max(level, levels[source] + 1)
        if ins.opcode == Opcode.QUANT:
            last_quant, last_scale_write[ins.dst] = pc, pc
        pcs.append(pc)
        levels[pc] = level
        pc += 1
    batches: dict[tuple, list[int]] = {}
    for pc in pcs:
        ins = program[pc]
        kind = (levels[pc], ins.opcode, ins.length, ins.flags,
                ins.a if ins.opcode == Opcode.TMV else 0)
        batches.setdefault(kind, []).append(pc)
    groups = [Group(tuple(members), tuple(program[pc] for pc in members))
              for _, members in sorted(batches.items(), key=lambda item: item[0][0])]
    quants = [pc for pc in pcs if program[pc].opcode == Opcode.QUANT]
    return RunPlan(groups, activation_source, scale_source, quants)
