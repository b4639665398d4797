"""Formal properties of the row-wise unit's streams (V = 2, vectors of at most 8 elements, a
24-bit vector format): the stream rules on ``result``, nothing out of reset, and no beat lost
or made up between the command, the operands and the results."""

import pytest
from amaranth.hdl import Module, Signal, Value

from tern_fpga.contracts.isa import BINARY_OPERATIONS, RowOperation
from tern_fpga.contracts.params import PRESETS
from tern_fpga.hw.row_unit import RowUnit, max_length

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

PARAMS = PRESETS["micro"].replace(
    name="formal-row", vector_lanes=2, vector_bits=24, frac_bits=12, reciprocal_bits=9,
    scale_mantissa_bits=12, vector_memory_words=8, vector_work_words=0, max_features=8)
# Cycles of the covers and mutants: two commands of up to four beats through the six stages,
# with stalls. The conservation check runs for COUNTS_DEPTH (a command of four beats and the
# next one's first results; 16 cycles took 28 s).
DEPTH = 16
COUNTS_DEPTH = 12


class RowStreams(Properties):
    """Stream rules on ``result`` (assumed on the inputs) and nothing out of reset; with
    ``counts``, no beat lost or made up: results never pass the operand beats taken, which
    never pass the beats commanded (``ceil(length / V)`` each, ``b`` only for binary
    operations); when the unit is not busy all are equal and each command ended with one
    ``last`` beat."""

    def __init__(self, unit=None, *, counts=False):
        super().__init__()
        self.unit = unit if unit is not None else RowUnit(PARAMS)
        self.counts = counts

    def build(self, m: Module):
        m.submodules.unit = unit = self.unit
        command = unit.command.payload
        started = self.started(m)
        commands = self.drive(m, unit.command, "command")
        a_beats = self.drive(m, unit.a, "a")
        b_beats = self.drive(m, unit.b, "b")
        results = self.watch(m, unit.result, "result")
        m.d.comb += Assume(~unit.command.valid | (
            (command.length >= 1) & (command.length <= max_length(PARAMS))))
        with m.If(~started):
            m.d.comb += [Assert(~unit.result.valid, "no_result_out_of_reset"),
                         Assert(~unit.busy, "idle_out_of_reset")]
        if self.counts:
            # Control never looks at the data: the counts are checked with zero operands.
            m.d.comb += [Assume(Value.cast(unit.a.payload) == 0),
                         Assume(Value.cast(unit.b.payload) == 0)]
            lanes_log2 = PARAMS.vector_lanes.bit_length() - 1
            beats = (command.length + PARAMS.vector_lanes - 1) >> lanes_log2
            binary = Signal()
            m.d.comb += binary.eq(command.operation.matches(*BINARY_OPERATIONS))
            wanted, wanted_b, lasts = Signal(8), Signal(8), Signal(8)
            with m.If(unit.command.valid & unit.command.ready):
                m.d.sync += [wanted.eq(wanted + beats),
                             wanted_b.eq(wanted_b + (beats & binary.replicate(8)))]
            with m.If(unit.result.valid & unit.result.ready & unit.result.payload.last):
                m.d.sync += lasts.eq(lasts + 1)
            m.d.comb += [Assert(results <= a_beats, "no_made_up_result"),
                         Assert(a_beats <= wanted, "no_beat_beyond_commands"),
                         Assert(b_beats <= wanted_b, "no_b_beat_beyond_commands")]
            with m.If(~unit.busy):
                m.d.comb += [Assert(results == wanted, "no_lost_result"),
                             Assert(b_beats == wanted_b, "every_b_beat_taken"),
                             Assert(lasts == commands, "one_last_per_command")]
            m.d.comb += [
                Cover(unit.result.valid & ~unit.result.ready, "result_stalled"),
                Cover((results == 5) & (commands == 2), "five_results_of_two_commands"),
                # A command taken in the cycle its predecessor's last beat passes.
                Cover(unit.command.valid & unit.command.ready & unit.busy
                      & unit.a.valid & unit.a.ready, "command_without_bubble"),
                Cover(unit.b.valid & unit.b.ready
                      & (unit.command.payload.operation == RowOperation.SUB), "b_taken"),
            ]


def test_result_stream_rules_proved():
    prove(RowStreams(), depth=4)


def test_transfers_conserved_bounded():
    bounded(RowStreams(counts=True), depth=COUNTS_DEPTH)


def test_interesting_states_covered():
    cover(RowStreams(counts=True), depth=DEPTH)


@pytest.mark.parametrize("fault", BrokenOutput.FAULTS)
def test_broken_result_stream_refuted(fault):
    refuted(RowStreams(BrokenOutput(RowUnit(PARAMS), "result", fault), counts=True), depth=DEPTH)
