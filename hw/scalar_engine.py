"""The per-vector scalar engine of the norm and quantiser unit.

:class:`ScalarEngine` turns the two reductions of a vector (its sum of squares and, for
QUANT, ``max|x * weight|``) into the numbers that the lanes need, exactly as
:mod:`tern_fpga.contracts.numerics` defines them:

- ``numerics.rsqrt_scale(sum_of_squares + epsilon_term)``: an even-shift normalisation to
  ``[2**30, 2**32)``, the seed table ``numerics.rsqrt_table(params)`` and
  ``params.rsqrt_newton_steps`` Newton steps with the truncations written there;
- ``numerics.scale_multiply`` by the command's constant (and, for QUANT, by
  ``numerics.scale_from_int(largest)``), each rounded by ``numerics._normalise``;
- the quantiser's reciprocal ``floor(activation_max * 2**(B + e) / largest)`` by a restoring
  divider that runs beside the rsqrt.

It runs once per vector, so it is sequential: one 32 x 32 multiplier, one shared
leading-zero normaliser and a two-bit-per-cycle divider, sequenced by a small state machine.
The normaliser is pipelined (its input, then the shifted value and the shift, are registered),
so each state that normalises holds its input for :data:`NORMALISER_STAGES` cycles and uses the
result in the last: slower by a few cycles a vector, but the 64-bit leading-zero shifter is no
longer in one path with the operand selection and the rounding (it was the routed designs'
critical path).
"""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Shape, Signal, signed, unsigned
from amaranth.lib import data, enum, stream, wiring
from amaranth.lib.wiring import In, Out

from tern_fpga.contracts import numerics
from tern_fpga.contracts.params import AcceleratorParameters
from tern_fpga.hw.scale_layout import SCALE_EXPONENT_BITS, scale_layout, sum_of_squares_bits

__all__ = ["ScalarEngine", "request_layout", "result_layout"]

# Fixed by numerics.rsqrt_scale (independent of the parameters): the value is normalised to
# RSQRT_INPUT_BITS bits, the iterate y is in Q.RSQRT_FRAC_BITS, table seeds are shifted left by
# RSQRT_SEED_SHIFT, and 1/sqrt(value) = y * 2**-(RSQRT_EXPONENT + shift / 2).
RSQRT_INPUT_BITS = 32
RSQRT_FRAC_BITS = 30
RSQRT_SEED_SHIFT = 14
RSQRT_EXPONENT = 46
# y < 2**31 and 3 * 2**30 - error < 2**32 for every seed table of 8 or more entries (checked by
# tests/hw/test_norm_quantizer.py), so all rsqrt products fit a 32 x 32 multiplier.
MULTIPLIER_BITS = 32
# Cycles a state that normalises spends: the input register, the shifter's output register,
# then the cycle that rounds and uses the result.
NORMALISER_STAGES = 3
# States that normalise: ALIGN_LARGEST, ALIGN_VALUE, ROUND_RSQRT, ROUND_CONSTANT (both
# operations), ROUND_LARGEST (QUANT).
_NORMALISING_STATES = {False: 4, True: 5}


class _Step(enum.Enum):
    # The engine's states, in the order a QUANT request visits them.
    IDLE = 0
    ALIGN_LARGEST = 1
    ALIGN_VALUE = 2
    SEED = 3
    NEWTON_SQUARE = 4
    NEWTON_ERROR = 5
    NEWTON_UPDATE = 6
    NEWTON_NEXT = 7
    ROUND_RSQRT = 8
    MULTIPLY_CONSTANT = 9
    ROUND_CONSTANT = 10
    MULTIPLY_LARGEST = 11
    ROUND_LARGEST = 12
    DONE = 13


def _wide_scale_layout(params: AcceleratorParameters) -> data.StructLayout:
    # Intermediate scales: wide enough that no sum of exponents wraps for any port values.
    return data.StructLayout({
        "mantissa": unsigned(params.scale_mantissa_bits),
        "exponent": signed(SCALE_EXPONENT_BITS + 3),
    })


def request_layout(params: AcceleratorParameters) -> data.StructLayout:
    """What the engine takes per vector.

    ``quantize`` (compute the reciprocal and output scale too), ``sum_of_squares``,
    ``epsilon_term``, ``constant`` (:func:`scale_layout`) and ``largest`` (``max|u|``; 0 is
    taken as 1, as ``numerics.quantize_activations`` does).
    """
    bits = sum_of_squares_bits(params)
    return data.StructLayout({
        "quantize": 1,
        "sum_of_squares": unsigned(bits),
        "epsilon_term": unsigned(bits),
        "constant": scale_layout(params),
        "largest": unsigned(params.vector_bits),
    })


def result_layout(params: AcceleratorParameters) -> data.StructLayout:
    """What the engine returns per vector.

    ``norm_scale``
        ``rsqrt(sum_of_squares + epsilon_term) * constant``, with a wide exponent.
    ``output_scale``
        QUANT only: ``norm_scale * scale_from_int(largest)``.
    ``reciprocal``
        QUANT only: ``floor(activation_max * 2**(B + e) / largest)``, ``B = reciprocal_bits``.
    ``largest_bits``
        QUANT only: ``e``, the bit length of ``largest``.
    """
    return data.StructLayout({
        "norm_scale": _wide_scale_layout(params),
        "output_scale": scale_layout(params),
        "reciprocal": unsigned(params.reciprocal_bits + params.activation_bits),
        "largest_bits": range(params.vector_bits + 1),
    })


class ScalarEngine(wiring.Component):
    """Rsqrt, scale products and reciprocal of one vector, bit-exact with the numerics.

    A request is taken when the engine is idle; its result is offered on ``result``
    ``19 + 4 * rsqrt_newton_steps`` cycles later for QUANT, ``15 + 4 * rsqrt_newton_steps``
    for NORM (see :meth:`latency`), and held until taken.

    Parameters
    ----------
    params : tern_fpga.contracts.params.AcceleratorParameters

    Members
    -------
    request : ``In(stream.Signature(request_layout(params)))``
    result : ``Out(stream.Signature(result_layout(params)))``

    Raises
    ------
    TypeError
        If ``params`` is not an :class:`~tern_fpga.contracts.params.AcceleratorParameters`.
    ValueError
        If ``params.rsqrt_table_bits`` is below 3 (a coarser seed table lets the Newton
        iterate leave the multiplier's range).
    """

    def __init__(self, params: AcceleratorParameters):
        if not isinstance(params, AcceleratorParameters):
            raise TypeError(f"params must be an AcceleratorParameters, not {params!r}")
        if not 3 <= params.rsqrt_table_bits <= 12:
            raise ValueError(
                f"the scalar engine needs rsqrt_table_bits from 3 to 12, not "
                f"{params.rsqrt_table_bits!r}")
        self._params = params
        super().__init__({
            "request": In(stream.Signature(request_layout(params))),
            "result": Out(stream.Signature(result_layout(params))),
        })

    @property
    def params(self) -> AcceleratorParameters:
        return self._params

    @property
    def divider_steps(self) -> int:
        """Quotient bits the divider produces per cycle."""
        return 2 if self.quotient_bits % 2 == 0 else 1

    @property
    def quotient_bits(self) -> int:
        return self._params.reciprocal_bits + self._params.activation_bits

    def latency(self, quantize: bool) -> int:
        """Cycles from the edge that takes a request to the first one at which its result can
        be taken: the state machine's cycles (NORM skips the output scale's two states), or
        for QUANT the divider if it finishes later (it starts in ALIGN_LARGEST's last cycle)."""
        waits = (NORMALISER_STAGES - 1) * _NORMALISING_STATES[quantize]
        states = 7 + 4 * self._params.rsqrt_newton_steps + waits
        if not quantize:
            return states
        return max(states + 2, NORMALISER_STAGES + 1 + self.quotient_bits // self.divider_steps)

    def elaborate(self, platform):
        m = Module()
        params = self._params
        width = _normaliser_width(params)
        request = Signal(request_layout(params))
        value = Signal(width)
        # The shared normaliser: aligned = its input shifted left until bit width-1 is set (by an
        # even count when `even`), `count` = that shift. Pipelined: the input the state selects
        # (normalise_in, even) is registered, and so are the shifter's outputs; `settled` is
        # high in the state's last cycle, when they belong to the state's own input.
        normalise_in = Signal(width)
        even = Signal()
        normalise_input = Signal(width)
        normalise_even = Signal()
        m.d.sync += [normalise_input.eq(normalise_in), normalise_even.eq(even)]
        shifted, shift = _normalise_left(m, normalise_input, normalise_even)
        aligned = Signal(width)
        count = Signal.like(shift)
        m.d.sync += [aligned.eq(shifted), count.eq(shift)]
        mantissa, exponent_offset = _round_mantissa(m, params, aligned, count, width)
        wait = Signal(range(NORMALISER_STAGES))
        settled = Signal()
        m.d.comb += settled.eq(wait == NORMALISER_STAGES - 1)

        product = Signal(2 * MULTIPLIER_BITS)
        multiplier_a = Signal(MULTIPLIER_BITS)
        multiplier_b = Signal(MULTIPLIER_BITS)
        m.d.sync += product.eq(multiplier_a * multiplier_b)

        state = Signal(_Step)
        normalised = Signal(RSQRT_INPUT_BITS)           # w in [2**30, 2**32)
        half_shift = Signal(range(width // 2 + 1))      # L / 2 of the even normalising shift
        iterate = Signal(MULTIPLIER_BITS)               # y, Q.30
        step = Signal(range(params.rsqrt_newton_steps + 1))
        wide = _wide_scale_layout(params)
        norm_scale = Signal(wide)
        largest_scale = Signal(scale_layout(params))
        largest_bits = Signal(range(params.vector_bits + 1))
        output_scale = Signal(scale_layout(params))
        # The exponent that the current rounding step adds its offset to.
        exponent_in = Signal(signed(SCALE_EXPONENT_BITS + 3))

        divider_start = Signal()
        divider_done = Signal()
        reciprocal = self._elaborate_divider(m, aligned, width, divider_start, divider_done)
        seed = self._elaborate_seed_table(m, normalised)

        def rounded_scale(target):
            # numerics._normalise of normalise_in (already selected) with exponent exponent_in.
            zero = aligned == 0
            return [target.mantissa.eq(Mux(zero, 0, mantissa)),
                    target.exponent.eq(Mux(zero, 0, exponent_in + exponent_offset))]

        with m.If(state.matches(_Step.ALIGN_LARGEST, _Step.ALIGN_VALUE, _Step.ROUND_RSQRT,
                                _Step.ROUND_CONSTANT, _Step.ROUND_LARGEST)):
            m.d.sync += wait.eq(Mux(settled, 0, wait + 1))

        with m.If(state == _Step.IDLE):
            m.d.comb += self.request.ready.eq(1)
            with m.If(self.request.valid):
                m.d.sync += [
                    request.eq(self.request.payload),
                    value.eq(self.request.payload.sum_of_squares
                             + self.request.payload.epsilon_term),
                ]
                m.d.sync += state.eq(_Step.ALIGN_LARGEST)
        # Each state that normalises selects its input throughout and acts once `settled`.
        with m.If(state == _Step.ALIGN_LARGEST):
            largest = Mux(request.largest == 0, 1, request.largest)
            m.d.comb += [normalise_in.eq(largest), divider_start.eq(settled)]
            with m.If(settled):
                m.d.sync += rounded_scale(largest_scale)
                m.d.sync += largest_bits.eq(width - count)
                m.d.sync += state.eq(_Step.ALIGN_VALUE)
        with m.If(state == _Step.ALIGN_VALUE):
            m.d.comb += [normalise_in.eq(value), even.eq(1)]
            with m.If(settled):
                m.d.sync += [normalised.eq(aligned[width - RSQRT_INPUT_BITS:]),
                             half_shift.eq(count >> 1)]
                m.d.sync += state.eq(_Step.SEED)
        with m.If(state == _Step.SEED):
            m.d.sync += [iterate.eq(seed << RSQRT_SEED_SHIFT), step.eq(0)]
            m.d.sync += state.eq(_Step.NEWTON_SQUARE if params.rsqrt_newton_steps
                                 else _Step.ROUND_RSQRT)
        if params.rsqrt_newton_steps:
            self._elaborate_newton(m, state, iterate, normalised, step, product,
                                   multiplier_a, multiplier_b)
        with m.If(state == _Step.ROUND_RSQRT):
            # 1/sqrt(value) = y * 2**-(46 + shift/2), shift = (width - 32) - L.
            base = -RSQRT_EXPONENT - (width - RSQRT_INPUT_BITS) // 2
            m.d.comb += [normalise_in.eq(iterate), exponent_in.eq(base + half_shift)]
            with m.If(settled):
                m.d.sync += rounded_scale(norm_scale)
                m.d.sync += state.eq(_Step.MULTIPLY_CONSTANT)
        with m.If(state == _Step.MULTIPLY_CONSTANT):
            m.d.comb += [multiplier_a.eq(norm_scale.mantissa),
                         multiplier_b.eq(request.constant.mantissa)]
            m.d.sync += state.eq(_Step.ROUND_CONSTANT)
        with m.If(state == _Step.ROUND_CONSTANT):
            m.d.comb += [normalise_in.eq(product),
                         exponent_in.eq(norm_scale.exponent + request.constant.exponent)]
            with m.If(settled):
                m.d.sync += rounded_scale(norm_scale)
                m.d.sync += state.eq(Mux(request.quantize, _Step.MULTIPLY_LARGEST,
                                         _Step.DONE))
        with m.If(state == _Step.MULTIPLY_LARGEST):
            m.d.comb += [multiplier_a.eq(norm_scale.mantissa),
                         multiplier_b.eq(largest_scale.mantissa)]
            m.d.sync += state.eq(_Step.ROUND_LARGEST)
        with m.If(state == _Step.ROUND_LARGEST):
            m.d.comb += [normalise_in.eq(product),
                         exponent_in.eq(norm_scale.exponent + largest_scale.exponent)]
            with m.If(settled):
                m.d.sync += rounded_scale(output_scale)
                m.d.sync += state.eq(_Step.DONE)
        with m.If(state == _Step.DONE):
            m.d.comb += self.result.valid.eq(divider_done | ~request.quantize)
            with m.If(self.result.valid & self.result.ready):
                m.d.sync += state.eq(_Step.IDLE)

        m.d.comb += [
            self.result.payload.norm_scale.eq(norm_scale),
            self.result.payload.output_scale.eq(output_scale),
            self.result.payload.reciprocal.eq(reciprocal),
            self.result.payload.largest_bits.eq(largest_bits),
        ]
        return m

    def _elaborate_newton(self, m, state, iterate, normalised, step, product, multiplier_a,
                          multiplier_b):
        """y <- y * (3 - w y**2) / 2 as numerics.rsqrt_scale writes it, one product a cycle."""
        three = 3 << RSQRT_FRAC_BITS
        with m.If(state == _Step.NEWTON_SQUARE):
            m.d.comb += [multiplier_a.eq(iterate), multiplier_b.eq(iterate)]
            m.d.sync += state.eq(_Step.NEWTON_ERROR)
        with m.If(state == _Step.NEWTON_ERROR):
            # y_squared = (y * y) >> 30
            m.d.comb += [multiplier_a.eq(normalised),
                         multiplier_b.eq(product >> RSQRT_FRAC_BITS)]
            m.d.sync += state.eq(_Step.NEWTON_UPDATE)
        with m.If(state == _Step.NEWTON_UPDATE):
            # error = (w * y_squared) >> 32
            m.d.comb += [multiplier_a.eq(iterate),
                         multiplier_b.eq(three - (product >> RSQRT_INPUT_BITS))]
            m.d.sync += state.eq(_Step.NEWTON_NEXT)
        with m.If(state == _Step.NEWTON_NEXT):
            m.d.sync += [iterate.eq(product >> (RSQRT_FRAC_BITS + 1)), step.eq(step + 1)]
            with m.If(step == self._params.rsqrt_newton_steps - 1):
                m.d.sync += state.eq(_Step.ROUND_RSQRT)
            with m.Else():
                m.d.sync += state.eq(_Step.NEWTON_SQUARE)

    def _elaborate_seed_table(self, m, normalised):
        """Combinational ROM of numerics.rsqrt_table, addressed by the top bits of w."""
        table = [int(v) for v in numerics.rsqrt_table(self._params)]
        seed = Signal(max(table).bit_length())
        index = normalised[RSQRT_INPUT_BITS - self._params.rsqrt_table_bits:]
        with m.Switch(index):
            for address, entry in enumerate(table):
                # A default keeps the case statement complete (Verilator's CASEINCOMPLETE).
                with m.Default() if address == len(table) - 1 else m.Case(address):
                    m.d.comb += seed.eq(entry)
        return seed

    def _elaborate_divider(self, m, aligned, width, start, done):
        """Restoring division ``floor(activation_max * 2**(B + vector_bits) / d)`` of the
        divisor ``d`` = ``largest`` shifted so that its top bit is bit ``vector_bits - 1``:
        equal to ``floor(activation_max * 2**(B + e) / largest)``. Starts in the cycle that
        ``aligned`` holds ``largest`` (``start``); ``done`` rises when the quotient is
        complete."""
        params = self._params
        vector_bits, activation_bits = params.vector_bits, params.activation_bits
        # Dividend activation_max * 2**(vb - 1) < divisor * 2**(activation_bits - 1).
        divisor = Signal(vector_bits + activation_bits - 1)
        remainder = Signal(vector_bits + activation_bits)
        quotient = Signal(self.quotient_bits)
        remaining = Signal(range(self.quotient_bits // self.divider_steps + 1))
        m.d.comb += done.eq(remaining == 0)
        with m.If(start):
            m.d.sync += [
                divisor.eq(aligned[width - vector_bits:] << (activation_bits - 1)),
                remainder.eq(params.activation_max << (vector_bits - 1)),
                remaining.eq(self.quotient_bits // self.divider_steps),
            ]
        with m.Elif(~done):
            partial, bits = remainder, quotient
            for _ in range(self.divider_steps):
                doubled = partial << 1
                take = doubled >= divisor
                partial = Mux(take, doubled - divisor, doubled)[:remainder.shape().width]
                bits = Cat(take, bits)[:self.quotient_bits]
            m.d.sync += [remainder.eq(partial), quotient.eq(bits), remaining.eq(remaining - 1)]
        return quotient


def _normaliser_width(params: AcceleratorParameters) -> int:
    """Even width that holds ``sum_of_squares + epsilon_term`` and every other normaliser
    input (the even width makes ``L = count & ~1`` the numerics' even shift)."""
    bits = max(sum_of_squares_bits(params) + 1, 2 * MULTIPLIER_BITS, params.vector_bits)
    return bits + (bits & 1)


def _normalise_left(m, value, even):
    """Shift ``value`` left until its top bit is set, by an even count if ``even``.

    Returns ``(aligned, count)``; both are all zeros-safe (a zero input gives zero and the
    largest count). A logarithmic shifter: stage ``k`` shifts by ``2**k`` when the top
    ``2**k`` bits are zero; the one-bit stage is skipped when ``even``.
    """
    width = value.shape().width
    stages = (width - 1).bit_length()
    count = Signal(range(width + 1))
    current = value
    bits = []
    for k in reversed(range(stages)):
        amount = 1 << k
        zero = current[width - amount:] == 0
        if k == 0:
            zero = zero & ~even
        shifted = Signal(width, name=f"normalise_stage{k}")
        m.d.comb += shifted.eq(Mux(zero, current << amount, current))
        current = shifted
        bits.append(zero)
    m.d.comb += count.eq(Cat(*reversed(bits)))
    return current, count


def _round_mantissa(m, params, aligned, count, width):
    """numerics._normalise from the aligned value: ``(mantissa, exponent offset)``.

    The top ``bits + 1`` bits, rounded half up, are ``round_shift(value, excess)`` for any
    bit length (below ``bits + 1`` significant bits the dropped bit is zero); a carry into
    ``2**bits`` halves the mantissa and bumps the exponent.
    """
    bits = params.scale_mantissa_bits
    top = aligned[width - bits - 1:]
    rounded = Signal(bits + 1)
    m.d.comb += rounded.eq((top + 1) >> 1)
    carry = rounded[bits]
    mantissa = Signal(bits)
    offset = Signal(signed(Shape.cast(range(width + 1)).width + 1))
    m.d.comb += [
        mantissa.eq(Mux(carry, rounded >> 1, rounded)),
        offset.eq(width - bits - count + carry),
    ]
    return mantissa, offset
