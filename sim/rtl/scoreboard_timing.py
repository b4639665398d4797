"""A compiled model's decode step through the RTL scoreboard (``hw/dataflow/scoreboard.py``) with
behavioural units whose timing is the schedule model's (``tern_fpga.explore.dataflow_schedule``):
what the scoreboard's own costs (a bubble a pass, ``go`` a register behind the progress it
reads, a window of two beats, a limited number of slots) add to the projected cycles, with every
read still checked against the sequential program."""

from __future__ import annotations

import dataclasses
import random

from amaranth.sim import Simulator

from tern_fpga.contracts.segmented_layout import best_segments, segmented_shape
from tern_fpga.hw.dataflow.scoreboard import Scoreboard
from tern_fpga.sim.golden.run_plan import step_instructions
from tern_fpga.sim.rtl.hazard_harness import HarnessTiming, run_program

__all__ = ["harness_timing", "scoreboard_step"]


def harness_timing(compiled, params, timing, command_queue: int = 2,
                   vector_write_ports: int | None = None) -> HarnessTiming:
    """The behavioural units' timing equal to the schedule model's ``timing``
    (a :class:`~tern_fpga.explore.dataflow_schedule.DataflowTiming`) at ``params``; the vector
    memory taking ``vector_write_ports`` words a cycle (``None``: any number)."""
    turnaround = timing.norm_turnaround + params.vector_lanes.bit_length() - 1
    compiled_lanes = compiled.params.ternary_lanes

    def matrix_shape(instruction):
        in_features = instruction.a * compiled_lanes
        segments = best_segments(instruction.length, in_features, params,
                                 timing.max_segments)
        shape = segmented_shape(instruction.length, in_features, params, segments)
        return shape.words, segments, shape.beats

    quant = timing.reciprocal_latency or timing.engine_latency[1]
    return HarnessTiming(
        elementwise_latency=timing.elementwise_latency,
        norm_engine=turnaround + timing.engine_latency[0], quant_engine=turnaround + quant,
        norm_tail=timing.norm_tail, matrix_drain=timing.matrix_drain, read_delay=1,
        take_probability=1.0, matrix_shape=matrix_shape, command_queue=command_queue,
        vector_write_ports=vector_write_ports)


def scoreboard_step(compiled, *, ternary_lanes: int, vector_lanes: int, slots: int,
                    timing, command_queue: int = 2, program=None,
                    vector_write_ports: int | None = None) -> dict:
    """Run the step (or ``program``, a version of it: the NORMs folded) through
    :class:`Scoreboard` (``slots``; each unit holding ``command_queue`` commands it has not
    started; the vector memory taking ``vector_write_ports`` words a cycle) in Amaranth's
    simulator; returns
    ``cycles`` and ``wrong_reads`` (reads that saw another value than the sequential program's:
    an empty list unless the scoreboard is wrong)."""
    params = dataclasses.replace(compiled.params, ternary_lanes=ternary_lanes,
                                 vector_lanes=vector_lanes)
    program = step_instructions(compiled) if program is None else program
    dut = Scoreboard(params, slots=slots)
    records = []

    async def bench(ctx):
        records.append(await run_program(
            ctx, dut, program, lanes=vector_lanes, memory_words=params.vector_memory_words,
            timing=harness_timing(compiled, params, timing, command_queue, vector_write_ports),
            rng=random.Random(0),
            limit=200_000))

    simulator = Simulator(dut)
    simulator.add_clock(1e-8)
    simulator.add_testbench(bench)
    simulator.run()
    record = records[0]
    if record.cycles >= 200_000:
        raise AssertionError("the step did not finish through the scoreboard: a deadlock")
    return {"cycles": record.cycles, "wrong_reads": record.wrong_reads}
