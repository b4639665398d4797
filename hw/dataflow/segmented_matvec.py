"""The segmented ternary matrix unit: ``P`` multiply-free lanes that cover one row, or ``k`` rows
at once when a row is narrower than ``P`` (issue 15, item 2).

Each cycle the unit takes one weight word and one activation beat, in the layout of
:mod:`tern_fpga.contracts.segmented_layout`: with ``k`` segments a word holds ``k`` pieces of
``w = P / k`` lanes, one of each row of a group, and the activation beat holds the same ``w``
activations in every segment. Lanes select ``x``, ``~x`` or 0 (the ``+1`` of ``-x`` enters an
adder as a carry-in, as in :class:`~tern_fpga.hw.ternary_matvec.TernaryMatVec`).

The adder tree is ``S = max_segments`` sub-trees of ``P / S`` lanes, then ``log2 S`` combining
levels, each registered: level ``i`` holds ``S / 2**i`` sums, the sums of segments of
``P * 2**i / S`` lanes. A command's ``k`` picks level ``log2(S / k)`` at the end of the tree, so
the mode travels with every beat and commands of different ``k`` follow each other with no
bubble. ``S`` accumulators add a group's beats; a group's ``k`` sums leave together as one
result beat.

The pipeline never stalls: the output FIFO absorbs back-pressure and a credit counter lets a
group's last word in only when the FIFO will have room for its result (as in
:class:`~tern_fpga.hw.ternary_matvec.TernaryMatVec`).

This is the first unit of the dataflow core (``docs/dataflow.md``); the instruction-at-a-time
core still uses :class:`~tern_fpga.hw.ternary_matvec.TernaryMatVec`.
"""

from __future__ import annotations

import math

from amaranth.hdl import Module, Mux, Shape, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from tern_fpga.contracts.params import AcceleratorParameters
from tern_fpga.hw.dataflow.pipeline import CreditedOutput, delay, register

__all__ = ["SegmentedMatVec", "command_layout", "result_layout"]


def _check_max_segments(params: AcceleratorParameters, max_segments) -> None:
    lanes = params.ternary_lanes
    if not (isinstance(max_segments, int) and 1 <= max_segments <= max(1, lanes // 2)
            and not max_segments & (max_segments - 1)):
        raise ValueError(f"max_segments must be a power of two from 1 to P/2 = {lanes // 2}, "
                         f"not {max_segments!r}")


def command_layout(params: AcceleratorParameters, max_segments: int) -> data.StructLayout:
    """Payload of the command stream.

    ``rows`` (1 to ``weight_memory_words * max_segments``), ``beats`` (words a group, 1 to
    ``max_features``: a segment may be a single lane) and ``segments_log2`` (``log2 k``, 0 to
    ``log2 max_segments``). A command takes ``ceil(rows / k) * beats`` words.
    """
    return data.StructLayout({
        "rows": Shape.cast(range(1, params.weight_memory_words * max_segments + 1)),
        "beats": Shape.cast(range(1, params.max_features + 1)),
        "segments_log2": Shape.cast(range(max_segments.bit_length())),
    })


def result_layout(params: AcceleratorParameters, max_segments: int) -> data.StructLayout:
    """Payload of the result stream: one beat a group.

    ``sums`` (``max_segments`` signed ``accumulator_bits`` lanes: lane ``s`` is the sum of
    segment ``s``, that is of row ``g*k + s``; lanes from ``k`` on are undefined), ``count``
    (rows in this group, 1 to ``k``: fewer only in a command's last group) and ``last`` (the
    command's last group).
    """
    return data.StructLayout({
        "sums": data.ArrayLayout(signed(params.accumulator_bits), max_segments),
        "count": Shape.cast(range(1, max_segments + 1)),
        "last": unsigned(1),
    })


class SegmentedMatVec(wiring.Component):
    """Ternary matrix times int8 vector, ``P`` lanes, one weight word a cycle, ``k`` rows a word.

    Parameters
    ----------
    params : tern_fpga.contracts.params.AcceleratorParameters
        Gives ``P = params.ternary_lanes``, the accumulator width and the field widths.
    max_segments : int
        ``S``: the most rows one word may hold, a power of two from 1 to ``P / 2``.
    levels_per_stage : int
        Adder levels between pipeline registers in the sub-trees (1: the highest clock).

    Members
    -------
    command : ``In(stream.Signature(command_layout(params, max_segments)))``
    weights : ``In(stream.Signature(data.ArrayLayout(unsigned(2), P)))``
    activations : ``In(stream.Signature(data.ArrayLayout(signed(8), P)))``
        Move together with ``weights``: a beat passes when both are valid.
    result : ``Out(stream.Signature(result_layout(params, max_segments)))``
    busy : ``Out(1)``
        High while a command is in progress or one of its results has not left.

    Raises
    ------
    TypeError
        If ``params`` is not an :class:`~tern_fpga.contracts.params.AcceleratorParameters`.
    ValueError
        If ``max_segments`` or ``levels_per_stage`` is not valid (the message says why).
    """

    def __init__(self, params: AcceleratorParameters, *, max_segments: int,
                 levels_per_stage: int = 1):
        if not isinstance(params, AcceleratorParameters):
            raise TypeError(f"params must be an AcceleratorParameters, not {params!r}")
        _check_max_segments(params, max_segments)
        if not (isinstance(levels_per_stage, int) and levels_per_stage >= 1):
            raise ValueError(
                f"levels_per_stage must be a positive integer, not {levels_per_stage!r}")
        self._params = params
        self._max_segments = max_segments
        self._levels_per_stage = levels_per_stage
        lanes = params.ternary_lanes
        super().__init__({
            "command": In(stream.Signature(command_layout(params, max_segments))),
            "weights": In(stream.Signature(data.ArrayLayout(unsigned(2), lanes))),
            "activations": In(stream.Signature(
                data.ArrayLayout(signed(params.activation_bits), lanes))),
            "result": Out(stream.Signature(result_layout(params, max_segments))),
            "busy": Out(1),
        })

    @property
    def params(self) -> AcceleratorParameters:
        return self._params

    @property
    def max_segments(self) -> int:
        return self._max_segments

    @property
    def sub_tree_stages(self) -> int:
        """Registers in one sub-tree of ``P / S`` lanes."""
        levels = int(math.log2(self._params.ternary_lanes // self._max_segments))
        return max(1, math.ceil(levels / self._levels_per_stage))

    @property
    def latency(self) -> int:
        """Cycles from a group's last beat passing to its result entering the FIFO: the input
        register, the sub-trees, the combining levels, the accumulators."""
        return 1 + self.sub_tree_stages + int(math.log2(self._max_segments)) + 1

    @property
    def fifo_depth(self) -> int:
        """Results the output FIFO holds: enough credits for the round trip (latency, two
        cycles through the buffered FIFO, one to return the credit), so that one-word groups
        flow at one a cycle."""
        return self.latency + 3

    def elaborate(self, platform):
        m = Module()
        output = CreditedOutput(m, self.result, self.fifo_depth)
        beat, tag = self._elaborate_control(m, output)
        sums, carries, tag = self._elaborate_sub_trees(m, beat, tag)
        levels, tag = self._elaborate_combine(m, sums, carries, tag)
        self._elaborate_accumulators(m, levels, tag, output)
        return m

    def _elaborate_control(self, m, output):
        """Command registers, beat and group counters, handshakes and credits. Returns the
        registered beat and its tag (valid, first and last beat of a group, the mode, the
        group's row count and whether it is the command's last)."""
        command = self.command.payload
        segments_bits = self._max_segments.bit_length() - 1
        active = Signal()
        beat_index = Signal.like(command.beats)
        group_index = Signal.like(command.rows)
        last_beat_index = Signal.like(command.beats)
        last_group_index = Signal.like(command.rows)
        last_count = Signal(range(1, self._max_segments + 1))
        segments_log2 = Signal.like(command.segments_log2)

        last_beat = beat_index == last_beat_index
        last_group = group_index == last_group_index
        can_take = active & (~last_beat | output.available)
        fire = can_take & self.weights.valid & self.activations.valid
        m.d.comb += [
            self.weights.ready.eq(can_take & self.activations.valid),
            self.activations.ready.eq(can_take & self.weights.valid),
            self.command.ready.eq(~active | (fire & last_beat & last_group)),
            self.busy.eq(active | ~output.idle),
        ]
        with m.If(fire):
            m.d.sync += beat_index.eq(Mux(last_beat, 0, beat_index + 1))
            with m.If(last_beat):
                m.d.sync += group_index.eq(group_index + 1)
                with m.If(last_group):
                    m.d.sync += active.eq(0)
        with m.If(self.command.valid & self.command.ready):
            rows_less_one = command.rows - 1
            m.d.sync += [
                active.eq(1),
                beat_index.eq(0),
                group_index.eq(0),
                last_beat_index.eq(command.beats - 1),
                segments_log2.eq(command.segments_log2),
            ]
            # rows - 1 = (groups - 1) * k + (last_count - 1), k = 2**segments_log2.
            with m.Switch(command.segments_log2):
                for log2 in range(segments_bits + 1):
                    with m.Case(log2):
                        m.d.sync += [
                            last_group_index.eq(rows_less_one >> log2),
                            last_count.eq((rows_less_one & ((1 << log2) - 1)) + 1),
                        ]

        output.admit(m, fire & last_beat)

        beat = {name: register(m, port.payload, f"{name}_q")
                for name, port in (("weights", self.weights),
                                   ("activations", self.activations))}
        full = Signal(range(1, self._max_segments + 1))
        m.d.comb += full.eq(1 << segments_log2)
        tag = {
            "valid": register(m, fire, "valid_q", reset_less=False),
            "first": register(m, beat_index == 0, "first_q"),
            "last": register(m, last_beat, "last_q"),
            "segments_log2": register(m, segments_log2, "segments_log2_q"),
            "count": register(m, Mux(last_group, last_count, full), "count_q"),
            "last_group": register(m, last_group, "last_group_q"),
        }
        return beat, tag

    def _elaborate_sub_trees(self, m, beat, tag):
        """Lane select and ``S`` pipelined adder trees of ``P / S`` lanes. Returns their sums,
        one carry each, and the tag delayed alike."""
        lanes = self._params.ternary_lanes
        width = self._params.activation_bits
        terms, carries = [], []
        for lane in range(lanes):
            code = beat["weights"][lane]
            value = beat["activations"][lane].as_unsigned()
            # Code bit 0 marks a non-zero weight (10 reads as 0); 11 is -1, -x = ~x + 1.
            nonzero, negative = code[0], code[1] & code[0]
            terms.append(((value ^ negative.replicate(width)) & nonzero.replicate(width))
                         .as_signed())
            carries.append(negative)
        span = lanes // self._max_segments
        trees = [(terms[start:start + span], carries[start:start + span])
                 for start in range(0, lanes, span)]
        level = 0
        while len(trees[0][0]) > 1:
            level += 1
            width += 1
            next_trees = []
            for tree, (tree_terms, tree_carries) in enumerate(trees):
                sums = []
                pairs = len(tree_terms) // 2
                for index in range(pairs):
                    # One carry chain: Yosys folds the 1-bit term into the adder's carry-in.
                    total = Signal(signed(width), name=f"tree{tree}_l{level}_{index}")
                    m.d.comb += total.eq(tree_terms[2 * index] + tree_terms[2 * index + 1]
                                         + tree_carries[index])
                    sums.append(total)
                next_trees.append((sums, tree_carries[pairs:]))
            trees = next_trees
            if level % self._levels_per_stage == 0 or len(trees[0][0]) == 1:
                trees = [([register(m, term, f"{term.name}_q") for term in tree_terms],
                          [register(m, carry, f"carry{tree}_l{level}_{index}")
                           for index, carry in enumerate(tree_carries)])
                         for tree, (tree_terms, tree_carries) in enumerate(trees)]
                tag = delay(m, tag, f"l{level}")
        sums = [tree_terms[0] for tree_terms, _ in trees]
        carries = [tree_carries[0] for _, tree_carries in trees]
        return sums, carries, tag

    def _elaborate_combine(self, m, sums, carries, tag):
        """``log2 S`` registered levels. Returns, for each level ``i``, its ``S / 2**i``
        (sum, carry) pairs, every level delayed to the last, and the tag."""
        levels = [list(zip(sums, carries))]
        index = 0
        while len(levels[-1]) > 1:
            index += 1
            pairs = []
            for pair, ((left, left_carry), (right, right_carry)) in enumerate(
                    zip(levels[-1][0::2], levels[-1][1::2])):
                total = Signal(signed(max(len(left), len(right)) + 1),
                               name=f"combine_l{index}_{pair}")
                # Two carries: the left one enters this adder, the right one goes on.
                m.d.comb += total.eq(left + right + left_carry)
                pairs.append((total, right_carry))
            levels = [[(register(m, value, f"{value.name}_c{index}"),
                        register(m, carry, f"{value.name}_carry_c{index}"))
                       for value, carry in level] for level in levels]
            levels.append([(register(m, value, f"{value.name}_q"),
                            register(m, carry, f"{value.name}_carry_q"))
                           for value, carry in pairs])
            tag = delay(m, tag, f"c{index}")
        return levels, tag

    def _elaborate_accumulators(self, m, levels, tag, output):
        """``S`` accumulators (lane ``s`` adds the chosen level's sum ``s``) and the FIFO."""
        params = self._params
        segments_bits = self._max_segments.bit_length() - 1
        result = Signal(result_layout(params, self._max_segments))
        done = Signal()
        for lane in range(self._max_segments):
            chosen = Signal(signed(params.accumulator_bits), name=f"chosen_{lane}")
            chosen_carry = Signal(name=f"chosen_carry_{lane}")
            with m.Switch(tag["segments_log2"]):
                for log2 in range(segments_bits + 1):
                    level = levels[segments_bits - log2]
                    if lane < len(level):
                        with m.Case(log2):
                            m.d.comb += [chosen.eq(level[lane][0]),
                                         chosen_carry.eq(level[lane][1])]
            accumulator = result.sums[lane]
            with m.If(tag["valid"]):
                m.d.sync += accumulator.eq(Mux(tag["first"], 0, accumulator) + chosen
                                           + chosen_carry)
        with m.If(tag["valid"] & tag["last"]):
            m.d.sync += [result.count.eq(tag["count"]), result.last.eq(tag["last_group"])]
        m.d.sync += done.eq(tag["valid"] & tag["last"])
        m.d.comb += [output.w_data.eq(result), output.w_en.eq(done)]

