"""Behavioural units around :class:`tern_fpga.hw.dataflow.scoreboard.Scoreboard` in Amaranth's
simulator, and the check that matters: every element a beat reads holds the value the
sequential program (the golden model's order) gives it at that instruction.

The memory here holds *versions*, not values: each element (of the vector memory, the two
activation buffers, the scale registers) records the index of the instruction that wrote it
last. :func:`sequential_reads` runs the program in order and says which version each
instruction must read; the units below read and write versions at the times a pipelined unit
would (a beat's reads ``read_delay`` cycles after it is taken, its writes ``latency`` cycles
later, a TMV's rows after a drain), with random pauses, and report with the scoreboard's
``read`` and ``write`` pulses. A wrong version is a hazard the scoreboard let through; a run
that does not finish is a deadlock.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import random

from tern_fpga.contracts.isa import SCALE_REGISTERS, Flag, Instruction, Opcode
from tern_fpga.hw.dataflow.scoreboard import Unit
from tern_fpga.sim.golden.run_plan import memory_ranges, vector_regions

__all__ = ["HarnessTiming", "RunRecord", "random_program", "run_program", "sequential_reads"]

UNARY = (Opcode.SIGMOID, Opcode.SILU, Opcode.ONE_MINUS)
BINARY = (Opcode.MUL, Opcode.ADD, Opcode.SUB)


@dataclasses.dataclass(frozen=True)
class HarnessTiming:
    """Cycles of the behavioural units. ``take_probability``: a unit takes a beat it may take
    with this probability a cycle (1.0: whenever ``go``); ``slow_unit`` takes one with
    ``slow_probability`` instead. A TMV reads ``rows * a`` activation words (``a``: its beats a
    row) and writes its rows spread over them, after ``matrix_drain`` cycles; or, where
    ``matrix_shape`` is given, ``matrix_shape(instruction) = (words, rows_a_group,
    words_a_group)``: it writes a row group's rows ``matrix_drain`` cycles after the group's last
    word (the segmented matrix pipe). ``norm_engine`` and ``quant_engine``: cycles from a NORM's
    or a QUANT's first-pass last beat to its second pass. ``vector_write_ports``: how many
    words the vector memory takes a cycle (``None``: any number); a unit's word that finds them
    taken is written at the next free cycle (as behind an arbiter with a FIFO a unit that never
    fills: the figure is the memory's cost, not a FIFO's), the matrix side's first, since its
    writes are known when a TMV starts."""

    elementwise_latency: int = 14
    norm_engine: int = 12
    quant_engine: int = 12
    matrix_shape: object = None
    norm_tail: int = 5
    matrix_drain: int = 6
    read_delay: int = 2
    take_probability: float = 0.7
    slow_unit: Unit | None = None
    slow_probability: float = 0.2
    command_queue: int = 2
    vector_write_ports: int | None = None


def sequential_reads(program, memory_words: int):
    """Per instruction, the versions it must read: ``{("v", address) | ("act", parity,
    element) | ("scale", register): version}``, and the memory's final versions."""
    vector = [-1] * memory_words
    activations = {0: {}, 1: {}}
    scale = [-1] * SCALE_REGISTERS
    parity, expected = 0, []
    for index, instruction in enumerate(program):
        reads, (read_ranges, write_ranges) = {}, memory_ranges(instruction)
        for span in read_ranges:
            for address in span:
                reads["v", address] = vector[address]
        if instruction.opcode == Opcode.TMV:
            reads["scale", instruction.b] = scale[instruction.b]
            reads.update((("act", parity, element), version)
                         for element, version in activations[parity].items())
        expected.append(reads)
        if instruction.opcode == Opcode.QUANT:
            parity ^= 1
            activations[parity] = dict.fromkeys(range(instruction.length), index)
            scale[instruction.dst] = index
        for span in write_ranges:
            for address in span:
                vector[address] = index
    return expected, vector


def random_program(rng: random.Random, count: int, *, lanes: int, regions: int = 6,
                   region_words: int = 4):
    """``count`` instructions over two sizes of region (``region_words`` words of ``lanes``
    elements and a random smaller one), ``regions`` of each, every range a whole region (the
    ISA's rule, ``docs/isa.md``; the length may end inside the last word), ``dst`` equal to a
    source or clear of them; every opcode but HALT, a QUANT before the first TMV."""
    sizes = [region_words, rng.randrange(1, region_words) if region_words > 1 else 1]
    starts, address = [], 0
    for words in sizes:
        starts.append([address + index * words * lanes for index in range(regions)])
        address += regions * words * lanes
    program, seen_quant = [], False
    for _ in range(count):
        opcode = rng.choice([Opcode.ZERO, Opcode.EMBED, *UNARY, *BINARY, Opcode.NORM,
                             Opcode.QUANT, Opcode.TMV, Opcode.TMV])
        if opcode == Opcode.TMV and not seen_quant:
            opcode = Opcode.QUANT
        size = rng.randrange(len(sizes))
        words = sizes[size]
        length = rng.choice([words * lanes, words * lanes,
                             rng.randrange((words - 1) * lanes + 1, words * lanes + 1)])
        region = [rng.choice(starts[size]) for _ in range(3)]
        dst = rng.choice([region[0], region[1]]) if rng.random() < 0.3 else region[2]
        if opcode == Opcode.QUANT:
            seen_quant = True
            program.append(Instruction(opcode, dst=rng.randrange(4), a=region[0], b=region[1],
                                       length=length))
        elif opcode == Opcode.TMV:
            flags = Flag.NO_WRITE if rng.random() < 0.15 else 0
            program.append(Instruction(opcode, dst=region[2], a=rng.randrange(1, 4),
                                       b=rng.randrange(4), length=length, flags=flags))
        else:
            program.append(Instruction(opcode, dst=dst, a=region[0], b=region[1],
                                       length=length))
    return program


@dataclasses.dataclass
class RunRecord:
    """What a run did: ``cycles``, ``wrong_reads`` (instruction, what, read, expected),
    ``final`` (the vector memory's versions), ``start``/``end`` (per instruction, its first beat and last write)."""

    cycles: int = 0
    wrong_reads: list = dataclasses.field(default_factory=list)
    final: list = dataclasses.field(default_factory=list)
    start: dict = dataclasses.field(default_factory=dict)
    end: dict = dataclasses.field(default_factory=dict)


class _State:
    """The memory of versions, the writes and reads in flight, and the record."""

    def __init__(self, program, memory_words, record):
        self.program, self.record = program, record
        self.expected, _ = sequential_reads(program, memory_words)
        self.vector = [-1] * memory_words
        self.activations = {0: {}, 1: {}}
        self.scale = [-1] * SCALE_REGISTERS
        self.pending = []      # (cycle, action)

    def check(self, index, key, observed):
        expected = self.expected[index].get(key, -1)
        if observed != expected:
            self.record.wrong_reads.append((index, key, observed, expected))

    def read_vector(self, index, elements):
        for span in memory_ranges(self.program[index])[0]:
            for element in elements:
                address = span.start + element
                self.check(index, ("v", address), self.vector[address])

    def read_matrix_inputs(self, index, parity):
        instruction = self.program[index]
        self.check(index, ("scale", instruction.b), self.scale[instruction.b])
        keys = {key for key in self.expected[index] if key[0] == "act"}
        for _, key_parity, element in keys:
            self.check(index, ("act", key_parity, element),
                       self.activations[parity].get(element, -1))

    def fill(self, index, elements, parity, *, last, moment):
        """A QUANT's beat into activation buffer ``parity`` (and, with its last, its scale)."""
        self.activations[parity].update(dict.fromkeys(elements, index))
        if last:
            self.scale[self.program[index].dst] = index
        self.record.end[index] = moment

    def at(self, cycle, action):
        self.pending.append((cycle, action))

    def run_due(self, cycle):
        due = [action for moment, action in self.pending if moment == cycle]
        self.pending = [(moment, action) for moment, action in self.pending if moment != cycle]
        for action in due:
            action()


async def run_program(ctx, dut, program, *, lanes: int, memory_words: int,
                      timing: HarnessTiming = HarnessTiming(), rng: random.Random,
                      limit: int) -> RunRecord:
    """Issue ``program`` to the scoreboard ``dut`` and run the behavioural units until every
    instruction has finished (or ``limit`` cycles: then ``record.cycles == limit``).

    Raises
    ------
    ValueError
        If two of the program's vector ranges share some words but not all (the ISA's rule
        that the scoreboard relies on).
    """
    vector_regions(program, lanes)
    record = RunRecord()
    state = _State(program, memory_words, record)
    ports = {unit: getattr(dut, unit.name.lower()) for unit in Unit}
    queues = {unit: collections.deque() for unit in Unit}
    current = dict.fromkeys(Unit)         # unit -> [index, pass, beat, earliest cycle]
    writes = {unit: collections.deque() for unit in Unit}     # cycles of the write pulses due
    quant_parity = [0]
    parity_of = {}
    for index, instruction in enumerate(program):      # the buffer each QUANT fills, TMV reads
        if instruction.opcode == Opcode.QUANT:
            quant_parity[0] ^= 1
        parity_of[index] = quant_parity[0]
    next_instruction, next_command, finished = 0, 0, 0    # fed to the scoreboard; issued

    def beats(index):
        return -(-program[index].length // lanes)

    port_use = collections.Counter()        # cycle -> vector words written in it

    def write_cycle(unit, cycle, *, vector):
        """The cycle a unit's result due at ``cycle`` is written: after the unit's earlier
        ones (its writes stay in order), at a free port of the vector memory."""
        if writes[unit]:
            cycle = max(cycle, writes[unit][-1] + 1)
        if vector and timing.vector_write_ports is not None:
            while port_use[cycle] >= timing.vector_write_ports:
                cycle += 1
            port_use[cycle] += 1
        return cycle

    def vector_write(index, elements, unit, cycle):
        instruction = program[index]
        cycle = write_cycle(unit, cycle, vector=True)

        def write():
            for element in elements:
                state.vector[instruction.dst + element] = index
            record.end[index] = cycle
        state.at(cycle, write)
        writes[unit].append(cycle)

    for cycle in range(limit):
        state.run_due(cycle)
        # The instruction stream.
        if next_instruction < len(program):
            instruction = program[next_instruction]
            payload = {"opcode": instruction.opcode, "dst": instruction.dst,
                       "a": instruction.a, "b": instruction.b, "length": instruction.length,
                       "imm": instruction.imm, "flags": int(instruction.flags)}
            ctx.set(dut.instruction.payload, payload)
            ctx.set(dut.instruction.valid, 1)
        else:
            ctx.set(dut.instruction.valid, 0)
        for unit, port in ports.items():
            ctx.set(port.command.ready, len(queues[unit]) < timing.command_queue)
            read, release, go = False, False, ctx.get(port.go)
            if current[unit] is None and queues[unit]:
                current[unit] = [queues[unit].popleft(), 0, 0, cycle]
            work = current[unit]
            if work is not None and cycle >= work[3]:
                index, pass_index, beat, _ = work
                instruction = program[index]
                if unit == Unit.MATRIX and pass_index == 1:
                    # The end of the TMV's activation reads (no go needed).
                    release = True
                    state.at(cycle + 1, lambda index=index: state.read_matrix_inputs(
                        index, parity_of[index]))
                    current[unit] = None
                elif go and rng.random() < (timing.slow_probability if unit == timing.slow_unit
                                            else timing.take_probability):
                    read = True
                    record.start.setdefault(index, cycle)
                    if unit == Unit.MATRIX:
                        state.at(cycle + 1, lambda index=index: state.read_matrix_inputs(
                            index, parity_of[index]))
                        words, rows_a_group, group_words = (
                            timing.matrix_shape(instruction) if timing.matrix_shape
                            else (instruction.length * instruction.a, 1, instruction.a))
                        if memory_ranges(instruction)[1]:
                            for word in range(beats(index)):
                                elements = range(word * lanes,
                                                 min(instruction.length, (word + 1) * lanes))
                                group = elements[-1] // rows_a_group
                                vector_write(index, elements, unit,
                                             cycle + (group + 1) * group_words
                                             + timing.matrix_drain)
                        work[1], work[3] = 1, cycle + max(1, words)
                    else:
                        elements = range(beat * lanes,
                                         min(instruction.length, (beat + 1) * lanes))
                        state.at(cycle + timing.read_delay,
                                 lambda index=index, elements=elements:
                                 state.read_vector(index, elements))
                        last_pass = unit == Unit.ELEMENTWISE or pass_index == 1
                        if last_pass and instruction.opcode == Opcode.QUANT:
                            moment = write_cycle(unit, cycle + timing.norm_tail,
                                                 vector=False)
                            state.at(moment, functools.partial(
                                state.fill, index, elements, parity_of[index],
                                last=beat == beats(index) - 1, moment=moment))
                            writes[unit].append(moment)
                        elif last_pass and memory_ranges(instruction)[1]:
                            latency = (timing.elementwise_latency if unit == Unit.ELEMENTWISE
                                       else timing.norm_tail)
                            vector_write(index, elements, unit, cycle + latency)
                        if beat + 1 < beats(index):
                            work[2] += 1
                        elif last_pass:
                            current[unit] = None
                        else:
                            engine = (timing.quant_engine if instruction.opcode == Opcode.QUANT
                                      else timing.norm_engine)
                            work[1], work[2], work[3] = 1, 0, cycle + 1 + engine
            ctx.set(port.read, read)
            ctx.set(port.release, release)
            ctx.set(port.write, bool(writes[unit]) and writes[unit][0] == cycle)
            if writes[unit] and writes[unit][0] == cycle:
                writes[unit].popleft()
        accepted = {unit: ctx.get(port.command.valid) and ctx.get(port.command.ready)
                    for unit, port in ports.items()}
        for unit, taken in accepted.items():
            if taken:
                queues[unit].append(next_command)
                next_command += 1
        if ctx.get(dut.instruction.valid) and ctx.get(dut.instruction.ready):
            next_instruction += 1
        idle = ctx.get(dut.idle)
        await ctx.tick()
        if (next_command == len(program) and idle and not state.pending
                and all(work is None for work in current.values())
                and not any(queues.values())):
            finished = cycle
            break
    record.cycles = finished if finished else limit
    record.final = list(state.vector)
    return record
