"""The norm unit's front (hw/dataflow/norm_statistics.py) against numerics: pass-1 commands give
numerics.sum_of_squares(x) and max|numerics.multiply(x, weight)|, pass-2 commands give
multiply(x, weight) itself, beat by beat; operands at the int limits, squares at the saturation
threshold, products that saturate, random stalls on every stream; one beat a cycle without."""

import math
import random

import numpy as np
import pytest
from amaranth.sim import Simulator

from tern_fpga.contracts import numerics
from tern_fpga.contracts.params import PRESETS
from tern_fpga.hw.dataflow.norm_statistics import NormStatistics
from tern_fpga.sim.rtl.stream_sink import take_results


def _vector(params, rng, length):
    top = 1 << (params.vector_bits - 1)
    # |x| at which a shifted square reaches its saturation (2**S - 1).
    threshold = math.isqrt(1 << (params.square_saturation_bits + params.square_shift))
    scale = rng.choice([3, params.one, 1 << 20, top])
    pick = [lambda: rng.randrange(-scale, scale), lambda: rng.choice([-top, top - 1, 0, 1, -1]),
            lambda: rng.choice([threshold - 1, threshold, -threshold, threshold + 1])]
    x = [rng.choice(pick)() for _ in range(length)]
    weight_scale = rng.choice([params.one, 1 << 24, top])
    weight = [rng.choice([rng.randrange(-weight_scale, weight_scale), -top, top - 1])
              for _ in range(length)]
    return x, weight


def _commands(params, rng, count):
    commands = []
    for _ in range(count):
        length = rng.choice([1, params.vector_lanes, params.vector_lanes + 3,
                             rng.randrange(1, 80)])
        commands.append((rng.random() < 0.5, *_vector(params, rng, length)))
    return commands


def _expected(params, commands):
    lanes = params.vector_lanes
    statistics, beats = [], []
    for reduce, x, weight in commands:
        u = numerics.multiply(x, weight, params)
        if reduce:
            statistics.append((numerics.sum_of_squares(x, params),
                               int(np.abs(u).max(initial=0))))
            continue
        count = -(-len(u) // lanes)
        for beat in range(count):
            chunk = [int(v) for v in u[beat * lanes:(beat + 1) * lanes]]
            beats.append((chunk, (1 << len(chunk)) - 1, beat == count - 1))
    return statistics, beats


def _run(params, commands, rng, *, stall):
    dut = NormStatistics(params)
    lanes = params.vector_lanes
    expected_statistics, expected_beats = _expected(params, commands)
    operand_beats = sum(-(-len(x) // lanes) for _, x, _ in commands)
    received, cycles, done = {}, [], []
    limit = 40 * operand_beats + 200

    async def command_feed(ctx):
        for reduce, x, _ in commands:
            ctx.set(dut.command.payload, {"length": len(x), "reduce": reduce})
            ctx.set(dut.command.valid, 1)
            await ctx.tick().until(dut.command.ready)
        ctx.set(dut.command.valid, 0)

    async def operand_feed(ctx):
        for _, x, weight in commands:
            padding = -len(x) % lanes
            x = x + [rng.randrange(-(1 << 31), 1 << 31) for _ in range(padding)]
            weight = weight + [rng.randrange(-(1 << 31), 1 << 31) for _ in range(padding)]
            for beat in range(len(x) // lanes):
                while stall and rng.random() < 0.3:
                    ctx.set(dut.operands.valid, 0)
                    await ctx.tick()
                ctx.set(dut.operands.payload, {"x": x[beat * lanes:(beat + 1) * lanes],
                                               "weight": weight[beat * lanes:(beat + 1) * lanes]})
                ctx.set(dut.operands.valid, 1)
                await ctx.tick().until(dut.operands.ready)
        ctx.set(dut.operands.valid, 0)

    async def take_u(ctx):
        results, taken = await take_results(ctx, dut.u, None, len(expected_beats), rng=rng,
                                            ready_probability=0.5 if stall else 1.0,
                                            limit=limit)
        received["u"] = [([int(v) for v in p.data][:int(p.mask).bit_length()], int(p.mask),
                          bool(p.last)) for p in results]
        cycles.append(taken)
        done.append("u")

    async def take_statistics(ctx):
        results, taken = await take_results(ctx, dut.statistics, None,
                                            len(expected_statistics), rng=rng,
                                            ready_probability=0.5 if stall else 1.0,
                                            limit=limit)
        received["statistics"] = [(int(p.sum_of_squares), int(p.largest)) for p in results]
        cycles.append(taken)
        done.append("statistics")

    async def idle_afterwards(ctx):
        while len(done) < 2:
            await ctx.tick()
        await ctx.tick()
        assert not ctx.get(dut.busy), "busy after the last result"

    simulator = Simulator(dut)
    simulator.add_clock(1e-8)
    for bench in (command_feed, operand_feed, take_u, take_statistics):
        simulator.add_testbench(bench)
    simulator.add_testbench(idle_afterwards)
    simulator.run()
    assert received["statistics"] == expected_statistics
    assert received["u"] == expected_beats
    return dut, max(cycles), operand_beats


@pytest.mark.parametrize("lanes", [1, 2, 8])
def test_values_equal_numerics_under_random_stalls(lanes):
    params = PRESETS["demo"].replace(vector_lanes=lanes)
    rng = random.Random(f"norm-statistics{lanes}")
    _run(params, _commands(params, rng, 24), rng, stall=True)


def test_saturated_squares_and_products_are_exercised():
    # The generator reaches both saturations, so the values above check them.
    params = PRESETS["demo"]
    rng = random.Random("norm-statistics8")
    commands = _commands(params, rng, 24)
    limit = (1 << params.square_saturation_bits) - 1
    squares = [min((v * v) >> params.square_shift, limit) for _, x, _ in commands for v in x]
    assert limit in squares and limit - 1 > min(squares)
    top = 1 << (params.vector_bits - 1)
    u = [int(v) for _, x, w in commands for v in numerics.multiply(x, w, params)]
    assert top - 1 in u and -top in u


def test_one_beat_a_cycle():
    params = PRESETS["demo"]
    rng = random.Random("norm-statistics-rate")
    dut, cycles, beats = _run(params, _commands(params, rng, 12), rng, stall=False)
    assert cycles <= beats + dut.statistics_latency + 3, (cycles, beats)


def test_refuses_other_widths():
    with pytest.raises(ValueError, match="vector_bits must be 32"):
        NormStatistics(PRESETS["demo"].replace(vector_bits=24, frac_bits=12))
