"""The quantiser's reciprocal (hw/dataflow/reciprocal.py) against numerics.quantize_activations'
formula, ``R = (A << (B + e)) // m`` and ``B + e``: every power of two and its neighbours, 0
(taken as 1), the largest magnitude a lane can hold (2**31), random values; at 1, 2 and 3
quotient bits a cycle; its latency."""

import random

import pytest
from amaranth.sim import Simulator

from tern_fpga.contracts.params import PRESETS
from tern_fpga.hw.dataflow.reciprocal import Reciprocal
from tern_fpga.sim.rtl.stream_sink import take_one


def _golden(largest, params):
    largest = max(largest, 1)
    shift = params.reciprocal_bits + largest.bit_length()
    return (params.activation_max << shift) // largest, shift


def _values(params, rng):
    top = 1 << (params.vector_bits - 1)
    values = [0, 1, 2, 3, top, top - 1]
    for bit in range(params.vector_bits - 1):
        values += [(1 << bit) - 1, 1 << bit, (1 << bit) + 1]
    return values + [rng.randrange(1, top + 1) for _ in range(60)]


def _run(params, bits_per_cycle, values, rng, *, stall):
    dut = Reciprocal(params, bits_per_cycle=bits_per_cycle)
    results, latencies = [], []

    async def bench(ctx):
        for value in values:
            ctx.set(dut.largest.payload, value)
            ctx.set(dut.largest.valid, 1)
            await ctx.tick().until(dut.largest.ready)
            ctx.set(dut.largest.valid, 0)
            payload, cycles = await take_one(ctx, dut.result, rng=rng,
                                             ready_probability=0.5 if stall else 1.0,
                                             limit=200)
            results.append((int(payload.reciprocal), int(payload.shift)))
            latencies.append(cycles)

    simulator = Simulator(dut)
    simulator.add_clock(1e-8)
    simulator.add_testbench(bench)
    simulator.run()
    return dut, results, latencies


@pytest.mark.parametrize("bits_per_cycle", [1, 2, 3])
def test_reciprocal_equals_numerics(bits_per_cycle):
    params = PRESETS["demo"]
    rng = random.Random(f"reciprocal{bits_per_cycle}")
    values = _values(params, rng)
    _, results, _ = _run(params, bits_per_cycle, values, rng, stall=True)
    assert results == [_golden(value, params) for value in values]


def test_latency():
    params = PRESETS["demo"]
    rng = random.Random("reciprocal-latency")
    dut, results, latencies = _run(params, 2, [5, 1 << 31, 0], rng, stall=False)
    assert results == [_golden(value, params) for value in (5, 1 << 31, 0)]
    assert latencies == [dut.latency] * 3


def test_refuses_bad_arguments():
    with pytest.raises(ValueError, match="bits_per_cycle must be 1 to 3"):
        Reciprocal(PRESETS["demo"], bits_per_cycle=4)
