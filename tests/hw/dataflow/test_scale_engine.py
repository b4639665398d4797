"""The dataflow core's scale engine (hw/dataflow/scale_engine.py) against numerics: NORM's
rsqrt(sum + eps) * constant and QUANT's output scale, over values of every bit length (powers
of two and their neighbours, the widest sums), zero and extreme constants, largest 0, 1 and
2**31; random back-pressure; the latency it states, exactly."""

import random

import pytest
from amaranth.sim import Simulator

from tern_fpga.contracts import numerics
from tern_fpga.contracts.params import PRESETS
from tern_fpga.hw.dataflow.scale_engine import ScaleEngine
from tern_fpga.hw.scale_layout import sum_of_squares_bits
from tern_fpga.sim.rtl.stream_sink import take_one


def _expected(request, params):
    value = request["sum_of_squares"] + request["epsilon_term"]
    scale = numerics.scale_multiply(numerics.rsqrt_scale(value, params),
                                    numerics.Scale(**request["constant"]), params)
    if request["quantize"]:
        largest = numerics.scale_from_int(max(request["largest"], 1), params)
        scale = numerics.scale_multiply(scale, largest, params)
    return tuple(scale)


def _requests(params, rng, count):
    top = (1 << sum_of_squares_bits(params)) - 1
    requests = []
    for index in range(count):
        length = rng.randrange(1, sum_of_squares_bits(params) + 1)
        total = rng.choice([1 << (length - 1), (1 << length) - 1, rng.randrange(1 << length),
                            top, 1, 2, 3])
        epsilon = rng.choice([0, 0, 1, rng.randrange(1 << 20), rng.randrange(top - total + 1)])
        if total + epsilon == 0:
            epsilon = 1
        if index % 7 == 3:
            constant = {"mantissa": 0, "exponent": 0}
        else:
            constant = numerics.scale_from_float(2.0 ** rng.uniform(-60, 40), params)._asdict()
        largest = rng.choice([0, 1, 1 << 31, (1 << 31) - 1, rng.randrange(1 << 31),
                              rng.randrange(1, 1 << 12)])
        requests.append({"quantize": rng.random() < 0.5, "sum_of_squares": total,
                         "epsilon_term": epsilon, "constant": constant, "largest": largest})
    return requests


def _run(params, requests, rng, *, ready_probability):
    dut = ScaleEngine(params)
    received, latencies = [], []

    async def bench(ctx):
        for request in requests:
            ctx.set(dut.request.payload, request)
            ctx.set(dut.request.valid, 1)
            await ctx.tick().until(dut.request.ready)
            ctx.set(dut.request.valid, 0)
            payload, cycles = await take_one(ctx, dut.result, rng=rng,
                                             ready_probability=ready_probability, limit=200)
            received.append((int(payload.mantissa), int(payload.exponent)))
            latencies.append(cycles)

    simulator = Simulator(dut)
    simulator.add_clock(1e-8)
    simulator.add_testbench(bench)
    simulator.run()
    assert received == [_expected(request, params) for request in requests]
    return dut, latencies


@pytest.mark.parametrize("preset", ["demo", "micro"])
def test_scales_equal_numerics_under_back_pressure(preset):
    params = PRESETS[preset]
    rng = random.Random(f"scale-engine-{preset}")
    _run(params, _requests(params, rng, 60), rng, ready_probability=0.3)


def test_latency_is_as_stated():
    params = PRESETS["demo"]
    rng = random.Random("scale-engine-latency")
    requests = _requests(params, rng, 8)
    dut, latencies = _run(params, requests, rng, ready_probability=1.0)
    assert latencies == [dut.latency(request["quantize"]) for request in requests]


def test_one_newton_step_and_a_coarse_table():
    params = PRESETS["demo"].replace(rsqrt_newton_steps=1, rsqrt_table_bits=3)
    rng = random.Random("scale-engine-coarse")
    _run(params, _requests(params, rng, 30), rng, ready_probability=0.5)


def test_refuses_a_table_too_coarse():
    with pytest.raises(ValueError, match="rsqrt_table_bits from 3 to 12"):
        ScaleEngine(PRESETS["demo"].replace(rsqrt_table_bits=2))


def test_multiplier_and_normaliser_parts():
    # The engine's inputs reach few of the multiplier's carries (the middle sum's bit 32) and
    # few normaliser inputs: the parts on their own, on any 32-bit values.
    from amaranth.hdl import Elaboratable, Module

    from tern_fpga.hw.dataflow.scale_engine import (
        MULTIPLIER_LATENCY,
        NORMALISER_LATENCY,
        _Multiplier,
        _Normaliser,
    )

    params = PRESETS["demo"]
    parts = {}

    class Parts(Elaboratable):
        def elaborate(self, platform):
            m = Module()
            parts["multiplier"] = _Multiplier(m)
            parts["normaliser"] = _Normaliser(m, "scale", params.scale_mantissa_bits)
            return m

    rng = random.Random("scale-engine-parts")
    top = (1 << 32) - 1
    edges = [0, 1, top, 1 << 31, (1 << 16) - 1, 1 << 16, 0xFFFF_0000, 0xFFFF_FFFE]
    pairs = [(a, b) for a in edges for b in edges]
    pairs += [(rng.randrange(1 << 32), rng.randrange(1 << 32)) for _ in range(100)]
    pairs += [(rng.randrange(1 << rng.randrange(1, 33)), rng.randrange(1 << 32))
              for _ in range(100)]
    checked = []

    async def bench(ctx):
        multiplier, normaliser = parts["multiplier"], parts["normaliser"]
        for a, b in pairs:
            exponent = rng.randrange(-100, 100)
            ctx.set(multiplier.a, a)
            ctx.set(multiplier.b, b)
            ctx.set(normaliser.value, a)
            ctx.set(normaliser.exponent, exponent)
            # The parts' inputs are registers that the engine's states set: here they are
            # set between edges, so the count starts one edge later.
            await ctx.tick().repeat(max(MULTIPLIER_LATENCY, NORMALISER_LATENCY) - 1)
            assert ctx.get(multiplier.product) == a * b, (a, b)
            scale = (ctx.get(normaliser.mantissa), ctx.get(normaliser.scaled_exponent))
            assert scale == tuple(numerics._normalise(a, exponent, params)), (a, exponent)
            checked.append(a)

    simulator = Simulator(Parts())
    simulator.add_clock(1e-8)
    simulator.add_testbench(bench)
    simulator.run()
    assert len(checked) == len(pairs)
