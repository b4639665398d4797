"""The activation writer (hw/dataflow/activation_writer.py) in Amaranth's simulator, writing a
real block-RAM-style memory: QUANTs of random lengths for TMVs of every segment count, into both
buffers over random old contents, with random gaps in the values. Each buffer's words must be the
segmented layout's beats (contracts.segmented_layout.segmented_activation_words) where the QUANT
defined them, and keep their old bytes everywhere else."""

import random

import numpy as np
import pytest
from amaranth.hdl import Module, unsigned
from amaranth.lib.memory import Memory
from amaranth.sim import Simulator

from tern_fpga.contracts.params import PRESETS
from tern_fpga.contracts.segmented_layout import segmented_activation_words, segmented_shape
from tern_fpga.hw.dataflow.activation_writer import ActivationWriter
from tern_fpga.hw.dataflow.matrix_pipe import activation_words


def _bytes(word: int, lanes: int) -> list[int]:
    return [(word >> (8 * lane)) & 0xFF for lane in range(lanes)]


def _run(params, max_segments, quants, old, rng, *, gaps):
    """Run ``quants`` ((start, segments, values) each) over a memory holding ``old``; returns
    the memory's words and the cycles from the first command to idle."""
    writer = ActivationWriter(params, max_segments=max_segments)
    top = Module()
    top.submodules.writer = writer
    top.submodules.buffer = buffer = Memory(shape=unsigned(8 * params.ternary_lanes),
                                            depth=len(old), init=old)
    port = buffer.write_port(granularity=8)
    top.d.comb += [port.addr.eq(writer.write_addr), port.data.eq(writer.write_data),
                   port.en.eq(writer.write_en)]
    lanes = params.vector_lanes
    cycles = []

    async def commands(ctx):
        for start, segments, values in quants:
            ctx.set(writer.command.payload, {"start": start, "length": len(values),
                                             "segments_log2": segments.bit_length() - 1})
            ctx.set(writer.command.valid, 1)
            await ctx.tick().until(writer.command.ready)
        ctx.set(writer.command.valid, 0)

    async def values(ctx):
        count = 0
        for _, _, vector in quants:
            padded = list(vector) + [rng.randrange(-128, 128) for _ in range(-len(vector) % lanes)]
            for beat in range(len(padded) // lanes):
                while gaps and rng.random() < 0.3:
                    ctx.set(writer.values.valid, 0)
                    await ctx.tick()
                    count += 1
                ctx.set(writer.values.payload, padded[beat * lanes:(beat + 1) * lanes])
                ctx.set(writer.values.valid, 1)
                await ctx.tick().until(writer.values.ready)
                count += 1
        ctx.set(writer.values.valid, 0)
        while ctx.get(writer.busy):
            await ctx.tick()
            count += 1
        cycles.append(count)
        await ctx.tick()
        memory.extend(ctx.get(buffer.data[index]) for index in range(len(old)))

    memory = []
    simulator = Simulator(top)
    simulator.add_clock(1e-8)
    simulator.add_testbench(commands, background=True)
    simulator.add_testbench(values)
    simulator.run()
    return memory, cycles[0]


def _expected(params, quants, old):
    """The memory after the QUANTs, byte by byte, and a check that each QUANT's defined bytes
    are the contract's segmented beats."""
    ternary = params.ternary_lanes
    memory = [_bytes(word, ternary) for word in old]
    for start, segments, values in quants:
        width = ternary // segments
        for element, value in enumerate(values):
            for segment in range(segments):
                memory[start + element // width][segment * width + element % width] = value & 0xFF
        shape = segmented_shape(segments, len(values), params, segments)
        beats = segmented_activation_words(np.array(values, dtype=np.int64), shape)
        for beat, row in enumerate(beats):
            for lane in range(ternary):
                if beat * width + lane % width < len(values):
                    assert memory[start + beat][lane] == int(row[lane]) & 0xFF
    return memory


def _quants(params, max_segments, rng, count):
    buffer_words = activation_words(params, max_segments)
    quants = []
    for index in range(count):
        segments = [1, 2, 4, 8][index % (max_segments.bit_length())]
        length = rng.choice([1, params.vector_lanes, params.vector_lanes + 1,
                             params.max_features, rng.randrange(1, params.max_features + 1)])
        start = buffer_words * rng.randrange(2)
        quants.append((start, segments, [rng.randrange(-128, 128) for _ in range(length)]))
    return quants


@pytest.mark.parametrize(("preset_name", "lanes", "max_segments"),
                         [("demo", 256, 2), ("demo", 512, 4), ("micro", 32, 4)])
def test_buffers_hold_the_segmented_beats_and_nothing_else_changes(preset_name, lanes,
                                                                   max_segments):
    params = PRESETS[preset_name].replace(ternary_lanes=lanes)
    rng = random.Random(f"writer{preset_name}{lanes}")
    quants = _quants(params, max_segments, rng, 8)
    old = [rng.getrandbits(8 * lanes) for _ in range(2 * activation_words(params, max_segments))]
    memory, _ = _run(params, max_segments, quants, old, rng, gaps=True)
    expected = _expected(params, quants, old)
    assert [_bytes(word, lanes) for word in memory] == expected


def test_one_beat_a_cycle_across_commands():
    params = PRESETS["demo"].replace(ternary_lanes=256)
    rng = random.Random("writer-rate")
    quants = _quants(params, 2, rng, 6)
    old = [0] * (2 * activation_words(params, 2))
    memory, cycles = _run(params, 2, quants, old, rng, gaps=False)
    beats = sum(-(-len(values) // params.vector_lanes) for _, _, values in quants)
    assert cycles <= beats + 2, (cycles, beats)
    assert [_bytes(word, 256) for word in memory] == _expected(params, quants, old)


def test_refuses_segments_narrower_than_a_beat():
    with pytest.raises(ValueError, match=r"P/S = 32/8 lanes must hold whole beats of V=8"):
        ActivationWriter(PRESETS["demo"].replace(ternary_lanes=32), max_segments=8)
    with pytest.raises(ValueError, match="power of two"):
        ActivationWriter(PRESETS["demo"], max_segments=3)
