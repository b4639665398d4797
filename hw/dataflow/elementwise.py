"""The element-wise unit of the dataflow core: the MLGRU's and the GLU's element-wise operations
on ``V`` lanes a cycle, pipelined for 100 MHz and more, with no stall signal (issue 15).

:class:`ElementwiseUnit` executes SIGMOID, SILU, MUL, ADD, SUB, ONE_MINUS and EMBED bit for bit
as :func:`tern_fpga.sim.golden.row_unit.row_operation` defines them. SCALE is not among them:
:class:`~tern_fpga.hw.dataflow.row_sum_scaler.RowSumScaler` scales the matrix unit's row sums
beside it, so element-wise work can run while a TMV streams.

What changed from :class:`tern_fpga.hw.row_unit.RowUnit`, which this unit will replace:

- no funnel: without SCALE the product is only ever shifted right by ``frac_bits`` (MUL, SILU),
  and EMBED's left shift (``a << shift``, at most ``vector_bits - embedding_bits``) is a small
  shifter on the side path;
- the ``vector_bits x vector_bits`` multiply is four registered partial products (one DSP each:
  the operands' high halves signed, their low halves unsigned) whose sum is split at bit 32 into
  two registered additions, with the rounding constant folded in;
- no global stall: every register loads every cycle, and a credit counter admits a beat only
  when the output FIFO will have room for its result (:class:`~.pipeline.CreditedOutput`), so
  ``result.ready`` reaches no register enable. ``a.ready`` and ``b.ready`` depend only on
  registers and on each other's ``valid``.

Stages (:attr:`ElementwiseUnit.latency`): 1 operands; 2 the sigmoid table's entries at the
segment's address in each of its banks (ROMs in logic); 3 the addressed bank's entry; 4 the
interpolation product ``step * fraction``; 5 the sigmoid, the sum of ADD/SUB/ONE_MINUS, EMBED's
shift by a multiple of four; 6 the multiplier's operands (``b`` for MUL, the sigmoid for SILU),
the rest of EMBED's shift, the saturated sum; 7 the operands again (a register beside the DSPs)
and the side result (SIGMOID's, EMBED's or the sum); 8 the four partial products; 9 the
products again (a register beside each DSP); 10 the middle products' sum; 11 the low and high
halves of ``product + 2**(frac_bits - 1)``; 12 the carry into the high half; 13 whether the
quotient fits (and its sign); 14 saturation and the choice of result. The operation travels
down the pipeline decoded into one flag a choice, so no choice waits for a decoder.
"""

from __future__ import annotations

import itertools

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from tern_fpga.contracts import numerics
from tern_fpga.contracts.isa import BINARY_OPERATIONS, RowOperation
from tern_fpga.contracts.params import AcceleratorParameters
from tern_fpga.hw.dataflow.pipeline import CommandBeats, CreditedOutput, delay, register
from tern_fpga.hw.dataflow.products import HALF, checked_target, rounded_product
from tern_fpga.hw.dataflow.products import saturated as saturated_product
from tern_fpga.hw.row_unit import (  # shared; row_unit.py is a design source
    _saturate,
    max_length,
    operand_layout,
    result_layout,
)

__all__ = ["OPERATIONS", "ElementwiseUnit", "command_layout"]

#: The operations of :class:`ElementwiseUnit` (every row operation but SCALE).
OPERATIONS = tuple(operation for operation in RowOperation if operation != RowOperation.SCALE)

# The sigmoid table's ROMs a lane (a power of two).
SIGMOID_BANKS = 4


def command_layout(params: AcceleratorParameters) -> data.StructLayout:
    """Payload of the command stream: ``operation`` (one of :data:`OPERATIONS`; a SCALE command
    gives undefined values), ``length`` (elements, 1 to ``row_unit.max_length``) and ``shift``
    (EMBED only, 0 to ``vector_bits - embedding_bits``)."""
    return data.StructLayout({
        "operation": RowOperation,
        "length": range(1, max_length(params) + 1),
        "shift": range(params.vector_bits - params.embedding_bits + 1),
    })


class ElementwiseUnit(wiring.Component):
    """Element-wise operations on ``V`` lanes, one beat a cycle, never stalling inside.

    A command asks for one operation on ``length`` elements. The unit takes
    ``ceil(length / V)`` beats from ``a`` (and, for MUL, ADD and SUB, from ``b`` together with
    them) and sends as many on ``result``, in order. Lanes past ``length`` carry any value in
    and undefined values out; their ``mask`` bit is clear. The next command may be taken with
    the current one's last beat.

    Parameters
    ----------
    params : tern_fpga.contracts.params.AcceleratorParameters
        Gives ``V = params.vector_lanes`` and every width.
    target : None or str
        ``"ecp5"``: each partial product a ``MULT18X18D`` with its own input and output
        registers (:func:`~.products.partial_product`; Verilator runs it on
        ``sim/rtl/models/MULT18X18D.v``, Amaranth's simulator does not). By default a ``*``.

    Members
    -------
    command : ``In(stream.Signature(command_layout(params)))``
    a, b : ``In(stream.Signature(row_unit.operand_layout(params)))``
    result : ``Out(stream.Signature(row_unit.result_layout(params)))``
    busy : ``Out(1)``
        High while a command is in progress or one of its beats is in the pipeline or FIFO.

    Raises
    ------
    TypeError
        If ``params`` is not an :class:`~tern_fpga.contracts.params.AcceleratorParameters`.
    ValueError
        If ``vector_bits`` is not 32 or ``frac_bits`` is above 16 (the partial products split
        the lanes into 16-bit halves).
    """

    #: Cycles from a beat passing to its result entering the output FIFO.
    latency = 14

    def __init__(self, params: AcceleratorParameters, *, target=None):
        if not isinstance(params, AcceleratorParameters):
            raise TypeError(f"params must be an AcceleratorParameters, not {params!r}")
        if params.vector_bits != 2 * HALF:
            raise ValueError(f"the element-wise unit multiplies {2 * HALF}-bit lanes as four "
                             f"{HALF}-bit halves; vector_bits={params.vector_bits} needs another "
                             f"split (use vector_bits={2 * HALF})")
        if params.frac_bits > HALF:
            # The rounding constant 2**(frac_bits - 1) must lie below the middle products.
            raise ValueError(f"frac_bits={params.frac_bits} puts the product's rounding bit "
                             f"above bit {HALF - 1}; use frac_bits of at most {HALF}")
        self._params, self._target = params, checked_target(target)
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

    @property
    def fifo_depth(self) -> int:
        """Enough credits for one beat a cycle (latency, two cycles through the buffered FIFO,
        one to return the credit)."""
        return self.latency + 3

    def elaborate(self, platform):
        m = Module()
        output = CreditedOutput(m, self.result, self.fifo_depth)
        stages = self._elaborate_control(m, output)
        values = Signal(operand_layout(self._params))
        for lane in range(self._params.vector_lanes):
            banks = _sigmoid_banks(self._params)
            for number, bank in enumerate(banks):
                m.submodules[f"sigmoid_table_{lane}_{number}"] = bank
            m.d.sync += values[lane].eq(self._elaborate_lane(m, stages, banks, lane))
        final = stages[-2]
        result = Signal(result_layout(self._params))
        m.d.comb += [result.data.eq(values), output.w_data.eq(result),
                     output.w_en.eq(stages[-1]["valid"])]
        m.d.sync += [result.mask.eq(final["mask"]), result.last.eq(final["last"])]
        return m

    # Control --------------------------------------------------------------------------------

    def _elaborate_control(self, m, output) -> list[dict]:
        """Command register, beat counter and handshakes. Returns the beat's tag (valid, shift,
        mask, last and the operation's flags) at each stage, 1 to :attr:`latency`."""
        params, lanes = self._params, self._params.vector_lanes
        beats = CommandBeats(m, self.command, lanes, max_length(params),
                             fields=("operation", "shift"))
        operation, shift = beats.fields["operation"], beats.fields["shift"]
        binary = Cat(operation == member for member in BINARY_OPERATIONS).any()
        open_ = beats.active & output.available
        fire = open_ & self.a.valid & (self.b.valid | ~binary)
        m.d.comb += [
            self.a.ready.eq(open_ & (self.b.valid | ~binary)),
            self.b.ready.eq(open_ & binary & self.a.valid),
            self.busy.eq(beats.active | ~output.idle),
        ]
        output.admit(m, fire)
        beats.step(m, fire)
        # The operation travels decoded, one flag a use, so that each choice in the lanes is
        # a register's output (they fan out to every lane's bits).
        def decoded(*members):
            return Cat(operation == member for member in members).any()

        tag = {"valid": register(m, fire, "valid_1", reset_less=False),
               "shift": register(m, shift, "shift_1"),
               "mask": register(m, beats.mask, "mask_1"),
               "last": register(m, beats.at_last, "last_1")}
        flags = {"mul": (RowOperation.MUL,), "sigmoid": (RowOperation.SIGMOID,),
                 "embed": (RowOperation.EMBED,), "one_minus": (RowOperation.ONE_MINUS,),
                 "negate": (RowOperation.SUB, RowOperation.ONE_MINUS),
                 "product": (RowOperation.MUL, RowOperation.SILU)}
        tag |= {name: register(m, decoded(*members), f"{name}_1")
                for name, members in flags.items()}
        stages = [tag]
        for number in range(2, self.latency + 1):
            stages.append(delay(m, stages[-1], str(number)))
        return stages

    # Datapath -------------------------------------------------------------------------------

    def _elaborate_lane(self, m, stages, banks, lane):
        """One lane's stages 1 to 13; returns the value its output register (stage 14) loads."""
        params = self._params
        width = params.vector_bits

        def stage(value, name, number, shape=None):
            return register(m, value, f"lane{lane}_{name}_{number}", shape=shape)

        def flag(number, name):
            return stages[number - 1][name]

        # 1: operands; the table's address (wiring: bits of ``a``, one inverted).
        a = stage(self.a.payload[lane], "a", 1)
        b = stage(self.b.payload[lane], "b", 1)
        below, above, index, fraction = _sigmoid_address(m, a, params)
        bank_bits = (len(banks) - 1).bit_length()
        ports = [bank.read_port() for bank in banks]
        for port in ports:
            m.d.comb += port.addr.eq(index[:len(index) - bank_bits])
        # 2: every bank's entry at the address (the read ports' registers).
        a, b, below, above, fraction = (stage(value, name, 2) for value, name in (
            (a, "a"), (b, "b"), (below, "below"), (above, "above"), (fraction, "fraction")))
        bank = stage(index[len(index) - bank_bits:], "bank", 2)
        # 3: the addressed bank's entry.
        entry = Signal.like(ports[0].data, name=f"lane{lane}_entry")
        with m.Switch(bank):
            for number, port in enumerate(ports):
                with m.Case(number):
                    m.d.comb += entry.eq(port.data)
        entry = stage(entry, "entry", 3)
        a, b, below, above, fraction = (stage(value, name, 3) for value, name in (
            (a, "a"), (b, "b"), (below, "below"), (above, "above"), (fraction, "fraction")))
        # 4: the interpolation product.
        step_product = stage(entry.step * fraction, "step_product", 4)
        low = stage(entry.low, "low", 4)
        a, b, below, above = (stage(value, name, 4) for value, name in (
            (a, "a"), (b, "b"), (below, "below"), (above, "above")))
        # 5: the sigmoid; ADD's, SUB's or ONE_MINUS's sum; EMBED's shift by a multiple of 4
        # (an embedding is embedding_bits wide and shift at most vector_bits - embedding_bits:
        # the result fits).
        sigmoid = stage(_interpolate(low, step_product, below, above, params), "sigmoid", 5)
        total = stage(_sum(a, b, flag(4, "one_minus"), flag(4, "negate"), params), "sum", 5)
        coarse = stage(a << Cat(Const(0, 2), flag(4, "shift")[2:]), "coarse", 5)
        a, b = stage(a, "a", 5), stage(b, "b", 5)
        # 6: the multiplier's operands; EMBED's shift by the rest; the sum saturated.
        factor = stage(Mux(flag(5, "mul"), b, sigmoid), "factor", 6)
        multiplicand = stage(a, "multiplicand", 6)
        embedded = stage((coarse << flag(5, "shift")[:2])[:width], "embedded", 6)
        saturated = stage(_saturate(total, width), "saturated", 6, signed(width))
        sigmoid = stage(sigmoid, "sigmoid", 6)
        # 7 to 13: the rounded product (products.rounded_product: a register on each side of
        # the DSPs, whose paths in and out are the unit's longest) beside the side result.
        product = rounded_product(m, stage, multiplicand, factor, params, 7, self._target)
        side = stage(Mux(flag(6, "sigmoid"), sigmoid, Mux(flag(6, "embed"), embedded,
                                                           saturated)), "side", 7, signed(width))
        for number in (8, 9, 10, 11, 12, 13):
            side = stage(side, "side", number)
        # 14 (the caller's register): saturate; choose.
        return Mux(flag(13, "product"), saturated_product(product, width), side)


def _sigmoid_banks(params: AcceleratorParameters) -> list[Memory]:
    """The sigmoid table as ROMs of ``2**T / SIGMOID_BANKS`` consecutive segments each: ``low``
    (the table entry at the segment's start) and ``step`` (the next entry minus it). In logic,
    not block RAM (the ULX3S designs need every block for their memories); in banks so that a
    read is a shallow LUT tree and the choice among banks a registered stage of its own."""
    table = [int(value) for value in numerics.sigmoid_table(params)]
    lows, steps = table[:-1], [high - low for low, high in itertools.pairwise(table)]
    layout = data.StructLayout({"low": range(min(lows), max(lows) + 1),
                                "step": range(min(steps), max(steps) + 1)})
    entries = [{"low": low, "step": step} for low, step in zip(lows, steps)]
    count = min(SIGMOID_BANKS, len(entries))
    depth = len(entries) // count
    return [Memory(shape=layout, depth=depth, init=entries[number * depth:(number + 1) * depth],
                   attrs={"ram_style": "logic"}) for number in range(count)]


def _sigmoid_address(m, a, params: AcceleratorParameters):
    """``below`` / ``above`` the table's range, the segment ``index`` and the ``fraction``
    within it, as numerics.sigmoid finds them (``offset = a + range``)."""
    # The table covers [-2**g, 2**g) in LSBs; offset = a + 2**g flips bit g of ``a``.
    g = (params.sigmoid_input_range * params.one).bit_length() - 1
    extended = Signal(signed(max(params.vector_bits, g + 1)))
    m.d.comb += extended.eq(a)
    inside = Cat(extended[:g], ~extended[g])
    shift = params.sigmoid_segment_shift
    upper, negative = extended[g:], extended[-1]
    return negative & ~upper.all(), ~negative & upper.any(), inside[shift:], inside[:shift]


def _interpolate(low, step_product, below, above, params: AcceleratorParameters):
    """numerics.sigmoid: ``low + round_shift(step * fraction, shift)`` inside the range."""
    shift = params.sigmoid_segment_shift
    inside = low + (((step_product >> (shift - 1)) + 1) >> 1) if shift else low
    return Mux(below, int(numerics.sigmoid_table(params)[0]), Mux(above, params.one, inside))


def _sum(a, b, one_minus, negate, params: AcceleratorParameters):
    """``a + b``, ``a - b`` (``negate``) or ``one - a`` (``one_minus`` and ``negate``) before
    saturation: one adder, which subtracts by adding ``~right`` and a carry in."""
    left = Mux(one_minus, params.one, a)
    right = Mux(one_minus, a, b)
    return left + Mux(negate, ~right, right) + negate
