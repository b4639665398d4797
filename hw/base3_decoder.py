"""Base-3 weight decoder: one byte of five ternary weights in, their five 2-bit codes out.

A ``.tern`` export may store the weight image in base-3 (``byte = sum((w_i + 1) * 3**i)``,
1.6 bits per weight, see :mod:`tern_fpga.contracts.packing`); a loader with this decoder can write
such bytes into the weight memory's 2-bit code (``00`` = 0, ``01`` = +1, ``11`` = -1) without a host
expanding them first. The golden model is :func:`tern_fpga.sim.golden.base3.decode_base3_bytes`.

The digits are found from the most significant one down, each by two comparisons and a
subtraction of a constant (restoring division by 3**k with a two-bit quotient): no multiplier
and no 243-entry table.
"""

from amaranth.hdl import Module, Mux, Signal, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["Base3Decoder"]

DIGITS = 5


class Base3Decoder(wiring.Component):
    """Combinational decoder of one base-3 byte into five 2-bit weight codes.

    Members
    -------
    byte : ``In(8)``
        ``sum((w_i + 1) * 3**i for i in range(5))`` for weights ``w_i`` in -1, 0, +1.
    codes : ``Out(data.ArrayLayout(unsigned(2), 5))``
        Element ``i`` is the 2-bit code of ``w_i``: ``00`` = 0, ``01`` = +1, ``11`` = -1, so
        ``codes`` as a 10-bit value is the 2-bit packing of the five weights.
    invalid : ``Out(1)``
        High for bytes 243 to 255, which no weights encode; ``codes`` is then all zero.
    """

    byte: In(8)
    codes: Out(data.ArrayLayout(unsigned(2), DIGITS))
    invalid: Out(1)

    def elaborate(self, platform):
        m = Module()
        m.d.comb += self.invalid.eq(self.byte >= 3 ** DIGITS)
        remainder = self.byte
        for index in reversed(range(DIGITS)):
            power = 3 ** index
            high, middle = remainder >= 2 * power, remainder >= power
            # digit 0 is weight -1 (code 11), 1 is 0 (00), 2 is +1 (01).
            code = Signal(unsigned(2), name=f"code{index}")
            m.d.comb += code.eq(Mux(high, 0b01, Mux(middle, 0b00, 0b11)))
            with m.If(~self.invalid):
                m.d.comb += self.codes[index].eq(code)
            rest = Mux(high, remainder - 2 * power, Mux(middle, remainder - power, remainder))
            # Below 3**index now (for a valid byte): the next comparisons are narrower.
            remainder = rest[:max((power - 1).bit_length(), 1)]
        return m
