"""FOR SIMULATION: the UART transmitter and receiver side by side, one top level for the cocotb
testbench :mod:`tern_fpga.sim.rtl.testbenches.uart` (the board's host link uses the two the
same way, at its own clock and baud)."""

# No ``from __future__ import annotations``: Amaranth reads the signature annotations.
from amaranth.hdl import Module
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from tern_fpga.hw.uart import UartRx, UartTx, bit_period

__all__ = ["UartPair"]


class UartPair(wiring.Component):
    """:class:`~tern_fpga.hw.uart.UartTx` and :class:`~tern_fpga.hw.uart.UartRx` of one rate,
    not connected to each other.

    Parameters
    ----------
    clock_hz, baud : int
        See :func:`tern_fpga.hw.uart.bit_period`.

    Members
    -------
    tx_data : ``In(stream.Signature(8))``
        Bytes to send on ``tx``.
    tx : ``Out(1)``
    rx : ``In(1)``
    rx_data : ``Out(stream.Signature(8))``
        Bytes received on ``rx``.
    framing_error, overrun : ``Out(1)``
        The receiver's.
    """

    def __init__(self, clock_hz: int, baud: int):
        bit_period(clock_hz, baud)  # checks the rates now, with the units' own message
        self._rates = (clock_hz, baud)
        super().__init__({
            "tx_data": In(stream.Signature(8)),
            "tx": Out(1, init=1),
            "rx": In(1, init=1),
            "rx_data": Out(stream.Signature(8)),
            "framing_error": Out(1),
            "overrun": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.transmitter = transmitter = UartTx(*self._rates)
        m.submodules.receiver = receiver = UartRx(*self._rates)
        wiring.connect(m, wiring.flipped(self.tx_data), transmitter.i)
        wiring.connect(m, receiver.o, wiring.flipped(self.rx_data))
        m.d.comb += [
            self.tx.eq(transmitter.tx),
            receiver.rx.eq(self.rx),
            self.framing_error.eq(receiver.framing_error),
            self.overrun.eq(receiver.overrun),
        ]
        return m
