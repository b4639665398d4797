"""The dataflow core's sequencer: the program memory, and one run of the program from an entry
to its ``HALT`` issued into the scoreboard an instruction a cycle (``docs/dataflow.md``).

A ``run`` beat (:data:`~tern_fpga.hw.core_interface.run_layout`: ``entry``, ``token``) sets the
token register (``set_token``) and starts reading at ``entry``, ahead of the issue into a FIFO
of :data:`PREFETCH` instructions (the read enable from registers only: the program memory's
output and enable stay out of the scoreboard's paths); the FIFO's head is offered to the
scoreboard while it is not ``HALT``, so a scoreboard that takes one a cycle gets one a cycle,
the first four cycles after the ``run`` beat. At ``HALT`` the
sequencer waits for the core to be ``idle`` (every result written), then sends ``done`` with
the token register. ``cycles`` and ``instructions`` count as
:class:`~tern_fpga.hw.core_interface.CoreInterface` says, and ``busy`` is high from the ``run``
transfer to the ``done`` transfer.

The host reaches the program memory through ``host`` (a
:func:`~tern_fpga.hw.dataflow.host_access.window_signature` of 128-bit words written 32 bits at
a time: an instruction is four of the protocol's ``PROGRAM`` words, lowest bits first); its
reads share the run's read port, so it reads only while no run is in progress
(CoreInterface's rule).
The golden function is :func:`tern_fpga.sim.golden.run_plan.run_instructions`.
"""

from __future__ import annotations

import numpy as np
from amaranth.hdl import Module, Signal, unsigned
from amaranth.lib import fifo, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from tern_fpga.contracts.isa import FIELDS, WORDS_PER_INSTRUCTION, Opcode
from tern_fpga.contracts.params import AcceleratorParameters
from tern_fpga.hw.core_interface import (
    CYCLE_COUNTER_BITS,
    INSTRUCTION_COUNTER_BITS,
    TOKEN_BITS,
    run_layout,
)
from tern_fpga.hw.dataflow.host_access import Window, window_signature
from tern_fpga.hw.dataflow.scoreboard import instruction_layout

__all__ = ["Sequencer", "program_values"]

INSTRUCTION_BITS = 32 * WORDS_PER_INSTRUCTION
#: Instructions read ahead of the one offered (the FIFO's depth).
PREFETCH = 3


def program_values(words) -> list[int]:
    """Program words (``uint32``, four an instruction, as :func:`~tern_fpga.contracts.isa.encode`
    gives them) as the program memory's 128-bit values."""
    rows = np.asarray(words, dtype=np.uint32).reshape(-1, WORDS_PER_INSTRUCTION)
    return [sum(int(word) << (32 * index) for index, word in enumerate(row)) for row in rows]


class Sequencer(wiring.Component):
    """The program memory and the run of a program (module docstring).

    Parameters
    ----------
    params : AcceleratorParameters
        ``program_words`` instructions of memory.
    init : sequence of int, optional
        The program memory's first instructions (128-bit values: :func:`program_values`),
        for simulation; the host writes it otherwise.

    Members
    -------
    run : ``In(stream.Signature(run_layout))``
    done : ``Out(stream.Signature(TOKEN_BITS))``
    instruction : ``Out(stream.Signature(instruction_layout(params)))``, to the scoreboard
    set_token : ``Out(stream.Signature(range(params.embedding_memory_words)))``
    token : ``In(range(params.embedding_memory_words))``, the token register
    idle : ``In(1)``, the core has nothing in flight
    host : ``In(host_access.window_signature(Window(program_words, 128)))``
        The host's reads and writes of the program memory.
    busy : ``Out(1)``; cycles, instructions : ``Out`` (counters since reset)
    """

    def __init__(self, params: AcceleratorParameters, *, init=()):
        if not isinstance(params, AcceleratorParameters):
            raise TypeError(f"params must be an AcceleratorParameters, not {params!r}")
        if len(init) > params.program_words:
            raise ValueError(f"{len(init)} instructions do not fit the preset's program "
                             f"memory of {params.program_words}; use a larger preset")
        self._params, self._init = params, list(init)
        tokens = range(params.embedding_memory_words)
        super().__init__({
            "run": In(stream.Signature(run_layout)),
            "done": Out(stream.Signature(TOKEN_BITS)),
            "instruction": Out(stream.Signature(instruction_layout(params))),
            "set_token": Out(stream.Signature(tokens)),
            "token": In(tokens),
            "idle": In(1),
            "host": In(window_signature(Window(params.program_words, INSTRUCTION_BITS))),
            "busy": Out(1),
            "cycles": Out(CYCLE_COUNTER_BITS),
            "instructions": Out(INSTRUCTION_COUNTER_BITS),
        })

    def elaborate(self, platform):
        params = self._params
        m = Module()
        m.submodules.program = program = Memory(
            shape=unsigned(INSTRUCTION_BITS), depth=params.program_words, init=self._init)
        read = program.read_port()
        write = program.write_port(granularity=32)
        m.d.comb += [write.addr.eq(self.host.addr), write.data.eq(self.host.write_data),
                     write.en.eq(self.host.write_en), self.host.read_data.eq(read.data)]

        # The program is read ahead into a FIFO, from the entry until a HALT is read: the read
        # enable comes from registers only (the FIFO's room, counted with the read in flight),
        # and the instruction offered is the FIFO's registered output, so neither the program
        # memory's output nor its enable is in a path with the scoreboard's ready.
        m.submodules.fetched = fetched = fifo.SyncFIFOBuffered(width=INSTRUCTION_BITS,
                                                                depth=PREFETCH)
        fetch = Signal(range(params.program_words))    # the next address to read
        fetching = Signal()
        in_flight = Signal()                           # a word at the read port's output
        room = fetched.level + in_flight < PREFETCH
        read_ahead = fetching & room

        def is_halt(word):
            low, width = FIELDS["opcode"]
            return word[low:low + width] == Opcode.HALT

        arrived = in_flight & fetching                 # words after a HALT are dropped
        m.d.comb += [fetched.w_en.eq(arrived), fetched.w_data.eq(read.data),
                     read.addr.eq(fetch), read.en.eq(read_ahead)]
        m.d.sync += in_flight.eq(read_ahead)
        with m.If(read_ahead):
            m.d.sync += fetch.eq(fetch + 1)
        with m.If(arrived & is_halt(read.data)):
            m.d.sync += fetching.eq(0)

        head = fetched.r_data
        fields = {name: head[low:low + width] for name, (low, width) in FIELDS.items()}
        halt = fetched.r_rdy & is_halt(head)
        m.d.comb += [self.instruction.payload[name].eq(value) for name, value in fields.items()]
        taken = self.instruction.valid & self.instruction.ready
        with m.If(taken):
            m.d.sync += self.instructions.eq(self.instructions + 1)
        with m.If(self.busy):
            m.d.sync += self.cycles.eq(self.cycles + 1)

        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += [self.run.ready.eq(self.set_token.ready),
                             self.set_token.valid.eq(self.run.valid),
                             self.set_token.payload.eq(self.run.payload.token)]
                with m.If(self.host.read_en):
                    m.d.comb += [read.addr.eq(self.host.addr), read.en.eq(1)]
                with m.If(self.run.valid & self.run.ready):
                    m.d.sync += [fetch.eq(self.run.payload.entry), fetching.eq(1),
                                 self.busy.eq(1)]
                    m.next = "ISSUE"
            with m.State("ISSUE"):
                m.d.comb += [self.instruction.valid.eq(fetched.r_rdy & ~halt),
                             fetched.r_en.eq(taken | halt)]
                # The scoreboard's ``idle`` is low from the cycle after it takes an
                # instruction; HALT reaches the FIFO's output a cycle after the last one is
                # taken at the soonest, so ``idle`` counts it when DRAIN looks.
                with m.If(halt):
                    m.next = "DRAIN"
            with m.State("DRAIN"), m.If(self.idle):
                m.next = "DONE"
            with m.State("DONE"):
                m.d.comb += [self.done.valid.eq(1), self.done.payload.eq(self.token)]
                with m.If(self.done.ready):
                    m.d.sync += self.busy.eq(0)
                    m.next = "IDLE"
        return m
