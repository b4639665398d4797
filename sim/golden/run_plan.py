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

import itertools
from dataclasses import dataclass

import numpy as np

from tern_fpga.contracts.isa import Flag, Instruction, Opcode

__all__ = ["Group", "RunPlan", "memory_ranges", "plan_run", "run_instructions", "step_instructions",
           "vector_regions"]

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


def step_instructions(compiled) -> list[Instruction]:
    """A compiled model's ``step`` entry (its ``program`` from ``entry_points["step"]``) up
    to its HALT.

    Raises
    ------
    ValueError
        If no HALT follows the entry.
    """
    return run_instructions(compiled.program, compiled.entry_points["step"])


def run_instructions(program: list[Instruction], entry: int) -> list[Instruction]:
    """The instructions a run of ``program`` from ``entry`` executes: those up to its first
    HALT (the dataflow core's sequencer issues exactly these, ``hw/dataflow/sequencer.py``).

    Raises
    ------
    ValueError
        If no HALT follows ``entry``.
    """
    for index in range(entry, len(program)):
        if program[index].opcode == Opcode.HALT:
            return list(program[entry:index])
    raise ValueError(f"no HALT follows entry {entry}: the run would not end; end the program "
                     f"with a HALT")


def memory_ranges(ins: Instruction) -> tuple[list[range], list[range]]:
    """The vector-memory ranges ``ins`` reads and writes."""
    op, n = ins.opcode, ins.length
    reads = [range(ins.a, ins.a + n)] if op in _READS_A else []
    if op in _READS_B:
        reads.append(range(ins.b, ins.b + n))
    writes_memory = op != Opcode.QUANT and not (op == Opcode.TMV and ins.flags & Flag.NO_WRITE)
    return reads, [range(ins.dst, ins.dst + n)] if writes_memory else []


def vector_regions(instructions, lanes: int) -> list[range]:
    """The vector-memory *regions* of ``instructions``: the ranges they read and write, in
    words of ``lanes`` elements (a range rounded out to whole words), sorted. Any two of those
    must be the same words or share none (the compiler uses each buffer whole); the dataflow
    core's scoreboard relies on it (``docs/isa.md``).

    Raises
    ------
    ValueError
        Naming the first two instructions whose ranges share some words but not all.
    """
    regions = {}        # start word -> (end word, index of an instruction using it)
    for index, instruction in enumerate(instructions):
        for span in (span for spans in memory_ranges(instruction) for span in spans if span):
            start, end = span.start // lanes, -(-span.stop // lanes)
            known = regions.setdefault(start, (end, index))
            if known[0] != end:
                _overlap_error(instructions, known[1], index, lanes)
    ordered = sorted(regions.items())
    for (_, (end, index)), (next_start, (_, next_index)) in itertools.pairwise(ordered):
        if end > next_start:
            _overlap_error(instructions, index, next_index, lanes)
    return [range(start, end) for start, (end, _) in ordered]


def _overlap_error(instructions, one, other, lanes):
    first, second = sorted((one, other))
    raise ValueError(
        f"instructions {first} ({instructions[first]}) and {second} ({instructions[second]}) "
        f"use vector ranges that share some words of {lanes} elements but not all; the "
        f"dataflow core needs every two ranges to be the same or disjoint: give each buffer "
        f"its own aligned region and use it whole")


def _token_use(ins: Instruction) -> tuple[bool, bool]:
    """Whether ``ins`` reads and whether it writes the token register."""
    return ins.opcode == Opcode.EMBED, ins.opcode == Opcode.TMV and bool(ins.flags & Flag.ARGMAX)


def plan_run(program: list[Instruction], entry: int) -> RunPlan:
    """Plan the run of ``program`` from ``entry`` to its first HALT.

    The caller has checked that a HALT follows ``entry``. For each word of the vector memory
    (and for the token register) the plan keeps the highest level that has read it and the
    highest that has written it: an instruction goes one level above every one it conflicts
    with.
    """
    run = list(range(entry, next(pc for pc in range(entry, len(program))
                                 if program[pc].opcode == Opcode.HALT)))
    ends = [span.stop for pc in run for spans in memory_ranges(program[pc]) for span in spans]
    read_level = np.full(max(ends, default=0), -1)
    write_level = np.full(max(ends, default=0), -1)
    token_read_level = token_write_level = -1
    levels, activation_source, scale_source, last_quant, last_scale_write = {}, {}, {}, None, {}
    for pc in run:
        ins = program[pc]
        reads, writes = memory_ranges(ins)
        reads_token, writes_token = _token_use(ins)
        after = [write_level[r.start:r.stop].max(initial=-1) for r in reads]
        after += [max(write_level[w.start:w.stop].max(initial=-1),
                      read_level[w.start:w.stop].max(initial=-1)) for w in writes]
        after += [token_write_level] if reads_token else []
        after += [token_write_level, token_read_level] if writes_token else []
        if ins.opcode == Opcode.TMV:
            activation_source[pc] = last_quant
            scale_source[pc] = last_scale_write.get(ins.b)
            after += [levels[source] for source in (activation_source[pc], scale_source[pc])
                      if source is not None]
        level = levels[pc] = int(max(after, default=-1)) + 1
        for r in reads:
            np.maximum(read_level[r.start:r.stop], level, out=read_level[r.start:r.stop])
        for w in writes:
            np.maximum(write_level[w.start:w.stop], level, out=write_level[w.start:w.stop])
        token_read_level = max(token_read_level, level) if reads_token else token_read_level
        token_write_level = max(token_write_level, level) if writes_token else token_write_level
        if ins.opcode == Opcode.QUANT:
            last_quant, last_scale_write[ins.dst] = pc, pc
    batches: dict[tuple, list[int]] = {}
    for pc in run:
        ins = program[pc]
        kind = (levels[pc], ins.opcode, ins.length, ins.flags,
                ins.a if ins.opcode == Opcode.TMV else 0)
        batches.setdefault(kind, []).append(pc)
    groups = [Group(tuple(members), tuple(program[pc] for pc in members))
              for _, members in sorted(batches.items(), key=lambda item: item[0][0])]
    quants = [pc for pc in run if program[pc].opcode == Opcode.QUANT]
    return RunPlan(groups, activation_source, scale_source, quants)
