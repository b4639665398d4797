"""The norm unit's scalar work for the dataflow core: the rsqrt of a vector's sum of squares and
the scale products, pipelined for 100 MHz (issue 15, ``docs/dataflow.md``).

:class:`ScaleEngine` computes, bit for bit as :mod:`tern_fpga.contracts.numerics` does,

- NORM: ``scale_multiply(rsqrt_scale(sum_of_squares + epsilon_term), constant)``;
- QUANT: that scale times ``scale_from_int(max(largest, 1))`` (the output scale).

The quantiser's reciprocal is not here: :class:`~tern_fpga.hw.dataflow.reciprocal.Reciprocal`
computes it beside this engine, so a QUANT's int8 values need not wait for the rsqrt.

One request at a time, sequenced by a small state machine around shared pipelined parts: a
32 x 32 multiplier (four 16-bit partial products, one DSP each, a register on each side, then
the partial sums and the product: :data:`MULTIPLIER_LATENCY` cycles from its operands to its
product) and a rounding normaliser (``numerics._normalise`` to ``scale_mantissa_bits``: the
bit length, the shift, the rounding: :data:`NORMALISER_LATENCY` cycles). A second normaliser
turns ``largest`` into its scale while the rsqrt runs. The value's even normalising shift goes
in a coarse step (multiples of 8) and a fine one, and the seed table is a ROM with a registered
read. Every state acts once its operands have come out of these pipelines (a timer), so each
path is a register, a little logic and a register.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, enum, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from tern_fpga.contracts import numerics
from tern_fpga.contracts.params import AcceleratorParameters
from tern_fpga.hw.dataflow.products import HALF
from tern_fpga.hw.scalar_engine import (  # shared; scalar_engine.py is a design source
    RSQRT_EXPONENT,
    RSQRT_FRAC_BITS,
    RSQRT_INPUT_BITS,
    RSQRT_SEED_SHIFT,
    request_layout,
)
from tern_fpga.hw.scale_layout import SCALE_EXPONENT_BITS

__all__ = ["MULTIPLIER_LATENCY", "NORMALISER_LATENCY", "ScaleEngine", "result_layout"]

#: Cycles from the state that sets the multiplier's operands to the one that uses its product.
MULTIPLIER_LATENCY = 4
#: Cycles from the state that sets a normaliser's input to the one that uses its scale.
NORMALISER_LATENCY = 4
# Cycles from taking a request to the seed: the sum, the bit length, the coarse and the fine
# shift, the table's read.
ALIGN_LATENCY = 5
# Internal exponents: wide enough that no sum of exponents wraps for any port values.
EXPONENT_BITS = SCALE_EXPONENT_BITS + 4
# The multiplier's operands.
WORD = 2 * HALF


def result_layout(params: AcceleratorParameters) -> data.StructLayout:
    """A :class:`~tern_fpga.contracts.numerics.Scale` with a wide exponent (``mantissa`` 0 means
    zero; the exponent is then 0)."""
    return data.StructLayout({"mantissa": unsigned(params.scale_mantissa_bits),
                              "exponent": signed(EXPONENT_BITS)})


class _Step(enum.Enum):
    # What the engine does next, in the order a QUANT request visits the states.
    IDLE = 0
    SEED = 1              # the seed has come: y = seed << 14; square it
    ERROR = 2             # y**2 has come: w * (y**2 >> 30)
    UPDATE = 3            # w y**2 has come: y * (3 - error)
    NEXT = 4              # the new y has come: square it, or round it
    TIMES_CONSTANT = 5    # the rsqrt's scale has come: times the constant's mantissa
    ROUND_CONSTANT = 6    # that product has come: round it
    TIMES_LARGEST = 7     # the norm's scale has come: QUANT: times largest's mantissa
    ROUND_LARGEST = 8     # that product has come: round it
    DONE = 9              # the result waits to be taken


def bit_length(value):
    """The bit length of an unsigned value (0 for 0), as a tree of halves (depth log2 of the
    width) rather than a chain of priority choices."""
    width = len(value)
    if width == 1:
        return value
    half = 1 << ((width - 1).bit_length() - 1)
    high, low = value[half:], value[:half]
    low_length = bit_length(low)
    high_length = bit_length(high)
    return Mux(high.any(), high_length + half, low_length)


class _Multiplier:
    """``a * b`` of two unsigned WORD-bit registers, :data:`MULTIPLIER_LATENCY` cycles after
    they are set (set them with ``m.d.sync``; the product stays while they do)."""

    def __init__(self, m):
        self.a, self.b = Signal(WORD, name="multiplier_a"), Signal(WORD, name="multiplier_b")
        pieces = {}
        for name, left, right in (("high_high", self.a[HALF:], self.b[HALF:]),
                                  ("high_low", self.a[HALF:], self.b[:HALF]),
                                  ("low_high", self.a[:HALF], self.b[HALF:]),
                                  ("low_low", self.a[:HALF], self.b[:HALF])):
            piece = Signal(WORD, name=f"multiplier_{name}")
            m.d.sync += piece.eq(left * right)
            pieces[name] = piece
        outer = Signal(2 * WORD, name="multiplier_outer")
        middle = Signal(WORD + 1, name="multiplier_middle")
        self.product = Signal(2 * WORD, name="multiplier_product")
        m.d.sync += [outer.eq(Cat(pieces["low_low"], pieces["high_high"])),
                     middle.eq(pieces["high_low"] + pieces["low_high"]),
                     self.product.eq(outer + (middle << HALF))]


class _Normaliser:
    """``numerics._normalise(value, exponent)`` of a WORD-bit value to ``bits`` of mantissa,
    :data:`NORMALISER_LATENCY` cycles after ``value`` and ``exponent`` are set."""

    def __init__(self, m, name: str, bits: int):
        self.value = Signal(WORD, name=f"{name}_value")
        self.exponent = Signal(signed(EXPONENT_BITS), name=f"{name}_exponent")
        # 2: the bit length.
        length = Signal(range(WORD + 1), name=f"{name}_length")
        value = Signal(WORD, name=f"{name}_value_2")
        exponent = Signal(signed(EXPONENT_BITS), name=f"{name}_exponent_2")
        m.d.sync += [length.eq(bit_length(self.value)), value.eq(self.value),
                     exponent.eq(self.exponent)]
        # 3: the value shifted to bits + 1 bits (the last is the rounding bit), and the
        # exponent plus the excess (length - bits).
        rounding = Signal(bits + 1, name=f"{name}_rounding")
        shifted_exponent = Signal(signed(EXPONENT_BITS), name=f"{name}_exponent_3")
        zero = Signal(name=f"{name}_zero")
        m.d.sync += [rounding.eq((value << (bits + 1)) >> length),
                     shifted_exponent.eq(exponent + length - bits),
                     zero.eq(length == 0)]
        # 4: round half up; a carry into bit `bits` halves the mantissa.
        rounded = Signal(bits + 1, name=f"{name}_rounded")
        m.d.comb += rounded.eq((rounding + 1) >> 1)
        carry = rounded[bits]
        self.mantissa = Signal(bits, name=f"{name}_mantissa")
        self.scaled_exponent = Signal(signed(EXPONENT_BITS), name=f"{name}_exponent_4")
        m.d.sync += [self.mantissa.eq(Mux(carry, 1 << (bits - 1), rounded[:bits])),
                     self.scaled_exponent.eq(Mux(zero, 0, shifted_exponent + carry))]


class ScaleEngine(wiring.Component):
    """The rsqrt and the scale products of one NORM or QUANT at a time, bit-exact.

    A request is taken when the engine is idle; its result is offered :meth:`latency` cycles
    later and held until taken. ``sum_of_squares + epsilon_term`` must not be 0
    (``numerics.rsqrt_scale`` refuses it; the engine gives an undefined scale).

    Parameters
    ----------
    params : tern_fpga.contracts.params.AcceleratorParameters

    Members
    -------
    request : ``In(stream.Signature(scalar_engine.request_layout(params)))``
        ``quantize`` (QUANT: times ``largest``'s scale), ``sum_of_squares``, ``epsilon_term``,
        ``constant``, ``largest``.
    result : ``Out(stream.Signature(result_layout(params)))``

    Raises
    ------
    TypeError
        If ``params`` is not an :class:`~tern_fpga.contracts.params.AcceleratorParameters`.
    ValueError
        If ``rsqrt_table_bits`` is not 3 to 12 (a coarser seed lets the Newton iterate leave
        the multiplier's range), the scale mantissa is wider than the multiplier's 32 bits or
        ``vector_bits`` is above 32 (``largest`` goes through a 32-bit normaliser).
    """

    def __init__(self, params: AcceleratorParameters):
        if not isinstance(params, AcceleratorParameters):
            raise TypeError(f"params must be an AcceleratorParameters, not {params!r}")
        if not 3 <= params.rsqrt_table_bits <= 12:
            raise ValueError(f"the scale engine needs rsqrt_table_bits from 3 to 12, not "
                             f"{params.rsqrt_table_bits!r}")
        if params.scale_mantissa_bits > HALF or params.vector_bits > WORD:
            raise ValueError(f"the scale engine multiplies {WORD}-bit words: scale_mantissa_bits "
                             f"must be at most {HALF} (not {params.scale_mantissa_bits}) and "
                             f"vector_bits at most {WORD} (not {params.vector_bits})")
        self._params = params
        super().__init__({
            "request": In(stream.Signature(request_layout(params))),
            "result": Out(stream.Signature(result_layout(params))),
        })

    def latency(self, quantize: bool) -> int:
        """Cycles from the edge that takes a request to the first at which its result can be
        taken: the alignment, three products a Newton step, the rsqrt's rounding, the
        constant's product and rounding, and for QUANT ``largest``'s."""
        newton = 3 * MULTIPLIER_LATENCY * self._params.rsqrt_newton_steps
        scales = 2 if quantize else 1
        return (ALIGN_LATENCY + newton + NORMALISER_LATENCY
                + scales * (MULTIPLIER_LATENCY + NORMALISER_LATENCY))

    def elaborate(self, platform):
        m = Module()
        params = self._params
        bits = params.scale_mantissa_bits
        steps = params.rsqrt_newton_steps
        multiplier = _Multiplier(m)
        m.submodules.seeds = seeds = Memory(
            shape=unsigned(int(numerics.rsqrt_table(params).max()).bit_length()),
            depth=1 << params.rsqrt_table_bits,
            init=[int(seed) for seed in numerics.rsqrt_table(params)])
        scale = _Normaliser(m, "scale", bits)
        largest = _Normaliser(m, "largest", bits)
        w, seed, y_exponent = self._elaborate_alignment(m, seeds)
        iterate = Signal(WORD, name="iterate")                  # y, Q.30

        state = Signal(_Step)
        timer = Signal(range(max(MULTIPLIER_LATENCY, NORMALISER_LATENCY, ALIGN_LATENCY)))
        step = Signal(range(max(steps, 1)))
        quantize = Signal()
        constant = Signal.like(self.request.payload.constant)
        exponent = Signal(signed(EXPONENT_BITS))      # the exponent of the product under way
        three = 3 << RSQRT_FRAC_BITS
        new_iterate = multiplier.product >> (RSQRT_FRAC_BITS + 1)

        def after(next_state, cycles):
            return [state.eq(next_state), timer.eq(cycles - 1)]

        def multiply(a, b, next_state):
            return [multiplier.a.eq(a), multiplier.b.eq(b),
                    *after(next_state, MULTIPLIER_LATENCY)]

        def round_rsqrt(value):
            # 1/sqrt(value) = y * 2**y_exponent (numerics.rsqrt_scale).
            return [scale.value.eq(value), scale.exponent.eq(y_exponent),
                    *after(_Step.TIMES_CONSTANT, NORMALISER_LATENCY)]

        with m.If(timer != 0):
            m.d.sync += timer.eq(timer - 1)
        with m.Switch(state):
            with m.Case(_Step.IDLE):
                m.d.comb += self.request.ready.eq(1)
                with m.If(self.request.valid):
                    payload = self.request.payload
                    m.d.sync += [
                        quantize.eq(payload.quantize), constant.eq(payload.constant),
                        largest.value.eq(Mux(payload.largest == 0, 1, payload.largest)),
                        largest.exponent.eq(0), step.eq(0), *after(_Step.SEED, ALIGN_LATENCY),
                    ]
            with m.Case(_Step.SEED), m.If(timer == 0):
                y = seed << RSQRT_SEED_SHIFT
                m.d.sync += iterate.eq(y)
                if steps:
                    m.d.sync += multiply(y, y, _Step.ERROR)
                else:
                    m.d.sync += round_rsqrt(y)
            with m.Case(_Step.ERROR), m.If(timer == 0):
                m.d.sync += multiply(w, multiplier.product >> RSQRT_FRAC_BITS, _Step.UPDATE)
            with m.Case(_Step.UPDATE), m.If(timer == 0):
                m.d.sync += multiply(iterate, three - (multiplier.product >> RSQRT_INPUT_BITS),
                                     _Step.NEXT)
            with m.Case(_Step.NEXT), m.If(timer == 0):
                m.d.sync += [iterate.eq(new_iterate), step.eq(step + 1)]
                with m.If(step == steps - 1):
                    m.d.sync += round_rsqrt(new_iterate)
                with m.Else():
                    m.d.sync += multiply(new_iterate, new_iterate, _Step.ERROR)
            with m.Case(_Step.TIMES_CONSTANT), m.If(timer == 0):
                m.d.sync += [exponent.eq(scale.scaled_exponent + constant.exponent),
                             *multiply(scale.mantissa, constant.mantissa,
                                       _Step.ROUND_CONSTANT)]
            with m.Case(_Step.ROUND_CONSTANT), m.If(timer == 0):
                m.d.sync += [scale.value.eq(multiplier.product), scale.exponent.eq(exponent),
                             *after(Mux(quantize, _Step.TIMES_LARGEST, _Step.DONE),
                                    NORMALISER_LATENCY)]
            with m.Case(_Step.TIMES_LARGEST), m.If(timer == 0):
                m.d.sync += [exponent.eq(scale.scaled_exponent + largest.scaled_exponent),
                             *multiply(scale.mantissa, largest.mantissa,
                                       _Step.ROUND_LARGEST)]
            with m.Case(_Step.ROUND_LARGEST), m.If(timer == 0):
                m.d.sync += [scale.value.eq(multiplier.product), scale.exponent.eq(exponent),
                             *after(_Step.DONE, NORMALISER_LATENCY)]
            with m.Case(_Step.DONE):
                m.d.comb += self.result.valid.eq(timer == 0)
                with m.If(self.result.valid & self.result.ready):
                    m.d.sync += state.eq(_Step.IDLE)
        m.d.comb += [self.result.payload.mantissa.eq(scale.mantissa),
                     self.result.payload.exponent.eq(scale.scaled_exponent)]
        return m

    def _elaborate_alignment(self, m, seeds):
        """The value ``sum_of_squares + epsilon_term`` normalised by an even shift to ``w`` in
        ``[2**30, 2**32)`` and the seed at ``w``'s top bits, :data:`ALIGN_LATENCY` cycles after
        the request is taken. Returns ``w``, the seed and ``y_exponent``: ``1 / sqrt(value) =
        y * 2**y_exponent`` for the Q.30 iterate ``y``."""
        payload = self.request.payload
        total_bits = len(payload.sum_of_squares) + 1
        # 1: the value.
        value = Signal(total_bits, name="value")
        with m.If(self.request.valid & self.request.ready):
            m.d.sync += value.eq(payload.sum_of_squares + payload.epsilon_term)
        # 2: its bit length.
        length = Signal(range(total_bits + 1), name="value_length")
        value_2 = Signal.like(value, name="value_2")
        m.d.sync += [length.eq(bit_length(value)), value_2.eq(value)]
        # 3: w = value >> shift (shift = length - 32 rounded up to even; a left shift when
        # negative) = (value << 32) >> (32 + shift); the coarse step by a multiple of 8.
        right = Signal(range(2 * RSQRT_INPUT_BITS + 1), name="right_shift")
        m.d.comb += right.eq(((length + 1) >> 1) << 1)    # 32 + shift, even
        coarse = Signal(RSQRT_INPUT_BITS + 7, name="aligned_coarse")
        fine = Signal(3, name="aligned_fine")
        y_exponent = Signal(signed(EXPONENT_BITS), name="y_exponent")
        m.d.sync += [
            coarse.eq((Cat(Const(0, RSQRT_INPUT_BITS), value_2) >> (right[3:] << 3))
                      [:len(coarse)]),
            fine.eq(right[:3]),
            # 2**-(46 + shift / 2) = 2**-(46 - 16 + right / 2)
            y_exponent.eq(-RSQRT_EXPONENT + RSQRT_INPUT_BITS // 2 - (right >> 1)),
        ]
        # 4: the fine step.
        w = Signal(RSQRT_INPUT_BITS, name="w")
        m.d.sync += w.eq(coarse >> fine)
        # 5: the seed (the ROM's registered read).
        port = seeds.read_port()
        m.d.comb += port.addr.eq(w[RSQRT_INPUT_BITS - self._params.rsqrt_table_bits:])
        return w, port.data, y_exponent
