"""The row-wise unit: the element-wise operations of the MLGRU and the GLU, ``V`` lanes a cycle.

:class:`RowUnit` executes SIGMOID, SILU, MUL, ADD, SUB, ONE_MINUS, SCALE (the matrix unit's row
sums times a per-token :class:`~tern_fpga.contracts.numerics.Scale`) and EMBED (``embedding <<
shift``) on ``V = params.vector_lanes`` elements per cycle, bit for bit as
:func:`tern_fpga.sim.golden.row_unit.row_operation` (that is, :mod:`tern_fpga.contracts.numerics`)
defines them.

Every operation flows through one six-stage pipeline, so a new command may follow the last beat
of the previous one with no bubble:

1. operand registers; the sigmoid table's read (one ROM read port per lane, one ROM per two
   lanes; each entry holds a segment's start and its step to the next);
2. the interpolation product ``step * fraction``;
3. the sigmoid; the multiplier's second operand: ``b`` (MUL), the sigmoid (SILU), or the
   command's constant ``mantissa << fine`` (SCALE; ``1 << fine`` for EMBED); the sum of ADD,
   SUB and ONE_MINUS;
4. the product, in one ``vector_bits`` x ``vector_bits`` signed multiplier per lane;
5. the product moved to one of a few coarse positions (a multiple of 16 bits apart; ``fine``
   in stage 3 did the rest of a SCALE's shift, see :class:`_Funnel`);
6. rounding half up, the choice of result and saturation, into the output register.

The golden computes in ``np.int64`` and the funnel mirrors that: a left shift keeps the low 64
bits of the product, as numpy's does (see ``docs/hardware.md`` on the wrap-around this implies).

Back-pressure stalls the whole pipeline at once (every register is enabled by ``advance``: the
output is empty or taken), so ``a.ready`` and ``b.ready`` depend combinationally on
``result.ready``.
"""

from __future__ import annotations

import itertools
from typing import NamedTuple

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from tern_fpga.contracts import numerics
from tern_fpga.contracts.isa import BINARY_OPERATIONS, FIELDS, RowOperation
from tern_fpga.contracts.numerics import Scale
from tern_fpga.contracts.params import AcceleratorParameters
from tern_fpga.hw.scale_layout import SCALE_EXPONENT_BITS, scale_layout

__all__ = [
    "RowUnit",
    "command_layout",
    "max_length",
    "operand_layout",
    "result_layout",
    "scale_fields",
]

# numerics computes in np.int64: a left shift keeps the low 64 bits of the product.
PRODUCT_BITS = 64
# numerics.apply_scale shifts left by at most _MAX_SHIFT - 20 and round_shift right by at most
# _MAX_SHIFT; larger exponents act as these limits.
LEFT_SHIFT_LIMIT = numerics._MAX_SHIFT - 20
RIGHT_SHIFT_LIMIT = numerics._MAX_SHIFT

# Operations whose result is the product, rounded and shifted (the others: the sum, the sigmoid).
_PRODUCT_OPERATIONS = (RowOperation.SILU, RowOperation.MUL, RowOperation.SCALE,
                       RowOperation.EMBED)


def max_length(params: AcceleratorParameters) -> int:
    """The longest vector one command may take: it fits the vector memory and the ISA's
    ``length`` field."""
    return min(params.vector_memory_words, (1 << FIELDS["length"][1]) - 1)


def command_layout(params: AcceleratorParameters) -> data.StructLayout:
    """Payload of the command stream.

    ``operation`` (:class:`~tern_fpga.sim.golden.row_unit.RowOperation`), ``length`` (elements, 1 to
    :func:`max_length`), ``scale`` (:func:`tern_fpga.hw.scalar_engine.scale_layout`: the same scale
    registers the norm unit's QUANT writes; SCALE only) and ``shift`` (EMBED only,
    0 to ``vector_bits - embedding_bits``: the largest that keeps every embedding
    ``<< shift`` in range).
    """
    return data.StructLayout({
        "operation": RowOperation,
        "length": range(1, max_length(params) + 1),
        "scale": scale_layout(params),
        "shift": range(params.vector_bits - params.embedding_bits + 1),
    })


def operand_layout(params: AcceleratorParameters) -> data.ArrayLayout:
    """Payload of ``a`` and ``b``: ``V`` signed ``vector_bits`` lanes; lane ``j`` of beat ``i``
    is element ``i * V + j``. SCALE's row sums and EMBED's embeddings come sign-extended."""
    return data.ArrayLayout(signed(params.vector_bits), params.vector_lanes)


def result_layout(params: AcceleratorParameters) -> data.StructLayout:
    """Payload of ``result``: ``data`` (the ``V`` lanes), ``mask`` (bit ``j`` set when lane
    ``j`` holds an element, not padding past ``length``) and ``last`` (a command's last beat)."""
    return data.StructLayout({
        "data": operand_layout(params),
        "mask": unsigned(params.vector_lanes),
        "last": unsigned(1),
    })


def scale_fields(scale: Scale, params: AcceleratorParameters) -> dict:
    """``scale`` as the ``scale`` field of a command (its exponent clamped into the field, which
    gives the same results).

    Raises
    ------
    ValueError
        If the mantissa is negative or wider than ``params.scale_mantissa_bits``.
    """
    mantissa, exponent = int(scale.mantissa), int(scale.exponent)
    if not 0 <= mantissa < 1 << params.scale_mantissa_bits:
        raise ValueError(f"a scale mantissa must fit {params.scale_mantissa_bits} unsigned bits, "
                         f"not {mantissa}; normalise it with numerics.scale_from_int")
    limit = 1 << (SCALE_EXPONENT_BITS - 1)
    return {"mantissa": mantissa, "exponent": max(-limit, min(limit - 1, exponent))}


class RowUnit(wiring.Component):
    """Element-wise operations on ``V`` lanes, one beat per cycle, latency :attr:`latency`.

    A command asks for one operation on ``length`` elements. The unit then takes
    ``ceil(length / V)`` beats from ``a`` (and, for MUL, ADD and SUB, from ``b`` together with
    them; other operations leave ``b`` alone) and sends as many beats on ``result``, in order.
    Lanes past ``length`` in the last beat carry any value in and undefined values out; their
    ``mask`` bit is clear. The next command may be taken with the current one's last beat.

    Parameters
    ----------
    params : tern_fpga.contracts.params.AcceleratorParameters
        Gives ``V = params.vector_lanes`` and every width.

    Members
    -------
    command : ``In(stream.Signature(command_layout(params)))``
    a, b : ``In(stream.Signature(operand_layout(params)))``
    result : ``Out(stream.Signature(result_layout(params)))``
    busy : ``Out(1)``
        High while a command is in progress or one of its beats is in the pipeline.

    Raises
    ------
    TypeError
        If ``params`` is not an :class:`~tern_fpga.contracts.params.AcceleratorParameters`.
    ValueError
        If a width of ``params`` does not fit the datapath (the message names it).
    """

    #: Cycles from the clock edge that takes an operand beat to the first edge that can take
    #: its result (there is one register per pipeline stage).
    latency = 6

    def __init__(self, params: AcceleratorParameters):
        if not isinstance(params, AcceleratorParameters):
            raise TypeError(f"params must be an AcceleratorParameters, not {params!r}")
        _check_widths(params)
        self._params = params
        self._funnel = _Funnel.of(params)
        super().__init__({
            "command": In(stream.Signature(command_layout(params))),
            "a": In(stream.Signature(operand_layout(params))),
            "b": In(stream.Signature(operand_layout(params))),
            "result": Out(stream.Signature(result_layout(params))),
            "busy": Out(1),
        })

    @property
    def params(self) -> AcceleratorParameters:
        return self._params

    def elaborate(self, platform):
        m = Module()
        advance = Signal()
        m.d.comb += advance.eq(~self.result.valid | self.result.ready)
        tags = self._elaborate_control(m, advance)
        for lane in range(self._params.vector_lanes):
            # One ROM per two lanes (two read ports each): in logic now (see _sigmoid_table),
            # but a block RAM version would read two addresses a cycle.
            if lane % 2 == 0:
                table = m.submodules[f"sigmoid_table_{lane // 2}"] = self._sigmoid_table()
            value = self._elaborate_lane(m, advance, tags, table.read_port(), lane)
            m.d.comb += self.result.payload.data[lane].eq(value)
        final = tags[-1]
        m.d.comb += [
            self.result.valid.eq(final["valid"]),
            self.result.payload.mask.eq(final["mask"]),
            self.result.payload.last.eq(final["last"]),
        ]
        return m

    # Control --------------------------------------------------------------------------------

    def _elaborate_control(self, m, advance) -> list[dict]:
        """Command register, beat counter and handshakes. Returns the beat's tag (valid,
        operation, coarse, constant, mask, last) as registered at each of the stages."""
        params, lanes = self._params, self._params.vector_lanes
        lane_bits = lanes.bit_length() - 1
        command = self.command.payload
        active = Signal()
        beat = Signal(range(-(-max_length(params) // lanes)))
        last_beat = Signal.like(beat)
        last_mask = Signal(lanes)
        operation = Signal(RowOperation)
        coarse = Signal(range(self._funnel.positions))
        constant = Signal(params.scale_mantissa_bits + self._funnel.granularity - 1)

        at_last = beat == last_beat
        binary = _is(operation, BINARY_OPERATIONS)
        take = advance & active
        fire = take & self.a.valid & (self.b.valid | ~binary)
        m.d.comb += [
            self.a.ready.eq(take & (self.b.valid | ~binary)),
            self.b.ready.eq(take & binary & self.a.valid),
            self.command.ready.eq(~active | (fire & at_last)),
        ]
        with m.If(fire):
            m.d.sync += beat.eq(beat + 1)
            with m.If(at_last):
                m.d.sync += active.eq(0)
        # After the counter's update, so that a command taken with the last beat wins.
        with m.If(self.command.valid & self.command.ready):
            final_lane = (command.length - 1)[:lane_bits]
            m.d.sync += [
                active.eq(1),
                beat.eq(0),
                last_beat.eq((command.length - 1) >> lane_bits),
                last_mask.eq(Cat(Const(1, 1), *(final_lane >= lane for lane in range(1, lanes)))),
                operation.eq(command.operation),
                *self._funnel_setting(m, command, coarse, constant),
            ]

        tag = {"valid": fire, "operation": operation, "coarse": coarse, "constant": constant,
               "mask": Mux(at_last, last_mask, (1 << lanes) - 1), "last": at_last}
        tags = []
        for stage in range(1, self.latency + 1):
            tag = {name: _register(m, advance, value, f"{name}_{stage}",
                                   reset_less=name != "valid")
                   for name, value in tag.items()}
            tags.append(tag)
        m.d.comb += self.busy.eq(active | Cat(tag["valid"] for tag in tags).any())
        return tags

    def _funnel_setting(self, m, command, coarse, constant) -> list:
        """Assignments of a command's funnel position and multiplier constant (see
        :class:`_Funnel`). A result ``round(p * 2**e)`` needs ``p * 2**-r`` (``r = -e - 1``)
        in stage 5; the constant ``mantissa << fine`` and the ``coarse`` position with
        ``coarse * granularity = r + padding + fine`` give it."""
        funnel, operation = self._funnel, command.operation
        embed = operation == RowOperation.EMBED
        exponent = Mux(embed, command.shift, command.scale.exponent)
        right = Signal(signed(SCALE_EXPONENT_BITS + 2))
        m.d.comb += right.eq(-exponent - 1)
        low, high = -LEFT_SHIFT_LIMIT - 1, funnel.right_limit
        offset = Mux(right < low, low, Mux(right > high, high, right)) + funnel.padding
        fine_bits = funnel.granularity.bit_length() - 1
        fine = (-offset)[:fine_bits]
        fixed = _is(operation, (RowOperation.MUL, RowOperation.SILU))
        return [
            coarse.eq(Mux(fixed, funnel.position(self._params.frac_bits),
                          (offset + funnel.granularity - 1) >> fine_bits)),
            constant.eq(Mux(embed, 1, command.scale.mantissa) << fine),
        ]

    # Datapath -------------------------------------------------------------------------------

    def _sigmoid_table(self) -> Memory:
        """ROM of ``2**T`` segments: ``low`` (the table entry at the segment's start) and
        ``step`` (the next entry minus it), widths taken from the table itself."""
        table = [int(value) for value in numerics.sigmoid_table(self._params)]
        lows, steps = table[:-1], [high - low for low, high in itertools.pairwise(table)]
        layout = data.StructLayout({"low": range(min(lows), max(lows) + 1),
                                    "step": range(min(steps), max(steps) + 1)})
        # In logic, not block RAM: the ULX3S demo design needs every block for its memories.
        return Memory(shape=layout, depth=len(lows),
                      init=[{"low": low, "step": step} for low, step in zip(lows, steps)],
                      attrs={"ram_style": "logic"})

    def _elaborate_lane(self, m, advance, tags, table_port, lane):
        """One lane's six stages; returns its output register."""
        params = self._params
        width = params.vector_bits

        def stage(value, name, number, shape=None):
            return _register(m, advance, value, f"lane{lane}_{name}_{number}", shape=shape)

        # 1: operands; the ROM reads the entry of the segment that ``a`` falls in.
        a, b = self.a.payload[lane], self.b.payload[lane]
        below, above, index, fraction = self._sigmoid_address(m, a)
        m.d.comb += [table_port.addr.eq(index), table_port.en.eq(advance)]
        a, b, fraction, below, above = (stage(value, name, 1) for value, name in (
            (a, "a"), (b, "b"), (fraction, "fraction"), (below, "below"), (above, "above")))
        # 2: the interpolation product.
        step_product = stage(table_port.data.step * fraction, "step_product", 2)
        low = stage(table_port.data.low, "low", 2)
        a, b, below, above = (stage(value, name, 2) for value, name in (
            (a, "a"), (b, "b"), (below, "below"), (above, "above")))
        # 3: the sigmoid; the multiplier's operands; the sum.
        operation, constant = tags[1]["operation"], tags[1]["constant"]
        sigmoid = self._interpolate(low, step_product, below, above)
        factor = Signal(signed(width), name=f"lane{lane}_factor")
        m.d.comb += factor.eq(Mux(operation == RowOperation.MUL, b,
                                  Mux(operation == RowOperation.SILU, sigmoid, constant)))
        side = Mux(operation == RowOperation.SIGMOID, sigmoid, self._sum(a, b, operation))
        multiplicand, factor, side = (stage(value, name, 3) for value, name in (
            (a, "multiplicand"), (factor, "factor"), (side, "side")))
        # 4: the product, sign-extended to numpy's 64 bits.
        product = stage(multiplicand * factor, "product", 4, signed(PRODUCT_BITS))
        side = stage(side, "side", 4)
        # 5: the funnel: the low 65 bits of ``product * 2**padding`` from the coarse position
        # on: twice the result before rounding, wrapped as numpy's 64-bit left shift wraps.
        funnel = Signal(signed(PRODUCT_BITS + 1), name=f"lane{lane}_funnel")
        wide = Cat(Const(0, self._funnel.padding), product).as_signed()
        with m.Switch(tags[3]["coarse"]):
            for position in range(self._funnel.positions):
                # The last position also covers the coarse values that never occur.
                last = position == self._funnel.positions - 1
                with m.Default() if last else m.Case(position):
                    m.d.comb += funnel.eq(wide >> (self._funnel.granularity * position))
        funnel = stage(funnel, "funnel", 5)
        side = stage(side, "side", 5)
        # 6: round half up, choose, saturate. ``(funnel + 1) >> 1`` needs only the funnel's low
        # bits when the rest are a sign extension, and saturates by its sign otherwise.
        rounded = (funnel[:width + 1].as_signed() + 1) >> 1
        upper = funnel[width:]
        from_product = Mux(upper.all() | ~upper.any(), _saturate(rounded, width),
                           _limit(funnel[-1], width))
        chosen = Mux(_is(tags[4]["operation"], _PRODUCT_OPERATIONS), from_product,
                     _saturate(side, width))
        return stage(chosen, "result", 6, signed(width))

    def _sigmoid_address(self, m, a):
        """``below`` / ``above`` the table's range, the segment ``index`` and the ``fraction``
        within it, as numerics.sigmoid finds them (``offset = a + range``)."""
        params = self._params
        # The table covers [-2**g, 2**g) in LSBs; offset = a + 2**g flips bit g of ``a``.
        g = (params.sigmoid_input_range * params.one).bit_length() - 1
        extended = Signal(signed(max(params.vector_bits, g + 1)))
        m.d.comb += extended.eq(a)
        inside = Cat(extended[:g], ~extended[g])
        shift = params.sigmoid_segment_shift
        upper, negative = extended[g:], extended[-1]
        return negative & ~upper.all(), ~negative & upper.any(), inside[shift:], inside[:shift]

    def _interpolate(self, low, step_product, below, above):
        """numerics.sigmoid: ``low + round_shift(step * fraction, shift)`` inside the range."""
        params = self._params
        shift = params.sigmoid_segment_shift
        inside = low + (((step_product >> (shift - 1)) + 1) >> 1) if shift else low
        return Mux(below, int(numerics.sigmoid_table(params)[0]),
                   Mux(above, params.one, inside))

    def _sum(self, a, b, operation):
        """``a + b``, ``a - b`` or ``one - a``, before saturation: one adder, which subtracts
        by adding ``~right`` and a carry in."""
        one_minus = operation == RowOperation.ONE_MINUS
        negate = (operation == RowOperation.SUB) | one_minus
        left = Mux(one_minus, self._params.one, a)
        right = Mux(one_minus, a, b)
        return left + Mux(negate, ~right, right) + negate


class _Funnel(NamedTuple):
    """Where stage 5 takes its 65 bits from, in steps of ``granularity``.

    A SCALE or EMBED result is ``round_shift(p, -e)`` (``e >= 0``: ``p << e``, wrapped to 64
    bits) of the product ``p = a * mantissa``; stage 6 rounds, so stage 5 must hold twice that,
    ``p * 2**-r`` with ``r = -e - 1``. The multiplier takes ``r``'s remainder: its constant is
    ``mantissa << fine`` (``fine < granularity``, so the constant fits the signed port and the
    product 64 bits). The funnel takes the rest from ``p * 2**(fine + padding)`` at a multiple
    of ``granularity``: a few fixed positions instead of a full barrel shifter. ``padding`` puts
    MUL's and SILU's fixed ``r = frac_bits - 1`` on a position (their constant is not used).
    ``r`` is clamped to ``[-LEFT_SHIFT_LIMIT - 1, right_limit]``: every exponent beyond either
    end gives the same results.
    """

    granularity: int
    padding: int
    right_limit: int

    @classmethod
    def of(cls, params: AcceleratorParameters) -> _Funnel:
        room = params.vector_bits - params.scale_mantissa_bits
        granularity = 1 << (room.bit_length() - 1)
        # |a * mantissa| < 2**right_limit, so from there on every rounded shift is 0.
        right_limit = min(params.vector_bits - 1 + params.scale_mantissa_bits,
                          RIGHT_SHIFT_LIMIT - 1)
        padding = max(LEFT_SHIFT_LIMIT + 2 - granularity, 0)
        padding += (1 - params.frac_bits - padding) % granularity
        return cls(granularity, padding, right_limit)

    def position(self, shift: int) -> int:
        """The coarse position of a rounding right shift by ``shift`` (``r = shift - 1``);
        exact for MUL's and SILU's ``frac_bits``, which ``padding`` aligns."""
        return (shift - 1 + self.padding) // self.granularity

    @property
    def positions(self) -> int:
        return -(-(self.right_limit + self.padding) // self.granularity) + 1


def _check_widths(params: AcceleratorParameters) -> None:
    width = params.vector_bits
    if 2 * width > PRODUCT_BITS:
        raise ValueError(
            f"vector_bits={width} is too wide for the row unit: numerics multiplies two vector "
            f"elements in int64, so use at most {PRODUCT_BITS // 2}")
    if params.accumulator_bits > width:
        raise ValueError(
            f"the row unit takes the matrix unit's sums in vector_bits={width} lanes, but "
            f"max_features={params.max_features} makes them {params.accumulator_bits} bits; "
            f"lower max_features or widen vector_bits")
    if params.embedding_bits > width:
        raise ValueError(
            f"embedding_bits={params.embedding_bits} does not fit the vector_bits={width} "
            f"lanes; use at most {width}")
    if params.scale_mantissa_bits >= width:
        raise ValueError(
            f"scale_mantissa_bits={params.scale_mantissa_bits} does not fit the signed "
            f"vector_bits={width} multiplier port; use at most {width - 1}")


def _is(value, members) -> object:
    """``value`` equals one of ``members``."""
    return Cat(value == member for member in members).any()


def _register(m, advance, value, name, *, shape=None, reset_less=True):
    """``value`` registered (as ``shape``, by default its own) while ``advance`` is high."""
    register = Signal(value.shape() if shape is None else shape, name=name,
                      reset_less=reset_less)
    with m.If(advance):
        m.d.sync += register.eq(value)
    return register


def _limit(negative, bits: int):
    """The signed ``bits``-wide range's lowest value if ``negative``, else its highest."""
    return Mux(negative, -1 << (bits - 1), (1 << (bits - 1)) - 1)


def _saturate(value, bits: int):
    """Clamp to the signed ``bits``-wide range (the bits above it must copy its sign)."""
    upper = value[bits - 1:]
    return Mux(upper.all() | ~upper.any(), value[:bits], _limit(value[-1], bits))
