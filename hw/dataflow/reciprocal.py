"""The quantiser's reciprocal on its own, so that a QUANT's second pass need not wait for the
rest of the scalar engine (issue 15, ``docs/dataflow.md``: the int8 values depend on the
reciprocal alone; the rsqrt only goes into the output scale).

:class:`Reciprocal` computes, bit for bit as :func:`tern_fpga.contracts.numerics.quantize_activations`
does, ``shift = B + e`` and ``R = floor(A * 2**shift / m)`` for ``m = max(max|u|, 1)``, with ``e``
the bit length of ``m``, ``A = activation_max`` and ``B = reciprocal_bits``.

With ``m`` normalised to ``n = m * 2**(W - e)`` in ``[2**(W-1), 2**W)`` (``W = vector_bits``,
as ``|u| <= 2**(W-1)``), ``R = floor(A * 2**(B + W) / n)`` exactly: a constant over ``n``, with
fewer than ``B + bitlength(2A)`` quotient bits. A restoring divider finds them,
``bits_per_cycle`` a cycle, after a stage that finds ``e``, one that shifts ``m`` and one that
forms the multiples ``k * n`` (``k < 2**bits_per_cycle``). Each cycle subtracts every multiple
from the shifted remainder at once (one carry chain deep) and keeps the largest difference that
is not negative: radix ``2**bits_per_cycle``, not ``bits_per_cycle`` compares in a row.
"""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from tern_fpga.contracts.params import AcceleratorParameters

__all__ = ["Reciprocal", "result_layout"]


def quotient_bits(params: AcceleratorParameters) -> int:
    """Bits of ``R``: ``R < 2A * 2**B``."""
    return params.reciprocal_bits + (2 * params.activation_max).bit_length()


def result_layout(params: AcceleratorParameters) -> data.StructLayout:
    """Payload of ``result``: ``reciprocal`` (``R``) and ``shift`` (``B + e``)."""
    return data.StructLayout({
        "reciprocal": unsigned(quotient_bits(params)),
        "shift": range(params.reciprocal_bits + params.vector_bits + 1),
    })


class Reciprocal(wiring.Component):
    """``R = floor(A * 2**(B + e) / m)`` and ``B + e`` for one ``m`` at a time.

    Parameters
    ----------
    params : tern_fpga.contracts.params.AcceleratorParameters
    bits_per_cycle : int
        Quotient bits the divider finds a cycle (1 to 3): ``2**bits_per_cycle - 1`` subtractors
        side by side.

    Members
    -------
    largest : ``In(stream.Signature(unsigned(vector_bits)))``
        ``max|u|`` (0 counts as 1). Taken only when the unit is idle.
    result : ``Out(stream.Signature(result_layout(params)))``
        :attr:`latency` cycles after ``largest`` is taken.
    """

    def __init__(self, params: AcceleratorParameters, *, bits_per_cycle: int = 2):
        if not isinstance(params, AcceleratorParameters):
            raise TypeError(f"params must be an AcceleratorParameters, not {params!r}")
        if bits_per_cycle not in range(1, 4):
            raise ValueError(f"bits_per_cycle must be 1 to 3, not {bits_per_cycle!r}")
        self._params = params
        self._bits_per_cycle = bits_per_cycle
        super().__init__({
            "largest": In(stream.Signature(unsigned(params.vector_bits))),
            "result": Out(stream.Signature(result_layout(params))),
        })

    @property
    def division_cycles(self) -> int:
        return -(-quotient_bits(self._params) // self._bits_per_cycle)

    @property
    def latency(self) -> int:
        """Cycles from the edge that takes ``largest`` to the first edge that can take
        ``result``: the bit length, the shift, the multiples, the division's cycles, the
        result."""
        return 4 + self.division_cycles

    def elaborate(self, platform):
        m = Module()
        params = self._params
        width, per_cycle = params.vector_bits, self._bits_per_cycle
        steps = self.division_cycles * per_cycle    # quotient bits found (the top ones 0)
        # The quotient is found from its top bit; the dividend's bits below that are zero.
        start = params.activation_max << (params.reciprocal_bits + width - steps)

        radix = 1 << per_cycle
        value = Signal(width)                       # m (at least 1)
        length = Signal(range(width + 1))           # e
        zeros = Signal(range(width))                # W - e, the normalising shift
        divisor = Signal(width)                     # n = m << (W - e)
        multiples = [Signal(width + per_cycle, name=f"multiple{k}") for k in range(1, radix)]
        remainder = Signal(width + 1)
        quotient = Signal(steps)
        count = Signal(range(self.division_cycles + 1))
        # One register a phase (one-hot), so that every choice is a register's output.
        measuring, shifting, multiplying, dividing, done = (
            Signal(name=name) for name in ("measuring", "shifting", "multiplying", "dividing",
                                           "done"))
        idle = ~(measuring | shifting | multiplying | dividing | done)

        m.d.comb += [self.largest.ready.eq(idle),
                     self.result.valid.eq(done),
                     self.result.payload.reciprocal.eq(quotient),
                     self.result.payload.shift.eq(params.reciprocal_bits + length)]
        with m.If(self.result.valid & self.result.ready):
            m.d.sync += done.eq(0)
        with m.If(self.largest.valid & self.largest.ready):
            m.d.sync += [value.eq(Mux(self.largest.payload == 0, 1, self.largest.payload)),
                         measuring.eq(1)]
        with m.If(measuring):
            # The bit length and the leading zeros: a priority chain, the top bit last so
            # that it wins.
            bit_length, leading = 0, width - 1
            for bit in range(width):
                bit_length = Mux(value[bit], bit + 1, bit_length)
                leading = Mux(value[bit], width - 1 - bit, leading)
            m.d.sync += [length.eq(bit_length), zeros.eq(leading), measuring.eq(0),
                         shifting.eq(1)]
        with m.If(shifting):
            m.d.sync += [divisor.eq(value << zeros), shifting.eq(0), multiplying.eq(1)]
        with m.If(multiplying):
            # k * n by shifts and adds (a product by a constant would take a DSP).
            m.d.sync += [multiple.eq(sum(divisor << bit for bit in range(per_cycle)
                                         if k >> bit & 1))
                         for k, multiple in enumerate(multiples, 1)]
            m.d.sync += [remainder.eq(start), quotient.eq(0), count.eq(0), multiplying.eq(0),
                         dividing.eq(1)]
        with m.If(dividing):
            # The remainder stays below n, so every difference fits width + per_cycle + 1
            # signed bits; they fall with k, so the digit is the number that are not negative.
            shifted = Signal(width + 1 + per_cycle)
            m.d.comb += shifted.eq(remainder << per_cycle)
            chosen, digit = shifted, 0
            for k, multiple in enumerate(multiples, 1):
                difference = Signal(signed(width + per_cycle + 2), name=f"difference{k}")
                m.d.comb += difference.eq(shifted - multiple)
                fits = ~difference[-1]
                chosen = Mux(fits, difference, chosen)
                digit = Mux(fits, k, digit)
            m.d.sync += [remainder.eq(chosen[:width + 1]), count.eq(count + 1),
                         quotient.eq((quotient << per_cycle) | digit)]
            with m.If(count == self.division_cycles - 1):
                m.d.sync += [dividing.eq(0), done.eq(1)]
        return m
