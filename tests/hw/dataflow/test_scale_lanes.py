"""The norm unit's second pass (hw/dataflow/scale_lanes.py) against numerics: QUANT commands
whose reciprocal and shift come from their own max|u| (as Reciprocal makes them; the int8 values
then equal quantize_activations' own) and reciprocals that saturate; NORM commands against
numerics.apply_scale over scales whose exponents shift right past the product and left into
saturation; the int limits (-2**31 included), random stalls; one beat a cycle without."""

import random

import numpy as np
import pytest
from amaranth.sim import Simulator

from tern_fpga.contracts import numerics
from tern_fpga.contracts.params import PRESETS
from tern_fpga.hw.dataflow.scale_lanes import ScaleLanes
from tern_fpga.sim.rtl.stream_sink import take_results


def _quant_golden(u, reciprocal, shift, params):
    magnitude = np.abs(np.asarray(u, dtype=np.int64))
    levels = np.minimum(numerics.round_shift(magnitude * reciprocal, shift),
                        params.activation_max)
    return [int(v) for v in np.where(np.asarray(u) < 0, -levels, levels)]


def _norm_golden(u, mantissa, exponent, params):
    """apply_scale in Python ints: where numpy's int64 left shift would wrap, the unit
    saturates (its documented domain limit); everywhere else the two agree (checked)."""
    top = 1 << (params.vector_bits - 1)
    values = []
    for value in u:
        product = value * mantissa
        if exponent >= 0:
            exact = product << min(exponent, numerics._MAX_SHIFT - 20)
        else:
            exact = numerics.round_shift(product, -exponent)
        values.append(max(-top, min(top - 1, exact)))
    wraps = exponent >= 0 and any(abs(v * mantissa) << min(exponent, 42) >= 1 << 63 for v in u)
    if not wraps:
        scale = numerics.Scale(mantissa, exponent)
        assert values == [int(v) for v in numerics.apply_scale(u, scale, params)]
    return values


def _reciprocal(u, params):
    largest = max(int(np.abs(np.asarray(u, dtype=np.int64)).max()), 1)
    shift = params.reciprocal_bits + largest.bit_length()
    return (params.activation_max << shift) // largest, shift


def _commands(params, rng, count):
    top = 1 << (params.vector_bits - 1)
    commands = []
    for index in range(count):
        length = rng.choice([1, params.vector_lanes, params.vector_lanes + 3,
                             rng.randrange(1, 80)])
        scale = rng.choice([3, 1 << 12, 1 << 20, top])
        u = [rng.choice([rng.randrange(-scale, scale), -top, top - 1, 0, 1, -1])
             for _ in range(length)]
        if index % 2:
            mantissa = rng.choice([0, 1, (1 << params.scale_mantissa_bits) - 1,
                                   rng.randrange(1 << (params.scale_mantissa_bits - 1),
                                                 1 << params.scale_mantissa_bits)])
            exponent = rng.choice([rng.randrange(-70, 1), rng.randrange(-40, -10), 0, 1,
                                   rng.randrange(1, 50), -62, -63, -2000, 2000])
            commands.append((False, u, mantissa, -exponent,
                             _norm_golden(u, mantissa, exponent, params)))
            continue
        if index % 3 == 2:           # a reciprocal from elsewhere: values saturate
            reciprocal = rng.randrange(1 << 23, 1 << 24)
            shift = rng.randrange(params.reciprocal_bits + 1, params.reciprocal_bits + 33)
        else:
            reciprocal, shift = _reciprocal(u, params)
            # The lane's values are quantize_activations' own.
            x = np.array(u, dtype=np.int64)
            q, _ = numerics.quantize_activations(
                x, np.full(length, params.one), 1, numerics.Scale(1 << 23, -23), params)
            assert _quant_golden(u, reciprocal, shift, params) == [int(v) for v in q]
        commands.append((True, u, reciprocal, shift,
                         _quant_golden(u, reciprocal, shift, params)))
    return commands


def _run(params, commands, rng, *, stall):
    dut = ScaleLanes(params)
    lanes = params.vector_lanes
    expected = []
    for _, u, _, _, values in commands:
        beats = -(-len(u) // lanes)
        for beat in range(beats):
            chunk = values[beat * lanes:(beat + 1) * lanes]
            expected.append((chunk + [0] * (lanes - len(chunk)), (1 << len(chunk)) - 1,
                             beat == beats - 1))
    received, cycles = [], []

    async def command_feed(ctx):
        for quantize, u, factor, shift, _ in commands:
            ctx.set(dut.command.payload, {"quantize": quantize, "factor": factor,
                                          "shift": shift, "length": len(u)})
            ctx.set(dut.command.valid, 1)
            await ctx.tick().until(dut.command.ready)
        ctx.set(dut.command.valid, 0)

    async def u_feed(ctx):
        for _, u, _, _, _ in commands:
            padded = u + [rng.randrange(-(1 << 31), 1 << 31) for _ in range(-len(u) % lanes)]
            for beat in range(len(padded) // lanes):
                while stall and rng.random() < 0.3:
                    ctx.set(dut.u.valid, 0)
                    await ctx.tick()
                ctx.set(dut.u.payload, padded[beat * lanes:(beat + 1) * lanes])
                ctx.set(dut.u.valid, 1)
                await ctx.tick().until(dut.u.ready)
        ctx.set(dut.u.valid, 0)

    async def take(ctx):
        results, taken = await take_results(ctx, dut.result, dut.busy, len(expected), rng=rng,
                                            ready_probability=0.5 if stall else 1.0,
                                            limit=40 * len(expected) + 100)
        for payload in results:
            received.append(([int(v) for v in payload.data], int(payload.mask),
                             bool(payload.last)))
        cycles.append(taken)

    simulator = Simulator(dut)
    simulator.add_clock(1e-8)
    simulator.add_testbench(command_feed)
    simulator.add_testbench(u_feed)
    simulator.add_testbench(take)
    simulator.run()
    assert received == expected
    return dut, cycles[0], len(expected)


@pytest.mark.parametrize("lanes", [2, 8])
def test_values_equal_numerics_under_random_stalls(lanes):
    params = PRESETS["demo"].replace(vector_lanes=lanes)
    rng = random.Random(f"scale-lanes{lanes}")
    _run(params, _commands(params, rng, 40), rng, stall=True)


def test_one_beat_a_cycle():
    params = PRESETS["demo"]
    rng = random.Random("scale-lanes-rate")
    dut, cycles, beats = _run(params, _commands(params, rng, 12), rng, stall=False)
    assert cycles <= beats + dut.latency + 3, (cycles, beats)


def test_refuses_other_widths():
    with pytest.raises(ValueError, match="vector_bits must be 32"):
        ScaleLanes(PRESETS["demo"].replace(vector_bits=24, frac_bits=12))


def test_the_ecp5_form_places_each_partial_product_in_a_registered_dsp():
    """target="ecp5": every partial product a MULT18X18D with its input and output registers
    on (the form is not simulated: Yosys has only a black box of the cell); the fabric form
    the tests run has none."""
    from amaranth.back import rtlil

    params = PRESETS["demo"]
    text = rtlil.convert(ScaleLanes(params, target="ecp5"))
    assert text.count("cell \\MULT18X18D") == 4 * params.vector_lanes
    assert text.count('parameter \\REG_OUTPUT_CLK "CLK0"') == 4 * params.vector_lanes
    assert text.count('parameter \\REG_INPUTA_CLK "CLK0"') == 4 * params.vector_lanes
    assert "MULT18X18D" not in rtlil.convert(ScaleLanes(params))
    with pytest.raises(ValueError, match="target must be one of"):
        ScaleLanes(params, target="ice40")
