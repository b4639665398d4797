"""The iCE40UP5K port's element-wise unit (``docs/boards.md``, the iCEBreaker plan's step 3:
"the other clients at V=1 on it"): the dataflow core's
:class:`~tern_fpga.hw.dataflow.elementwise.ElementwiseUnit` at ``vector_lanes = 1``, its
command, operand and result streams and its results bit for bit
(:func:`tern_fpga.sim.golden.row_unit.row_operation`), as a small state machine whose every
product is asked of a multiplier port, in
:mod:`~tern_fpga.hw.ice40.shared_multiplier`'s layouts, so that one
:class:`~tern_fpga.hw.ice40.shared_multiplier.SharedMultiplier` (behind a
:class:`~tern_fpga.hw.ice40.multiplier_arbiter.MultiplierArbiter`) serves it and the other
clients. It has no multiplier of its own.

An element (a beat: one lane) is taken with its operands into two registers, ``a`` and ``b``,
and then:

- ADD, SUB, ONE_MINUS: the saturated sum of the two registers is the result, in the next
  cycle; one adder, ``a + b`` or ``a + ~b + 1``, ONE_MINUS's element taken as ``~a`` and ``b``
  as ``one + 1`` (``one - a = ~a + one + 1``);
- MUL: one product ``a * b`` (``PRODUCT``), rounded by ``frac_bits`` and saturated
  (``numerics.multiply``) into ``b``, which is the result;
- EMBED (``a << shift``): one product as well, so that the unit needs no barrel shifter. The
  element is taken as ``a << P`` and ``b = 2**(shift + frac_bits - P)``, with
  ``P = min(frac_bits, vector_bits - embedding_bits)``: the product's rounding by
  ``frac_bits`` is then exact and gives ``a << shift``. An embedding is
  ``embedding_bits`` wide, sign-extended (``row_unit.operand_layout``): its bits above those
  are not read;
- SIGMOID: the sigmoid table's entry (``low``, ``step``) at the segment's address is read from a
  ROM in the cycle that takes the element; the interpolation product ``step * fraction``
  (``INTERPOLATE``) gives the sigmoid (``numerics.sigmoid``, with
  :func:`~tern_fpga.hw.dataflow.elementwise._interpolate`) into ``b``, which is the result;
- SILU: the sigmoid as for SIGMOID into ``b``, then the product ``a * b`` as for MUL.

The result is offered from the registers until taken; the next element is taken in the cycle
that its result is taken (or later), so the registers double as the output register. At most
one product is asked at a time, and its result is taken in the cycle that it comes (the unit
never holds the shared multiplier back).

Cycles per element (:meth:`SerialElementwiseUnit.cycles_per_element`), the streams always
valid and ready and the multiplier taking each request at once: 1 for ADD, SUB and ONE_MINUS,
``2 + LATENCY`` = 6 for MUL, EMBED and SIGMOID (the element taken, the request, the
multiplier's 4 cycles), ``3 + 2 LATENCY`` = 11 for SILU. The committed unit takes ``V`` elements
a cycle for every operation.

The sigmoid table is one ROM of ``2**sigmoid_table_bits`` entries (``low``: the table at the
segment's start; ``step``: the next entry minus it) from ``numerics.sigmoid_table``, with a
synchronous read, so that Yosys can put it into block RAM (micro: 256 x 28 bits, two
``SB_RAM40_4K``), where the committed unit keeps its banks in logic.

Yosys 0.70 ``synth_ice40`` (micro at ``V = 1``, the multiplier outside): 534 ``SB_LUT4``, 115
``SB_CARRY``, 95 flip-flops, 2 ``SB_RAM40_4K``, no ``SB_MAC16``; the committed unit at ``V = 1``:
1,613 ``SB_LUT4``, 211 ``SB_CARRY``, 1,902 flip-flops (its output FIFO of 17 results among them)
and 5 ``SB_MAC16``. Of the 534, the product's rounding and saturation take about 90, the sum's
saturation about 35.
"""

from __future__ import annotations

import itertools

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import data, enum, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from tern_fpga.contracts import numerics
from tern_fpga.contracts.isa import BINARY_OPERATIONS, RowOperation
from tern_fpga.contracts.params import AcceleratorParameters
from tern_fpga.hw.dataflow.elementwise import (  # shared; elementwise.py is a design source
    _interpolate,
    _sigmoid_address,
    command_layout,
)
from tern_fpga.hw.dataflow.pipeline import CommandBeats
from tern_fpga.hw.ice40 import shared_multiplier
from tern_fpga.hw.row_unit import (  # shared; row_unit.py is a design source
    _limit,
    _saturate,
    max_length,
    operand_layout,
    result_layout,
)

__all__ = ["SerialElementwiseUnit", "sigmoid_rom"]


class _State(enum.Enum, shape=2):
    TAKE = 0            # the result (if any) offered; the next element taken
    INTERPOLATE = 1     # the sigmoid's interpolation product
    PRODUCT = 2         # a * b


def sigmoid_rom(params: AcceleratorParameters) -> Memory:
    """The sigmoid table as one ROM (``low``, ``step``) of ``2**sigmoid_table_bits`` entries,
    the entries of :func:`~tern_fpga.hw.dataflow.elementwise._sigmoid_banks` in one bank and
    with no ``ram_style``, so that Yosys may map it to block RAM."""
    table = [int(value) for value in numerics.sigmoid_table(params)]
    lows = table[:-1]
    steps = [high - low for low, high in itertools.pairwise(table)]
    layout = data.StructLayout({"low": range(min(lows), max(lows) + 1),
                                "step": range(min(steps), max(steps) + 1)})
    return Memory(shape=layout, depth=len(lows),
                  init=[{"low": low, "step": step} for low, step in zip(lows, steps)])


class SerialElementwiseUnit(wiring.Component):
    """:class:`~tern_fpga.hw.dataflow.elementwise.ElementwiseUnit`'s streams and results at
    ``V = 1``, one element at a time, its products on a shared multiplier (see the module).

    A command asks for one operation (one of
    :data:`~tern_fpga.hw.dataflow.elementwise.OPERATIONS`; a SCALE command gives undefined
    values) on ``length`` elements. The unit takes ``length`` beats from ``a`` (and, for MUL,
    ADD and SUB, from ``b`` together with them) and sends as many on ``result``, in order, each
    with ``mask`` 1 and ``last`` on the command's last. The next command may be taken with the
    current one's last beat.

    Parameters
    ----------
    params : tern_fpga.contracts.params.AcceleratorParameters
        ``vector_lanes`` must be 1.
    tag_bits : int
        Width of the shared multiplier's tag.
    tag : int
        The tag that this unit's multiplier requests carry.

    Members
    -------
    command : ``In(stream.Signature(elementwise.command_layout(params)))``
    a, b : ``In(stream.Signature(row_unit.operand_layout(params)))``
    result : ``Out(stream.Signature(row_unit.result_layout(params)))``
    busy : ``Out(1)``
        High while a command is in progress or an element's result is not yet taken.
    multiplier_request : ``Out(stream.Signature(shared_multiplier.request_layout(tag_bits)))``
    multiplier_result : ``In(stream.Signature(shared_multiplier.result_layout(tag_bits)))``
        Taken as soon as it is offered.

    Raises
    ------
    TypeError
        If ``params`` is not an :class:`~tern_fpga.contracts.params.AcceleratorParameters`.
    ValueError
        If ``vector_lanes`` is not 1, ``vector_bits`` is not the multiplier's 32 bits, EMBED's
        largest shift does not fit a multiplier operand (see the module), ``tag_bits`` is not a
        positive integer or ``tag`` does not fit it.
    """

    def __init__(self, params: AcceleratorParameters, *, tag_bits: int = 1, tag: int = 0):
        if not isinstance(params, AcceleratorParameters):
            raise TypeError(f"params must be an AcceleratorParameters, not {params!r}")
        if params.vector_lanes != 1:
            raise ValueError(f"the serial element-wise unit has one lane; vector_lanes="
                             f"{params.vector_lanes} needs the dataflow core's ElementwiseUnit")
        width = shared_multiplier.OPERAND_BITS
        if params.vector_bits != width:
            raise ValueError(f"the serial element-wise unit multiplies {width}-bit operands; "
                             f"vector_bits={params.vector_bits} is not {width}")
        if self._embed_exponent(params, params.vector_bits - params.embedding_bits) > width - 2:
            raise ValueError(f"EMBED's largest shift with frac_bits={params.frac_bits} and "
                             f"embedding_bits={params.embedding_bits} needs a power of two "
                             f"above 2**{width - 2}")
        shared_multiplier.check_client_tag(tag_bits, tag)
        self._params, self._tag = params, tag
        super().__init__({
            "command": In(stream.Signature(command_layout(params))),
            "a": In(stream.Signature(operand_layout(params))),
            "b": In(stream.Signature(operand_layout(params))),
            "result": Out(stream.Signature(result_layout(params))),
            "busy": Out(1),
            **shared_multiplier.client_ports(tag_bits),
        })

    @property
    def params(self) -> AcceleratorParameters:
        return self._params

    @property
    def tag(self) -> int:
        return self._tag

    @staticmethod
    def cycles_per_element(operation: RowOperation) -> int:
        """Cycles between two elements of a command of ``operation``, the streams always valid
        and ready and the multiplier taking each request at once."""
        products = {RowOperation.SILU: 2, RowOperation.MUL: 1, RowOperation.EMBED: 1,
                    RowOperation.SIGMOID: 1}.get(RowOperation(operation), 0)
        return 1 + products * (1 + shared_multiplier.LATENCY)

    @staticmethod
    def _embed_shift(params: AcceleratorParameters) -> int:
        """``P``: EMBED's operand is taken as ``a << P``."""
        return min(params.frac_bits, params.vector_bits - params.embedding_bits)

    @classmethod
    def _embed_exponent(cls, params: AcceleratorParameters, shift):
        """EMBED's ``b``: ``2**(shift + frac_bits - P)``; this gives the exponent."""
        return shift + params.frac_bits - cls._embed_shift(params)

    def elaborate(self, platform):
        m = Module()
        params = self._params
        width, frac_bits = params.vector_bits, params.frac_bits
        request, product_result = self.multiplier_request, self.multiplier_result
        product = product_result.payload.product

        beats = CommandBeats(m, self.command, 1, max_length(params),
                             fields=("operation", "shift"))
        operation, shift = beats.fields["operation"], beats.fields["shift"]

        state = Signal(_State)
        asked = Signal()                      # this state's request was taken
        pending = Signal()                    # a result is offered
        a = Signal(width)                     # the element's registers
        b = Signal(width)
        # The element's flags (the command's registers change with its last beat).
        last, silu, summed, negate = (
            Signal(name=name) for name in ("last", "silu", "summed", "negate"))

        def decoded(*members):
            return Cat(operation == member for member in members).any()

        # Taking an element: when its operands are there and the last result is taken.
        binary = decoded(*BINARY_OPERATIONS)
        embed = decoded(RowOperation.EMBED)
        one_minus_now = decoded(RowOperation.ONE_MINUS)
        open_ = beats.active & (state == _State.TAKE) & (~pending | self.result.ready)
        fire = open_ & self.a.valid & (self.b.valid | ~binary)
        m.d.comb += [
            self.a.ready.eq(open_ & (self.b.valid | ~binary)),
            self.b.ready.eq(open_ & binary & self.a.valid),
            self.busy.eq(beats.active | (state != _State.TAKE) | pending),
        ]
        beats.step(m, fire)

        # The sigmoid table: read in the cycle that takes the element, its entry held until the
        # next element is taken.
        m.submodules.sigmoid_table = rom = sigmoid_rom(params)
        port = rom.read_port()
        index = _sigmoid_address(m, self.a.payload[0], params)[2]
        m.d.comb += [port.addr.eq(index), port.en.eq(fire)]
        below, above, _, fraction = _sigmoid_address(m, a, params)
        entry = port.data

        incoming = self.a.payload[0].as_unsigned()
        embed_shift = self._embed_shift(params)
        sums = (RowOperation.ADD, RowOperation.SUB, RowOperation.ONE_MINUS, RowOperation.SCALE)
        with m.If(self.result.valid & self.result.ready):
            m.d.sync += pending.eq(0)
        with m.If(fire):
            m.d.sync += [
                a.eq(Mux(embed, Cat(Const(0, embed_shift), incoming[:width - embed_shift]),
                         incoming ^ one_minus_now.replicate(width))),
                b.eq(Mux(embed, Const(1 << self._embed_exponent(params, 0), width) << shift,
                         Mux(one_minus_now, params.one + 1, self.b.payload[0]))),
                last.eq(beats.at_last),
                silu.eq(decoded(RowOperation.SILU)),
                summed.eq(decoded(*sums)),
                negate.eq(decoded(RowOperation.SUB)),
                pending.eq(decoded(*sums)),
            ]
            with m.Switch(operation):
                with m.Case(RowOperation.SIGMOID, RowOperation.SILU):
                    m.d.sync += state.eq(_State.INTERPOLATE)
                with m.Case(RowOperation.MUL, RowOperation.EMBED):
                    m.d.sync += state.eq(_State.PRODUCT)

        # The multiplier port: one request a state, its result taken as it comes.
        interpolating = state == _State.INTERPOLATE
        step = entry.step.as_signed() if entry.step.shape().signed else entry.step
        m.d.comb += [
            request.valid.eq((state != _State.TAKE) & ~asked),
            # INTERPOLATE: fraction (a's low bits) * step; PRODUCT: a * b.
            request.payload.a.eq(Cat(a[:len(fraction)],
                                     a[len(fraction):] & ~interpolating.replicate(
                                         width - len(fraction)))),
            request.payload.b.eq(Mux(interpolating, step, b)),
            request.payload.tag.eq(self._tag),
            product_result.ready.eq(asked),
        ]
        with m.If(request.valid & request.ready):
            m.d.sync += asked.eq(1)
        got = product_result.valid & product_result.ready
        step_product = product[:len(entry.step) + len(fraction) + 1].as_signed()
        sigmoid = _interpolate(entry.low, step_product, below, above, params)
        with m.If(got):
            m.d.sync += asked.eq(0)
            with m.If(interpolating):
                m.d.sync += b.eq(sigmoid)
                with m.If(silu):
                    m.d.sync += state.eq(_State.PRODUCT)
                with m.Else():
                    m.d.sync += [state.eq(_State.TAKE), pending.eq(1)]
            with m.Else():
                m.d.sync += [b.eq(_rounded(product, width, frac_bits)), state.eq(_State.TAKE),
                             pending.eq(1)]

        # a + b, a - b, or ONE_MINUS's one - a_taken = ~a_taken + (one + 1): one adder.
        total = _saturate(a.as_signed() + (b ^ negate.replicate(width)).as_signed() + negate,
                          width)
        m.d.comb += [
            self.result.valid.eq(pending),
            self.result.payload.data[0].eq(Mux(summed, total, b)),
            self.result.payload.mask.eq(1),
            self.result.payload.last.eq(last),
        ]
        return m


def _rounded(product, width: int, frac_bits: int):
    """``numerics.multiply``'s ``saturate(round_shift(product, frac_bits), width)`` of the
    signed product: the quotient ``q = (product >> frac_bits) + product[frac_bits - 1]`` from
    its low ``width + 1`` bits (when the bits above copy their sign, else ``q`` is out of range
    whatever the carry), so the adder is ``width + 2`` bits, not ``2 * width - frac_bits``. When
    ``q`` is out of range, its sign is the product's."""
    quotient = product[frac_bits:]
    near = quotient[:width + 1].as_signed() + product[frac_bits - 1]
    fits = Cat(quotient[width:].all() | ~quotient[width:].any(),
               near[width - 1:].all() | ~near[width - 1:].any()).all()
    return Mux(fits, near[:width], _limit(product[-1], width))
