"""Formal properties of the ternary matrix unit at P = 16: its streams and transfer counts, and
one row's dot product against the reference sum for every weight and activation."""

import pytest
from amaranth.hdl import Const, Module, Mux, Signal, Value, signed

from tern_fpga.contracts.params import PRESETS
from tern_fpga.hw.ternary_matvec import TernaryMatVec, max_beats

from support.formal import (
    Assert,
    Assume,
    BrokenOutput,
    Cover,
    Properties,
    bounded,
    cover,
    prove,
    refuted,
)

# every proof runs on one test worker (make test: --dist loadgroup), beside the rest of the suite
pytestmark = pytest.mark.xdist_group("formal")

# Four rows of at most two words: command fields of 3 and 2 bits keep the counts small.
PARAMS = PRESETS["micro"].replace(name="formal-p16", ternary_lanes=16, max_features=32,
                                  weight_memory_words=4)
# Cycles of the bounded checks: a few commands, stalls and a full output FIFO fit in it.
DEPTH = 16
# Cycles from reset until the result of a command offered at once has left: the command, the
# word's input register, four tree stages, the accumulator and the output FIFO.
RESULT_CYCLES = 10


class MatVecStreams(Properties):
    """Stream rules on ``result`` (assumed on the inputs), nothing out of reset, and (with
    ``counts``) no result or beat lost or made up: ``result`` transfers never pass the rows
    commanded, and when the unit is not busy they equal them and the weight beats equal the
    commands' ``rows * beats``."""

    def __init__(self, unit=None, *, counts=False):
        super().__init__()
        self.unit = unit if unit is not None else TernaryMatVec(PARAMS)
        self.counts = counts

    def build(self, m: Module):
        m.submodules.unit = unit = self.unit
        command = unit.command.payload
        started = self.started(m)
        commands = self.drive(m, unit.command, "command")
        weights = self.drive(m, unit.weights, "weights")
        activations = self.drive(m, unit.activations, "activations")
        results = self.watch(m, unit.result, "result")
        m.d.comb += Assume(~unit.command.valid | (
            (command.rows >= 1) & (command.rows <= PARAMS.weight_memory_words)
            & (command.beats >= 1) & (command.beats <= max_beats(PARAMS))))
        with m.If(~started):
            m.d.comb += [Assert(~unit.result.valid, "no_result_out_of_reset"),
                         Assert(~unit.busy, "idle_out_of_reset")]
        if self.counts:
            # Control never looks at the data (the words only enter the adder tree), so the
            # counts are checked with zero words: the solver then has no datapath to carry.
            m.d.comb += [Assume(Value.cast(unit.weights.payload) == 0),
                         Assume(Value.cast(unit.activations.payload) == 0)]
            rows, beats = Signal(8), Signal(8)
            with m.If(unit.command.valid & unit.command.ready):
                m.d.sync += [rows.eq(rows + command.rows),
                             beats.eq(beats + command.rows * command.beats)]
            m.d.comb += [Assert(results <= rows, "no_made_up_result"),
                         Assert(weights == activations, "weights_with_activations"),
                         Assert(weights <= beats, "no_beat_beyond_commands")]
            with m.If(~unit.busy):
                m.d.comb += [Assert(results == rows, "no_lost_result"),
                             Assert(weights == beats, "every_beat_taken")]
        m.d.comb += [
            Cover(unit.result.valid & ~unit.result.ready, "result_stalled"),
            Cover((results == 3) & (commands == 2), "three_results_of_two_commands"),
            # A row's last word held back for want of a credit (the output FIFO is full).
            Cover(unit.weights.valid & unit.activations.valid & ~unit.weights.ready
                  & unit.busy & ~unit.command.ready, "last_word_waits_for_credit"),
        ]


def lane_term(code, value):
    """A lane's product in plain arithmetic: +x for code 01, -x for 11, 0 for 00 and 10."""
    return Mux(code == 0b01, value, Mux(code == 0b11, -value, 0))


def split_lane_term(code, value):
    """:func:`lane_term` as a term and a carry bit that add up to it: ``-x`` is ``(-x - 1) + 1``
    (the property asserts that the two add up to :func:`lane_term` for every code and value)."""
    return Mux(code == 0b01, value, Mux(code == 0b11, -value - 1, 0)), code == 0b11


def reference_dot(codes, values, lanes):
    """The row sum of :func:`lane_term` over the lanes, each split by :func:`split_lane_term`,
    added in the order of the unit's adder tree: lanes in pairs, level by level, each pair with
    the next unused carry, the last carry at the end. Amaranth's ``+`` widens by a bit, so no
    sum wraps: by associativity this is the plain sum of the lane terms (at most ``128 * lanes``
    in magnitude, which ``accumulator_bits`` holds).

    In another order the solver has to re-associate the adders itself: against the unit, a
    balanced tree of plain lane terms did not finish in 5 minutes at P = 16, and a plain sum
    against a tree, with no unit, took yices 77 s at P = 8."""
    terms, carries = zip(*(split_lane_term(codes[lane], values[lane]) for lane in range(lanes)))
    terms, carries = list(terms), list(carries)
    while len(terms) > 1:
        pairs = len(terms) // 2
        terms = [terms[2 * index] + terms[2 * index + 1] + carries[index]
                 for index in range(pairs)]
        carries = carries[pairs:]
    (carry,) = carries
    return terms[0] + carry


class MatVecDotProduct(Properties):
    """One command of one row of one word (any weight codes, any int8 activations): the
    result equals :func:`reference_dot` of the word, each lane's split term and carry add up to
    its :func:`lane_term`, and the result leaves within :data:`RESULT_CYCLES`."""

    def __init__(self, unit=None):
        super().__init__()
        self.unit = unit if unit is not None else TernaryMatVec(PARAMS)

    def build(self, m: Module):
        m.submodules.unit = unit = self.unit
        command = unit.command.payload
        commands = self.drive(m, unit.command, "command")
        self.drive(m, unit.weights, "weights")
        self.drive(m, unit.activations, "activations")
        results = self.watch(m, unit.result, "result", ready=1)
        m.d.comb += [
            Assume(unit.command.valid == (commands == 0)),
            Assume((command.rows == 1) & (command.beats == 1)),
            Assume(unit.weights.valid & unit.activations.valid),
        ]
        # The reference of the word as it is taken, so that both sides are functions of the
        # same input variables.
        expected = Signal(signed(unit.params.accumulator_bits))
        codes, values = unit.weights.payload, unit.activations.payload
        with m.If(unit.weights.valid & unit.weights.ready):
            m.d.sync += expected.eq(reference_dot(codes, values, unit.params.ternary_lanes))
            for lane in range(unit.params.ternary_lanes):
                term, carry = split_lane_term(codes[lane], values[lane])
                m.d.comb += Assert(term + carry == lane_term(codes[lane], values[lane]),
                                   f"lane_{lane}_split_adds_up")
        with m.If(unit.result.valid):
            m.d.comb += Assert(unit.result.payload == expected, "row_sum_is_reference")
        cycle = Signal(range(RESULT_CYCLES + 2))
        m.d.sync += cycle.eq(cycle + (cycle <= RESULT_CYCLES))
        with m.If(cycle == RESULT_CYCLES):
            m.d.comb += Assert(results == 1, "result_within_bound")


class DropsNegativeCarry(TernaryMatVec):
    """A mutant that forgets the ``+1`` of ``-x = ~x + 1``: the last adder's carry."""

    def _elaborate_accumulator(self, m, total, carry, tag):
        super()._elaborate_accumulator(m, total, Const(0), tag)


def test_result_stream_rules_proved():
    prove(MatVecStreams(), depth=6)


def test_transfers_conserved_bounded():
    bounded(MatVecStreams(counts=True), depth=DEPTH)


def test_interesting_states_covered():
    cover(MatVecStreams(counts=True), depth=DEPTH)


def test_dot_product_equals_reference_bounded():
    bounded(MatVecDotProduct(), depth=RESULT_CYCLES + 2)


@pytest.mark.parametrize("fault", ["drop_valid", "change_payload", "lose_first"])
def test_broken_result_stream_refuted(fault):
    mutant = BrokenOutput(TernaryMatVec(PARAMS), "result", fault)
    refuted(MatVecStreams(mutant, counts=True), depth=DEPTH)


def test_dot_product_of_mutant_refuted():
    refuted(MatVecDotProduct(DropsNegativeCarry(PARAMS)), depth=RESULT_CYCLES + 2)
