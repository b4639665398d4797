"""The issue stage and scoreboard of the dataflow core (issue 15, ``docs/dataflow.md``): one
instruction stream in, three units out (the matrix pipe, the element-wise unit, the norm unit),
and beat by beat permission to go, so that independent work overlaps while every read sees the
value the sequential program (the golden model) gives it.

:class:`Scoreboard` keeps up to ``slots`` instructions in flight. An instruction is issued to its
unit's command stream when a slot is free; the slot is freed once the unit has reported its last
read and its last write. Each unit runs its instructions in program order and reports progress
with pulses (:class:`UnitPort`): ``read`` when it takes a beat of ``V`` elements (a TMV: when
it starts), ``write`` when a beat's ``V`` results are in the vector memory (or, for QUANT, in
the activation buffer), and the matrix pipe's ``release`` when a TMV has read its last
activation word (the buffer and the scale register are free again). ``go`` says
that the unit's next beat may be taken: no older instruction in flight

- has still to write an element the beat reads (read after write),
- has still to read, in its last pass, an element the beat writes (write after read),
- has still to write an element the beat writes (write after write);

a TMV starts once every older QUANT has written its activations (the buffer it reads; its scale
follows, :class:`~tern_fpga.hw.dataflow.matrix_reader.MatrixReader`), and QUANT's second pass
(which writes a buffer and a scale register) waits for older TMVs that read that buffer or that
register (released by the matrix reader once the TMV has its scale). Element-wise beats therefore stream
behind the instruction that produces their operands, element by element, as
:func:`tern_fpga.explore.dataflow_schedule.dataflow_schedule` assumes. The oldest instruction in
flight never waits for another, so the program cannot deadlock.

Regions: the ISA's rule (``docs/isa.md``; :func:`tern_fpga.sim.golden.run_plan.vector_regions`)
is that every two vector ranges of a program are the same words or share none. So when an
instruction is issued, its slot finds once, by comparing first words, whether it reads a region
an older slot writes, writes one it writes, or writes one it reads (three bits a pair); after
that only counts matter, since two instructions on one region walk it from the same word: the
older one's *lead*, its words written (or read, in its last pass) less the younger's next beat,
a small counter a pair that saturates (:attr:`_Slot.LEAD_LIMIT`: a larger lead is
under-counted, which can only make the younger wait).

Timing: an input register holds the instruction and its decoding, which every free slot loads;
registers a pair of slots hold whether the older one's pending work meets the younger's next 1,
2 or 3 beats (its lead below 1, 2, 3), counting the older one's write of this cycle already;
``go`` is a register of those. So ``go`` lags the progress it reads by two cycles, and picks the prefix that covers the
beats the unit has taken meanwhile: a unit streams behind its producer two cycles after each
write, at full rate. With an instruction's last beat ``go`` turns to the unit's next
instruction (its first beat, computed beside), so instructions follow with no bubble; a slot
just issued, or NORM's or QUANT's second pass, waits a cycle for its hazards to be computed.
Each unit's current, next and writing slot are one-hot registers.

What a beat reads and writes: operand ``a`` (and ``b`` for MUL, ADD, SUB, NORM and QUANT) at
the beat's offset, ``dst`` at the same offset in the last pass (NORM and the element-wise
operations); a TMV writes rows ``dst ...`` in order, ``V`` a ``write``. The ISA has no partial
overlap of ``dst`` and a source (``docs/isa.md``), so an instruction never waits for itself.
"""

from __future__ import annotations

import enum

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from tern_fpga.contracts.isa import FIELDS, SCALE_REGISTERS, Flag, Opcode
from tern_fpga.contracts.params import AcceleratorParameters

__all__ = ["Scoreboard", "Unit", "UnitPort", "instruction_layout"]


class Unit(enum.IntEnum):
    MATRIX = 0
    ELEMENTWISE = 1
    NORM = 2


def instruction_layout(params: AcceleratorParameters) -> data.StructLayout:
    """An instruction as the scoreboard and the units take it: the ISA's fields, ``dst``, ``a``
    and ``b`` as wide as a vector-memory address (a TMV's ``a`` is its beats a row, at most
    ``max_features``; QUANT's ``dst`` and TMV's ``b`` a scale register)."""
    address = _address_range(params)
    return data.StructLayout({
        "opcode": Opcode,
        "dst": address,
        "a": address,
        "b": address,
        "length": range(1, 1 << FIELDS["length"][1]),
        "imm": FIELDS["imm"][1],
        "flags": FIELDS["flags"][1],
    })


def _address_range(params: AcceleratorParameters) -> range:
    return range(max(params.vector_memory_words, params.max_features + 1, SCALE_REGISTERS))


def _decoded_layout(params: AcceleratorParameters) -> data.StructLayout:
    """What a slot takes from an instruction: its unit, what it reads and writes, its
    regions' first words, its beats, its scale register."""
    words = range(-(-_address_range(params).stop // params.vector_lanes))
    return data.StructLayout({
        "unit": Unit, "uses_a": 1, "uses_b": 1, "writes": 1, "is_tmv": 1, "is_quant": 1,
        "two_pass": 1, "beats": range(words.stop + 1), "scale": range(SCALE_REGISTERS),
        **{f"{name}_start": words for name in _Slot.OPERANDS},
    })


def _decode(instruction, params: AcceleratorParameters) -> dict:
    """:func:`_decoded_layout`'s fields of ``instruction`` (an ``instruction_layout`` value)."""
    opcode, bits = instruction.opcode, params.vector_lanes.bit_length() - 1
    unary = (opcode == Opcode.SIGMOID) | (opcode == Opcode.SILU) | (opcode == Opcode.ONE_MINUS)
    binary = (opcode == Opcode.MUL) | (opcode == Opcode.ADD) | (opcode == Opcode.SUB)
    norm = (opcode == Opcode.NORM) | (opcode == Opcode.QUANT)
    is_tmv, is_quant = opcode == Opcode.TMV, opcode == Opcode.QUANT
    return {
        "unit": Mux(is_tmv, Unit.MATRIX, Mux(norm, Unit.NORM, Unit.ELEMENTWISE)),
        "uses_a": unary | binary | norm, "uses_b": binary | norm,
        "writes": ~is_quant & ~(is_tmv & (instruction.flags & Flag.NO_WRITE).any()),
        "is_tmv": is_tmv, "is_quant": is_quant, "two_pass": norm,
        "beats": (instruction.length + (1 << bits) - 1) >> bits,
        "scale": Mux(is_tmv, instruction.b, instruction.dst),
        **{f"{name}_start": instruction[name] >> bits for name in _Slot.OPERANDS},
    }


class UnitPort(wiring.Signature):
    """The scoreboard's side of one unit: ``command`` (the unit's instructions in program
    order), ``go`` (its next beat may be taken), ``read`` and ``write`` (pulses: a beat taken,
    a beat's results written), ``release`` (a pulse: the matrix pipe's TMV has read its last
    activation word; the other units leave it low), ``buffer`` (with ``command``: the
    activation buffer that a TMV reads, a QUANT fills; the QUANTs issued alternate between
    the two, the first filling buffer 1)."""

    def __init__(self, params: AcceleratorParameters):
        super().__init__({
            "command": Out(stream.Signature(instruction_layout(params))),
            "go": Out(1),
            "read": In(1),
            "write": In(1),
            "release": In(1),
            "buffer": Out(1),
        })


class Scoreboard(wiring.Component):
    """In-order issue to three units and the hazard checks between their beats.

    Parameters
    ----------
    params : tern_fpga.contracts.params.AcceleratorParameters
    slots : int
        Instructions in flight at most (2 or more).

    Attributes
    ----------
    instruction : ``In(stream.Signature(instruction_layout(params)))``
        The program, HALT excluded; ``dst``, ``a`` and ``b`` multiples of ``V`` (TMV's ``a``,
        QUANT's ``dst`` and TMV's ``b`` excepted) and every two vector ranges the same words
        or none (``docs/isa.md``), else the checks are undefined.
    matrix, elementwise, norm : ``Out(UnitPort(params))``
    idle : ``Out(1)``
        No instruction staged (taken from ``instruction``, not yet issued) or in flight.
    """

    #: Beats from a unit's next one that the hazards cover: the two it may take while ``go`` is
    #: computed, and the one it takes.
    LOOKAHEAD = 3

    def __init__(self, params: AcceleratorParameters, *, slots: int = 6):
        if not (isinstance(slots, int) and slots >= 2):
            raise ValueError(f"a scoreboard needs 2 or more slots to overlap work, not "
                             f"{slots!r}")
        self._params, self._slots = params, slots
        super().__init__({
            "instruction": In(stream.Signature(instruction_layout(params))),
            **{unit.name.lower(): Out(UnitPort(params)) for unit in Unit},
            "idle": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        params = self._params
        ports = [getattr(self, unit.name.lower()) for unit in Unit]
        slots = [_Slot(m, index, params, self._slots) for index in range(self._slots)]

        # An input register: the instruction and what the slots take from it, decoded; so a
        # slot's relations are compares of registers only.
        staged = Signal(instruction_layout(params), name="staged_instruction")
        decoded = Signal(_decoded_layout(params), name="staged_decoded")
        staged_valid = Signal()
        # Issue: the lowest free slot takes the staged instruction when its unit takes it.
        free = [~slot.valid for slot in slots]
        chosen = [free[index] & ~Cat(free[:index]).any() for index in range(self._slots)]
        unit = decoded.unit
        has_room = Cat(free).any()
        for index, port in enumerate(ports):
            m.d.comb += [port.command.payload.eq(staged),
                         port.command.valid.eq(staged_valid & has_room & (unit == index))]
        quant_parity = Signal()
        for port in ports:
            m.d.comb += port.buffer.eq(quant_parity ^ decoded.is_quant)
        issued = staged_valid & has_room & Cat(port.command.ready & (unit == index)
                                               for index, port in enumerate(ports)).any()
        m.d.comb += [self.instruction.ready.eq(~staged_valid | issued),
                     self.idle.eq(~staged_valid & ~Cat(slot.valid for slot in slots).any())]
        with m.If(self.instruction.valid & self.instruction.ready):
            m.d.sync += [staged_valid.eq(1), staged.eq(self.instruction.payload),
                         *(decoded[name].eq(value) for name, value
                           in _decode(self.instruction.payload, params).items())]
        with m.Elif(issued):
            m.d.sync += staged_valid.eq(0)
        with m.If(issued & decoded.is_quant):
            m.d.sync += quant_parity.eq(~quant_parity)
        valid_now = Cat(slot.valid for slot in slots)
        for slot, take in zip(slots, chosen):
            # Every free slot loads the staged instruction; the chosen one keeps it.
            slot.issue(m, ~slot.valid, issued & take, decoded, quant_parity, valid_now, slots)
            # The slot's new instruction is younger than every other.
            for other in slots:
                if other is not slot:
                    with m.If(issued & take):
                        m.d.sync += other.older[slot.index].eq(0)

        # Registers a pair: the older slot's pending work meets the younger's next beats.
        hazards = [self._hazards(m, slot, slots) for slot in slots]
        for slot in slots:
            slot.track_leads(m, slots)

        # Each unit's current slot (its oldest with reads left), the one after it, its writing
        # slot (its oldest with writes left) and its releasing TMV; all in program order.
        for index, port in enumerate(ports):
            name = Unit(index).name.lower()
            ours = [slot.valid & (slot.unit == index) for slot in slots]
            reading = [own & ~slot.read_done for own, slot in zip(ours, slots)]
            current, following = self._current_and_following(
                m, name, slots, reading, port,
                [issued & take & (unit == index) for take in chosen])
            writer = self._writer(m, name, slots, ours, port)
            releaser = _oldest(slots, [own & slot.buffer_busy for own, slot in zip(ours, slots)])
            for slot, is_current, is_writer, is_releaser in zip(slots, current, writer,
                                                                 releaser):
                slot.step(m, port.read & is_current, port.write & is_writer,
                          port.release & is_releaser)
                with m.If(slot.unit == index):
                    m.d.sync += slot.taken_last.eq(port.read & is_current & ~slot.at_pass_end)

            def any_of(members, values, suffix, name=name):
                result = Signal(name=f"{name}_{suffix}")
                m.d.comb += result.eq(Cat(member & value
                                          for member, value in zip(members, values)).any())
                return result
            # The prefix of the current slot's next beats that covers its beats in flight.
            clear = [Mux(slot.taken_last + (port.read & is_current) == 0, ~hazard[0],
                         Mux(slot.taken_last & port.read & is_current, ~hazard[2],
                             ~hazard[1]))
                     for slot, hazard, is_current in zip(slots, hazards, current)]
            go_current = any_of(current, [slot.settled & ok for slot, ok in zip(slots, clear)],
                                "clear")
            go_following = any_of(following, [slot.settled & ~hazard[0]
                                              for slot, hazard in zip(slots, hazards)],
                                  "following_clear")
            last_beat = any_of(current, [slot.at_pass_end for slot in slots], "pass_end")
            instruction_end = any_of(current, [slot.at_pass_end & slot.final_pass
                                               for slot in slots], "instruction_end")
            m.d.sync += port.go.eq(Mux(port.read & last_beat,
                                       instruction_end & go_following, go_current))
        return m

    @staticmethod
    def _current_and_following(m, name, slots, reading, port, new):
        """One-hot registers: the unit's oldest slot with reads left and the one after it.
        They follow the only changes: the current slot's last beat, a slot issued (the
        youngest); so a beat's pulse reaches the slot's registers through one AND."""
        count = len(slots)
        current = Signal(count, name=f"{name}_current")
        following = Signal(count, name=f"{name}_following")
        issued = Cat(new)
        third = Cat(_oldest(slots, [member & ~current[slot.index] & ~following[slot.index]
                                    for member, slot in zip(reading, slots)]))
        done = port.read & Cat(current[slot.index] & slot.at_pass_end & slot.final_pass
                               for slot in slots).any()
        with m.If(done):
            with m.If(following.any()):
                m.d.sync += [current.eq(following),
                             following.eq(Mux(third.any(), third, issued))]
            with m.Else():
                m.d.sync += [current.eq(issued), following.eq(0)]
        with m.Elif(~current.any()):
            m.d.sync += current.eq(issued)
        with m.Elif(~following.any()):
            m.d.sync += following.eq(issued)
        return list(current), list(following)

    @staticmethod
    def _writer(m, name, slots, ours, port):
        """One-hot register: the unit's oldest slot with writes left, so that a write pulse
        reaches the pair registers through one gate. It follows a cycle behind an issue (a
        slot cannot write in the two cycles after its issue) and at once behind a slot's last
        write."""
        writer = Signal(len(slots), name=f"{name}_writer")
        finishing = [port.write & writer[slot.index] & slot.last_write for slot in slots]
        m.d.sync += writer.eq(Cat(_oldest(slots, [
            own & ~slot.write_done & ~done for own, slot, done in zip(ours, slots, finishing)])))
        return list(writer)

    def _hazards(self, m, slot, slots):
        """Per prefix of ``slot``'s next 1 to ``LOOKAHEAD`` beats, whether an older slot's
        pending work meets it (a register a pair, then their OR). The pair's relations (which
        of its regions the older one writes or reads) were found when ``slot`` was issued; here
        only beat counts: the two use a shared region from its first word, so the younger's
        next beats meet the older's pending words when the older has written (read) fewer
        words than the younger's next beat plus their number."""
        prefixes = [[] for _ in range(self.LOOKAHEAD)]
        for other in slots:
            if other is slot:
                continue
            index = other.index
            # The older one still to write a region this one reads or writes now, or to read
            # (in its last pass) the region this one writes now.
            # The older one's write this cycle counts already: the pair register then holds
            # what its register will, so a reader follows a writer a cycle sooner.
            write_done = other.write_done | (other.wrote & other.last_write)
            to_write = ~write_done & (slot.reads_written[index]
                                      | (slot.writes_written[index] & slot.final_pass))
            to_read = ~other.read_done & slot.writes_read[index] & slot.final_pass
            # The activation buffers and the scale registers, whole instructions.
            whole = (slot.is_tmv & other.is_quant & ~write_done) \
                | (slot.is_quant & slot.pass_two & other.buffer_busy
                   & ((other.parity == slot.parity) | (other.scale == slot.scale)))
            for beats, pairs in enumerate(prefixes, 1):
                # A TMV's destination counts whole (its writes cannot pause for a row).
                # The older one's lead (words written or read, less the younger's next beat)
                # against the prefix: small counters.
                lead_written, lead_read = slot.lead_written[index], slot.lead_read[index]
                written_meets = Mux(other.wrote, lead_written < beats - 1,
                                    lead_written < beats)
                # (The read lead stays 0 until the older one's last pass.)
                read_meets = lead_read < beats
                meets = (to_write & (slot.is_tmv | written_meets)) \
                    | (to_read & (slot.is_tmv | read_meets))
                pair = Signal(name=f"hazard_{slot.index}_after_{index}_{beats}")
                m.d.sync += pair.eq(slot.older[index] & other.valid & (whole | meets))
                pairs.append(pair)
        return [Cat(pairs).any() for pairs in prefixes]


def _oldest(slots, members):
    """One-hot: the member slot with no older member."""
    return [member & ~Cat(members[other.index] & slot.older[other.index]
                          for other in slots if other is not slot).any()
            for slot, member in zip(slots, members)]


class _Slot:
    """One instruction in flight: what it is, its regions' first words, its relations to the
    other slots' regions, how far it has got (beats read in this pass, words written); all
    registers."""

    OPERANDS = ("a", "b", "dst")
    LEAD_LIMIT = 15

    def __init__(self, m, index, params, count):
        self.index = index
        self._word_bits = params.vector_lanes.bit_length() - 1
        # A word address; a count of words in a region (one more than its last).
        words = range(-(-_address_range(params).stop // params.vector_lanes))
        counts = range(words.stop + 1)

        def signal(shape, name, **kwargs):
            return Signal(shape, name=f"slot{index}_{name}", reset_less=True, **kwargs)

        self.valid = Signal(name=f"slot{index}_valid")
        self.older = signal(count, "older")
        self.unit = signal(Unit, "unit")
        self.is_tmv, self.is_quant, self.two_pass, self.pass_two = (
            signal(1, name) for name in ("is_tmv", "is_quant", "two_pass", "pass_two"))
        self.uses_a, self.uses_b, self.writes = (signal(1, name)
                                                 for name in ("uses_a", "uses_b", "writes"))
        self.parity = signal(1, "parity")
        self.scale = signal(range(SCALE_REGISTERS), "scale")
        self.read_done, self.write_done, self.buffer_busy = (
            signal(1, name) for name in ("read_done", "write_done", "buffer_busy"))
        # The first word of each operand's region (for the relations of younger slots).
        self.start = {name: signal(words, f"{name}_start") for name in self.OPERANDS}
        # Per older slot (a bit each): this one reads a region it writes; writes a region it
        # writes; writes a region it reads.
        self.reads_written, self.writes_written, self.writes_read = (
            signal(count, name) for name in ("reads_written", "writes_written", "writes_read"))
        self.words = signal(counts, "words")        # words of each operand's region
        self.beat = signal(counts, "beat")          # the next beat of this pass
        # Per other slot: its lead over this one's next beat, in words written and (in its
        # last pass) read; from LEAD_LIMIT on it counts as LEAD_LIMIT (safe: the hazards look
        # at most LOOKAHEAD beats ahead; a lead above the limit is under-counted, so this one
        # may wait where it need not).
        self.lead_written, self.lead_read = (
            [signal(range(_Slot.LEAD_LIMIT + 1), f"{kind}_lead_{other}")
             for other in range(count)] for kind in ("written", "read"))
        self.written = signal(counts, "written")    # words of the destination written
        self.taken_last = signal(1, "taken_last")   # a beat of this pass taken last cycle
        self.wrote = Signal(name=f"slot{index}_wrote")   # its unit's write pulse, for it
        self.took = Signal(name=f"slot{index}_took")     # its unit's read pulse, for it
        self.last_write = signal(1, "last_write")   # the next write is the last
        self.left = signal(counts, "left")          # beats of this pass after the next one
        # The cycle after a slot is issued or starts its second pass, its hazards are still
        # those of its old state.
        self.unsettled = signal(1, "unsettled")
        self.settled = ~self.unsettled
        # Registers (they reach the units' next-instruction choices): the next beat is the
        # pass's last (``left == 0``; a TMV takes one "beat": its start); this pass is the last
        # (``~two_pass | pass_two``).
        self.at_pass_end = signal(1, "at_pass_end")
        self.final_pass = signal(1, "final_pass")
        m.d.sync += self.unsettled.eq(0)
        with m.If(self.valid & self.read_done & self.write_done & ~self.buffer_busy):
            m.d.sync += self.valid.eq(0)

    def issue(self, m, load, take, decoded, quant_parity, valid_now, slots):
        """The staged instruction (``decoded``: :func:`_decoded_layout`) into the slot while it
        is free (``load``: every free slot loads it each cycle, so no choice and no ``ready``
        reaches the slot's registers; the one chosen at issue keeps it), its
        relations to the other ``slots`` (meaningful for those in flight, all older), and the
        slot in flight with ``take``."""
        is_tmv, norm, beats = decoded.is_tmv, decoded.two_pass, decoded.beats
        uses_a, uses_b, writes = decoded.uses_a, decoded.uses_b, decoded.writes
        start = {name: decoded[f"{name}_start"] for name in self.OPERANDS}
        self.loading = load
        with m.If(take):
            m.d.sync += [self.valid.eq(1),
                         self.older.eq(valid_now & ~Const(1 << self.index, len(valid_now)))]
        with m.If(load):
            m.d.sync += [
                self.unit.eq(decoded.unit),
                self.uses_a.eq(uses_a), self.uses_b.eq(uses_b), self.writes.eq(writes),
                self.is_tmv.eq(is_tmv), self.is_quant.eq(decoded.is_quant),
                self.two_pass.eq(norm), self.pass_two.eq(0), self.buffer_busy.eq(is_tmv),
                # A QUANT fills the buffer after the current one; a TMV reads the current one.
                self.parity.eq(quant_parity ^ decoded.is_quant),
                self.scale.eq(decoded.scale),
                self.read_done.eq(0), self.write_done.eq(~writes & ~decoded.is_quant),
                self.words.eq(beats), self.written.eq(0), self.last_write.eq(beats == 1),
                self.beat.eq(0),
                self.left.eq(Mux(is_tmv, 0, beats - 1)),
                self.at_pass_end.eq(is_tmv | (beats == 1)), self.final_pass.eq(~norm),
                self.unsettled.eq(1),
                *(self.start[name].eq(start[name]) for name in self.OPERANDS),
            ]
            # Regions are the same or disjoint (docs/isa.md): one first word says which.
            for other in slots:
                if other is self:
                    continue
                its = other.start
                m.d.sync += [
                    self.reads_written[other.index].eq(other.writes & (
                        (uses_a & (start["a"] == its["dst"]))
                        | (uses_b & (start["b"] == its["dst"])))),
                    self.writes_written[other.index].eq(
                        writes & other.writes & (start["dst"] == its["dst"])),
                    self.writes_read[other.index].eq(writes & (
                        (other.uses_a & (start["dst"] == its["a"]))
                        | (other.uses_b & (start["dst"] == its["b"])))),
                ]

    def track_leads(self, m, slots):
        """The other slots' leads over this one's next beat: set when this one is loaded or
        starts its second pass (from the others' counts), then counted: up with the other's
        write (read in its last pass), down with this one's read."""
        restart = self.took & self.at_pass_end & ~self.final_pass
        limit = self.LEAD_LIMIT

        def counted(value, up, down):
            """``value`` one up (to at most ``limit``), one down (to at least 0) or kept: the
            pulses only choose among precomputed values."""
            return Mux(up & ~down, Mux(value == limit, limit, value + 1),
                       Mux(down & ~up, Mux(value == 0, 0, value - 1), value))
        # This one's read counts down unless it is the first pass's last (the next beat is 0).
        took = self.took & ~restart
        for other in slots:
            if other is self:
                continue
            written, read = self.lead_written[other.index], self.lead_read[other.index]
            # The start from registers only; the pulses of the cycle count as in any other.
            start_written = Mux(other.written >= limit, limit, other.written)
            start_read = Mux(other.final_pass, Mux(other.beat >= limit, limit, other.beat), 0)
            other_read = other.took & other.final_pass
            starting = self.loading | restart
            m.d.sync += [
                written.eq(Mux(starting, counted(start_written, other.wrote, 0),
                               counted(written, other.wrote, took))),
                read.eq(Mux(starting, counted(start_read, other_read, 0),
                            counted(read, other_read, took))),
            ]

    def step(self, m, read, write, release):
        """The unit took a beat (``read``), wrote one (``write``), released its buffer."""
        with m.If(release):
            m.d.sync += self.buffer_busy.eq(0)
        with m.If(read):
            m.d.comb += self.took.eq(1)
            m.d.sync += [self.left.eq(self.left - 1), self.at_pass_end.eq(self.left == 1),
                         self.beat.eq(self.beat + 1)]
            with m.If(self.at_pass_end):
                with m.If(self.final_pass):
                    m.d.sync += self.read_done.eq(1)
                with m.Else():
                    # The second pass from the first word again.
                    m.d.sync += [self.pass_two.eq(1), self.final_pass.eq(1),
                                 self.left.eq(self.words - 1),
                                 self.at_pass_end.eq(self.words == 1),
                                 self.unsettled.eq(1), self.beat.eq(0)]
        with m.If(write):
            m.d.comb += self.wrote.eq(1)
            m.d.sync += [self.written.eq(self.written + 1),
                         self.last_write.eq(self.written + 2 == self.words)]
            with m.If(self.last_write):
                m.d.sync += self.write_done.eq(1)
