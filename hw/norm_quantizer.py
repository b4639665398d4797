"""The RMSNorm and activation-quantiser unit (NORM and QUANT instructions).

:class:`NormQuantizer` computes, bit for bit, ``numerics.rmsnorm(x, weight, epsilon_term,
constant, params)`` (NORM) and ``numerics.quantize_activations(...)`` (QUANT: int8 activations
and the output :class:`~tern_fpga.contracts.numerics.Scale`) of :mod:`tern_fpga.contracts.numerics`,
with ``V = params.vector_lanes`` lanes.

The sender streams the vector twice, ``ceil(n / V)`` beats of ``V`` ``(x, weight)`` pairs
each time. Pass 1 reduces: per lane the square ``min(x**2 >> square_shift, 2**S - 1)`` and
``|u|``, ``u = multiply(x, weight)``, then an adder tree and a max tree into a sum of squares
and ``max|u|``. The :class:`tern_fpga.hw.scalar_engine.ScalarEngine` then computes the rsqrt, the
scales and (QUANT) the reciprocal. Pass 2 applies: ``apply_scale(u, r)`` (NORM) or the int8
``q = round_half_away(127 u / max|u|)`` (QUANT) leave on ``result``, ``V`` lanes a beat.

Each lane has two multipliers. ``A`` forms ``x * weight`` in both passes. ``B`` forms
``|x| * |x|`` in pass 1 and, in pass 2, ``u * k`` (NORM) or ``|u| * k`` (QUANT), where ``k``
is the scale's mantissa or the reciprocal shifted left by up to 7 bits so that the remaining
rounding shift is a whole number of bytes: a rounding right shift by ``t`` bits is then a
choice among ``t / 8 + 1`` fixed bit windows plus two comparisons (saturation) against
thresholds that depend only on ``t``, instead of a full barrel shifter in every lane.
"""

from __future__ import annotations

import itertools
import math

from amaranth.hdl import Cat, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, enum, stream, wiring
from amaranth.lib.wiring import In, Out

from tern_fpga.contracts.params import AcceleratorParameters
from tern_fpga.hw.scalar_engine import ScalarEngine
from tern_fpga.hw.scale_layout import scale_layout, sum_of_squares_bits

__all__ = [
    "NormQuantizer",
    "Operation",
    "beats_per_pass",
    "command_layout",
    "operand_layout",
    "result_layout",
]

# The multiplicand may be shifted left by up to this many bits (one byte less one).
_FINE_SHIFT_BITS = 3


class Operation(enum.Enum, shape=1):
    """What a command computes."""

    NORM = 0
    QUANT = 1


class _Phase(enum.Enum, shape=2):
    # Where the unit is in a command.
    IDLE = 0      # between commands
    REDUCE = 1    # pass 1
    SCALE = 2     # the scalar engine
    APPLY = 3     # pass 2


def beats_per_pass(length: int, params: AcceleratorParameters) -> int:
    """Beats of ``V`` lanes that one pass over ``length`` elements takes."""
    return -(-length // params.vector_lanes)


def command_layout(params: AcceleratorParameters) -> data.StructLayout:
    """Payload of the command stream.

    ``operation`` (:class:`Operation`), ``length`` (``n``, 1 to ``params.max_features``),
    ``epsilon_term`` and ``constant`` (:func:`tern_fpga.hw.scalar_engine.scale_layout`), the
    arguments of the same names of ``numerics.rmsnorm`` and ``numerics.quantize_activations``.
    """
    return data.StructLayout({
        "operation": Operation,
        "length": range(1, params.max_features + 1),
        "epsilon_term": unsigned(sum_of_squares_bits(params)),
        "constant": scale_layout(params),
    })


def operand_layout(params: AcceleratorParameters) -> data.StructLayout:
    """One beat of the operand stream: ``x`` and ``weight``, ``V`` lanes each."""
    lanes = data.ArrayLayout(signed(params.vector_bits), params.vector_lanes)
    return data.StructLayout({"x": lanes, "weight": lanes})


def result_layout(params: AcceleratorParameters) -> data.ArrayLayout:
    """One beat of the result stream: ``V`` lanes of the vector format (QUANT's int8 values
    sign-extended)."""
    return data.ArrayLayout(signed(params.vector_bits), params.vector_lanes)


def _tag_layout(params: AcceleratorParameters) -> data.StructLayout:
    # What travels with each beat through the pipeline.
    return data.StructLayout({
        "valid": 1, "second_pass": 1, "first": 1, "last": 1, "mask": params.vector_lanes,
    })


class NormQuantizer(wiring.Component):
    """RMSNorm (NORM) and activation quantiser (QUANT), ``V`` lanes, bit-exact.

    A command is taken when the unit is between commands (the previous command's last pass-2
    beat may still be in the pipeline). The unit then takes ``beats_per_pass(n)`` operand
    beats (pass 1), computes the scales, and takes the same beats again (pass 2); beat ``b``
    holds elements ``b*V .. b*V + V - 1`` in lanes ``0 .. V-1``. Lanes past ``n`` in the last
    beat are ignored, and their results are 0. Pass 2 gives one ``result`` beat per operand
    beat. A QUANT command also offers its output scale on ``scale`` before its first result;
    it is held until taken (the unit takes no further pass-2 beats of a later QUANT command
    while it is held). Results are exact for every port value, with two domain limits noted in
    ``docs/hardware.md``: the output scale's exponent must fit :data:`SCALE_EXPONENT_BITS`,
    and NORM saturates where ``numerics.apply_scale``'s int64 shift would wrap.

    Parameters
    ----------
    params : tern_fpga.contracts.params.AcceleratorParameters
        Gives ``V = params.vector_lanes``, the vector format and every numeric width.

    Members
    -------
    command : ``In(stream.Signature(command_layout(params)))``
    operands : ``In(stream.Signature(operand_layout(params)))``
    result : ``Out(stream.Signature(result_layout(params)))``
    scale : ``Out(stream.Signature(scale_layout(params)))``
    busy : ``Out(1)``
        High while a command is in progress or any of its outputs has not left.

    Raises
    ------
    TypeError
        If ``params`` is not an :class:`~tern_fpga.contracts.params.AcceleratorParameters`.
    ValueError
        If a shifted mantissa or reciprocal would not fit lane multiplier ``B``'s
        ``vector_bits``-wide operand, or (from the scalar engine) the seed table is too coarse.
    """

    def __init__(self, params: AcceleratorParameters):
        if not isinstance(params, AcceleratorParameters):
            raise TypeError(f"params must be an AcceleratorParameters, not {params!r}")
        fine = (1 << _FINE_SHIFT_BITS) - 1
        for name, bits in (("scale_mantissa_bits", params.scale_mantissa_bits),
                           ("reciprocal_bits + activation_bits",
                            params.reciprocal_bits + params.activation_bits)):
            if bits + fine > params.vector_bits:
                raise ValueError(
                    f"{name} = {bits} leaves no room for the {fine}-bit fine shift in a "
                    f"{params.vector_bits}-bit multiplier operand; use at most "
                    f"{params.vector_bits - fine}")
        self._params = params
        self._engine = ScalarEngine(params)
        super().__init__({
            "command": In(stream.Signature(command_layout(params))),
            "operands": In(stream.Signature(operand_layout(params))),
            "result": Out(stream.Signature(result_layout(params))),
            "scale": Out(stream.Signature(scale_layout(params))),
            "busy": Out(1),
        })

    @property
    def params(self) -> AcceleratorParameters:
        return self._params

    @property
    def tree_stages(self) -> int:
        """Registered levels of the pass-1 adder and max trees."""
        return math.ceil(math.log2(self._params.vector_lanes))

    @property
    def max_shift(self) -> int:
        """Largest rounding shift the lanes apply; NORM clamps larger ones (their results
        are 0), QUANT's shift ``vector_bits - 1 + B + e`` never exceeds it."""
        p = self._params
        return max(2 * p.vector_bits + p.scale_mantissa_bits,
                   2 * p.vector_bits + p.reciprocal_bits - 1)

    @property
    def max_coarse_shift(self) -> int:
        """Largest shift in whole bytes after the fine shift of the multiplicand."""
        return -(-self.max_shift >> _FINE_SHIFT_BITS)

    def elaborate(self, platform):
        m = Module()
        m.submodules.engine = engine = self._engine
        advance = Signal()
        m.d.comb += advance.eq(~self.result.valid | self.result.ready)
        apply = self._elaborate_apply_settings(m, engine)
        tag, active = self._elaborate_control(m, engine, advance)
        squares, magnitudes, tags = self._elaborate_lanes(m, tag, apply, advance)
        pipeline_busy = self._elaborate_reduction(m, engine, squares, magnitudes, tags)
        m.d.comb += self.busy.eq(active | pipeline_busy | self.scale.valid)
        return m

    # Control ----------------------------------------------------------------------------------

    def _elaborate_control(self, m, engine, advance):
        """Command register, pass sequencing, beat counting. Returns the S1 tag and whether a
        command is in progress."""
        params = self._params
        lane_bits = params.vector_lanes.bit_length() - 1
        command = Signal(command_layout(params))
        beat = Signal(range(beats_per_pass(params.max_features, params)))
        last_beat = (command.length - 1) >> lane_bits
        last_lane = (command.length - 1)[:lane_bits]
        phase = Signal(_Phase)
        take = Signal()
        m.d.comb += take.eq(self.operands.valid & self.operands.ready)

        tag = Signal(_tag_layout(params))
        with m.If(advance):
            m.d.sync += [
                tag.valid.eq(take),
                tag.second_pass.eq(phase == _Phase.APPLY),
                tag.first.eq(beat == 0),
                tag.last.eq(beat == last_beat),
                # Lane 0 always holds an element.
                tag.mask.eq(Cat(1, *[(beat != last_beat) | (last_lane >= lane)
                                     for lane in range(1, params.vector_lanes)])),
            ]

        # The phase register; written with If/Elif rather than m.FSM, whose Verilog case
        # statements list only the states that assign (Verilator's CASEINCOMPLETE).
        quantize = command.operation == Operation.QUANT
        engine_done = engine.result.valid & engine.result.ready
        m.d.comb += [
            self.command.ready.eq(phase == _Phase.IDLE),
            self.operands.ready.eq(((phase == _Phase.REDUCE) | (phase == _Phase.APPLY))
                                   & advance),
            engine.result.ready.eq((phase == _Phase.SCALE) & ~(quantize & self.scale.valid)),
        ]
        with m.If(take):
            m.d.sync += beat.eq(Mux(beat == last_beat, 0, beat + 1))
        with m.If(self.command.valid & self.command.ready):
            m.d.sync += [command.eq(self.command.payload), phase.eq(_Phase.REDUCE)]
        with m.Elif(take & (beat == last_beat)):
            with m.If(phase == _Phase.REDUCE):
                m.d.sync += phase.eq(_Phase.SCALE)
            with m.Else():
                m.d.sync += phase.eq(_Phase.IDLE)
        with m.Elif(engine_done):
            m.d.sync += phase.eq(_Phase.APPLY)

        # Engine request, raised by the reduction (see _elaborate_reduction).
        m.d.comb += [
            engine.request.payload.quantize.eq(quantize),
            engine.request.payload.epsilon_term.eq(command.epsilon_term),
            engine.request.payload.constant.eq(command.constant),
        ]
        # The QUANT output scale, held until taken.
        with m.If(self.scale.valid & self.scale.ready):
            m.d.sync += self.scale.valid.eq(0)
        with m.If(engine_done & quantize):
            m.d.sync += [self.scale.valid.eq(1),
                         self.scale.payload.eq(engine.result.payload.output_scale)]
        return tag, phase != _Phase.IDLE

    def _elaborate_apply_settings(self, m, engine):
        """The pass-2 settings, loaded when the engine's result is taken: multiplicand ``k``,
        byte shift ``coarse`` and saturation thresholds, as the module docstring describes."""
        params = self._params
        vector_bits = params.vector_bits
        result = engine.result.payload
        product_bits = 2 * vector_bits
        apply = Signal(data.StructLayout({
            "quantize": 1,
            "multiplicand": unsigned(vector_bits),
            "coarse": range(self.max_coarse_shift + 1),
            "high": signed(product_bits + 1),
            "low": signed(product_bits + 1),
        }))
        # NORM: round(P * 2**e) is a right shift by t = vector_bits - 1 - e; exponents of
        # vector_bits - 1 or more saturate every nonzero product alike, so e is clamped there.
        exponent = result.norm_scale.exponent
        norm_shift = Mux(exponent >= vector_bits - 1, 0,
                         Mux(exponent < vector_bits - 1 - self.max_shift, self.max_shift,
                             vector_bits - 1 - exponent))
        # QUANT: levels = round_shift(|u| * R, B + e) is the same shift with t = vb - 1 + B + e.
        quant_shift = vector_bits - 1 + params.reciprocal_bits + result.largest_bits
        quantize = Signal()
        shift = Signal(range(self.max_shift + 1))
        fine = Signal(_FINE_SHIFT_BITS)
        m.d.comb += [
            quantize.eq(engine.request.payload.quantize),
            shift.eq(Mux(quantize, quant_shift, norm_shift)),
            fine.eq(-shift),
        ]
        coarse = (shift + fine) >> _FINE_SHIFT_BITS
        base = Mux(quantize, result.reciprocal, result.norm_scale.mantissa)
        with m.If(engine.result.valid & engine.result.ready):
            m.d.sync += [
                apply.quantize.eq(quantize),
                apply.multiplicand.eq(base << fine),
                apply.coarse.eq(coarse),
            ]
            with m.Switch(coarse):
                for index in range(self.max_coarse_shift + 1):
                    high, low = self._thresholds(index)
                    # A default keeps the case statement complete (CASEINCOMPLETE).
                    with m.Default() if index == self.max_coarse_shift else m.Case(index):
                        m.d.sync += [apply.high.eq(high), apply.low.eq(low)]
        return apply

    def _thresholds(self, coarse: int) -> tuple[int, int]:
        """``(high, low)``: the rounded, shifted product saturates high iff ``P >= high`` and
        low iff ``P < low`` when the shift is ``8 * coarse`` bits (see :meth:`_window`)."""
        vector_bits = self._params.vector_bits
        shift = (coarse << _FINE_SHIFT_BITS) - vector_bits
        limit = 1 << (2 * vector_bits - 1)  # |P| < limit

        def ceil_scaled(value):  # ceil(value * 2**shift)
            return value << shift if shift >= 0 else -((-value) >> -shift)

        # r = (Y + 1) >> 1 with Y = floor(P * 2**-shift): r >= 2**(vb-1) iff Y >= 2**vb - 1,
        # r < -2**(vb-1) iff Y < -2**vb - 1.
        high = min(ceil_scaled((1 << vector_bits) - 1), limit)
        low = max(ceil_scaled(-(1 << vector_bits) - 1), -limit)
        return high, low

    # Lanes ------------------------------------------------------------------------------------

    def _elaborate_lanes(self, m, tag1, apply, advance):
        """Stages S1 (operands) to S5 (result or reduction inputs) of every lane. Returns the
        pass-1 squares and magnitudes at S5 and the S5 tag."""
        params = self._params
        vector_bits = params.vector_bits
        tags = [tag1] + [Signal(_tag_layout(params), name=f"tag{stage}") for stage in (2, 3, 4, 5)]
        with m.If(advance):
            m.d.sync += [later.eq(earlier) for earlier, later in itertools.pairwise(tags)]
        tag3, tag4, tag5 = tags[2:]
        payload = self.operands.payload
        square_limit = (1 << params.square_saturation_bits) - 1
        squares, magnitudes = [], []
        for lane in range(params.vector_lanes):
            def stage(name, shape, lane=lane):
                return Signal(shape, name=f"lane{lane}_{name}")

            x, weight = stage("x", signed(vector_bits)), stage("weight", signed(vector_bits))
            product_a = stage("product_a", signed(2 * vector_bits))
            x_magnitude2 = stage("x_magnitude2", unsigned(vector_bits))
            x_magnitude3 = stage("x_magnitude3", unsigned(vector_bits))
            u = stage("u", signed(vector_bits))
            u_magnitude3 = stage("u_magnitude3", unsigned(vector_bits))
            u_magnitude4 = stage("u_magnitude4", unsigned(vector_bits))
            negative4 = stage("negative4", 1)
            product_b = stage("product_b", signed(2 * vector_bits))
            output = stage("output", signed(vector_bits))
            square = stage("square", unsigned(params.square_saturation_bits))
            magnitude = stage("magnitude", unsigned(vector_bits))

            rounded = self._rounded_product(m, product_a, lane)
            operand_a = Mux(tag3.second_pass, Mux(apply.quantize, u_magnitude3, u),
                            x_magnitude3)
            operand_b = Mux(tag3.second_pass, apply.multiplicand, x_magnitude3)
            shifted = product_b >> params.square_shift
            masked = ~tag4.mask[lane]
            with m.If(advance):
                m.d.sync += [
                    # S1
                    x.eq(payload.x[lane]), weight.eq(payload.weight[lane]),
                    # S2: multiplier A
                    product_a.eq(x * weight), x_magnitude2.eq(abs(x)),
                    # S3: u = multiply(x, weight)
                    u.eq(rounded), u_magnitude3.eq(abs(rounded)), x_magnitude3.eq(x_magnitude2),
                    # S4: multiplier B
                    product_b.eq(operand_a * operand_b),
                    u_magnitude4.eq(u_magnitude3), negative4.eq(u < 0),
                    # S5
                    square.eq(Mux(masked, 0, Mux(shifted > square_limit, square_limit,
                                                 shifted))),
                    magnitude.eq(Mux(masked, 0, u_magnitude4)),
                    output.eq(Mux(masked, 0, self._applied(m, product_b, negative4, apply,
                                                           lane))),
                ]
            squares.append(square)
            magnitudes.append(magnitude)
            m.d.comb += self.result.payload[lane].eq(output)
        m.d.comb += self.result.valid.eq(tag5.valid & tag5.second_pass)
        return squares, magnitudes, tags

    def _rounded_product(self, m, product, lane):
        """``multiply``'s ``saturate(round_shift(x * weight, frac_bits))``."""
        params = self._params
        high = (1 << (params.vector_bits - 1)) - 1
        rounded = Signal(signed(2 * params.vector_bits), name=f"lane{lane}_rounded")
        result = Signal(signed(params.vector_bits), name=f"lane{lane}_u")
        m.d.comb += [
            rounded.eq((product + (1 << (params.frac_bits - 1))) >> params.frac_bits),
            result.eq(Mux(rounded > high, high, Mux(rounded < -high - 1, -high - 1, rounded))),
        ]
        return result

    def _applied(self, m, product, negative, apply, lane):
        """Pass 2's lane result from multiplier B's product ``P = u * k`` or ``|u| * k``:
        ``r = (Y + 1) >> 1`` with ``Y = floor(P * 2**(vb - 8 * coarse))``, saturated to the
        vector format (NORM), or ``q = sign(u) * min(r, activation_max)`` (QUANT)."""
        params = self._params
        vector_bits = params.vector_bits
        window = Signal(vector_bits + 1, name=f"lane{lane}_window")
        with m.Switch(apply.coarse):
            for coarse in range(self.max_coarse_shift + 1):
                shift = (coarse << _FINE_SHIFT_BITS) - vector_bits
                with m.Default() if coarse == self.max_coarse_shift else m.Case(coarse):
                    m.d.comb += window.eq(product >> shift if shift >= 0 else product << -shift)
        rounded = Signal(signed(vector_bits), name=f"lane{lane}_rounded_result")
        m.d.comb += rounded.eq((window + 1) >> 1)
        high = (1 << (vector_bits - 1)) - 1
        saturated = Mux(product >= apply.high, high,
                        Mux(product < apply.low, -high - 1, rounded))
        levels = Mux(rounded > params.activation_max, params.activation_max, rounded)
        return Mux(apply.quantize, Mux(negative, -levels, levels), saturated)

    # Reduction --------------------------------------------------------------------------------

    def _elaborate_reduction(self, m, engine, squares, magnitudes, tags):
        """Pass 1's adder and max trees and the accumulators; raises the engine request after
        the last beat. Returns "something is still in the pipeline"."""
        tag = Signal(_tag_layout(self._params))
        m.d.comb += [tag.eq(tags[-1]), tag.valid.eq(tags[-1].valid & ~tags[-1].second_pass)]
        level_tags = [tag]
        while len(squares) > 1:
            squares = [self._pair(m, squares[i], squares[i + 1], 1, lambda a, b: a + b)
                       for i in range(0, len(squares), 2)]
            magnitudes = [self._pair(m, magnitudes[i], magnitudes[i + 1], 0,
                                     lambda a, b: Mux(a > b, a, b))
                          for i in range(0, len(magnitudes), 2)]
            delayed = Signal(_tag_layout(self._params))
            m.d.sync += delayed.eq(level_tags[-1])
            level_tags.append(delayed)
        tag = level_tags[-1]
        total = Signal(sum_of_squares_bits(self._params))
        largest = Signal(self._params.vector_bits)
        pending = Signal()
        with m.If(tag.valid):
            m.d.sync += [
                total.eq(Mux(tag.first, 0, total) + squares[0]),
                largest.eq(Mux(tag.first | (magnitudes[0] > largest), magnitudes[0], largest)),
            ]
            with m.If(tag.last):
                m.d.sync += pending.eq(1)
        with m.If(engine.request.valid & engine.request.ready):
            m.d.sync += pending.eq(0)
        m.d.comb += [
            engine.request.valid.eq(pending),
            engine.request.payload.sum_of_squares.eq(total),
            engine.request.payload.largest.eq(largest),
        ]
        busy = pending | engine.request.valid
        for stage_tag in tags + level_tags:
            busy = busy | stage_tag.valid
        return busy

    @staticmethod
    def _pair(m, a, b, growth, combine):
        # One registered tree node (V is a power of two, so every level pairs up).
        out = Signal(a.shape().width + growth)
        m.d.sync += out.eq(combine(a, b))
        return out
