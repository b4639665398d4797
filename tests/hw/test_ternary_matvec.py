"""TernaryMatVec: constructor checks, golden-model packing, and a quick Amaranth simulation.

The long randomised runs are in test_ternary_matvec_verilator.py (cocotb + Verilator).
"""

import gc
import random

import numpy as np
import pytest
from amaranth.hdl import Const, Fragment
from amaranth.sim import Simulator

from tern_fpga.contracts.params import PRESETS
from tern_fpga.contracts.weight_layout import (
    CODE_RESERVED,
    beats_per_row,
    int_to_weight_word,
    pack_weight_words,
    unpack_weight_words,
    weight_word_to_int,
)
from tern_fpga.hw.ternary_matvec import TernaryMatVec, command_layout, max_beats
from tern_fpga.sim.golden.ternary_matvec import ternary_matvec
from tern_fpga.sim.rtl.testbenches.ternary_matvec import make_job

PARAMS = PRESETS["micro"].replace(name="test-p8", ternary_lanes=8, max_features=40)


# Constructor ---------------------------------------------------------------------------------

def test_init():
    unit = TernaryMatVec(PARAMS, levels_per_stage=2)
    assert unit.params is PARAMS
    assert unit.levels_per_stage == 2
    assert unit.tree_stages == 2  # log2(8) = 3 levels, two per stage
    assert unit.result.payload.shape().signed
    assert len(unit.result.payload) == PARAMS.accumulator_bits
    assert len(unit.weights.payload.as_value()) == PARAMS.weight_word_bits
    assert len(unit.activations.payload.as_value()) == 8 * PARAMS.activation_bits
    layout = command_layout(PARAMS)
    assert layout.size == len(unit.command.payload.as_value())
    assert max_beats(PARAMS) == 5
    # The command fields hold the largest legal values.
    Const.cast(layout.const({"rows": PARAMS.weight_memory_words, "beats": 5}))
    Fragment.get(unit, None)  # elaborates with two levels per stage


# A component whose constructor raised is never elaborated: that is the point. Collect it
# while the filter applies.
unused_ok = pytest.mark.filterwarnings("ignore:.*created but never used")


@unused_ok
def test_init_wrong_params():
    with pytest.raises(TypeError, match=r"^params must be an AcceleratorParameters, not 8$"):
        TernaryMatVec(8)
    gc.collect()


@unused_ok
def test_init_wrong_levels_per_stage():
    with pytest.raises(ValueError,
                       match=r"^levels_per_stage must be a positive integer, not 0$"):
        TernaryMatVec(PARAMS, levels_per_stage=0)
    gc.collect()


# Golden model and word packing --------------------------------------------------------------

def test_pack_weight_words_layout():
    """Word k holds row k // beats, columns (k % beats) * P + j in bits 2j+1:2j."""
    params = PARAMS.replace(ternary_lanes=16)
    rng = np.random.default_rng(1)
    w_t = rng.integers(-1, 2, (3, 37))
    words = pack_weight_words(w_t, params)
    beats = beats_per_row(37, params)
    assert beats == 3 and words.shape == (9, 1) and words.dtype == np.uint64
    code = {0: 0b00, 1: 0b01, -1: 0b11}
    for k, word in enumerate(words):
        value = weight_word_to_int(word)
        row, block = divmod(k, beats)
        for lane in range(16):
            column = block * 16 + lane
            expected = code[int(w_t[row, column])] if column < 37 else 0b00
            assert (value >> (2 * lane)) & 3 == expected
    np.testing.assert_array_equal(unpack_weight_words(words, params, 3, 37), w_t)


@pytest.mark.parametrize("lanes", [8, 32, 128])
def test_pack_weight_words_round_trip(lanes):
    params = PARAMS.replace(ternary_lanes=lanes, max_features=300)
    rng = np.random.default_rng(lanes)
    w_t = rng.integers(-1, 2, (7, 300))
    words = pack_weight_words(w_t, params)
    assert words.shape == (7 * -(-300 // lanes), -(-2 * lanes // 64))
    np.testing.assert_array_equal(unpack_weight_words(words, params, 7, 300), w_t)
    for word in words[:3]:
        np.testing.assert_array_equal(int_to_weight_word(weight_word_to_int(word), params), word)


def test_reserved_code_reads_as_zero():
    params = PARAMS.replace(ternary_lanes=8)
    word = int_to_weight_word(CODE_RESERVED << 2 | 0b01, params)[None, :]
    np.testing.assert_array_equal(unpack_weight_words(word, params, 1, 8),
                                  [[1, 0, 0, 0, 0, 0, 0, 0]])


def test_ternary_matvec_is_exact():
    rng = np.random.default_rng(4)
    w_t = rng.integers(-1, 2, (9, 50))
    x = rng.integers(-128, 128, 50)
    expected = [sum(int(w) * int(v) for w, v in zip(row, x)) for row in w_t]
    np.testing.assert_array_equal(ternary_matvec(w_t, x), expected)
    assert ternary_matvec(w_t, x).dtype == np.int64


@pytest.mark.parametrize("w_t, x, message", [
    ([[0, 2]], [1, 1], r"^w_t must hold only -1, 0 or \+1; w_t\[0, 1\] = 2$"),
    ([0, 1], [1, 1], r"^w_t must be a 2-D \[out_features, in_features\] array"),
    ([[0, 1]], [1, 1, 1], r"^activations must have shape \(2,\) to match w_t of shape"),
    ([[0, 1]], [1, 128], r"^activations must be int8 \(-128 to 127\); activations\[1\] = 128$"),
])
def test_ternary_matvec_wrong_input(w_t, x, message):
    with pytest.raises(ValueError, match=message):
        ternary_matvec(np.array(w_t), np.array(x))


def test_beats_per_row_wrong_in_features():
    with pytest.raises(ValueError, match=r"^in_features must be an integer from 1 to "
                                         r"max_features = 40 of preset 'test-p8', not 41$"):
        beats_per_row(41, PARAMS)


def test_unpack_weight_words_wrong_shape():
    with pytest.raises(ValueError, match=r"^words must have shape \(6, 1\) for a 2 x 17 matrix "
                                         r"with P = 8, not \(5, 1\)$"):
        unpack_weight_words(np.zeros((5, 1), np.uint64), PARAMS, 2, 17)


# Amaranth simulation ------------------------------------------------------------------------

async def _send(ctx, port, payloads, probability, rng, cycles):
    """Offer each payload with chance ``probability`` per cycle; note each transfer's cycle."""
    cycle = 0
    for payload in payloads:
        while rng.random() >= probability:
            await ctx.tick()
            cycle += 1
        ctx.set(port.payload.as_value(), payload)
        ctx.set(port.valid, 1)
        while True:
            *_, ready = await ctx.tick().sample(port.ready)
            cycle += 1
            if ready:
                break
        cycles.append(cycle)
        ctx.set(port.valid, 0)


async def _receive(ctx, port, count, probability, rng, received):
    while len(received) < count:
        ready = rng.random() < probability
        ctx.set(port.ready, ready)
        *_, valid, payload = await ctx.tick().sample(port.valid, port.payload)
        if ready and valid:
            received.append(payload)
    ctx.set(port.ready, 0)


def simulate(params, jobs, *, probability=(1.0, 1.0, 1.0), seed=0):
    """Run jobs through the unit in Amaranth's simulator; returns results, weight cycles and
    whether ``busy`` fell once every result had left."""
    unit = TernaryMatVec(params)
    rng = random.Random(seed)
    received, weight_cycles, idle_after = [], [], []
    layout = command_layout(params)
    commands = [Const.cast(layout.const({"rows": job.rows, "beats": job.beats})).value
                for job in jobs]
    words = [word for job in jobs for word in job.words]
    beats = [beat for job in jobs for _ in range(job.rows) for beat in job.activation_beats]
    weight_p, activation_p, result_p = probability

    async def testbench(ctx):
        await _receive(ctx, unit.result, sum(job.rows for job in jobs), result_p,
                       random.Random(rng.random()), received)
        await ctx.tick()
        idle_after.append(not ctx.get(unit.busy))

    def sender(port, payloads, chance, cycles):
        stalls = random.Random(rng.random())

        async def process(ctx):
            await _send(ctx, port, payloads, chance, stalls, cycles)
        return process

    simulator = Simulator(unit)
    simulator.add_clock(1e-8)
    simulator.add_testbench(testbench)
    simulator.add_testbench(sender(unit.command, commands, 1.0, []), background=True)
    simulator.add_testbench(sender(unit.weights, words, weight_p, weight_cycles), background=True)
    simulator.add_testbench(sender(unit.activations, beats, activation_p, []), background=True)
    simulator.run()
    return np.array(received), weight_cycles, idle_after == [True]


def _random_job(params, rows, in_features, rng):
    return make_job(params, rng.integers(-1, 2, (rows, in_features)),
                    rng.integers(-128, 128, in_features), padding_seed=int(rng.integers(1 << 30)))


def test_simulation_back_to_back_without_bubbles():
    """Commands of 1, 2 and 5 beats per row (one ragged) follow each other: one word per cycle
    throughout, also across rows and commands."""
    rng = np.random.default_rng(5)
    jobs = [_random_job(PARAMS, rows, features, rng)
            for rows, features in [(20, 8), (3, 13), (4, 40), (12, 1)]]
    received, cycles, idle = simulate(PARAMS, jobs)
    np.testing.assert_array_equal(received, np.concatenate([job.expected for job in jobs]))
    assert np.all(np.diff(cycles) == 1), f"bubbles in the weight stream at {np.diff(cycles)}"
    assert idle


def test_simulation_with_stalls_and_extremes():
    """Random stalls on all three streams; extreme values; the reserved code 10."""
    rng = np.random.default_rng(6)
    features = PARAMS.max_features
    plus, minus = np.ones((2, features), int), -np.ones((2, features), int)
    jobs = [
        make_job(PARAMS, plus, np.full(features, -128)),
        make_job(PARAMS, minus, np.full(features, -128)),
        make_job(PARAMS, minus, np.full(features, 127)),
        _random_job(PARAMS, 4, 21, rng),
    ]
    # The reserved code in random lanes of random words; the golden decodes it as 0 too.
    w_t = rng.integers(-1, 2, (3, 24))
    words = pack_weight_words(w_t, PARAMS)
    for index in rng.choice(len(words), 4, replace=False):
        lane = int(rng.integers(8))
        value = weight_word_to_int(words[index]) & ~(3 << 2 * lane) | CODE_RESERVED << 2 * lane
        words[index] = int_to_weight_word(value, PARAMS)
    decoded = unpack_weight_words(words, PARAMS, 3, 24)
    jobs.append(make_job(PARAMS, decoded, rng.integers(-128, 128, 24), words=words))
    expected = np.concatenate([job.expected for job in jobs])
    assert expected[0] == -128 * features and expected[2] == 128 * features
    received, _, idle = simulate(PARAMS, jobs, probability=(0.6, 0.7, 0.5), seed=7)
    np.testing.assert_array_equal(received, expected)
    assert idle
