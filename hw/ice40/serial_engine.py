"""The iCE40UP5K port's scalar engine (``docs/boards.md``, the iCEBreaker plan's step 4): the
committed :class:`~tern_fpga.hw.scalar_engine.ScalarEngine`'s requests, results and numerics,
bit for bit, from the serial pieces of :mod:`tern_fpga.hw.ice40.serial_scalar` and the shared
32 x 32 multiplier of :mod:`tern_fpga.hw.ice40.shared_multiplier`.

:class:`SerialScalarEngine` runs the committed engine's steps, one at a time, each waiting on a
handshake instead of a fixed number of cycles:

1. the request is taken together with the normalisation of ``sum_of_squares + epsilon_term``
   (an even shift) by its :class:`~tern_fpga.hw.ice40.serial_scalar.SerialNormaliser`; its
   result gives ``w`` in ``[2**30, 2**32)``, the half shift and the seed
   (``numerics.rsqrt_table``);
2. QUANT only: the normalisation of ``largest`` (0 taken as 1) gives ``scale_from_int(largest)``
   and its bit length, and its aligned top ``vector_bits`` go to the
   :class:`~tern_fpga.hw.ice40.serial_scalar.SerialDivider`, which works beside the next steps;
3. ``params.rsqrt_newton_steps`` Newton steps of three products each, asked of the multiplier
   port;
4. the iterate's normalisation (``norm_scale`` before the constant), the product by the
   constant's mantissa and its normalisation (``norm_scale``); QUANT: the product by the
   largest's mantissa and its normalisation (``output_scale``);
5. the result, offered (QUANT: once the divider's quotient is there too) until taken.

The products go out on the ``multiplier_request`` stream and come back on
``multiplier_result``, in :mod:`~tern_fpga.hw.ice40.shared_multiplier`'s layouts, so that one
:class:`~tern_fpga.hw.ice40.shared_multiplier.SharedMultiplier` serves this engine and other
clients; the engine's requests carry the ``tag`` given to it and it ignores the results' tags
(the arbiter in front of the multiplier routes them). It asks one product at a time and takes
its result in the cycle it is offered. The shared multiplier's operands are signed, the
engine's unsigned (``w``, ``y**2 >> 30`` and ``3 * 2**30 - error`` reach ``2**32 - 1``): the
engine sends their bits as they are and corrects the product's top half,

    a * b = a_signed * b_signed + 2**32 * (a[31] * b + b[31] * a)   (mod 2**64),

exact since the unsigned product is below ``2**64``.

Latency (the multiplier taking each request at once and giving its result
:data:`~tern_fpga.hw.ice40.shared_multiplier.LATENCY` cycles later): a product costs
``1 + LATENCY`` = 5 cycles, a normalisation that the engine asks ``1 +`` the normaliser's
latency (``1 + count // 4 + count % 4`` at 4 bits a cycle), the first one (taken with the
request) only the normaliser's latency; :meth:`SerialScalarEngine.max_latency` bounds the sum.
For the micro preset (two Newton steps), measured over 3,000 random requests and the edge
values: NORM 57 to 84 cycles (median 66), QUANT 84 to 128 (median 96), against 23 and 27 for
the committed engine; the bound is 94 and 138 (the true worst cases, a value of 1 and a zero
constant or largest, are about 85 and 129). The divider (25 cycles) starts before the Newton
steps and never delays the result when the multiplier answers at once.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Signal, unsigned
from amaranth.lib import enum, stream, wiring
from amaranth.lib.wiring import In, Out

from tern_fpga.contracts import numerics
from tern_fpga.contracts.params import AcceleratorParameters
from tern_fpga.hw import scalar_engine
from tern_fpga.hw.ice40 import shared_multiplier
from tern_fpga.hw.ice40.serial_scalar import SerialDivider, SerialNormaliser
from tern_fpga.hw.scalar_engine import (
    MULTIPLIER_BITS,
    RSQRT_EXPONENT,
    RSQRT_FRAC_BITS,
    RSQRT_INPUT_BITS,
    RSQRT_SEED_SHIFT,
    _normaliser_width,
    _wide_scale_layout,
)
from tern_fpga.hw.scale_layout import scale_layout

__all__ = ["SerialScalarEngine"]


class _Step(enum.Enum):
    # The engine's states, in the order a QUANT request visits them.
    IDLE = 0
    ALIGN_VALUE = 1
    ALIGN_LARGEST = 2
    NEWTON_SQUARE = 3
    NEWTON_ERROR = 4
    NEWTON_UPDATE = 5
    ROUND_RSQRT = 6
    MULTIPLY_CONSTANT = 7
    ROUND_CONSTANT = 8
    MULTIPLY_LARGEST = 9
    ROUND_LARGEST = 10
    DONE = 11


class SerialScalarEngine(wiring.Component):
    """The scalar engine from a serial normaliser and divider and a shared multiplier (see the
    module): the committed :class:`~tern_fpga.hw.scalar_engine.ScalarEngine`'s ports and
    results.

    A request is taken when the engine is idle; its result is offered at most
    :meth:`max_latency` cycles later while the multiplier answers at once, and held until
    taken. NORM leaves ``output_scale``, ``reciprocal`` and ``largest_bits`` as they were
    (QUANT only, as :func:`~tern_fpga.hw.scalar_engine.result_layout` says).

    Parameters
    ----------
    params : tern_fpga.contracts.params.AcceleratorParameters
    bits_per_cycle : int
        The normaliser's coarse shift (:class:`~tern_fpga.hw.ice40.serial_scalar.SerialNormaliser`).
    tag_bits : int
        Width of the shared multiplier's tag.
    tag : int
        The tag that this engine's multiplier requests carry.

    Members
    -------
    request : ``In(stream.Signature(scalar_engine.request_layout(params)))``
    result : ``Out(stream.Signature(scalar_engine.result_layout(params)))``
    multiplier_request : ``Out(stream.Signature(shared_multiplier.request_layout(tag_bits)))``
        ``a`` and ``b``: the unsigned 32-bit operands' bits.
    multiplier_result : ``In(stream.Signature(shared_multiplier.result_layout(tag_bits)))``
        The signed product of the operands' bits; taken as soon as it is offered.

    Raises
    ------
    TypeError
        If ``params`` is not an :class:`~tern_fpga.contracts.params.AcceleratorParameters`.
    ValueError
        If ``params.rsqrt_table_bits`` is not from 3 to 12 (as the committed engine), if
        ``params.scale_mantissa_bits`` exceeds the multiplier's 32 bits, if ``bits_per_cycle``
        is not one the normaliser takes, if ``tag_bits`` is not a positive integer or if
        ``tag`` does not fit it.
    """

    def __init__(self, params: AcceleratorParameters, *, bits_per_cycle: int = 4,
                 tag_bits: int = 1, tag: int = 0):
        if not isinstance(params, AcceleratorParameters):
            raise TypeError(f"params must be an AcceleratorParameters, not {params!r}")
        if not 3 <= params.rsqrt_table_bits <= 12:
            raise ValueError(
                f"the scalar engine needs rsqrt_table_bits from 3 to 12, not "
                f"{params.rsqrt_table_bits!r}")
        if params.scale_mantissa_bits > MULTIPLIER_BITS:
            raise ValueError(
                f"scale_mantissa_bits must be at most {MULTIPLIER_BITS} (a multiplier "
                f"operand), not {params.scale_mantissa_bits!r}")
        # The normaliser checks bits_per_cycle and the multiplier's layouts tag_bits.
        self._normaliser = SerialNormaliser(params, bits_per_cycle=bits_per_cycle)
        self._divider = SerialDivider(params)
        shared_multiplier.check_client_tag(tag_bits, tag)
        self._params, self._tag = params, tag
        super().__init__({
            "request": In(stream.Signature(scalar_engine.request_layout(params))),
            "result": Out(stream.Signature(scalar_engine.result_layout(params))),
            **shared_multiplier.client_ports(tag_bits),
        })

    @property
    def params(self) -> AcceleratorParameters:
        return self._params

    @property
    def bits_per_cycle(self) -> int:
        return self._normaliser.bits_per_cycle

    @property
    def normaliser(self) -> SerialNormaliser:
        """The engine's normaliser (its :meth:`~SerialNormaliser.latency` gives each step's)."""
        return self._normaliser

    @property
    def tag(self) -> int:
        return self._tag

    def max_latency(self, quantize: bool) -> int:
        """The most cycles from the edge that takes a request to the first edge that can take
        its result, while the multiplier takes each request at once (each normalisation at the
        normaliser's :attr:`~tern_fpga.hw.ice40.serial_scalar.SerialNormaliser.max_latency`)."""
        normalise = self._normaliser.max_latency
        product = 1 + shared_multiplier.LATENCY
        # The value's normalisation, the Newton products, the iterate's normalisation, the
        # constant's product and its normalisation, the result's cycle.
        cycles = (normalise + 3 * product * self._params.rsqrt_newton_steps + 1 + normalise
                  + product + normalise + 1)
        if not quantize:
            return cycles
        # The largest's normalisation, its product and normalisation; or the divider's wait.
        divided = normalise + 1 + normalise + self._divider.latency
        return max(cycles + 1 + normalise + product + normalise, divided)

    def elaborate(self, platform):
        m = Module()
        params = self._params
        m.submodules.normaliser = normaliser = self._normaliser
        m.submodules.divider = divider = self._divider
        width = _normaliser_width(params)
        normalise, normalised_result = normaliser.request, normaliser.result
        multiply, product_result = self.multiplier_request, self.multiplier_result

        state = Signal(_Step)
        asked = Signal()                                # this state's request was taken
        quantize = Signal()
        constant = Signal(scale_layout(params))
        largest = Signal(params.vector_bits)
        normalised = Signal(RSQRT_INPUT_BITS)           # w in [2**30, 2**32)
        half_shift = Signal(range(width // 2 + 1))      # L / 2 of the even normalising shift
        iterate = Signal(MULTIPLIER_BITS)               # y, Q.30
        factor = Signal(MULTIPLIER_BITS)                # a Newton step's second operand
        step = Signal(range(params.rsqrt_newton_steps + 1))
        norm_scale = Signal(_wide_scale_layout(params))
        largest_scale = Signal(scale_layout(params))
        largest_bits = Signal(range(params.vector_bits + 1))
        output_scale = Signal(scale_layout(params))

        # The multiplier port: the operands that the state selects, asked once (`asked`); the
        # unsigned product of their bits from the signed one.
        operand_a, operand_b = Signal(MULTIPLIER_BITS), Signal(MULTIPLIER_BITS)
        product = Signal(2 * MULTIPLIER_BITS)
        signed_product = product_result.payload.product.as_unsigned()
        top = (signed_product[MULTIPLIER_BITS:] + Mux(operand_a[-1], operand_b, 0)
               + Mux(operand_b[-1], operand_a, 0))
        m.d.comb += [
            multiply.payload.a.eq(operand_a), multiply.payload.b.eq(operand_b),
            multiply.payload.tag.eq(self._tag),
            product.eq(Cat(signed_product[:MULTIPLIER_BITS], top[:MULTIPLIER_BITS])),
        ]
        got_product = product_result.valid & product_result.ready
        got_scale = normalised_result.valid & normalised_result.ready
        scale = normalised_result.payload.scale
        aligned = normalised_result.payload.aligned
        seed = self._seed(m, aligned[width - params.rsqrt_table_bits:])

        def ask(port):
            # The state's request on `port`, once; `asked` is cleared by advance().
            m.d.comb += port.valid.eq(~asked)
            with m.If(port.valid & port.ready):
                m.d.sync += asked.eq(1)

        def advance(target):
            m.d.sync += [state.eq(target), asked.eq(0)]

        def multiply_state(a, b):
            m.d.comb += [operand_a.eq(a), operand_b.eq(b), product_result.ready.eq(asked)]
            ask(multiply)

        def normalise_product(exponent, target):
            # The product goes to the normaliser (idle, so ready) in the cycle it comes.
            m.d.comb += [operand_a.eq(norm_scale.mantissa), product_result.ready.eq(
                asked & normalise.ready), normalise.valid.eq(asked & product_result.valid),
                normalise.payload.value.eq(product), normalise.payload.exponent.eq(exponent)]
            with m.If(got_product):
                advance(target)

        with m.Switch(state):
            with m.Case(_Step.IDLE):
                # The request is taken with the value's normalisation.
                payload = self.request.payload
                m.d.comb += [
                    self.request.ready.eq(normalise.ready),
                    normalise.valid.eq(self.request.valid),
                    normalise.payload.value.eq(payload.sum_of_squares + payload.epsilon_term),
                    normalise.payload.even.eq(1),
                ]
                with m.If(self.request.valid & self.request.ready):
                    m.d.sync += [quantize.eq(payload.quantize), constant.eq(payload.constant),
                                 largest.eq(payload.largest)]
                    advance(_Step.ALIGN_VALUE)
            with m.Case(_Step.ALIGN_VALUE):
                m.d.comb += normalised_result.ready.eq(1)
                with m.If(got_scale):
                    m.d.sync += [
                        normalised.eq(aligned[width - RSQRT_INPUT_BITS:]),
                        half_shift.eq(normalised_result.payload.count >> 1),
                        iterate.eq(seed << RSQRT_SEED_SHIFT), step.eq(0),
                    ]
                    advance(Mux(quantize, _Step.ALIGN_LARGEST, self._after_seed))
            with m.Case(_Step.ALIGN_LARGEST):
                # scale_from_int(largest) and its bit length; the divider takes the aligned
                # largest (it is idle: its last quotient was taken with the last result).
                m.d.comb += [normalise.payload.value.eq(Mux(largest == 0, 1, largest)),
                             normalised_result.ready.eq(divider.request.ready),
                             divider.request.valid.eq(normalised_result.valid),
                             divider.request.payload.eq(
                                 aligned[width - params.vector_bits:])]
                ask(normalise)
                with m.If(got_scale):
                    m.d.sync += [largest_scale.eq(scale),
                                 largest_bits.eq(width - normalised_result.payload.count)]
                    advance(self._after_seed)
            if params.rsqrt_newton_steps:
                # y <- y * (3 - w y**2) / 2 as numerics.rsqrt_scale writes it.
                with m.Case(_Step.NEWTON_SQUARE):
                    multiply_state(iterate, iterate)
                    with m.If(got_product):
                        m.d.sync += factor.eq(product >> RSQRT_FRAC_BITS)   # y**2 >> 30
                        advance(_Step.NEWTON_ERROR)
                with m.Case(_Step.NEWTON_ERROR):
                    multiply_state(normalised, factor)
                    with m.If(got_product):
                        # 3 * 2**30 - ((w * y_squared) >> 32)
                        m.d.sync += factor.eq((3 << RSQRT_FRAC_BITS)
                                              - (product >> RSQRT_INPUT_BITS))
                        advance(_Step.NEWTON_UPDATE)
                with m.Case(_Step.NEWTON_UPDATE):
                    multiply_state(iterate, factor)
                    with m.If(got_product):
                        m.d.sync += [iterate.eq(product >> (RSQRT_FRAC_BITS + 1)),
                                     step.eq(step + 1)]
                        advance(Mux(step == params.rsqrt_newton_steps - 1, _Step.ROUND_RSQRT,
                                    _Step.NEWTON_SQUARE))
            with m.Case(_Step.ROUND_RSQRT):
                # 1/sqrt(value) = y * 2**-(46 + shift/2), shift = (width - 32) - L.
                base = -RSQRT_EXPONENT - (width - RSQRT_INPUT_BITS) // 2
                m.d.comb += [normalise.payload.value.eq(iterate),
                             normalise.payload.exponent.eq(base + half_shift),
                             normalised_result.ready.eq(1)]
                ask(normalise)
                with m.If(got_scale):
                    m.d.sync += norm_scale.eq(scale)
                    advance(_Step.MULTIPLY_CONSTANT)
            with m.Case(_Step.MULTIPLY_CONSTANT):
                m.d.comb += operand_b.eq(constant.mantissa)
                ask(multiply)
                normalise_product(norm_scale.exponent + constant.exponent,
                                  _Step.ROUND_CONSTANT)
            with m.Case(_Step.ROUND_CONSTANT):
                m.d.comb += normalised_result.ready.eq(1)
                with m.If(got_scale):
                    m.d.sync += norm_scale.eq(scale)
                    advance(Mux(quantize, _Step.MULTIPLY_LARGEST, _Step.DONE))
            with m.Case(_Step.MULTIPLY_LARGEST):
                m.d.comb += operand_b.eq(largest_scale.mantissa)
                ask(multiply)
                normalise_product(norm_scale.exponent + largest_scale.exponent,
                                  _Step.ROUND_LARGEST)
            with m.Case(_Step.ROUND_LARGEST):
                m.d.comb += normalised_result.ready.eq(1)
                with m.If(got_scale):
                    m.d.sync += output_scale.eq(scale)
                    advance(_Step.DONE)
            with m.Case(_Step.DONE):
                m.d.comb += [self.result.valid.eq(divider.result.valid | ~quantize),
                             divider.result.ready.eq(quantize & self.result.ready)]
                with m.If(self.result.valid & self.result.ready):
                    advance(_Step.IDLE)

        m.d.comb += [
            self.result.payload.norm_scale.eq(norm_scale),
            self.result.payload.output_scale.eq(output_scale),
            self.result.payload.reciprocal.eq(divider.result.payload),
            self.result.payload.largest_bits.eq(largest_bits),
        ]
        return m

    @property
    def _after_seed(self):
        return _Step.NEWTON_SQUARE if self._params.rsqrt_newton_steps else _Step.ROUND_RSQRT

    def _seed(self, m, index):
        """Combinational ROM of numerics.rsqrt_table, addressed by the top bits of w."""
        table = [int(v) for v in numerics.rsqrt_table(self._params)]
        seed = Signal(unsigned(max(table).bit_length()))
        with m.Switch(index):
            for address, entry in enumerate(table):
                # A default keeps the case statement complete (Verilator's CASEINCOMPLETE).
                with m.Default() if address == len(table) - 1 else m.Case(address):
                    m.d.comb += seed.eq(entry)
        return seed
