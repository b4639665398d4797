"""The norm unit's second pass for the dataflow core: ``u`` times a per-command factor and a
rounding shift, ``V`` lanes a cycle, for both of its operations (issue 15,
``docs/dataflow.md``):

- QUANT: ``q = sign(u) * min(round_shift(|u| * R, s), A)`` with
  :class:`~tern_fpga.hw.dataflow.reciprocal.Reciprocal`'s ``R`` and ``s`` (``A =
  activation_max``), bit for bit as :func:`tern_fpga.contracts.numerics.quantize_activations`;
- NORM: ``numerics.apply_scale(u, scale)``, ``saturate(round_shift(u * M, -E))`` for the scale
  ``M * 2**E`` of :class:`~tern_fpga.hw.dataflow.scale_engine.ScaleEngine`, with one domain
  limit: where ``E >= 0`` and numpy's int64 left shift would wrap, the unit saturates (as the
  committed norm unit does, ``docs/hardware.md``).

One datapath does both, so the two share their multipliers: ``v = |u|`` (QUANT) or ``u``
(NORM), 33 bits signed, times the factor ``k`` (``R`` or ``M``), four partial products;
``t = (p << 32) >> (s + 31)`` (``s`` clamped to ``[-31, width(p) + 1]``, where a shift further
either way gives the same result) is ``p >> (s - 1)`` for ``s >= 1`` and ``p << (1 - s)``
otherwise; the result is ``(t + 1) >> 1`` saturated (to ``A`` for QUANT, to the vector format
for NORM). The shift goes in a coarse step (multiples of 8, a window of :data:`WINDOW` bits)
and a fine one; whether the bits above the window are a sign extension is decided from ``p``
beside the coarse step, one flag a coarse position.

Stages (:attr:`ScaleLanes.latency`): 1 ``v`` and the sign; 2 the operands again (beside the
DSPs); 3 the partial products; 4 again; 5 the outer and middle sums; 6 ``p``; 7 the coarse
window and the sign-extension flags; 8 the fine shift and whether ``t`` fits the window; 9 the
rounding; 10 saturation and the sign. No stall signal: credits and an output FIFO.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from tern_fpga.contracts.params import AcceleratorParameters
from tern_fpga.hw.dataflow.pipeline import CommandBeats, CreditedOutput, delay, register
from tern_fpga.hw.dataflow.products import HALF, checked_target, four_products
from tern_fpga.hw.dataflow.reciprocal import quotient_bits
from tern_fpga.hw.row_unit import _limit, operand_layout, result_layout

__all__ = ["ScaleLanes", "command_layout"]

COARSE = 8
# The bits of t that decide a result: NORM saturates t's (t + 1) >> 1 to vector_bits, so t
# matters up to vector_bits + 2 bits, signed.
T_BITS = 34
# The coarse step's window: T_BITS and the fine shift's reach.
WINDOW = T_BITS + COARSE - 1
# The product is shifted left by this before the right shift (covers NORM's left shifts).
LEFT = 32
# Shifts (s) beyond these give the same results as these.
SHIFT_BITS = 13


def factor_bits(params: AcceleratorParameters) -> int:
    """Width of the factor: QUANT's reciprocal or NORM's scale mantissa, the wider."""
    return max(quotient_bits(params), params.scale_mantissa_bits)


def command_layout(params: AcceleratorParameters) -> data.StructLayout:
    """One pass: ``quantize`` (1: QUANT, 0: NORM), ``length`` (elements, 1 to
    ``max_features``), ``factor`` (QUANT: ``R``; NORM: the scale's mantissa ``M``) and
    ``shift`` (QUANT: ``s``; NORM: minus the scale's exponent), signed."""
    return data.StructLayout({
        "quantize": 1,
        "length": range(1, params.max_features + 1),
        "factor": unsigned(factor_bits(params)),
        "shift": signed(SHIFT_BITS),
    })


class ScaleLanes(wiring.Component):
    """``u`` times a command's factor and shift: QUANT's int8 values or NORM's, ``V`` lanes a
    beat.

    Parameters
    ----------
    params : tern_fpga.contracts.params.AcceleratorParameters
    target : None or str
        ``"ecp5"``: the multipliers as ``MULT18X18D`` instances with their own registers
        (:func:`~.products.partial_product`; not simulated). By default a ``*``.

    Members
    -------
    command : ``In(stream.Signature(command_layout(params)))``
    u : ``In(stream.Signature(row_unit.operand_layout(params)))``
        ``ceil(length / V)`` beats a command; lanes past ``length`` carry any value.
    result : ``Out(stream.Signature(row_unit.result_layout(params)))``
        QUANT's values sign-extended; lanes past ``length`` are 0.
    busy : ``Out(1)``

    Raises
    ------
    ValueError
        If ``vector_bits`` is not 32 or the factor is wider than 24 bits (the partial products
        take 16-bit halves of ``v`` and a 16-bit and an 8-bit piece of the factor).
    """

    #: Cycles from a beat passing to its result entering the output FIFO.
    latency = 10

    def __init__(self, params: AcceleratorParameters, *, target=None):
        if not isinstance(params, AcceleratorParameters):
            raise TypeError(f"params must be an AcceleratorParameters, not {params!r}")
        if params.vector_bits != 2 * HALF or factor_bits(params) > HALF + 8:
            raise ValueError(f"the scale lanes multiply 16-bit halves: vector_bits must be "
                             f"{2 * HALF} (not {params.vector_bits}) and the factor at most "
                             f"{HALF + 8} bits (not {factor_bits(params)})")
        self._params, self._target = params, checked_target(target)
        super().__init__({
            "command": In(stream.Signature(command_layout(params))),
            "u": In(stream.Signature(operand_layout(params))),
            "result": Out(stream.Signature(result_layout(params))),
            "busy": Out(1),
        })

    @property
    def fifo_depth(self) -> int:
        return self.latency + 3

    @property
    def product_bits(self) -> int:
        """Signed width of ``p = v * k``."""
        return 2 * HALF + 1 + factor_bits(self._params)

    def elaborate(self, platform):
        m = Module()
        params, lanes = self._params, self._params.vector_lanes
        output = CreditedOutput(m, self.result, self.fifo_depth)
        beats = CommandBeats(m, self.command, lanes, params.max_features,
                             fields=("quantize", "factor", "shift"))
        fire = beats.active & output.available & self.u.valid
        m.d.comb += [self.u.ready.eq(beats.active & output.available),
                     self.busy.eq(beats.active | ~output.idle)]
        output.admit(m, fire)
        beats.step(m, fire)

        # The right shift s + 31 of p << 32, s clamped; split into coarse and fine.
        shift = beats.fields["shift"]
        high = self.product_bits + 1
        clamped = Mux(shift < -(LEFT - 1), -(LEFT - 1), Mux(shift > high, high, shift))
        right = Signal(range(LEFT + high), name="right")
        m.d.comb += right.eq(clamped + LEFT - 1)
        tag = {"valid": register(m, fire, "valid_1", reset_less=False),
               "mask": register(m, beats.mask, "mask_1"),
               "last": register(m, beats.at_last, "last_1"),
               "quantize": register(m, beats.fields["quantize"], "quantize_1"),
               "coarse": register(m, right >> 3, "coarse_1"),
               "fine": register(m, right[:3], "fine_1")}
        stages = [tag]
        for number in range(2, self.latency + 1):
            stages.append(delay(m, stages[-1], str(number)))
        # Only stage 2 reads the factor (widened to the partial products' HALF + 8 bits): it
        # does not travel with the tag.
        factor = register(m, beats.fields["factor"], "factor_1", shape=unsigned(HALF + 8))

        result = Signal(result_layout(params))
        for lane in range(lanes):
            value = self._lane(m, stages, beats.fields["quantize"], factor, self.u.payload[lane],
                               lane)
            m.d.sync += result.data[lane].eq(Mux(stages[-2]["mask"][lane], value, 0))
        m.d.sync += [result.mask.eq(stages[-2]["mask"]), result.last.eq(stages[-2]["last"])]
        m.d.comb += [output.w_data.eq(result), output.w_en.eq(stages[-1]["valid"])]
        return m

    def _lane(self, m, stages, quantize, factor, u, lane):
        """One lane's stages 1 to 9; returns the value its output register (stage 10) loads."""
        params = self._params
        width, limit = params.vector_bits, params.activation_max

        def stage(value, name, number, shape=None):
            return register(m, value, f"lane{lane}_{name}_{number}", shape=shape)

        def flag(number, name):
            return stages[number - 1][name]

        # 1: v = |u| (QUANT) or u (NORM), 33 bits signed; the sign.
        negative = stage(u < 0, "negative", 1)
        v = stage(Mux(quantize & (u < 0), -u, u), "v", 1, signed(2 * HALF + 1))
        # 2: the operands again, beside the DSPs (or the DSPs' own registers); 3: the partial
        # products; 4: again.
        pieces = four_products(m, stage, (v[HALF:].as_signed(), v[:HALF]),
                               (factor[HALF:], factor[:HALF]), 2, self._target)
        # 5: the outer products side by side (no overlap) and the middle ones' sum.
        outer = stage(Cat(pieces["low_low"], pieces["high_high"]).as_signed(), "outer", 5)
        middle = stage(pieces["high_low"] + pieces["low_high"], "middle", 5)
        # 6: p = v * k.
        product = stage(outer + (middle << HALF), "product", 6, signed(self.product_bits))
        # 7: the window of (p << LEFT) >> (8 * coarse), and for every coarse position whether
        # the bits from the window's top one up are all equal (t then fits the window).
        shifted = Signal(signed(LEFT + self.product_bits), name=f"lane{lane}_coarse")
        m.d.comb += shifted.eq(Cat(Const(0, LEFT), product).as_signed()
                               >> (flag(6, "coarse") << 3))
        window = stage(shifted[:WINDOW], "window", 7)
        positions = (LEFT + self.product_bits + 1) // COARSE + 1
        extension = []
        for position in range(positions):
            top = COARSE * position + WINDOW - 1 - LEFT
            rest = product[top:] if top < self.product_bits - 1 else product[-1]
            extension.append(rest.all() | ~rest.any())
        extension = stage(Cat(extension), "extension", 7)
        product_negative = stage(product[-1], "product_negative", 7)
        # 8: t = window >> fine; whether t fits T_BITS.
        t = Signal(signed(WINDOW), name=f"lane{lane}_t")
        m.d.comb += t.eq(window.as_signed() >> flag(7, "fine"))
        upper = t[T_BITS - 1:]
        fits = stage(extension.bit_select(flag(7, "coarse"), 1) & (upper.all() | ~upper.any()),
                     "fits", 8)
        t = stage(t[:T_BITS].as_signed(), "t", 8)
        product_negative = stage(product_negative, "product_negative", 8)
        # 9: (t + 1) >> 1; QUANT's levels (t >= 0 there).
        rounded = stage((t + 1) >> 1, "rounded", 9, signed(T_BITS - 1))
        over = ~fits | (t > 2 * limit)
        levels = stage(Mux(over, limit, (t[:(2 * limit + 1).bit_length()] + 1) >> 1), "levels", 9,
                       unsigned(limit.bit_length()))
        fits = stage(fits, "fits", 9)
        product_negative = stage(product_negative, "product_negative", 9)
        for number in range(2, 10):
            negative = stage(negative, "negative", number)
        # 10 (the caller's register): saturate; QUANT's sign.
        in_range = rounded[width - 1:]
        norm = Mux(fits & (in_range.all() | ~in_range.any()), rounded[:width],
                   _limit(product_negative, width))
        return Mux(flag(9, "quantize"), Mux(negative, -levels, levels), norm)
