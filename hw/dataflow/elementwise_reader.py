"""The element-wise unit's operand side in the dataflow core (issue 15, ``docs/dataflow.md``):
the scoreboard's instructions for :class:`~tern_fpga.hw.dataflow.elementwise.ElementwiseUnit`
turned into the unit's commands, its operand beats read from the vector memory (or the
embeddings) as the scoreboard allows, and each command's destination for its
:class:`~tern_fpga.hw.dataflow.vector_writes.ResultWriter`.

:class:`ElementwiseReader` queues up to ``queue`` instructions (the scoreboard may issue the
unit's next ones while it reads one) and reads one at a time. When it takes one it offers the
unit its command (the row operation; ZERO is an EMBED of zeros, shift 0) and the result writer
its first word; it takes the next only when both have been taken. Then, each cycle that the scoreboard's
``go`` is high and the operand FIFOs will have room, it reads a beat: word ``a / V + i`` of the
vector memory on port ``a`` (EMBED: word ``token * length / V + i`` of the embeddings, each
int16 lane sign-extended), and for MUL, ADD and SUB word ``b / V + i`` on port ``b``, and
pulses ``read`` (the scoreboard's). A read port's data comes the cycle after its enable; it
goes into the operand FIFOs, which feed the unit's ``a`` and ``b`` streams (``b`` only for the
binary operations, as the unit takes it).

Vector operands start on a word (``a``, ``b`` and ``dst`` multiples of ``V``: the compiler's
regions are whole words), and EMBED's length is a multiple of ``V``.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from tern_fpga.contracts.isa import BINARY_OPERATIONS, OPERATION_OF_OPCODE, Opcode, RowOperation
from tern_fpga.contracts.params import AcceleratorParameters
from tern_fpga.hw.dataflow.elementwise import command_layout
from tern_fpga.hw.dataflow.pipeline import (
    OPERAND_BEATS,
    InstructionQueue,
    operand_fifo,
    read_ports,
)
from tern_fpga.hw.dataflow.scoreboard import instruction_layout
from tern_fpga.hw.dataflow.vector_writes import destination_layout
from tern_fpga.hw.row_unit import operand_layout

__all__ = ["ElementwiseReader"]


class ElementwiseReader(wiring.Component):
    """Instructions in, the element-wise unit's command and operands out, one beat a cycle.

    Parameters
    ----------
    params : tern_fpga.contracts.params.AcceleratorParameters
    queue : int
        Instructions it holds beside the one it reads (:class:`~.pipeline.InstructionQueue`).

    Members
    -------
    instruction : ``In(stream.Signature(scoreboard.instruction_layout(params)))``
        The scoreboard's element-wise commands (ZERO, EMBED and the row operations).
    go : ``In(1)``; read : ``Out(1)``
        The scoreboard's permission for the next beat, and the pulse of a beat read.
    token : ``In(range(params.embedding_memory_words))``
        The token register, EMBED's row.
    a_addr, a_en : ``Out``; a_data : ``In(V * vector_bits)``
        The vector memory's read port for operand ``a``; ``b_*`` the same for ``b``.
    embedding_addr, embedding_en : ``Out``; embedding_data : ``In(V * embedding_bits)``
    command : ``Out(stream.Signature(elementwise.command_layout(params)))``
    a, b : ``Out(stream.Signature(row_unit.operand_layout(params)))``
    destination : ``Out(stream.Signature(vector_writes.destination_layout(params)))``
    """

    def __init__(self, params: AcceleratorParameters, *, queue: int = 4):
        self._params, self._queue = params, queue
        lanes = params.vector_lanes
        words = params.vector_memory_words // lanes
        super().__init__({
            "instruction": In(stream.Signature(instruction_layout(params))),
            "go": In(1),
            "read": Out(1),
            "token": In(range(params.embedding_memory_words)),
            "a_addr": Out(range(words)), "a_en": Out(1), "a_data": In(lanes * params.vector_bits),
            "b_addr": Out(range(words)), "b_en": Out(1), "b_data": In(lanes * params.vector_bits),
            "embedding_addr": Out(range(params.embedding_memory_words // lanes)),
            "embedding_en": Out(1),
            "embedding_data": In(lanes * params.embedding_bits),
            "command": Out(stream.Signature(command_layout(params))),
            "a": Out(stream.Signature(operand_layout(params))),
            "b": Out(stream.Signature(operand_layout(params))),
            "destination": Out(stream.Signature(destination_layout(params))),
        })

    def read_ports(self, a, b, embedding) -> list:
        """The statements that join the reader to its three memory read ports."""
        return read_ports(self, ("a", "b", "embedding"), (a, b, embedding))

    def elaborate(self, platform):
        m = Module()
        p = self._params
        lanes = p.vector_lanes
        shift = lanes.bit_length() - 1
        queue = InstructionQueue(m, self.instruction, instruction_layout(p), self._queue)
        given = queue.payload

        # The instruction held: its kind, word addresses and beats left.
        loaded = Signal(name="loaded")
        zero = Signal(name="zero")          # ZERO: no read, the operand is 0
        embed = Signal(name="embed")
        binary = Signal(name="binary")
        a_word = Signal.like(self.a_addr, name="a_word")
        b_word = Signal.like(self.b_addr, name="b_word")
        row_word = Signal.like(self.embedding_addr, name="row_word")
        left = Signal(range(p.max_features + 1), name="beats_left")

        # A beat is read only if its data will find a place in the operand FIFOs (``b``'s
        # holds no more than ``a``'s: the unit takes them together).
        in_flight = Signal(name="in_flight")          # a read whose data comes this cycle
        source = Signal(2, name="source")              # 0 vector, 1 embeddings, 2 zeros
        pushes_b = Signal(name="pushes_b")
        embedding_lanes = data.View(data.ArrayLayout(signed(p.embedding_bits), lanes),
                                    self.embedding_data)
        widened = data.View(operand_layout(p), Signal(lanes * p.vector_bits))
        m.d.comb += [widened[lane].eq(embedding_lanes[lane]) for lane in range(lanes)]
        a_fifo = operand_fifo(m, "a_fifo", lanes * p.vector_bits, in_flight,
                              Mux(source == 0, self.a_data,
                                  Mux(source == 1, widened.as_value(), 0)), self.a)
        operand_fifo(m, "b_fifo", lanes * p.vector_bits, pushes_b, self.b_data, self.b)
        room = a_fifo.level + in_flight < OPERAND_BEATS
        fire = loaded & self.go & room
        last = left == 1
        m.d.comb += self.read.eq(fire)

        # Announcing: the unit's command and the writer's destination leave as it is taken.
        announced = ~self.command.valid & ~self.destination.valid
        with m.If(self.command.ready):
            m.d.sync += self.command.valid.eq(0)
        with m.If(self.destination.ready):
            m.d.sync += self.destination.valid.eq(0)
        take = queue.valid & (~loaded | (fire & last)) & announced
        queue.take(m, take)

        opcode = given.opcode
        length = given.length
        with m.If(fire):
            m.d.sync += [left.eq(left - 1), a_word.eq(a_word + 1), b_word.eq(b_word + 1),
                         row_word.eq(row_word + 1)]
            with m.If(last):
                m.d.sync += loaded.eq(0)
        with m.If(take):
            is_zero = opcode == Opcode.ZERO
            is_embed = opcode == Opcode.EMBED
            chosen = RowOperation.EMBED
            for code, row_operation in OPERATION_OF_OPCODE.items():
                chosen = Mux(opcode == code, row_operation, chosen)
            m.d.sync += [
                loaded.eq(1), zero.eq(is_zero), embed.eq(is_embed),
                binary.eq(Cat(opcode == code for code, row_operation
                              in OPERATION_OF_OPCODE.items()
                              if row_operation in BINARY_OPERATIONS).any()),
                a_word.eq(given.a >> shift), b_word.eq(given.b >> shift),
                row_word.eq(self.token * (length >> shift)),
                left.eq((length + lanes - 1) >> shift),
                self.command.valid.eq(1),
                self.command.payload.operation.eq(chosen),
                self.command.payload.length.eq(length),
                self.command.payload.shift.eq(Mux(is_embed, given.imm, 0)),
                self.destination.valid.eq(1),
                self.destination.payload.word.eq(given.dst >> shift),
                self.destination.payload.length.eq(length),
                self.destination.payload.to_memory.eq(1),
            ]

        # The reads; the data a cycle later into the FIFOs.
        m.d.comb += [self.a_addr.eq(a_word), self.a_en.eq(fire & ~zero & ~embed),
                     self.b_addr.eq(b_word), self.b_en.eq(fire & binary),
                     self.embedding_addr.eq(row_word), self.embedding_en.eq(fire & embed)]
        m.d.sync += [in_flight.eq(fire), source.eq(Mux(zero, 2, Mux(embed, 1, 0))),
                     pushes_b.eq(fire & binary)]
        return m

