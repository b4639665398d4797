"""The host link a board's top level instantiates next to the core: the protocol engine
(:mod:`tern_fpga.hw.protocol_engine`) behind a UART."""

# No ``from __future__ import annotations``: Amaranth reads the signature annotations.
from amaranth.hdl import Module
from amaranth.lib import fifo, wiring
from amaranth.lib.wiring import In, Out

from tern_fpga.contracts.params import AcceleratorParameters
from tern_fpga.hw.core_interface import CoreInterface
from tern_fpga.hw.protocol_engine import ProtocolEngine
from tern_fpga.hw.uart import UartRx, UartTx

__all__ = ["HostLink"]


class HostLink(wiring.Component):
    """The protocol engine behind a UART: what a board's top level puts next to the core.

    Received bytes pass through a FIFO (the engine stops taking bytes while a frame waits to
    be executed); UART framing errors and overruns are counted in STATUS.

    Parameters
    ----------
    params : AcceleratorParameters
        ``params.clock_hz`` sets the UART's bit timing.
    baud : int
        Line rate (see :func:`tern_fpga.hw.uart.bit_period` for the limits).
    rx_fifo_depth : int
        Bytes the receive FIFO holds.
    **engine_options
        ``build_id``, ``board_id``, ``frame_timeout_cycles``, ``token_history``: see
        :class:`ProtocolEngine`.

    Members
    -------
    uart_rx : ``In(1, init=1)``
    uart_tx : ``Out(1, init=1)``
    core : ``Out(CoreInterface(params))``
    idle : ``Out(1)``
        Nothing in progress anywhere, the core included: a simulator may stop the clock.
    """

    def __init__(self, params: AcceleratorParameters, *, baud: int = 3_000_000,
                 rx_fifo_depth: int = 32, **engine_options):
        self._engine = ProtocolEngine(params, **engine_options)
        self._receiver = UartRx(params.clock_hz, baud)
        self._transmitter = UartTx(params.clock_hz, baud)
        self._baud = baud
        self._rx_fifo_depth = rx_fifo_depth
        super().__init__({
            "uart_rx": In(1, init=1),
            "uart_tx": Out(1, init=1),
            "core": Out(CoreInterface(params)),
            "idle": Out(1),
        })

    @property
    def baud(self) -> int:
        return self._baud

    @property
    def engine(self) -> ProtocolEngine:
        return self._engine

    def elaborate(self, platform):
        m = Module()
        m.submodules.engine = engine = self._engine
        m.submodules.uart_rx = receiver = self._receiver
        m.submodules.uart_tx = transmitter = self._transmitter
        m.submodules.rx_fifo = rx_fifo = fifo.SyncFIFOBuffered(width=8, depth=self._rx_fifo_depth)
        wiring.connect(m, receiver.o, rx_fifo.w_stream)
        wiring.connect(m, rx_fifo.r_stream, engine.rx)
        wiring.connect(m, engine.tx, transmitter.i)
        wiring.connect(m, engine.core, wiring.flipped(self.core))
        m.d.comb += [
            receiver.rx.eq(self.uart_rx),
            self.uart_tx.eq(transmitter.tx),
            engine.uart_error.eq(receiver.framing_error | receiver.overrun),
            self.idle.eq(engine.idle & ~receiver.busy & ~receiver.o.valid & ~rx_fifo.r_rdy
                         & ~transmitter.busy & ~self.core.busy),
        ]
        return m
