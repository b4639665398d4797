"""The quantiser's reciprocal on its own, so that a QUANT's second pass need not wait for the
rest of the scalar engine (issue 15, ``docs/dataflow.md``: the int8 values depend on the
reciprocal alone; the rsqrt only goes into the output scale).

:class:`Reciprocal` computes, bit for bit as :func:`tern_fpga.contracts.numerics.quantize_activations`
does, ``shift = B + e`` and ``R = floor(A * 2**shift / m)`` for ``m = max(max|u|, 1)``, with ``e``
the bit length of ``m``, ``A = activation_max`` and ``B = reciprocal_bits``.

With ``m`` normalised to ``n = m * 2**(W - e)`` in ``[2**(W-1), 2**W)`` (``W = vector_bits``,
as ``|u| <= 2**(W-1)``), ``R = floor(A * 2**(B + W) / n)`` exactly: a constant over ``n``, with
fewer than ``B + bitlength(2A)`` quotient bits. A restoring divider finds them,
``bits_per_cycle`` a cycle, after a stage that finds ``e`` and one that shifts ``m``.
"""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal, unsigned
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
        Quotient bits the divider finds a cycle (1 to 4; two compares in a row at 2).

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
        if bits_per_cycle not in range(1, 5):
            raise ValueError(f"bits_per_cycle must be 1 to 4, not {bits_per_cycle!r}")
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
        ``result``: the bit length, the shift, the division's cycles, the result."""
        return 3 + self.division_cycles

    def elaborate(self, platform):
        m = Module()
        params = self._params
        width, per_cycle = params.vector_bits, self._bits_per_cycle
        steps = self.division_cycles * per_cycle    # quotient bits found (the top ones 0)
        # The quotient is found from its top bit; the dividend's bits below that are zero.
        start = params.activation_max << (params.reciprocal_bits + width - steps)

        value = Signal(width)                       # m (at least 1)
        length = Signal(range(width + 1))           # e
        zeros = Signal(range(width))                # W - e, the normalising shift
        divisor = Signal(width)                     # n = m << (W - e)
        remainder = Signal(width + 1)
        quotient = Signal(steps)
        count = Signal(range(self.division_cycles + 1))
        phase = Signal(range(4))                    # 0 idle, 1 length, 2 shift, 3 divide
        done = Signal()

        m.d.comb += [self.largest.ready.eq((phase == 0) & ~done),
                     self.result.valid.eq(done),
                     self.result.payload.reciprocal.eq(quotient),
                     self.result.payload.shift.eq(params.reciprocal_bits + length)]
        with m.If(self.result.valid & self.result.ready):
            m.d.sync += done.eq(0)
        with m.If(self.largest.valid & self.largest.ready):
            m.d.sync += [value.eq(Mux(self.largest.payload == 0, 1, self.largest.payload)),
                         phase.eq(1)]
        with m.If(phase == 1):
            # The bit length: the highest set bit's index plus one (a priority chain, the
            # top bit last so that it wins).
            bit_length, leading = 0, width - 1
            for bit in range(width):
                bit_length = Mux(value[bit], bit + 1, bit_length)
                leading = Mux(value[bit], width - 1 - bit, leading)
            m.d.sync += [length.eq(bit_length), zeros.eq(leading), phase.eq(2)]
        with m.If(phase == 2):
            m.d.sync += [divisor.eq(value << zeros), remainder.eq(start),
                         quotient.eq(0), count.eq(0), phase.eq(3)]
        with m.If(phase == 3):
            partial, bits = remainder, []
            for _ in range(per_cycle):
                shifted = Signal(width + 2)
                m.d.comb += shifted.eq(partial << 1)
                fits = shifted >= divisor
                partial = Mux(fits, shifted - divisor, shifted)[:width + 1]
                bits.append(fits)
            new_bits = 0
            for fits in bits:
                new_bits = (new_bits << 1) | fits
            m.d.sync += [remainder.eq(partial), count.eq(count + 1),
                         quotient.eq((quotient << per_cycle) | new_bits)]
            with m.If(count == self.division_cycles - 1):
                m.d.sync += [phase.eq(0), done.eq(1)]
        return m
