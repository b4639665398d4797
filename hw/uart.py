"""8N1 UART receiver and transmitter with byte streams and a fractional bit timer.

A bit lasts ``clock_hz / baud`` cycles, rarely an integer (50 MHz / 3 Mbaud = 16.67). An integer
divisor (17) would run 2 % slow and the error would add up over a frame to a fifth of a bit at
the stop bit. The :class:`BitTimer` instead keeps the bit period as a fixed-point number with
:data:`FRACTION_BITS` fractional bits and schedules each bit edge from the previous *ideal* one,
so edges never drift: each lies within one clock cycle of its ideal time, and the average rate is
off by at most ``2**-(FRACTION_BITS + 1)`` cycles a bit (:func:`baud_error`). At 50 MHz and
3 Mbaud that is 0.008 % (edges within 6 % of a bit); at 48 MHz (16 cycles) and 60 MHz (20) the
rate is exact. At least :data:`MIN_CYCLES_PER_BIT` cycles a bit are needed.

The receiver samples each bit once, in its middle: it validates the start bit half a bit after
the falling edge (a shorter low pulse is a glitch and is ignored), samples the 8 data bits least
significant first, and checks the stop bit; a low stop bit raises ``framing_error`` for a cycle,
drops the byte, and the receiver waits for the line to go high again (a break) before it looks
for the next start bit.
"""

# No ``from __future__ import annotations``: Amaranth reads the signature annotations.
from amaranth.hdl import Cat, Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["FRACTION_BITS", "MIN_CYCLES_PER_BIT", "BitTimer", "UartRx", "UartTx", "baud_error",
           "bit_period"]

FRACTION_BITS = 8
MIN_CYCLES_PER_BIT = 4


def bit_period(clock_hz: int, baud: int) -> int:
    """The bit period in cycles as a fixed-point integer with :data:`FRACTION_BITS` fractional
    bits.

    Raises
    ------
    ValueError
        If either rate is not a positive integer, or a bit would last fewer than
        :data:`MIN_CYCLES_PER_BIT` cycles.
    """
    for name, value in (("clock_hz", clock_hz), ("baud", baud)):
        if not (isinstance(value, int) and value > 0):
            raise ValueError(f"{name} must be a positive integer, not {value!r}")
    if clock_hz < MIN_CYCLES_PER_BIT * baud:
        raise ValueError(
            f"baud {baud} is too fast for a {clock_hz} Hz clock: a bit must last at least "
            f"{MIN_CYCLES_PER_BIT} cycles; use at most {clock_hz // MIN_CYCLES_PER_BIT} baud")
    return round(clock_hz * (1 << FRACTION_BITS) / baud)


def baud_error(clock_hz: int, baud: int) -> float:
    """Relative error of the average bit rate, ``(actual - wanted) / wanted``."""
    return clock_hz * (1 << FRACTION_BITS) / bit_period(clock_hz, baud) / baud - 1


class BitTimer(wiring.Component):
    """Ticks once per bit period, the first tick ``first`` periods after ``start``.

    Members
    -------
    start : ``In(1)``
        Restart the timer; the first tick follows ``first`` periods later.
    tick : ``Out(1)``
        High for one cycle at each (scheduled) bit edge or sample point.
    """

    start: In(1)
    tick: Out(1)

    def __init__(self, period: int, first: float = 1.0):
        self._period = period
        self._first = round(period * first)
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        one = 1 << FRACTION_BITS
        # Time left to the next edge, minus one cycle; an edge falls in this cycle when it is
        # below one cycle, and the next edge is then scheduled from this ideal one.
        remaining = Signal(range(self._period + one + 1))
        m.d.comb += self.tick.eq(~self.start & (remaining < one))
        with m.If(self.start):
            m.d.sync += remaining.eq(self._first - one)
        with m.Elif(self.tick):
            m.d.sync += remaining.eq(remaining + self._period - one)
        with m.Else():
            m.d.sync += remaining.eq(remaining - one)
        return m


class UartTx(wiring.Component):
    """Sends each byte of ``i`` as 8N1 on ``tx`` (idle high).

    Parameters
    ----------
    clock_hz, baud : int
        See :func:`bit_period`.

    Members
    -------
    i : ``In(stream.Signature(8))``
    tx : ``Out(1, init=1)``
    busy : ``Out(1)``
        High while a byte is on the line.
    """

    def __init__(self, clock_hz: int, baud: int):
        self._period = bit_period(clock_hz, baud)
        super().__init__({
            "i": In(stream.Signature(8)),
            "tx": Out(1, init=1),
            "busy": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.timer = timer = BitTimer(self._period)
        # Stop bit, data LSB first, start bit: shifted out from the low end.
        shift = Signal(10, init=1)
        bits_left = Signal(range(11))
        m.d.comb += [
            self.busy.eq(bits_left != 0),
            self.i.ready.eq(bits_left == 0),
            self.tx.eq(shift[0]),
            timer.start.eq(self.i.valid & self.i.ready),
        ]
        with m.If(self.i.valid & self.i.ready):
            m.d.sync += [shift.eq(Cat(0, self.i.payload, 1)), bits_left.eq(10)]
        with m.Elif(timer.tick & self.busy):
            m.d.sync += [shift.eq(Cat(shift[1:], 1)), bits_left.eq(bits_left - 1)]
        return m


class UartRx(wiring.Component):
    """Receives 8N1 bytes from ``rx`` onto ``o``.

    A byte stays on ``o`` until taken; a byte that completes while the previous one is still
    there replaces it and raises ``overrun`` for a cycle (put a FIFO behind the receiver).

    Parameters
    ----------
    clock_hz, baud : int
        See :func:`bit_period`.

    Members
    -------
    rx : ``In(1, init=1)``
        The line, asynchronous to the clock (it is synchronised here).
    o : ``Out(stream.Signature(8))``
    framing_error : ``Out(1)``
        One cycle high when a byte's stop bit was low (the byte is dropped).
    overrun : ``Out(1)``
        One cycle high when a byte replaced one that was not taken.
    busy : ``Out(1)``
        High from a start bit's falling edge until its frame has been decided.
    """

    def __init__(self, clock_hz: int, baud: int):
        self._period = bit_period(clock_hz, baud)
        super().__init__({
            "rx": In(1, init=1),
            "o": Out(stream.Signature(8)),
            "framing_error": Out(1),
            "overrun": Out(1),
            "busy": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.timer = timer = BitTimer(self._period, first=0.5)
        line = Signal(init=1)
        synchronised = Signal(init=1)
        m.d.sync += [synchronised.eq(self.rx), line.eq(synchronised)]

        data = Signal(8)
        bits_left = Signal(range(9))
        with m.If(self.o.ready):
            m.d.sync += self.o.valid.eq(0)

        with m.FSM():
            with m.State("idle"):
                m.d.comb += timer.start.eq(~line)
                with m.If(~line):
                    m.next = "start"
            with m.State("start"):
                m.d.comb += self.busy.eq(1)
                with m.If(timer.tick):
                    m.d.sync += bits_left.eq(8)
                    # Still low in the middle of the start bit: a real start, not a glitch.
                    with m.If(~line):
                        m.next = "data"
                    with m.Else():
                        m.next = "idle"
            with m.State("data"):
                m.d.comb += self.busy.eq(1)
                with m.If(timer.tick):
                    m.d.sync += [data.eq(Cat(data[1:], line)), bits_left.eq(bits_left - 1)]
                    with m.If(bits_left == 1):
                        m.next = "stop"
            with m.State("stop"):
                m.d.comb += self.busy.eq(1)
                with m.If(timer.tick):
                    with m.If(line):
                        m.d.sync += [self.o.payload.eq(data), self.o.valid.eq(1)]
                        m.d.comb += self.overrun.eq(self.o.valid & ~self.o.ready)
                        m.next = "idle"
                    with m.Else():
                        m.d.comb += self.framing_error.eq(1)
                        m.next = "break"
            with m.State("break"):
                m.d.comb += self.busy.eq(1)
                with m.If(line):
                    m.next = "idle"
        return m
