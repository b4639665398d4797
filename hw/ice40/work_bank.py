"""The iCE40UP5K port's work bank (``docs/boards.md``, the iCEBreaker plan's step 2: "work bank
once, in EBR, both operands read in alternate cycles"): the vector memory's work region
(``vector_work_words`` elements of ``vector_bits``; micro 2,048 x 32 bits) stored once, in one
Amaranth ``Memory`` with one synchronous read port and one write port, which Yosys maps to
``SB_RAM40_4K`` (micro: 16 of the UP5K's 30, each 2,048 x 2 bits, with no logic around them).

Two logical read ports, ``a`` and ``b`` (an element-wise instruction's two operands), share the
one physical read port. Each is a pair of streams: the reader sends element addresses on
``addr`` and takes the words, in the same order, from ``data``. Grant: one read a cycle,
round-robin between the ports that ask (a valid address and room for its word, below): a
register holds the last port served and the other one wins when both ask. So both ports
asking every cycle get one read every two cycles each (a, b, a, b, ...: the element-wise
instructions at half an element a cycle), and one port asking alone gets one a cycle.

A port's word: the EBR gives it the cycle after the address is taken (the EBR's own output
register), and ``data`` offers it in that cycle (``data.payload`` is then the EBR's output). If
it is not taken then, it goes into the port's 32-bit ``held`` register at the end of that
cycle (the next read, of either port, overwrites the EBR's output) and is offered from there
until taken. A port has one word outstanding at most (in the EBR's output or in ``held``): its
address is taken only in a cycle where its ``data`` is empty or being taken (``addr.ready``
depends combinationally on ``data.ready``, so ``data.ready`` must not depend on
``addr.ready``). That is enough for a read a cycle, and the two ports never wait for each other:
a port whose word is not taken holds back only its own addresses.

Writes take the EBR's write port, so they never take a read cycle: ``write`` writes ``data`` at
``addr`` in a cycle where ``en`` is high. A read in the cycle after a write sees its word.

A read and a write of the same address in one cycle: in Amaranth (and its simulator) the read
gets the word from before the write (a read port that is not transparent). The iCE40's EBR does
not define it (Yosys's ``ice40/brams.txt`` declares no read-during-write behaviour between its
ports), so Yosys keeps Amaranth's old word by delaying the writes a cycle and adding a bypass,
50 ``SB_LUT4`` and 77 flip-flops (a transparent port, the new word, costs 39 and 33). The
golden model's sequential order needs the new word when the reading instruction comes after the
writing one (a read after write) and the old one when it comes before (a write after read): no
one behaviour serves both, and the scoreboard lets neither happen (``hw/dataflow/scoreboard.py``:
a beat reads only elements that every older instruction has written, its ``go`` lagging the
write by two cycles, and writes only elements that every older one has read). So a synthesis
of the core runs :data:`UNDEFINED_COLLISION` (``script_after_read``), which tells Yosys that
such a read's word is undefined, and gets the EBR with no logic around it; without it the
design is the same, only larger.

The host's access while the core is idle, a window of 32-bit words as the dataflow
core's (:func:`~tern_fpga.hw.dataflow.host_access.window_signature`): ``host.write_en``
takes the write port from ``write`` (the host wins; the core does not write while idle),
``host.read_en`` takes the read port from ``a`` and ``b`` (neither is granted in that cycle:
a reader asking while the host reads waits) and ``host.read_data`` is the EBR's output, the
word the cycle after ``read_en``, held until the next read.

Yosys 0.70 ``synth_ice40`` (micro at ``V = 1``, after :data:`UNDEFINED_COLLISION`): 16
``SB_RAM40_4K`` (each 2,048 x 2 bits: no address decoding, no output mux; a bank of 1,664
words takes 14 as 256 x 16 bits but 360 ``SB_LUT4``), 154 ``SB_LUT4`` (64 of them the two
ports' ``data`` muxes between the EBR's output and ``held``; 65 the host's window: 89 without
it) and 69 flip-flops (the two ``held`` registers and five control bits); see the test.
"""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from tern_fpga.contracts.params import AcceleratorParameters
from tern_fpga.hw.dataflow.host_access import Window, window_signature

__all__ = ["READ_PORTS", "UNDEFINED_COLLISION", "ReadPortSignature", "WorkBank",
           "WritePortSignature"]

#: The logical read ports, in the grant's index order.
READ_PORTS = ("a", "b")
#: The Yosys command, for ``script_after_read``, that makes the work bank's read of an address
#: written in the same cycle undefined (its ``$memrd_v2`` cell's ``COLLISION_X_MASK``; Amaranth
#: names the memory ``work_bank``, and the pattern also matches the name after ``flatten``), so
#: that ``synth_ice40`` adds no logic to keep the old word (see the module's description).
UNDEFINED_COLLISION = "setparam -set COLLISION_X_MASK 1 t:$memrd_v2 r:MEMID=*work_bank %i"


class ReadPortSignature(wiring.Signature):
    """A logical read port as its reader sees it: addresses out on ``addr``, words in on
    ``data`` (each a stream), in address order."""

    def __init__(self, words: int, bits: int):
        super().__init__({"addr": Out(stream.Signature(range(max(words, 2)))),
                          "data": In(stream.Signature(bits))})


class WritePortSignature(wiring.Signature):
    """A write port as its writer sees it: ``data`` is written at ``addr`` in a cycle where
    ``en`` is high."""

    def __init__(self, words: int, bits: int):
        super().__init__({"addr": Out(range(max(words, 2))), "data": Out(bits), "en": Out(1)})


class WorkBank(wiring.Component):
    """The work bank in EBR with two round-robin read ports, a write port and the host's
    window (see the module's description).

    Parameters
    ----------
    params : AcceleratorParameters
        ``vector_bits`` is the word's width; ``vector_work_words`` the depth, unless ``words``.
    words : int, optional
        The depth, if not ``params.vector_work_words`` (for example the 1,664 elements that the
        micro model uses).

    Members
    -------
    a, b : ``In(ReadPortSignature(words, vector_bits))``
        The logical read ports.
    write : ``In(WritePortSignature(words, vector_bits))``
        The core's writes.
    host : ``In(window_signature(Window(words, vector_bits)))``
        The host's reads and writes, only while the core is idle.

    Raises
    ------
    ValueError
        If ``words`` is below 1.
    """

    def __init__(self, params: AcceleratorParameters, words: int | None = None):
        words = params.vector_work_words if words is None else words
        if words < 1:
            raise ValueError(f"the work bank needs at least one word, not {words}")
        self._words, bits = words, params.vector_bits
        super().__init__({
            **{name: In(ReadPortSignature(words, bits)) for name in READ_PORTS},
            "write": In(WritePortSignature(words, bits)),
            "host": In(window_signature(Window(words, bits, bits))),
        })

    @property
    def words(self) -> int:
        return self._words

    def elaborate(self, platform):
        m = Module()
        bits = len(self.write.data)
        m.submodules.work_bank = memory = Memory(shape=unsigned(bits), depth=self._words,
                                                 init=[])
        write = memory.write_port()
        read = memory.read_port()  # not transparent: a same-address read gets the old word
        m.d.comb += [
            write.addr.eq(Mux(self.host.write_en, self.host.addr, self.write.addr)),
            write.data.eq(Mux(self.host.write_en, self.host.write_data, self.write.data)),
            write.en.eq(self.host.write_en | self.write.en),
            self.host.read_data.eq(read.data),
        ]

        ports = [getattr(self, name) for name in READ_PORTS]
        last_b = Signal(init=1)   # the last port granted was b: a wins when both ask
        asks, grants = [], [Signal(name=f"grant_{name}") for name in READ_PORTS]
        for name, port, grant in zip(READ_PORTS, ports, grants):
            fresh = Signal(name=f"fresh_{name}")        # its word is the EBR's output
            held_valid = Signal(name=f"held_valid_{name}")
            held = Signal(bits, name=f"held_{name}", reset_less=True)
            taken = port.data.valid & port.data.ready
            m.d.comb += [
                port.data.valid.eq(fresh | held_valid),  # never both
                port.data.payload.eq(Mux(held_valid, held, read.data)),
                port.addr.ready.eq(grant),
            ]
            asks.append(port.addr.valid & ~self.host.read_en & (~port.data.valid | taken))
            m.d.sync += fresh.eq(grant)
            with m.If(fresh & ~taken):
                m.d.sync += [held.eq(read.data), held_valid.eq(1)]
            with m.Elif(taken):
                m.d.sync += held_valid.eq(0)
        m.d.comb += [grants[0].eq(asks[0] & (~asks[1] | last_b)),
                     grants[1].eq(asks[1] & (~asks[0] | ~last_b))]
        with m.If(grants[0] | grants[1]):
            m.d.sync += last_b.eq(grants[1])
        m.d.comb += [
            read.addr.eq(Mux(self.host.read_en, self.host.addr,
                             Mux(grants[1], ports[1].addr.payload, ports[0].addr.payload))),
            read.en.eq(self.host.read_en | grants[0] | grants[1]),
        ]
        return m
