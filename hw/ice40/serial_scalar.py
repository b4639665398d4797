"""The iCE40UP5K port's narrower scalar-engine pieces (``docs/boards.md``, the iCEBreaker
plan's step 4): a leading-zero normaliser that shifts a few bits a cycle instead of the
committed engine's six-stage barrel shifter, and a divider that finds one quotient bit a cycle.

:class:`SerialNormaliser` gives what :class:`~tern_fpga.hw.scalar_engine.ScalarEngine`'s shared
normaliser gives (:func:`normalise`, written from that engine's code): the value shifted left
until its top bit is set (by an even count when asked: the rsqrt's normalisation), the shift,
and ``numerics._normalise`` of the value (the mantissa rounded half up, the exponent; 0 gives
the scale ``(0, 0)``). The values are unsigned, as everything the engine normalises is. Each
cycle it shifts by ``bits_per_cycle`` while that many top bits are zero, then by one (for the
even shift: a pair of bits when the top two are zero) until the top bit is set; the rounding is
the committed engine's ``_round_mantissa``, on the shifter's register.

:class:`SerialDivider` gives the quantiser's reciprocal ``R = floor(A * 2**(B + e) / m)``
(:func:`reciprocal`) from the normalised ``m`` that the engine's divider takes, by restoring
division, one quotient bit a cycle.
"""

from __future__ import annotations

from typing import NamedTuple

from amaranth.hdl import Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from tern_fpga.contracts.params import AcceleratorParameters
from tern_fpga.hw.scalar_engine import _normaliser_width, _round_mantissa, _wide_scale_layout

__all__ = ["Normalised", "SerialDivider", "SerialNormaliser", "normalise", "reciprocal"]


class Normalised(NamedTuple):
    """What the normaliser gives: ``aligned`` (the value shifted left by ``count``),
    ``count``, and the rounded scale ``mantissa * 2**exponent``."""

    aligned: int
    count: int
    mantissa: int
    exponent: int


def normalise(value: int, exponent: int, even: bool,
              params: AcceleratorParameters) -> Normalised:
    """The golden function of the engine's normaliser, in the engine's terms.

    ``count`` is the number of leading zeros of ``value`` in the normaliser's width (made even
    if ``even``; ``width - 1``, or ``width - 2`` if ``even``, for 0). The scale is the top
    ``scale_mantissa_bits + 1`` bits of ``aligned`` rounded half up, a carry halving the
    mantissa: for ``even`` false it is ``numerics._normalise(value, exponent)``; for ``even``
    true the engine uses only ``aligned`` and ``count``.

    Raises
    ------
    ValueError
        If ``value`` is negative or wider than the normaliser.
    """
    width, bits = _normaliser_width(params), params.scale_mantissa_bits
    if not 0 <= value < 1 << width:
        raise ValueError(f"value must be an unsigned {width}-bit integer, not {value!r}; the "
                         f"engine normalises only magnitudes")
    count = width - value.bit_length() if value else width - 1
    count &= ~1 if even else ~0
    aligned = value << count
    if not value:
        return Normalised(0, count, 0, 0)
    rounded = ((aligned >> (width - bits - 1)) + 1) >> 1
    carry = rounded >> bits
    return Normalised(aligned, count, rounded >> carry, exponent + width - bits - count + carry)


def reciprocal(divisor: int, params: AcceleratorParameters) -> int:
    """The golden function of the divider: ``floor(A * 2**(B + W) / divisor)`` for a
    normalised ``divisor`` (``W = vector_bits``, top bit set), which is ``numerics``'
    ``floor(A * 2**(B + e) / m)`` for ``divisor = m * 2**(W - e)``.

    Raises
    ------
    ValueError
        If ``divisor`` does not have exactly ``vector_bits`` bits.
    """
    width = params.vector_bits
    if not 1 << (width - 1) <= divisor < 1 << width:
        raise ValueError(f"divisor must have its top bit, bit {width - 1}, set, not "
                         f"{divisor!r}; normalise m first")
    return (params.activation_max << (params.reciprocal_bits + width)) // divisor


def _check_params(params):
    if not isinstance(params, AcceleratorParameters):
        raise TypeError(f"params must be an AcceleratorParameters, not {params!r}")


class SerialNormaliser(wiring.Component):
    """The engine's normaliser, ``bits_per_cycle`` bits of shift a cycle (see the module).

    A request is taken only when idle; its result is offered :meth:`latency` cycles later
    and held until taken.

    Parameters
    ----------
    params : tern_fpga.contracts.params.AcceleratorParameters
    bits_per_cycle : int
        The coarse shift: 1, or an even number up to 16 (an even coarse shift keeps the even
        normalisation's pairs aligned).

    Members
    -------
    request : ``In(stream.Signature(request_layout))``
        ``value`` (unsigned, the normaliser's width), ``exponent`` (added to the scale's),
        ``even``.
    result : ``Out(stream.Signature(result_layout))``
        ``aligned``, ``count`` and ``scale`` (``mantissa``, ``exponent``): :func:`normalise`.

    Raises
    ------
    TypeError
        If ``params`` is not an :class:`~tern_fpga.contracts.params.AcceleratorParameters`.
    ValueError
        If ``bits_per_cycle`` is not 1 or an even number up to 16.
    """

    def __init__(self, params: AcceleratorParameters, *, bits_per_cycle: int = 4):
        _check_params(params)
        if (isinstance(bits_per_cycle, bool) or not isinstance(bits_per_cycle, int)
                or bits_per_cycle not in (1, *range(2, 17, 2))):
            raise ValueError(f"bits_per_cycle must be 1 or an even number from 2 to 16, not "
                             f"{bits_per_cycle!r}")
        self._params, self._bits_per_cycle = params, bits_per_cycle
        self._width = _normaliser_width(params)
        wide = _wide_scale_layout(params)
        self.request_layout = data.StructLayout({
            "value": unsigned(self._width), "exponent": wide["exponent"].shape, "even": 1})
        self.result_layout = data.StructLayout({
            "aligned": unsigned(self._width), "count": range(self._width + 1), "scale": wide})
        super().__init__({"request": In(stream.Signature(self.request_layout)),
                          "result": Out(stream.Signature(self.result_layout))})

    @property
    def bits_per_cycle(self) -> int:
        return self._bits_per_cycle

    def shift_cycles(self, value: int, even: bool) -> int:
        """Shifting cycles for ``value``: whole ``bits_per_cycle`` shifts, then single bits."""
        count = normalise(value, 0, even, self._params).count
        step = self._bits_per_cycle
        coarse = 0 if step == 1 else count // step
        return coarse + count - coarse * step

    def latency(self, value: int, even: bool) -> int:
        """Cycles from the edge that takes the request to the first edge that can take its
        result: the shifting cycles and the result's cycle."""
        return self.shift_cycles(value, even) + 1

    @property
    def max_latency(self) -> int:
        """The longest :meth:`latency` (a value of 0 or 1)."""
        return max(self.latency(value, even) for value in (0, 1) for even in (False, True))

    def elaborate(self, platform):
        m = Module()
        width, step = self._width, self._bits_per_cycle
        request, result = self.request, self.result
        value = Signal(width)
        count = Signal(range(width + 1))
        exponent = Signal(self.request_layout["exponent"].shape)
        even = Signal()
        busy = Signal()
        # A zero value stops at count width - 1 (width - 2 if even), as the barrel shifter does.
        coarse = ((value[width - step:] == 0) & (count <= width - 1 - step) if step > 1
                  else 0)
        # The even shift moves a pair at a time: the second bit of a pair (count odd) was
        # checked with the first.
        fine = Mux(even, count[0] | ((value[width - 2:] == 0) & (count <= width - 3)),
                   ~value[-1] & (count != width - 1))
        m.d.comb += result.valid.eq(busy & ~coarse & ~fine)
        with m.If(~busy):
            m.d.comb += request.ready.eq(1)
            with m.If(request.valid):
                m.d.sync += [value.eq(request.payload.value), count.eq(0),
                             exponent.eq(request.payload.exponent),
                             even.eq(request.payload.even), busy.eq(1)]
        with m.Elif(coarse):
            m.d.sync += [value.eq(value << step), count.eq(count + step)]
        with m.Elif(fine):
            m.d.sync += [value.eq(value << 1), count.eq(count + 1)]
        with m.Elif(result.ready):
            m.d.sync += busy.eq(0)

        mantissa, offset = _round_mantissa(m, self._params, value, count, width)
        zero = value[width - 2:] == 0  # once settled, only a zero value has its top two zero
        m.d.comb += [result.payload.aligned.eq(value), result.payload.count.eq(count),
                     result.payload.scale.mantissa.eq(Mux(zero, 0, mantissa)),
                     result.payload.scale.exponent.eq(Mux(zero, 0, exponent + offset))]
        return m


class SerialDivider(wiring.Component):
    """The quantiser's reciprocal, one quotient bit a cycle (:func:`reciprocal`).

    Restoring division as the committed engine's: the divisor ``n * 2**(activation_bits - 1)``,
    the remainder from ``A * 2**(W - 1)`` (below the divisor, as ``A < 2**(activation_bits -
    1)``), ``reciprocal_bits + activation_bits`` quotient bits. A request is taken only when
    idle; the quotient is offered :attr:`latency` cycles later and held until taken.

    Parameters
    ----------
    params : tern_fpga.contracts.params.AcceleratorParameters

    Members
    -------
    request : ``In(stream.Signature(unsigned(vector_bits)))``
        The normalised divisor (top bit set; otherwise the quotient is meaningless).
    result : ``Out(stream.Signature(unsigned(reciprocal_bits + activation_bits)))``
    """

    def __init__(self, params: AcceleratorParameters):
        _check_params(params)
        self._params = params
        super().__init__({
            "request": In(stream.Signature(unsigned(params.vector_bits))),
            "result": Out(stream.Signature(unsigned(self.quotient_bits)))})

    @property
    def quotient_bits(self) -> int:
        return self._params.reciprocal_bits + self._params.activation_bits

    @property
    def latency(self) -> int:
        """Cycles from the edge that takes the divisor to the first edge that can take the
        quotient: one a quotient bit and the result's cycle."""
        return self.quotient_bits + 1

    def elaborate(self, platform):
        m = Module()
        params = self._params
        width, activation_bits = params.vector_bits, params.activation_bits
        divisor = Signal(width + activation_bits - 1)
        remainder = Signal(width + activation_bits)
        quotient = Signal(self.quotient_bits)
        remaining = Signal(range(self.quotient_bits + 1))
        busy = Signal()
        done = busy & (remaining == 0)
        m.d.comb += [self.result.valid.eq(done), self.result.payload.eq(quotient)]
        with m.If(~busy):
            m.d.comb += self.request.ready.eq(1)
            with m.If(self.request.valid):
                m.d.sync += [divisor.eq(self.request.payload << (activation_bits - 1)),
                             remainder.eq(params.activation_max << (width - 1)),
                             remaining.eq(self.quotient_bits), busy.eq(1)]
        with m.Elif(~done):
            doubled = Signal(signed(width + activation_bits + 2))
            m.d.comb += doubled.eq((remainder << 1) - divisor)
            take = ~doubled[-1]
            m.d.sync += [remainder.eq(Mux(take, doubled, remainder << 1)),
                         quotient.eq((quotient << 1) | take), remaining.eq(remaining - 1)]
        with m.Elif(self.result.ready):
            m.d.sync += busy.eq(0)
        return m
