"""The row-sum scaler (hw/dataflow/row_sum_scaler.py) in Amaranth's simulator against
numerics.apply_scale: random sums and scales, the extremes of both (left shifts that wrap at 64
bits, right shifts past the product, saturation both ways), several commands back to back with
random stalls, and one beat a cycle without them."""

import random

import numpy as np
import pytest
from amaranth.sim import Simulator

from tern_fpga.contracts import numerics
from tern_fpga.contracts.params import preset
from tern_fpga.hw.dataflow.row_sum_scaler import RowSumScaler
from tern_fpga.hw.scale_layout import SCALE_EXPONENT_BITS
from tern_fpga.sim.rtl.stream_sink import take_results

SEGMENTS = 4


def _commands(params, rng, count):
    """(scale, beats) pairs; a beat is (sums, count)."""
    low, high = -(1 << (params.accumulator_bits - 1)), (1 << (params.accumulator_bits - 1)) - 1
    mantissa_high = (1 << params.scale_mantissa_bits) - 1
    exponent_low, exponent_high = -(1 << (SCALE_EXPONENT_BITS - 1)), \
        (1 << (SCALE_EXPONENT_BITS - 1)) - 1
    special = [(mantissa_high, exponent_high), (mantissa_high, 42), (1, 43), (0, 5),
               (mantissa_high, exponent_low), (mantissa_high, -36), (mantissa_high, -35),
               (12345, -1), (40000, -20), (mantissa_high, 0), (3, 29), (mantissa_high, -16)]
    commands = []
    for index in range(count):
        if index < len(special):
            scale = numerics.Scale(*special[index])
        else:
            scale = numerics.Scale(rng.randrange(mantissa_high + 1),
                                   rng.randrange(-40, 12))
        beats = []
        for _ in range(rng.randrange(1, 5)):
            sums = [rng.choice([low, high, 0, -1, 1, rng.randrange(low, high + 1)])
                    for _ in range(SEGMENTS)]
            beats.append((sums, rng.randrange(1, SEGMENTS + 1)))
        commands.append((scale, beats))
    return commands


def _run(params, commands, rng, *, stall):
    dut = RowSumScaler(params, max_segments=SEGMENTS)
    expected = []
    for scale, beats in commands:
        for index, (sums, count) in enumerate(beats):
            values = numerics.apply_scale(np.array(sums, dtype=np.int64), scale, params)
            expected.append(([int(v) for v in values[:count]], count, index == len(beats) - 1))
    received, cycles = [], []

    async def scale_feed(ctx):
        for scale, _ in commands:
            ctx.set(dut.scale.payload, {"mantissa": scale.mantissa, "exponent": scale.exponent})
            ctx.set(dut.scale.valid, 1)
            await ctx.tick().until(dut.scale.ready)
        ctx.set(dut.scale.valid, 0)

    async def sums_feed(ctx):
        for _, beats in commands:
            for index, (sums, count) in enumerate(beats):
                while stall and rng.random() < 0.3:
                    ctx.set(dut.sums.valid, 0)
                    await ctx.tick()
                ctx.set(dut.sums.payload, {"sums": sums, "count": count,
                                           "last": index == len(beats) - 1})
                ctx.set(dut.sums.valid, 1)
                await ctx.tick().until(dut.sums.ready)
        ctx.set(dut.sums.valid, 0)

    async def take(ctx):
        results, taken = await take_results(ctx, dut.values, dut.busy, len(expected), rng=rng,
                                            ready_probability=0.5 if stall else 1.0,
                                            limit=40 * len(expected) + 100)
        received.extend(([int(v) for v in payload.values][:payload.count], int(payload.count),
                         bool(payload.last)) for payload in results)
        cycles.append(taken)

    simulator = Simulator(dut)
    simulator.add_clock(1e-6)
    simulator.add_testbench(scale_feed)
    simulator.add_testbench(sums_feed)
    simulator.add_testbench(take)
    simulator.run()
    assert received == expected
    return dut, cycles[0]


@pytest.mark.parametrize("preset_name", ["demo", "stdlib"])
def test_values_equal_apply_scale_under_random_stalls(preset_name):
    params = preset(preset_name)
    rng = random.Random(f"scaler{preset_name}")
    _run(params, _commands(params, rng, 40), rng, stall=True)


def test_one_beat_a_cycle():
    params = preset("demo")
    rng = random.Random("scaler-rate")
    commands = _commands(params, rng, 20)
    beats = sum(len(beats) for _, beats in commands)
    dut, cycles = _run(params, commands, rng, stall=False)
    assert cycles <= beats + dut.latency + 3, (cycles, beats)
