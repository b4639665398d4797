# amaranth: UnusedElaboratable=no
"""The segmented matrix unit (hw/dataflow/segmented_matvec.py) in Amaranth's simulator against its
golden model (sim/golden/segmented_matvec.py): random matrices in every mode, commands of
different modes back to back, random stalls on both sides; and one word a cycle without them."""

import random

import numpy as np
import pytest
from amaranth.sim import Simulator

from tern_fpga.contracts.params import preset
from tern_fpga.contracts.segmented_layout import (
    pack_segmented_words,
    segmented_activation_words,
    segmented_shape,
)
from tern_fpga.contracts.weight_layout import weight_word_to_int
from tern_fpga.hw.dataflow.segmented_matvec import SegmentedMatVec
from tern_fpga.sim.golden.segmented_matvec import segmented_matvec_results
from tern_fpga.sim.rtl.stream_sink import take_results


def _commands(params, max_segments, count, rng):
    """Random matrices and activations, each with its command, words and expected results."""
    commands = []
    for index in range(count):
        segments = 1 << (index % max_segments.bit_length())        # every mode
        rows = rng.choice([1, segments, rng.randrange(1, 3 * params.ternary_lanes)])
        in_features = rng.choice([1, params.ternary_lanes // segments,
                                  rng.randrange(1, 3 * params.ternary_lanes)])
        shape = segmented_shape(rows, in_features, params, segments)
        np_rng = np.random.default_rng(rng.getrandbits(32))
        w_t = np_rng.integers(-1, 2, size=(rows, in_features))
        x = np_rng.integers(-128, 128, size=in_features)
        if index == 0:                                   # the extremes of the int8 range
            x = np.where(np.arange(in_features) % 2, -128, 127)
            w_t = np.where(np.arange(in_features) % 2, -1, 1) * np.ones((rows, 1), dtype=int)
        words = pack_segmented_words(w_t, params, segments)
        activations = segmented_activation_words(x, shape)
        golden = segmented_matvec_results(words, activations, shape, params)
        flat = [value for sums, count in golden for value in sums[:count]]
        assert flat == list(w_t @ x)                     # the golden model is W @ x
        commands.append((shape, words, activations, golden))
    return commands


def _run(params, max_segments, commands, rng, *, stall):
    dut = SegmentedMatVec(params, max_segments=max_segments)
    expected = [(result, shape.segments) for shape, _, _, golden in commands
                for result in golden]
    received, cycles = [], []

    async def command_feed(ctx):
        for shape, *_ in commands:
            ctx.set(dut.command.payload, {"rows": shape.rows, "beats": shape.beats,
                                          "segments_log2": shape.segments.bit_length() - 1})
            ctx.set(dut.command.valid, 1)
            await ctx.tick().until(dut.command.ready)
        ctx.set(dut.command.valid, 0)

    async def word_feed(ctx):
        for shape, words, activations, _ in commands:
            for index, word in enumerate(words):
                while stall and rng.random() < 0.25:
                    ctx.set(dut.weights.valid, 0)
                    await ctx.tick()
                ctx.set(dut.weights.payload.as_value(), weight_word_to_int(word))
                ctx.set(dut.activations.payload,
                        [int(value) for value in activations[index % shape.beats]])
                ctx.set(dut.weights.valid, 1)
                ctx.set(dut.activations.valid, 1)
                await ctx.tick().until(dut.weights.ready)
        ctx.set(dut.weights.valid, 0)
        ctx.set(dut.activations.valid, 0)

    async def take(ctx):
        results, taken = await take_results(
            ctx, dut.result, dut.busy, len(expected), rng=rng,
            ready_probability=0.6 if stall else 1.0,
            limit=50 * sum(len(words) for _, words, _, _ in commands) + 200)
        received.extend(results)
        cycles.append(taken)

    simulator = Simulator(dut)
    simulator.add_clock(1e-6)
    simulator.add_testbench(command_feed)
    simulator.add_testbench(word_feed)
    simulator.add_testbench(take)
    simulator.run()
    assert len(received) == len(expected)
    for got, ((sums, count), segments) in zip(received, expected):
        assert (list(got.sums)[:segments], got.count) == (sums, count)
    lasts = [bool(got.last) for got in received]
    assert lasts == [index == len(golden) - 1 for *_, golden in commands
                     for index in range(len(golden))]
    return dut, cycles[0] if cycles else None


@pytest.mark.parametrize("max_segments", [1, 2, 4])
def test_results_equal_the_golden_model_under_random_stalls(max_segments):
    params = preset("micro")                             # P = 32
    rng = random.Random(f"segmented{max_segments}")
    commands = _commands(params, max_segments, 12, rng)
    assert {shape.segments for shape, *_ in commands} == {1 << b for b in range(
        max_segments.bit_length())}
    _run(params, max_segments, commands, rng, stall=True)


def test_demo_width_with_four_segments_equals_the_golden_model():
    params = preset("demo")                              # P = 128: 32-lane segments
    rng = random.Random("demo-segmented")
    commands = _commands(params, 4, 4, rng)
    _run(params, 4, commands, rng, stall=True)


def test_one_word_a_cycle_across_commands_and_modes():
    """No stalls: one-word groups and commands of every mode back to back, one word a cycle."""
    params = preset("micro")
    rng = random.Random("segmented-rate")
    commands = []
    for segments in (4, 1, 2, 4, 2):
        shape = segmented_shape(9, params.ternary_lanes // segments, params, segments)
        np_rng = np.random.default_rng(segments)
        w_t = np_rng.integers(-1, 2, size=(shape.rows, shape.in_features))
        x = np_rng.integers(-128, 128, size=shape.in_features)
        words = pack_segmented_words(w_t, params, segments)
        activations = segmented_activation_words(x, shape)
        commands.append((shape, words, activations,
                         segmented_matvec_results(words, activations, shape, params)))
    dut, cycles = _run(params, 4, commands, rng, stall=False)
    total_words = sum(shape.words for shape, *_ in commands)
    assert cycles <= total_words + dut.latency + 3, (cycles, total_words, dut.latency)


def test_max_segments_is_checked():
    with pytest.raises(ValueError, match="power of two from 1 to P/2 = 16"):
        SegmentedMatVec(preset("micro"), max_segments=3)
    with pytest.raises(ValueError, match="power of two"):
        SegmentedMatVec(preset("micro"), max_segments=32)
