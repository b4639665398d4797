"""The dataflow core's norm and quantiser unit: NORM and QUANT, bit-exact, with the ports of the
committed :class:`tern_fpga.hw.norm_quantizer.NormQuantizer`, built from the dataflow units
(issue 15, ``docs/dataflow.md``).

:class:`NormUnit` joins four units with streams:

- :class:`~.norm_statistics.NormStatistics` takes both passes' operand beats; pass 1 gives the
  sum of squares and ``max |u|``, pass 2 gives ``u``;
- :class:`~.reciprocal.Reciprocal` (QUANT) turns ``max |u|`` into the quantiser's reciprocal,
  so that a QUANT's second pass waits for the divider alone;
- :class:`~.scale_engine.ScaleEngine` computes the rsqrt and the scale beside it: NORM's scale
  (the second pass waits for it) or QUANT's output scale (offered on ``scale``);
- :class:`~.scale_lanes.ScaleLanes` applies the factor to ``u``.

A command's two passes go into ``NormStatistics`` one after the other as it is taken; three small
queues keep, in command order, what the engine and the lanes need when the statistics and the
factors arrive, and where each engine result goes. A request register sits between the
statistics and the engine and reciprocal, and a command register in front of the lanes, so
that no handshake reaches through another unit's state. Unlike the committed unit's, a QUANT's
output scale may come after its first results (the rsqrt no longer delays them); each stream
keeps its own order.
"""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import data, fifo, stream, wiring
from amaranth.lib.wiring import In, Out

from tern_fpga.contracts.params import AcceleratorParameters
from tern_fpga.hw.dataflow.norm_statistics import NormStatistics
from tern_fpga.hw.dataflow.reciprocal import Reciprocal
from tern_fpga.hw.dataflow.scale_engine import ScaleEngine
from tern_fpga.hw.dataflow.scale_lanes import ScaleLanes
from tern_fpga.hw.norm_quantizer import (  # shared; norm_quantizer.py is a design source
    Operation,
    command_layout,
    operand_layout,
    result_layout,
)
from tern_fpga.hw.scale_layout import scale_layout, sum_of_squares_bits

__all__ = ["NormUnit"]

# Commands whose statistics or factors may be outstanding at once.
QUEUE_DEPTH = 4


class NormUnit(wiring.Component):
    """RMSNorm (NORM) and activation quantiser (QUANT), ``V`` lanes, bit-exact, no global stall.

    The ports and their meaning are :class:`~tern_fpga.hw.norm_quantizer.NormQuantizer`'s: the
    sender streams each command's operand beats twice; ``result`` gives one beat per pass-2
    beat (lanes past the length are 0); ``scale`` a QUANT's output scale.

    Parameters
    ----------
    params : tern_fpga.contracts.params.AcceleratorParameters
    bits_per_cycle : int
        The reciprocal divider's quotient bits a cycle.
    target : None or str
        Passed to the units with multipliers (:data:`~.products.TARGETS`).

    Members
    -------
    command : ``In(stream.Signature(norm_quantizer.command_layout(params)))``
    operands : ``In(stream.Signature(norm_quantizer.operand_layout(params)))``
    result : ``Out(stream.Signature(norm_quantizer.result_layout(params)))``
    scale : ``Out(stream.Signature(scale_layout(params)))``
    busy : ``Out(1)``
    """

    def __init__(self, params: AcceleratorParameters, *, bits_per_cycle: int = 2, target=None):
        if not isinstance(params, AcceleratorParameters):
            raise TypeError(f"params must be an AcceleratorParameters, not {params!r}")
        self._params = params
        self.statistics_unit = NormStatistics(params, target=target)
        self.reciprocal = Reciprocal(params, bits_per_cycle=bits_per_cycle)
        self.engine = ScaleEngine(params)
        self.lanes = ScaleLanes(params, target=target)
        super().__init__({
            "command": In(stream.Signature(command_layout(params))),
            "operands": In(stream.Signature(operand_layout(params))),
            "result": Out(stream.Signature(result_layout(params))),
            "scale": Out(stream.Signature(scale_layout(params))),
            "busy": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        params = self._params
        m.submodules.statistics = statistics = self.statistics_unit
        m.submodules.reciprocal = reciprocal = self.reciprocal
        m.submodules.engine = engine = self.engine
        m.submodules.lanes = lanes = self.lanes
        # In command order: what the engine needs when a command's statistics come; what the
        # lanes need when its factor comes; where each engine result goes (1: ``scale``).
        engine_entry = data.StructLayout({"quantize": 1,
                                          "epsilon_term": sum_of_squares_bits(params),
                                          "constant": scale_layout(params)})
        lanes_entry = data.StructLayout({"quantize": 1,
                                         "length": self.command.payload.length.shape()})
        engine_queue = _Queue(m, "engine_queue", engine_entry)
        lanes_queue = _Queue(m, "lanes_queue", lanes_entry)
        results_queue = _Queue(m, "results_queue", data.StructLayout({"quantize": 1}))

        # A command: both passes into NormStatistics; its needs into the queues.
        command = self.command.payload
        quantize = command.operation == Operation.QUANT
        held = Signal()
        second_pass = Signal()
        length = Signal.like(command.length)
        take = self.command.valid & self.command.ready
        m.d.comb += [
            self.command.ready.eq(~held & engine_queue.writable & lanes_queue.writable),
            engine_queue.write.eq(take),
            engine_queue.written.quantize.eq(quantize),
            engine_queue.written.epsilon_term.eq(command.epsilon_term),
            engine_queue.written.constant.eq(command.constant),
            lanes_queue.write.eq(take),
            lanes_queue.written.quantize.eq(quantize),
            lanes_queue.written.length.eq(command.length),
            statistics.command.valid.eq(held),
            statistics.command.payload.length.eq(length),
            statistics.command.payload.reduce.eq(~second_pass),
        ]
        with m.If(take):
            m.d.sync += [held.eq(1), second_pass.eq(0), length.eq(command.length)]
        with m.If(statistics.command.valid & statistics.command.ready):
            m.d.sync += second_pass.eq(1)
            with m.If(second_pass):
                m.d.sync += held.eq(0)
        wiring.connect(m, wiring.flipped(self.operands), statistics.operands)

        # Statistics: into a request register, then to the engine and, for QUANT, to the
        # reciprocal, each when it is ready: neither handshake waits for the other's, and the
        # engine's wide request registers load from registers.
        waiting = engine_queue.entry
        request = Signal.like(engine.request.payload, name="request")
        engine_due, reciprocal_due = Signal(), Signal()
        capture = Signal()
        m.d.comb += capture.eq(statistics.statistics.valid & engine_queue.readable
                               & results_queue.writable & ~engine_due & ~reciprocal_due)
        with m.If(capture):
            m.d.sync += [
                request.quantize.eq(waiting.quantize),
                request.sum_of_squares.eq(statistics.statistics.payload.sum_of_squares),
                request.epsilon_term.eq(waiting.epsilon_term),
                request.constant.eq(waiting.constant),
                request.largest.eq(statistics.statistics.payload.largest),
                engine_due.eq(1), reciprocal_due.eq(waiting.quantize),
            ]
        m.d.comb += [
            engine.request.valid.eq(engine_due), engine.request.payload.eq(request),
            reciprocal.largest.valid.eq(reciprocal_due),
            reciprocal.largest.payload.eq(request.largest),
            statistics.statistics.ready.eq(capture), engine_queue.read.eq(capture),
            results_queue.write.eq(capture), results_queue.written.quantize.eq(waiting.quantize),
        ]
        with m.If(engine.request.valid & engine.request.ready):
            m.d.sync += engine_due.eq(0)
        with m.If(reciprocal.largest.valid & reciprocal.largest.ready):
            m.d.sync += reciprocal_due.eq(0)

        # The lanes' command: QUANT's factor from the reciprocal, NORM's from the engine, into
        # a command register (loaded when empty), so that the lanes' take of their next command
        # does not reach back into the reciprocal's and the engine's state.
        next_pass = lanes_queue.entry
        norm_scale = engine.result.valid & results_queue.readable & ~results_queue.entry.quantize
        ready = Mux(next_pass.quantize, reciprocal.result.valid, norm_scale)
        command_held = Signal()
        issued = Signal()
        m.d.comb += issued.eq(~command_held & lanes_queue.readable & ready)
        with m.If(issued):
            m.d.sync += [
                command_held.eq(1),
                lanes.command.payload.quantize.eq(next_pass.quantize),
                lanes.command.payload.length.eq(next_pass.length),
                lanes.command.payload.factor.eq(Mux(next_pass.quantize,
                                                    reciprocal.result.payload.reciprocal,
                                                    engine.result.payload.mantissa)),
                lanes.command.payload.shift.eq(Mux(next_pass.quantize,
                                                   reciprocal.result.payload.shift,
                                                   -engine.result.payload.exponent)),
            ]
        with m.If(lanes.command.valid & lanes.command.ready):
            m.d.sync += command_held.eq(0)
        m.d.comb += [lanes.command.valid.eq(command_held), lanes_queue.read.eq(issued),
                     reciprocal.result.ready.eq(issued & next_pass.quantize)]

        # Engine results: NORM's to the lanes (above), QUANT's to ``scale``.
        to_scale = results_queue.readable & results_queue.entry.quantize
        m.d.comb += [
            self.scale.valid.eq(engine.result.valid & to_scale),
            self.scale.payload.mantissa.eq(engine.result.payload.mantissa),
            self.scale.payload.exponent.eq(engine.result.payload.exponent),
            engine.result.ready.eq(Mux(to_scale, self.scale.ready,
                                       issued & ~next_pass.quantize)),
            results_queue.read.eq(engine.result.valid & engine.result.ready),
        ]

        # u into the lanes; their values out.
        m.d.comb += [lanes.u.valid.eq(statistics.u.valid),
                     lanes.u.payload.eq(statistics.u.payload.data),
                     statistics.u.ready.eq(lanes.u.ready),
                     self.result.valid.eq(lanes.result.valid),
                     self.result.payload.eq(lanes.result.payload.data),
                     lanes.result.ready.eq(self.result.ready)]
        m.d.comb += self.busy.eq(held | statistics.busy | lanes.busy | engine_queue.readable
                                 | lanes_queue.readable | results_queue.readable
                                 | engine_due | reciprocal_due | command_held
                                 | ~reciprocal.largest.ready | reciprocal.result.valid
                                 | ~engine.request.ready | engine.result.valid)
        return m


class _Queue:
    """A small FIFO of ``layout`` entries: ``entry`` is the written one (set it with
    ``write``) and, when ``readable``, the oldest (``read`` takes it)."""

    def __init__(self, m, name, layout):
        m.submodules[name] = queue = fifo.SyncFIFO(width=layout.size, depth=QUEUE_DEPTH)
        self.written = Signal(layout, name=f"{name}_written")
        self.entry = data.View(layout, queue.r_data)
        self.writable, self.readable = queue.w_rdy, queue.r_rdy
        self.write, self.read = queue.w_en, queue.r_en
        m.d.comb += queue.w_data.eq(self.written)
