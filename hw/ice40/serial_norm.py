"""The iCE40UP5K port's norm and quantiser unit (``docs/boards.md``, the iCEBreaker plan's steps 3
and 4: "the norm lanes at V=1 on it"): the dataflow core's
:class:`~tern_fpga.hw.dataflow.norm_unit.NormUnit` at ``vector_lanes = 1``, its command,
operand, result and scale streams (the committed
:class:`~tern_fpga.hw.norm_quantizer.NormQuantizer`'s layouts) and its results bit for bit
(``numerics.rmsnorm`` and ``numerics.quantize_activations``), one element at a time, every
product asked of ONE multiplier port in :mod:`~tern_fpga.hw.ice40.shared_multiplier`'s layouts.

A command is read from its stream while it is worked on and taken at its end (its
``epsilon_term``, ``constant``, ``operation`` and ``length`` need no registers of their own);
the sender streams its operand beats twice, as for ``NormUnit``. Phases:

1. **Statistics** (pass 1): per element two products, ``x * weight`` and ``x * x``, asked
   back to back from the operand beat on the stream (taken with the second request), their
   results taken as they come: ``u = numerics.multiply(x, weight)`` (the element-wise unit's
   rounding, :func:`~tern_fpga.hw.ice40.serial_elementwise._rounded`) into a register, then
   ``max |u|``; ``min(x**2 >> square_shift, 2**S - 1)`` into the sum of squares. Exactly what
   :class:`~tern_fpga.hw.dataflow.norm_statistics.NormStatistics` computes.
2. **Engine**: a :class:`~tern_fpga.hw.ice40.serial_engine.SerialScalarEngine` inside takes
   the request (``quantize``, the sum, ``epsilon_term``, ``constant``, ``max |u|``); its result
   is then held (not taken) until the command ends, so that its registers are the factor's
   and the output scale's (QUANT's ``scale`` is offered from it until taken).
3. **Factor**: the pass's factor ``k`` (QUANT: the engine's ``reciprocal`` ``R``; NORM: the
   scale's mantissa ``M``) and its rounding shift ``s`` (QUANT: ``reciprocal_bits + e``, ``e``
   the engine's ``largest_bits``; NORM: minus the scale's exponent). ``s = 8 c - f`` with
   ``f`` from 0 to 7, and one product ``k' = k * 2**f`` (so no shifter for ``f``). NORM's left
   shifts (``s <= 0``) go wholly into ``f`` (``M`` is 16 bits: up to 15); a left shift of 16
   or more saturates every element that is not 0 (``M`` is normalised, at least
   ``2**(scale_mantissa_bits - 1)``, or 0); NORM's ``s`` above 49 gives 0 and is taken as 49.
4. **Scale** (pass 2), per element: the product ``x * weight`` gives ``u``; the product
   ``v * k'`` (``v = |u|`` for QUANT, ``u`` for NORM) goes into a 64-bit register ``P``, which
   shifts right (arithmetic) by a byte a cycle, ``c`` times, keeping the last bit shifted out
   (``round``): ``P + round`` is then ``round_shift(v * k, s)``, which is saturated to the
   vector format (NORM) or to ``activation_max`` with ``u``'s sign (QUANT). For QUANT,
   ``|u| = 2**31`` (``u = -2**31``) goes to the signed multiplier as ``-2**31``: then ``R`` is
   exactly ``127 * 2**17`` and ``s = 48``, so ``P + round`` is exactly ``-127``, taken as 127.

The engine's products and the unit's go through the one port: the two never ask at once (the
engine works only between the passes), so the port is the OR of the two requests (each 0 when
its owner does not ask) and its results go to whichever owns the phase: no arbiter inside, no
second port on the core's arbiter (which then has one client fewer: 73 ``SB_LUT4`` for two
clients against 142 for three).

Cycles (:meth:`SerialNormUnit.cycles_per_element`), the streams always valid and ready and the
multiplier taking each request at once: pass 1 two an element (the two requests back to back;
the results follow ``LATENCY`` cycles later and are taken as they come); pass 2 ``2 LATENCY + c
+ 3`` (a product's request and its result's cycle each, twice, ``c`` byte shifts, the result's
cycle): 11 + c, ``c = ceil(s / 8)`` (QUANT: ``ceil((16 + e) / 8)``, 3 to 6; NORM: 0 to 7).
The engine between the passes: its own latency
(:meth:`~tern_fpga.hw.ice40.serial_engine.SerialScalarEngine.max_latency`; *simulated*, micro,
ten commands of 64 elements: 57 to 72 cycles for NORM, 83 to 97 for QUANT from its request to
its result), 5 cycles from pass 1's last beat to its request, and 17 to 22 from its result to
the first pass-2 result (the factor's product and the first element). A 64-element command
takes about 1,000 to 1,300 cycles (the dataflow unit at ``V = 1``: two beats an element and
its pipelines' and engine's latencies, about 200; estimated, not measured).

Yosys (``synthesize(unit, "ice40")``, micro at ``V = 1``, the multiplier outside): 2,065
``SB_LUT4`` (1,130 of them the engine's), 517 ``SB_CARRY``, 683 flip-flops (the engine's 426),
no ``SB_MAC16``, no block RAM; the dataflow ``NormUnit`` at ``V = 1``: 4,731 ``SB_LUT4``, 962
``SB_CARRY``, 4,224 flip-flops, 13 ``SB_MAC16`` and 6 ``SB_RAM40_4K``.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import enum, stream, wiring
from amaranth.lib.wiring import In, Out

from tern_fpga.contracts.params import AcceleratorParameters
from tern_fpga.hw.ice40 import shared_multiplier
from tern_fpga.hw.ice40.serial_elementwise import _rounded  # shared: numerics.multiply's rounding
from tern_fpga.hw.ice40.serial_engine import SerialScalarEngine
from tern_fpga.hw.norm_quantizer import (  # shared; norm_quantizer.py is a design source
    Operation,
    command_layout,
    operand_layout,
    result_layout,
)
from tern_fpga.hw.row_unit import _limit  # shared; row_unit.py is a design source
from tern_fpga.hw.scale_layout import scale_layout, sum_of_squares_bits

__all__ = ["SerialNormUnit"]

# NORM's right shifts beyond this give 0 (|u * M| <= 2**47) and are taken as this.
MAX_SHIFT = 49
# NORM's left shifts from this on saturate every element that is not 0.
SATURATING_LEFT_SHIFT = 16


class _State(enum.Enum, shape=3):
    IDLE = 0        # waiting for a command
    STATISTICS = 1  # pass 1
    ENGINE = 2      # the engine's request and work
    FACTOR = 3      # k' = k * 2**f
    ASK_U = 4       # pass 2: x * weight
    ASK_SCALED = 5  # pass 2: v * k'
    SHIFT = 6       # pass 2: P's byte shifts, then the result
    END = 7         # the output scale, then the command and the engine's result taken


class SerialNormUnit(wiring.Component):
    """:class:`~tern_fpga.hw.dataflow.norm_unit.NormUnit`'s streams and results at ``V = 1``,
    one element at a time, on a shared multiplier (see the module).

    Parameters
    ----------
    params : tern_fpga.contracts.params.AcceleratorParameters
        ``vector_lanes`` must be 1.
    bits_per_cycle : int
        The engine's normaliser's coarse shift.
    tag_bits : int
        Width of the shared multiplier's tag.
    tag : int
        The tag that this unit's multiplier requests carry (the engine's too).

    Members
    -------
    command : ``In(stream.Signature(norm_quantizer.command_layout(params)))``
        Taken when the command's last result and its scale have been taken.
    operands : ``In(stream.Signature(norm_quantizer.operand_layout(params)))``
        ``length`` beats, twice.
    result : ``Out(stream.Signature(norm_quantizer.result_layout(params)))``
    scale : ``Out(stream.Signature(scale_layout(params)))``
        A QUANT's output scale.
    busy : ``Out(1)``
    multiplier_request : ``Out(stream.Signature(shared_multiplier.request_layout(tag_bits)))``
    multiplier_result : ``In(stream.Signature(shared_multiplier.result_layout(tag_bits)))``
        Taken as soon as it is offered.

    Raises
    ------
    TypeError
        If ``params`` is not an :class:`~tern_fpga.contracts.params.AcceleratorParameters`.
    ValueError
        If ``vector_lanes`` is not 1, ``vector_bits`` is not the multiplier's 32 bits, the
        factor shifted by 7 (or NORM's mantissa by 15) does not fit a signed operand, or the
        engine refuses the parameters, ``tag_bits`` or ``tag``.
    """

    def __init__(self, params: AcceleratorParameters, *, bits_per_cycle: int = 4,
                 tag_bits: int = 1, tag: int = 0):
        if not isinstance(params, AcceleratorParameters):
            raise TypeError(f"params must be an AcceleratorParameters, not {params!r}")
        if params.vector_lanes != 1:
            raise ValueError(f"the serial norm unit has one lane; vector_lanes="
                             f"{params.vector_lanes} needs the dataflow core's NormUnit")
        width = shared_multiplier.OPERAND_BITS
        if params.vector_bits != width:
            raise ValueError(f"the serial norm unit multiplies {width}-bit operands; "
                             f"vector_bits={params.vector_bits} is not {width}")
        reciprocal = params.reciprocal_bits + params.activation_bits
        if reciprocal + 7 > width - 1 or params.scale_mantissa_bits + 15 > width - 1:
            raise ValueError(f"the factor shifted left must fit a signed {width}-bit operand: "
                             f"reciprocal_bits + activation_bits = {reciprocal} (at most "
                             f"{width - 8}) and scale_mantissa_bits = "
                             f"{params.scale_mantissa_bits} (at most {width - 16})")
        self._engine = SerialScalarEngine(params, bits_per_cycle=bits_per_cycle,
                                          tag_bits=tag_bits, tag=tag)
        self._params, self._tag = params, tag
        super().__init__({
            "command": In(stream.Signature(command_layout(params))),
            "operands": In(stream.Signature(operand_layout(params))),
            "result": Out(stream.Signature(result_layout(params))),
            "scale": Out(stream.Signature(scale_layout(params))),
            "busy": Out(1),
            **shared_multiplier.client_ports(tag_bits),
        })

    @property
    def params(self) -> AcceleratorParameters:
        return self._params

    @property
    def tag(self) -> int:
        return self._tag

    @property
    def engine(self) -> SerialScalarEngine:
        return self._engine

    @staticmethod
    def byte_shifts(shift: int) -> int:
        """``c``: pass 2's byte shifts for a rounding shift ``s`` (NORM's ``-exponent``,
        QUANT's ``reciprocal_bits + e``)."""
        return (min(shift, MAX_SHIFT) + 7) // 8 if shift > 0 else 0

    @classmethod
    def cycles_per_element(cls, second_pass: bool, shift: int = 0) -> int:
        """Cycles between two elements of a pass, the streams always valid and ready and the
        multiplier taking each request at once (pass 2: for a rounding shift ``shift``)."""
        if not second_pass:
            return 2
        return 2 * shared_multiplier.LATENCY + cls.byte_shifts(shift) + 3

    def elaborate(self, platform):
        m = Module()
        params = self._params
        width, frac_bits = params.vector_bits, params.frac_bits
        m.submodules.engine = engine = self._engine
        command = self.command.payload
        quantize = command.operation == Operation.QUANT
        operand = self.operands.payload
        x, weight = operand.x[0], operand.weight[0]
        request, incoming = self.multiplier_request, self.multiplier_result
        product = incoming.payload.product

        state = Signal(_State)
        asked = Signal()                    # this state's request was taken
        second = Signal()                   # pass 1: the next request is x * x
        second_result = Signal()            # pass 1: the next result is x * x's
        taken = Signal(range(params.max_features + 1))      # beats taken in this pass
        received = Signal(range(params.max_features + 1))   # pass 1's squares received
        total = Signal(sum_of_squares_bits(params))
        largest = Signal(width)
        u = Signal(signed(width))
        u_due = Signal()                    # pass 1: u is new, compare it
        factor = Signal(width - 1)          # k'
        bytes_left = Signal(range(8))       # c
        count = Signal(range(8))            # the byte shifts left
        saturating = Signal()               # NORM's left shift of 16 or more
        scaled = Signal(signed(2 * width))  # P
        round_bit = Signal()
        scale_sent = Signal()

        magnitude = Mux(u < 0, -u, u)[:width]               # |u|, 2**31 included
        got = incoming.valid & incoming.ready
        rounded = Signal(signed(width))                     # numerics.multiply of a product
        m.d.comb += rounded.eq(_rounded(product, width, frac_bits))

        # The engine's port and ours: the engine asks only in ENGINE, we never do then.
        ours = Signal.like(request.payload)
        our_valid = Signal()
        in_engine = state == _State.ENGINE
        m.d.comb += [
            request.valid.eq(our_valid | engine.multiplier_request.valid),
            request.payload.a.eq(ours.a | engine.multiplier_request.payload.a),
            request.payload.b.eq(ours.b | engine.multiplier_request.payload.b),
            request.payload.tag.eq(self._tag),
            engine.multiplier_request.ready.eq(request.ready & in_engine),
            engine.multiplier_result.valid.eq(incoming.valid & in_engine),
            engine.multiplier_result.payload.eq(incoming.payload),
        ]
        our_ready = Signal()
        m.d.comb += incoming.ready.eq(Mux(in_engine, engine.multiplier_result.ready, our_ready))

        def ask(a, b, valid=1):
            m.d.comb += [ours.a.eq(a), ours.b.eq(b), our_valid.eq(valid & ~asked)]
            with m.If(request.valid & request.ready):
                m.d.sync += asked.eq(1)

        # The engine's request: the statistics and the command's fields.
        result = engine.result.payload
        m.d.comb += [
            engine.request.payload.quantize.eq(quantize),
            engine.request.payload.sum_of_squares.eq(total),
            engine.request.payload.epsilon_term.eq(command.epsilon_term),
            engine.request.payload.constant.eq(command.constant),
            engine.request.payload.largest.eq(largest),
        ]

        # The factor's shift: s = 8 c - f.
        exponent = result.norm_scale.exponent
        shift = Signal(signed(len(exponent) + 1))
        m.d.comb += shift.eq(Mux(quantize, params.reciprocal_bits + result.largest_bits,
                                 Mux(-exponent > MAX_SHIFT, MAX_SHIFT, -exponent)))
        left = shift <= 0
        too_far = exponent >= SATURATING_LEFT_SHIFT
        fine = Mux(left, Mux(too_far, 0, exponent[:4]), (-shift)[:3])
        power = Signal(width)
        m.d.comb += power.eq(Const(1, width) << fine)
        raw_factor = Mux(quantize, result.reciprocal, result.norm_scale.mantissa)

        with m.If(self.scale.valid & self.scale.ready):
            m.d.sync += scale_sent.eq(1)
        m.d.comb += [
            self.scale.valid.eq(quantize & engine.result.valid & ~scale_sent
                                & (state != _State.ENGINE) & (state != _State.IDLE)),
            self.scale.payload.eq(result.output_scale),
            self.busy.eq(state != _State.IDLE),
        ]

        def advance(target):
            m.d.sync += [state.eq(target), asked.eq(0)]

        with m.Switch(state):
            with m.Case(_State.IDLE), m.If(self.command.valid):
                m.d.sync += [taken.eq(0), received.eq(0), total.eq(0), largest.eq(0),
                             second.eq(0), second_result.eq(0), u_due.eq(0)]
                advance(_State.STATISTICS)

            with m.Case(_State.STATISTICS):
                # Requests: x * weight, then x * x with the beat taken.
                more = taken != command.length
                m.d.comb += [ours.a.eq(x), ours.b.eq(Mux(second, x, weight)),
                             our_valid.eq(more & self.operands.valid),
                             self.operands.ready.eq(more & second & request.ready),
                             our_ready.eq(1)]
                with m.If(request.valid & request.ready):
                    m.d.sync += second.eq(~second)
                    with m.If(second):
                        m.d.sync += taken.eq(taken + 1)
                # Results, in request order: u, then the square.
                with m.If(u_due & (magnitude > largest)):
                    m.d.sync += largest.eq(magnitude)
                m.d.sync += u_due.eq(0)
                with m.If(got):
                    m.d.sync += second_result.eq(~second_result)
                    with m.If(second_result):
                        shifted = product[params.square_shift:2 * width - 1]
                        limit = params.square_saturation_bits
                        square = Mux(shifted[limit:].any(), (1 << limit) - 1, shifted[:limit])
                        m.d.sync += [total.eq(total + square), received.eq(received + 1)]
                        with m.If(received == command.length - 1):
                            advance(_State.ENGINE)
                    with m.Else():
                        m.d.sync += [u.eq(rounded), u_due.eq(1)]

            with m.Case(_State.ENGINE):
                m.d.comb += engine.request.valid.eq(~asked)
                with m.If(engine.request.valid & engine.request.ready):
                    m.d.sync += asked.eq(1)
                with m.If(engine.result.valid):
                    m.d.sync += [bytes_left.eq(Mux(left, 0, (shift + 7)[3:6])),
                                 saturating.eq(~quantize & too_far), taken.eq(0)]
                    advance(_State.FACTOR)

            with m.Case(_State.FACTOR):
                ask(raw_factor, power)
                m.d.comb += our_ready.eq(asked)
                with m.If(got):
                    m.d.sync += factor.eq(product[:width - 1])
                    advance(_State.ASK_U)

            with m.Case(_State.ASK_U):
                ask(x, weight, self.operands.valid)
                m.d.comb += [self.operands.ready.eq(~asked & request.ready), our_ready.eq(asked)]
                with m.If(got):
                    m.d.sync += [u.eq(rounded), taken.eq(taken + 1)]
                    advance(_State.ASK_SCALED)

            with m.Case(_State.ASK_SCALED):
                ask(Mux(quantize, magnitude, u), factor)
                m.d.comb += our_ready.eq(asked)
                with m.If(got):
                    m.d.sync += [scaled.eq(product), round_bit.eq(0), count.eq(bytes_left)]
                    advance(_State.SHIFT)

            with m.Case(_State.SHIFT):
                with m.If(count != 0):
                    m.d.sync += [scaled.eq(scaled >> 8), round_bit.eq(scaled[7]),
                                 count.eq(count - 1)]
                m.d.comb += self.result.valid.eq(count == 0)
                with m.If(self.result.valid & self.result.ready):
                    advance(Mux(taken == command.length, _State.END, _State.ASK_U))

            with m.Case(_State.END):
                done = ~quantize | scale_sent
                m.d.comb += [engine.result.ready.eq(done), self.command.ready.eq(done)]
                with m.If(done):
                    m.d.sync += scale_sent.eq(0)
                    advance(_State.IDLE)

        # The result: P + round saturated (NORM), or its levels with u's sign (QUANT).
        near = scaled[:width + 1].as_signed() + round_bit
        upper = scaled[width:]
        fits = (Cat(upper.all() | ~upper.any(), near[width - 1:].all() | ~near[width - 1:].any())
                .all() & ~(saturating & scaled.any()))
        norm = Signal(signed(width))
        m.d.comb += norm.eq(Mux(fits, near[:width], _limit(scaled[-1], width)))
        limit = params.activation_max
        levels = Mux((norm < 0) | (norm > limit), limit, norm[:limit.bit_length()])
        m.d.comb += self.result.payload[0].eq(Mux(quantize, Mux(u < 0, -levels, levels), norm))
        return m
