"""The norm unit's front for the dataflow core: ``u = x * weight`` for both passes of a NORM or
QUANT, and the first pass's two reductions, ``V`` lanes a cycle, with no stall signal
(issue 15, ``docs/dataflow.md``).

:class:`NormStatistics` takes commands of two kinds on one stream of ``(x, weight)`` beats:

- a *reduce* command (pass 1) gives one ``statistics`` result at its end: the sum of squares
  ``numerics.sum_of_squares(x)`` and ``max |u|`` with ``u = numerics.multiply(x, weight)``;
- any other command (pass 2) gives ``u`` itself, one beat a beat, for the lanes that apply the
  scale (:class:`~tern_fpga.hw.dataflow.scale_lanes.ScaleLanes`).

So one multiplier a lane forms ``u`` in both passes, as the committed unit's does, and a
second, the square, works only in the first.

Stages: 1 and 2 the operands; 3 to 9 the product (:func:`~.products.rounded_product`) and,
from ``|x|`` (3), 4 to 8 the square (:func:`~.products.square`); 9 the square shifted right by
``square_shift`` and saturated; 10 ``u`` saturated (a pass-2 beat leaves here for the ``u``
FIFO); 11 ``|u|`` and the square, lanes past the length zeroed; then ``log2 V`` levels of an
adder tree and a max tree; then the accumulators; the next cycle a command's last beat writes
its statistics.
"""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from tern_fpga.contracts.params import AcceleratorParameters
from tern_fpga.hw.dataflow.pipeline import CommandBeats, CreditedOutput, delay, register
from tern_fpga.hw.dataflow.products import (
    HALF,
    checked_target,
    rounded_product,
    saturated,
    square,
)
from tern_fpga.hw.norm_quantizer import operand_layout
from tern_fpga.hw.row_unit import result_layout as u_layout
from tern_fpga.hw.scale_layout import sum_of_squares_bits

__all__ = ["NormStatistics", "command_layout", "statistics_layout"]

# The stage at which u leaves (a pass-2 beat's FIFO write follows it).
U_STAGE = 10


def command_layout(params: AcceleratorParameters) -> data.StructLayout:
    """``length`` (elements, 1 to ``max_features``) and ``reduce`` (1: pass 1, one
    ``statistics`` result; 0: pass 2, ``u`` beats)."""
    return data.StructLayout({"length": range(1, params.max_features + 1), "reduce": 1})


def statistics_layout(params: AcceleratorParameters) -> data.StructLayout:
    """``sum_of_squares`` (``numerics.sum_of_squares``) and ``largest`` (``max |u|``, 0 for an
    all-zero ``u``; ``2**(vector_bits - 1)`` fits)."""
    return data.StructLayout({
        "sum_of_squares": unsigned(sum_of_squares_bits(params)),
        "largest": unsigned(params.vector_bits),
    })


class NormStatistics(wiring.Component):
    """``u = x * weight`` for a NORM's or QUANT's passes; the sum of squares and ``max |u|``.

    A command takes ``ceil(length / V)`` operand beats (beat ``b`` holds elements ``b V`` to
    ``b V + V - 1``; lanes past ``length`` carry any value and count as nothing). One beat a
    cycle goes in whatever the outputs do, while their FIFOs have room.

    Parameters
    ----------
    params : tern_fpga.contracts.params.AcceleratorParameters
    target : None or str
        ``"ecp5"``: the multipliers as ``MULT18X18D`` instances with their own registers
        (:func:`~.products.partial_product`; not simulated). By default a ``*``.

    Members
    -------
    command : ``In(stream.Signature(command_layout(params)))``
    operands : ``In(stream.Signature(norm_quantizer.operand_layout(params)))``
    u : ``Out(stream.Signature(row_unit.result_layout(params)))``
        A pass-2 command's ``u``, a beat an operand beat (``mask``: lanes that hold elements).
    statistics : ``Out(stream.Signature(statistics_layout(params)))``
        One a pass-1 command.
    busy : ``Out(1)``

    Raises
    ------
    TypeError
        If ``params`` is not an :class:`~tern_fpga.contracts.params.AcceleratorParameters`.
    ValueError
        If ``vector_bits`` is not 32 or ``frac_bits`` above 16 (the products take 16-bit
        halves).
    """

    def __init__(self, params: AcceleratorParameters, *, target=None):
        if not isinstance(params, AcceleratorParameters):
            raise TypeError(f"params must be an AcceleratorParameters, not {params!r}")
        if params.vector_bits != 2 * HALF or params.frac_bits > HALF:
            raise ValueError(f"the norm unit multiplies {HALF}-bit halves: vector_bits must be "
                             f"{2 * HALF} (not {params.vector_bits}) and frac_bits at most "
                             f"{HALF} (not {params.frac_bits})")
        self._params, self._target = params, checked_target(target)
        super().__init__({
            "command": In(stream.Signature(command_layout(params))),
            "operands": In(stream.Signature(operand_layout(params))),
            "u": Out(stream.Signature(u_layout(params))),
            "statistics": Out(stream.Signature(statistics_layout(params))),
            "busy": Out(1),
        })

    @property
    def tree_levels(self) -> int:
        return self._params.vector_lanes.bit_length() - 1

    @property
    def u_latency(self) -> int:
        """Cycles from a pass-2 beat passing to its ``u`` entering the output FIFO."""
        return U_STAGE

    @property
    def statistics_latency(self) -> int:
        """Cycles from a pass-1 command's last beat passing to its statistics entering the
        output FIFO: ``u``, ``|u|``, the trees, the accumulators, the write."""
        return U_STAGE + 1 + self.tree_levels + 1

    def elaborate(self, platform):
        m = Module()
        params, lanes = self._params, self._params.vector_lanes
        u_output = CreditedOutput(m, self.u, self.u_latency + 3, name="u_fifo")
        statistics_output = CreditedOutput(m, self.statistics, self.statistics_latency + 3,
                                           name="statistics_fifo")
        beats = CommandBeats(m, self.command, lanes, params.max_features, fields=("reduce",))
        reduce = beats.fields["reduce"]
        room = Mux(reduce, ~beats.at_last | statistics_output.available, u_output.available)
        fire = beats.active & room & self.operands.valid
        m.d.comb += [self.operands.ready.eq(beats.active & room),
                     self.busy.eq(beats.active | ~u_output.idle | ~statistics_output.idle)]
        u_output.admit(m, fire & ~reduce)
        statistics_output.admit(m, fire & reduce & beats.at_last)
        beats.step(m, fire)

        tag = {"valid": register(m, fire, "valid_1", reset_less=False),
               "reduce": register(m, reduce, "reduce_1"),
               "first": register(m, beats.at_first, "first_1"),
               "last": register(m, beats.at_last, "last_1"),
               "mask": register(m, beats.mask, "mask_1")}
        stages = [tag]
        for number in range(2, self.statistics_latency + 1):
            stages.append(delay(m, stages[-1], str(number)))

        u = Signal(u_layout(params))
        at_u = stages[U_STAGE - 1]
        squares, magnitudes = [], []
        for lane in range(lanes):
            lane_u, lane_square = self._lane(m, lane)
            m.d.comb += u.data[lane].eq(lane_u)
            keep = at_u["mask"][lane]
            squares.append(register(m, Mux(keep, lane_square, 0),
                                    f"lane{lane}_square_{U_STAGE + 1}"))
            magnitudes.append(register(m, Mux(keep, abs(lane_u), 0),
                                       f"lane{lane}_largest_{U_STAGE + 1}",
                                       shape=unsigned(params.vector_bits)))
        m.d.comb += [u.mask.eq(at_u["mask"]), u.last.eq(at_u["last"]),
                     u_output.w_data.eq(u), u_output.w_en.eq(at_u["valid"] & ~at_u["reduce"])]

        level = U_STAGE + 1
        while len(squares) > 1:
            level += 1
            squares = [register(m, left + right, f"sum_{level}_{index}")
                       for index, (left, right) in enumerate(zip(squares[::2], squares[1::2]))]
            magnitudes = [register(m, Mux(left > right, left, right), f"max_{level}_{index}")
                          for index, (left, right)
                          in enumerate(zip(magnitudes[::2], magnitudes[1::2]))]
        at_tree = stages[level - 1]
        total = Signal(sum_of_squares_bits(params), name="sum_of_squares")
        largest = Signal(params.vector_bits, name="largest")
        with m.If(at_tree["valid"] & at_tree["reduce"]):
            before = Mux(at_tree["first"], 0, total)
            m.d.sync += total.eq(before + squares[0])
            with m.If(at_tree["first"] | (magnitudes[0] > largest)):
                m.d.sync += largest.eq(magnitudes[0])
        at_total = stages[level]
        statistics = Signal(statistics_layout(params))
        m.d.comb += [
            statistics.sum_of_squares.eq(total), statistics.largest.eq(largest),
            statistics_output.w_data.eq(statistics),
            statistics_output.w_en.eq(at_total["valid"] & at_total["reduce"] & at_total["last"]),
        ]
        return m

    def _lane(self, m, lane):
        """One lane's stages 1 to 10: returns ``u`` (a stage-10 register) and the shifted,
        saturated square (delayed to stage 10)."""
        params = self._params

        def stage(value, name, number, shape=None):
            return register(m, value, f"lane{lane}_{name}_{number}", shape=shape)

        # 1 and 2: the operands, twice: the 56 DSPs of eight lanes spread over the part, and
        # one register between the input and the DSPs' own left 4.5 ns of routing to them.
        x = stage(stage(self.operands.payload.x[lane], "x", 1), "x", 2)
        weight = stage(stage(self.operands.payload.weight[lane], "weight", 1), "weight", 2)
        product = rounded_product(m, stage, x, weight, params, 3, self._target)
        u = stage(saturated(product, params.vector_bits), "u", U_STAGE,
                  signed(params.vector_bits))
        # |x| has a register of its own before the one beside the square's DSPs.
        x_square = square(m, stage, stage(abs(x), "x_magnitude", 3), 4, self._target)
        limit = params.square_saturation_bits
        shifted = x_square[params.square_shift:]
        value = stage(Mux(shifted[limit:].any(), (1 << limit) - 1, shifted[:limit]),
                      "square_shifted", 9, unsigned(limit))
        return u, stage(value, "square_shifted", U_STAGE)
