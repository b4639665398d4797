# amaranth: UnusedElaboratable=no
"""The dataflow core's issue stage and scoreboard (hw/dataflow/scoreboard.py) with behavioural
units (sim/rtl/hazard_harness.py): random programs over a few overlapping regions and the
shipped models' compiled steps, every read of every beat checked against the version the
sequential program gives it, no deadlock; directed cases for each kind of hazard; and that
independent work overlaps and dependent element-wise work streams behind its producer."""

import random

import pytest
from amaranth.sim import Simulator

from tern_fpga.contracts import paths
from tern_fpga.contracts.isa import Instruction, Opcode
from tern_fpga.contracts.params import PRESETS
from tern_fpga.explore.dataflow_schedule import DataflowTiming
from tern_fpga.hw.dataflow.scoreboard import Scoreboard, Unit
from tern_fpga.sim.rtl.hazard_harness import (
    HarnessTiming,
    random_program,
    run_program,
    sequential_reads,
)
from tern_fpga.sim.rtl.scoreboard_timing import scoreboard_step


def _run(params, program, *, slots=6, timing=None, seed=0, limit=20_000):
    timing = timing or HarnessTiming()
    dut = Scoreboard(params, slots=slots)
    records = []

    async def bench(ctx):
        records.append(await run_program(
            ctx, dut, program, lanes=params.vector_lanes,
            memory_words=params.vector_memory_words, timing=timing,
            rng=random.Random(seed), limit=limit))

    simulator = Simulator(dut)
    simulator.add_clock(1e-8)
    simulator.add_testbench(bench)
    simulator.run()
    return records[0]


@pytest.mark.parametrize("preset, slots, seed, write_ports", [
    ("demo", 6, 0, None), ("demo", 2, 1, None), ("micro", 4, 2, None), ("demo", 8, 3, None),
    ("micro", 6, 4, None), ("demo", 6, 5, 1), ("micro", 3, 6, 1)])
def test_random_programs_read_what_the_sequential_program_reads(preset, slots, seed,
                                                                write_ports):
    """``write_ports``: the vector memory takes that many words a cycle (writes that find it
    taken come later, so the scoreboard sees write pulses bunch and spread)."""
    params = PRESETS[preset]
    rng = random.Random(f"scoreboard{seed}")
    program = random_program(rng, 60, lanes=params.vector_lanes, regions=5)
    timing = HarnessTiming(take_probability=rng.choice([0.5, 0.8, 1.0]),
                           elementwise_latency=rng.choice([3, 14]),
                           read_delay=rng.choice([1, 2]),
                           slow_unit=rng.choice([None, *Unit]),
                           norm_engine=rng.choice([0, 12]), quant_engine=rng.choice([0, 12]),
                           vector_write_ports=write_ports)
    record = _run(params, program, slots=slots, timing=timing, seed=seed)
    assert record.cycles < 20_000, "the program did not finish: a deadlock"
    assert record.wrong_reads == []
    _, final = sequential_reads(program, params.vector_memory_words)
    assert record.final == final
    # Every instruction ran (the record saw its first beat or its last write).
    assert set(record.start) | set(record.end) >= {
        index for index, instruction in enumerate(program)}


def test_independent_work_overlaps_and_dependent_work_streams():
    params = PRESETS["demo"]
    size = 16 * params.vector_lanes
    program = [
        Instruction(Opcode.QUANT, dst=0, a=0, b=size, length=size),
        Instruction(Opcode.TMV, dst=2 * size, a=2, b=0, length=size),
        # Independent of the TMV: runs beside it.
        Instruction(Opcode.ADD, dst=3 * size, a=size, b=5 * size, length=size),
        # Reads the TMV's result: streams behind its writes.
        Instruction(Opcode.SIGMOID, dst=6 * size, a=2 * size, length=size),
    ]
    record = _run(params, program, timing=HarnessTiming(take_probability=1.0))
    assert record.wrong_reads == []
    assert record.start[2] < record.end[1], "the independent ADD waited for the TMV"
    # The SIGMOID's first beat comes before the TMV has written its last row.
    assert record.start[3] < record.end[1]
    # And at full rate: its last beats do not wait for the TMV's rows just past its operand.
    timing = HarnessTiming()
    assert record.end[2] - record.start[2] <= 16 + timing.elementwise_latency


def test_a_tmv_waits_for_a_slow_reader_of_its_whole_destination():
    params = PRESETS["demo"]
    size = 16 * params.vector_lanes
    program = [
        Instruction(Opcode.QUANT, dst=0, a=0, b=size, length=size),
        Instruction(Opcode.ADD, dst=3 * size, a=2 * size, b=4 * size, length=size),
        # Writes what the ADD reads: all of it only after the ADD has read it.
        Instruction(Opcode.TMV, dst=2 * size, a=1, b=0, length=size),
    ]
    record = _run(params, program, timing=HarnessTiming(
        take_probability=1.0, slow_unit=Unit.ELEMENTWISE, slow_probability=0.1))
    assert record.wrong_reads == []
    assert record.start[2] > record.start[1] + 3


def test_a_tmv_waits_for_a_slow_writer_of_its_whole_destination():
    """The TMV's rows come faster than the slow element-wise unit's results: had it started
    once the SUB's first words were written, its rows would overtake them."""
    params = PRESETS["demo"]
    size = 16 * params.vector_lanes
    program = [
        Instruction(Opcode.QUANT, dst=0, a=0, b=size, length=size),
        Instruction(Opcode.SUB, dst=2 * size, a=3 * size, b=4 * size, length=size),
        Instruction(Opcode.TMV, dst=2 * size, a=1, b=0, length=size),
    ]
    record = _run(params, program, timing=HarnessTiming(
        take_probability=1.0, slow_unit=Unit.ELEMENTWISE, slow_probability=0.1,
        matrix_drain=0))
    _, final = sequential_reads(program, params.vector_memory_words)
    assert record.final == final
    assert record.start[2] >= record.end[1]


def test_a_writer_streams_behind_a_slow_reader_of_its_destination():
    """An ADD overwrites what a slow NORM's second pass still reads: it follows the NORM's
    reads beat by beat (write after read, every prefix of its next beats)."""
    params = PRESETS["demo"]
    size = 16 * params.vector_lanes
    program = [
        Instruction(Opcode.NORM, dst=2 * size, a=size, b=3 * size, length=size),
        Instruction(Opcode.ADD, dst=size, a=4 * size, b=5 * size, length=size),
    ]
    record = _run(params, program, timing=HarnessTiming(
        take_probability=1.0, slow_unit=Unit.NORM, slow_probability=0.3,
        elementwise_latency=1, read_delay=2, norm_engine=0))
    assert record.wrong_reads == []
    assert record.start[1] < record.end[0], "the ADD did not stream behind the NORM"


def test_a_reader_streams_at_full_rate_behind_an_irregular_writer():
    """A NORM reads what a SIGMOID writes a word at a time at random moments: with up to
    three of its beats in flight, each must wait for its own word."""
    params = PRESETS["demo"]
    size = 32 * params.vector_lanes
    program = [
        Instruction(Opcode.SIGMOID, dst=size, a=0, length=size),
        Instruction(Opcode.NORM, dst=2 * size, a=size, b=3 * size, length=size),
    ]
    for seed in range(4):
        record = _run(params, program, seed=seed, timing=HarnessTiming(
            take_probability=1.0, slow_unit=Unit.ELEMENTWISE, slow_probability=0.6,
            elementwise_latency=1, read_delay=1))
        assert record.wrong_reads == []


def test_a_quant_waits_for_the_tmv_still_reading_its_buffer():
    """The third QUANT fills the buffer the first one filled, while the TMV that reads that
    buffer may still read it (through another scale register)."""
    params = PRESETS["demo"]
    size = 4 * params.vector_lanes
    program = [
        Instruction(Opcode.QUANT, dst=0, a=0, b=size, length=size),
        Instruction(Opcode.TMV, dst=2 * size, a=3, b=0, length=size),
        Instruction(Opcode.QUANT, dst=1, a=3 * size, b=size, length=size),
        Instruction(Opcode.QUANT, dst=2, a=4 * size, b=size, length=size),
    ]
    record = _run(params, program, timing=HarnessTiming(take_probability=1.0))
    assert record.wrong_reads == []
    # The TMV reads 3 * size words; without the wait the third QUANT would be done sooner.
    assert record.end[3] > record.start[1] + 3 * size


def test_a_norms_second_pass_checks_its_destination_from_its_first_beat():
    """A NORM whose second pass starts the cycle after its first (no engine) writes what an
    older TMV writes and an older SIGMOID reads: its first beats must wait for both, while the
    QUANT after it is ready to go."""
    params = PRESETS["demo"]
    size = 8 * params.vector_lanes
    region = [index * size for index in range(8)]
    program = [
        Instruction(Opcode.QUANT, dst=0, a=region[0], b=region[1], length=size),
        Instruction(Opcode.TMV, dst=region[2], a=4, b=0, length=size),
        Instruction(Opcode.SIGMOID, dst=region[3], a=region[2], length=size),
        Instruction(Opcode.NORM, dst=region[2], a=region[4], b=region[1], length=size),
        Instruction(Opcode.QUANT, dst=1, a=region[5], b=region[1], length=size),
    ]
    record = _run(params, program, timing=HarnessTiming(take_probability=1.0, norm_engine=0,
                                                        quant_engine=0))
    assert record.wrong_reads == []
    _, final = sequential_reads(program, params.vector_memory_words)
    assert record.final == final


@pytest.mark.parametrize("name", ["demo"])
def test_a_models_step_reads_what_the_sequential_program_reads(name):
    """The shipped model's compiled step (every opcode the compiler emits, its real buffers
    and their reuse), with the schedule model's unit timings at the preset's P and V."""
    from tern_fpga.explore.bench_core import compile_model  # here: loads torch
    from tern_fpga.quant.checkpoint import load_pretrained  # here: loads torch

    folder = paths.CHECKPOINTS / name
    if not (folder / "config.json").exists():
        pytest.skip(f"the {name} checkpoint is not here")
    compiled = compile_model(load_pretrained(folder), PRESETS[name])
    params = compiled.params
    result = scoreboard_step(compiled, ternary_lanes=params.ternary_lanes,
                             vector_lanes=params.vector_lanes, slots=6,
                             timing=DataflowTiming(), command_queue=4)
    assert result["wrong_reads"] == []
    assert result["cycles"] > 0


def test_refuses_too_few_slots():
    with pytest.raises(ValueError, match="2 or more slots"):
        Scoreboard(PRESETS["demo"], slots=1)
