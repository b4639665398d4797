"""FOR TESTS ONLY: a memory-only stand-in for the accelerator core, and a board built on it.

:class:`MemoryOnlyCore` implements the core side of
:class:`tern_fpga.hw.core_interface.CoreInterface`
with real memories (one per space, sized by :func:`tern_fpga.contracts.protocol.space_words`), so
that what the host writes reads back, and a trivial "run" that answers ``(token * 31 + 7) % vocab``
after ``run_cycles`` cycles. It runs no program. Writing the last word of the ``PROGRAM`` space
also sets ``memory_status`` to the word's low four bits: a test's stand-in for a weight memory
that reports a fault (an SDRAM that did not initialise). It exists so that the host link (UART, protocol
engine, host driver, virtual board) can be built and tested before the real core exists; the
real core replaces it. :class:`MemoryOnlyBoard` is :class:`tern_fpga.hw.protocol_engine.HostLink`
wired to it: a top level for :class:`tern_fpga.sim.rtl.virtual_board.VirtualBoard`.
"""

from amaranth.hdl import Array, Module, Signal
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from tern_fpga.contracts.params import AcceleratorParameters
from tern_fpga.contracts.protocol import MemorySpace, space_words
from tern_fpga.hw.core_interface import CoreInterface
from tern_fpga.hw.host_link import HostLink

__all__ = ["MemoryOnlyBoard", "MemoryOnlyCore", "stand_in_token"]


def stand_in_token(token: int, vocab: int) -> int:
    """What the stand-in's run answers for ``token``."""
    return (token * 31 + 7) % vocab


class MemoryOnlyCore(wiring.Component):
    """FOR TESTS ONLY: memories behind the core interface, and a fake run.

    Parameters
    ----------
    params : AcceleratorParameters
    vocab : int
        The fake run answers :func:`stand_in_token` ``(token, vocab)``.
    run_cycles : int
        Cycles from a ``run`` transfer to its ``done`` being offered; they are what ``cycles``
        counts. Each run counts as one instruction.

    Members
    -------
    host : ``In(CoreInterface(params))``
    """

    def __init__(self, params: AcceleratorParameters, *, vocab: int = 256, run_cycles: int = 16):
        if not (isinstance(vocab, int) and 1 <= vocab <= 1 << 16):
            raise ValueError(f"vocab must be an integer from 1 to 65536, not {vocab!r}")
        if not (isinstance(run_cycles, int) and run_cycles >= 1):
            raise ValueError(f"run_cycles must be a positive integer, not {run_cycles!r}")
        self._params = params
        self._vocab = vocab
        self._run_cycles = run_cycles
        super().__init__({"host": In(CoreInterface(params))})

    def elaborate(self, platform):
        m = Module()
        host = self.host
        request, response = host.memory_request, host.memory_response
        take = request.valid & request.ready
        # One response register: a new request is taken once the last response is gone.
        m.d.comb += request.ready.eq(~response.valid | response.ready)
        with m.If(response.ready):
            m.d.sync += response.valid.eq(0)
        with m.If(take & ~request.payload.write):
            m.d.sync += response.valid.eq(1)

        space = Signal(3)
        read_data = []
        for index, words in space_words(self._params).items():
            memory = Memory(shape=32, depth=words, init=[])
            m.submodules[f"memory_{index.name.lower()}"] = memory
            write, read = memory.write_port(), memory.read_port()
            selected = take & (request.payload.space == index)
            m.d.comb += [
                write.addr.eq(request.payload.address),
                write.data.eq(request.payload.write_data),
                write.en.eq(selected & request.payload.write),
                read.addr.eq(request.payload.address),
                read.en.eq(selected & ~request.payload.write),
            ]
            read_data.append(read.data)
        with m.If(take):
            m.d.sync += space.eq(request.payload.space)
        fault_address = space_words(self._params)[MemorySpace.PROGRAM] - 1
        with m.If(take & request.payload.write & (request.payload.space == MemorySpace.PROGRAM)
                  & (request.payload.address == fault_address)):
            m.d.sync += host.memory_status.eq(request.payload.write_data[:4])
        m.d.comb += response.payload.eq(Array(read_data)[space])
        self._elaborate_run(m, host)
        return m

    def _elaborate_run(self, m, host):
        token = Signal.like(host.run.payload.token)
        remaining = Signal(range(self._run_cycles + 1))
        m.d.comb += [
            host.run.ready.eq(~host.busy),
            host.done.valid.eq(host.busy & (remaining == 0)),
            host.done.payload.eq((token * 31 + 7) % self._vocab),
        ]
        with m.If(host.run.valid & host.run.ready):
            m.d.sync += [token.eq(host.run.payload.token), remaining.eq(self._run_cycles),
                         host.busy.eq(1)]
        with m.If(host.busy & (remaining != 0)):
            m.d.sync += [remaining.eq(remaining - 1), host.cycles.eq(host.cycles + 1)]
        with m.If(host.done.valid & host.done.ready):
            m.d.sync += [host.busy.eq(0), host.instructions.eq(host.instructions + 1)]


class MemoryOnlyBoard(wiring.Component):
    """FOR TESTS ONLY: :class:`HostLink` and :class:`MemoryOnlyCore`, UART pins outside.

    Parameters
    ----------
    params : AcceleratorParameters
    baud : int
    vocab, run_cycles : int
        See :class:`MemoryOnlyCore`.
    **engine_options
        See :class:`tern_fpga.hw.protocol_engine.ProtocolEngine`.

    Members
    -------
    uart_rx : ``In(1, init=1)``
    uart_tx : ``Out(1, init=1)``
    idle : ``Out(1)``
    """

    uart_rx: In(1, init=1)
    uart_tx: Out(1, init=1)
    idle: Out(1)

    def __init__(self, params: AcceleratorParameters, *, baud: int = 3_000_000,
                 vocab: int = 256, run_cycles: int = 16, **engine_options):
        self._params = params
        self._link = HostLink(params, baud=baud, **engine_options)
        self._core = MemoryOnlyCore(params, vocab=vocab, run_cycles=run_cycles)
        super().__init__()

    @property
    def params(self) -> AcceleratorParameters:
        return self._params

    @property
    def baud(self) -> int:
        return self._link.baud

    def elaborate(self, platform):
        m = Module()
        m.submodules.link = link = self._link
        m.submodules.core = core = self._core
        wiring.connect(m, link.core, core.host)
        m.d.comb += [link.uart_rx.eq(self.uart_rx), self.uart_tx.eq(link.uart_tx),
                     self.idle.eq(link.idle)]
        return m
