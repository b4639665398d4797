"""The multiply-free ternary matrix-vector unit.

:class:`TernaryMatVec` computes ``y = W_t @ x`` for a ternary matrix ``W_t`` (-1, 0, +1) and an
int8 vector ``x`` with ``P = params.ternary_lanes`` lanes along the input dimension: each cycle
it takes one weight word (``P`` 2-bit codes of one row, see
:mod:`tern_fpga.sim.golden.ternary_matvec`)
and the ``P`` matching activations, and adds their products into the row's sum. There are no
multipliers: a lane selects ``x``, ``~x`` or 0, and the ``+1`` that turns ``~x`` into ``-x``
enters the adder tree as a carry-in, so a lane costs no more than one input of an adder.

The pipeline never stalls: data moves every cycle and an output FIFO absorbs back-pressure.
A credit counter lets the last word of a row in only when the FIFO is sure to have room for the
row's result, so the result stream may stall at will without a global clock enable on the wide
datapath. A row's first word restarts the accumulator in the same cycle, so the unit takes one
word per cycle across row boundaries and across commands, also when a row is a single word.
"""

from __future__ import annotations

import math

from amaranth.hdl import Module, Mux, Shape, Signal, signed, unsigned
from amaranth.lib import data, fifo, stream, wiring
from amaranth.lib.wiring import In, Out

from tern_fpga.contracts.params import AcceleratorParameters

__all__ = ["TernaryMatVec", "command_layout", "max_beats"]


def max_beats(params: AcceleratorParameters) -> int:
    """The most weight words in one row: ``ceil(params.max_features / params.ternary_lanes)``."""
    return math.ceil(params.max_features / params.ternary_lanes)


def command_layout(params: AcceleratorParameters) -> data.StructLayout:
    """Payload of the unit's command stream.

    ``rows`` (1 to ``params.weight_memory_words``: a matrix in the weight memory has at most one
    row per word) and ``beats`` (weight words per row, 1 to :func:`max_beats`). Zero in either
    field is not a valid command.
    """
    return data.StructLayout({
        "rows": Shape.cast(range(1, params.weight_memory_words + 1)),
        "beats": Shape.cast(range(1, max_beats(params) + 1)),
    })


class TernaryMatVec(wiring.Component):
    """Ternary matrix times int8 vector, ``P`` multiply-free lanes, one weight word per cycle.

    A command ``(rows, beats)`` asks for ``rows`` results of ``beats`` words each. The unit then
    takes ``rows * beats`` beats, each one word from ``weights`` together with one beat from
    ``activations`` (the two streams move together: a beat passes when both are valid); the
    activation beat of column block ``c`` holds ``x[c*P .. c*P + P - 1]``, so the sender repeats
    the ``beats`` activation blocks for every row. Activations of padding columns are ignored
    (their weights are code ``00``). Each row's sum leaves on ``result`` in row order. The next
    command may be accepted in the cycle that the current one's last beat passes.

    Parameters
    ----------
    params : tern_fpga.contracts.params.AcceleratorParameters
        Gives ``P = params.ternary_lanes``, the accumulator width and the command field widths.
    levels_per_stage : int
        Adder-tree levels between pipeline registers (1 gives the highest clock, 2 halves the
        tree's registers). The lane select counts with the first level.

    Members
    -------
    command : ``In(stream.Signature(command_layout(params)))``
    weights : ``In(stream.Signature(data.ArrayLayout(unsigned(2), P)))``
        One weight word; lane ``j`` is element ``j`` (bits ``2j+1 .. 2j``).
    activations : ``In(stream.Signature(data.ArrayLayout(signed(8), P)))``
    result : ``Out(stream.Signature(signed(params.accumulator_bits)))``
    busy : ``Out(1)``
        High while a command is in progress or one of its results has not left ``result``.

    Raises
    ------
    TypeError
        If ``params`` is not an :class:`~tern_fpga.contracts.params.AcceleratorParameters`.
    ValueError
        If ``levels_per_stage`` is not a positive integer.
    """

    def __init__(self, params: AcceleratorParameters, *, levels_per_stage: int = 1):
        if not isinstance(params, AcceleratorParameters):
            raise TypeError(f"params must be an AcceleratorParameters, not {params!r}")
        if not (isinstance(levels_per_stage, int) and levels_per_stage >= 1):
            raise ValueError(
                f"levels_per_stage must be a positive integer, not {levels_per_stage!r}")
        self._params = params
        self._levels_per_stage = levels_per_stage
        lanes = params.ternary_lanes
        super().__init__({
            "command": In(stream.Signature(command_layout(params))),
            "weights": In(stream.Signature(data.ArrayLayout(unsigned(2), lanes))),
            "activations": In(stream.Signature(
                data.ArrayLayout(signed(params.activation_bits), lanes))),
            "result": Out(stream.Signature(signed(params.accumulator_bits))),
            "busy": Out(1),
        })

    @property
    def params(self) -> AcceleratorParameters:
        return self._params

    @property
    def levels_per_stage(self) -> int:
        return self._levels_per_stage

    @property
    def tree_stages(self) -> int:
        """Pipeline registers in the adder tree."""
        return math.ceil(int(math.log2(self._params.ternary_lanes)) / self._levels_per_stage)

    @property
    def latency(self) -> int:
        """Cycles from a row's last beat passing to its result being written into the FIFO:
        input register, tree stages, accumulator."""
        return 1 + self.tree_stages + 1

    @property
    def fifo_depth(self) -> int:
        """Results the output FIFO holds; enough credits to cover the round trip of one
        (latency, two cycles through the buffered FIFO, one to return the credit), so that
        one-word rows flow at one per cycle."""
        return self.latency + 3

    def elaborate(self, platform):
        m = Module()
        beat, tag = self._elaborate_control(m)
        total, carry, tag = self._elaborate_tree(m, beat, tag)
        self._elaborate_accumulator(m, total, carry, tag)
        return m

    def _elaborate_control(self, m):
        """Command registers, beat/row counters, stream handshakes and credits. Returns the
        registered beat (weights, activations) and its tag (valid, first, last of a row)."""
        command = self.command.payload
        active = Signal()
        beat_index = Signal.like(command.beats)
        row_index = Signal.like(command.rows)
        last_beat_index = Signal.like(command.beats)
        last_row_index = Signal.like(command.rows)
        credits = Signal(range(self.fifo_depth + 1), init=self.fifo_depth)

        first_beat = beat_index == 0
        last_beat = beat_index == last_beat_index
        last_row = row_index == last_row_index
        # A row's last beat needs a free FIFO entry for its result; other beats always pass.
        can_take = active & (~last_beat | (credits != 0))
        fire = can_take & self.weights.valid & self.activations.valid
        m.d.comb += [
            self.weights.ready.eq(can_take & self.activations.valid),
            self.activations.ready.eq(can_take & self.weights.valid),
            self.command.ready.eq(~active | (fire & last_beat & last_row)),
            self.busy.eq(active | (credits != self.fifo_depth)),
        ]

        with m.If(fire):
            m.d.sync += beat_index.eq(Mux(last_beat, 0, beat_index + 1))
            with m.If(last_beat):
                m.d.sync += row_index.eq(row_index + 1)
                with m.If(last_row):
                    m.d.sync += active.eq(0)
        # After the counters' updates, so that a command taken with the last beat wins.
        with m.If(self.command.valid & self.command.ready):
            m.d.sync += [
                active.eq(1),
                beat_index.eq(0),
                row_index.eq(0),
                last_beat_index.eq(command.beats - 1),
                last_row_index.eq(command.rows - 1),
            ]

        taken = fire & last_beat
        returned = self.result.valid & self.result.ready
        m.d.sync += credits.eq(credits - taken + returned)

        beat = {
            name: Signal(port.payload.shape(), name=f"{name}_q", reset_less=True)
            for name, port in (("weights", self.weights), ("activations", self.activations))
        }
        tag = {"valid": Signal(), "first": Signal(), "last": Signal()}
        m.d.sync += [
            beat["weights"].eq(self.weights.payload),
            beat["activations"].eq(self.activations.payload),
            tag["valid"].eq(fire),
            tag["first"].eq(first_beat),
            tag["last"].eq(last_beat),
        ]
        return beat, tag

    def _elaborate_tree(self, m, beat, tag):
        """Lane select and the pipelined adder tree. Returns the registered tree sum, the one
        carry bit left for the accumulator, and the tag delayed alike."""
        lanes = self._params.ternary_lanes
        width = self._params.activation_bits
        terms, carries = [], []
        for lane in range(lanes):
            code = beat["weights"][lane]
            value = beat["activations"][lane].as_unsigned()
            # Code bit 0 marks a non-zero weight (so the reserved 10 reads as 0); 11 is -1, and
            # -x = ~x + 1 where ~x of an int8 is again an int8: the +1 goes in as a carry.
            nonzero, negative = code[0], code[1] & code[0]
            terms.append(((value ^ negative.replicate(width)) & nonzero.replicate(width))
                         .as_signed())
            carries.append(negative)

        level = 0
        while len(terms) > 1:
            level += 1
            width += 1
            pairs = len(terms) // 2
            sums = []
            for index in range(pairs):
                # One carry chain: Yosys folds the 1-bit term into the adder's carry-in.
                total = Signal(signed(width), name=f"tree_l{level}_{index}")
                m.d.comb += total.eq(terms[2 * index] + terms[2 * index + 1] + carries[index])
                sums.append(total)
            terms, carries = sums, carries[pairs:]
            if level % self._levels_per_stage == 0 or len(terms) == 1:
                terms = [self._register(m, term, f"{term.name}_q") for term in terms]
                carries = [self._register(m, carry, f"carry_l{level}_{index}")
                           for index, carry in enumerate(carries)]
                tag = {name: self._register(m, bit, f"{name}_l{level}", reset_less=False)
                       for name, bit in tag.items()}
        (carry,) = carries
        return terms[0], carry, tag

    @staticmethod
    def _register(m, value, name, *, reset_less=True):
        register = Signal(value.shape(), name=name, reset_less=reset_less)
        m.d.sync += register.eq(value)
        return register

    def _elaborate_accumulator(self, m, total, carry, tag):
        """Row accumulator and the output FIFO."""
        accumulator = Signal(signed(self._params.accumulator_bits))
        done = Signal()
        with m.If(tag["valid"]):
            m.d.sync += accumulator.eq(Mux(tag["first"], 0, accumulator) + total + carry)
        m.d.sync += done.eq(tag["valid"] & tag["last"])

        m.submodules.fifo = results = fifo.SyncFIFOBuffered(
            width=self._params.accumulator_bits, depth=self.fifo_depth)
        m.d.comb += [
            results.w_data.eq(accumulator),
            results.w_en.eq(done),
            self.result.payload.eq(results.r_data),
            self.result.valid.eq(results.r_rdy),
            results.r_en.eq(self.result.ready),
        ]
