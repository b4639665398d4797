"""NormQuantizer and its ScalarEngine against sim/golden/numerics, bit for bit.

Constructor checks, the scalar engine alone and a short run of the whole unit in Amaranth's
simulator (V = 2), then cocotb + Verilator runs at V = 2 (micro preset) and V = 8 (demo
preset): lengths 1, V - 1, 3V + 1 and max_features, every distribution of
``norm_quantizer_cases``, random stalls on all four streams.
"""

import functools
import gc

import numpy as np
import pytest
from amaranth.hdl import Const
from amaranth.sim import Simulator

from tern_fpga.contracts import numerics
from tern_fpga.contracts.numerics import Scale
from tern_fpga.contracts.params import PRESETS
from tern_fpga.hw.norm_quantizer import NormQuantizer, Operation, command_layout, operand_layout
from tern_fpga.hw.scalar_engine import (
    RSQRT_FRAC_BITS,
    RSQRT_INPUT_BITS,
    ScalarEngine,
    request_layout,
)
from tern_fpga.hw.scale_layout import SCALE_EXPONENT_BITS, sum_of_squares_bits
from tern_fpga.sim.rtl.cocotb_support import build_component
from tern_fpga.sim.rtl.testbenches.norm_quantizer_cases import (
    DISTRIBUTIONS,
    make_case,
    run_in_amaranth,
)

SMALL = PRESETS["micro"].replace(name="test-norm-v2", max_features=24)

unused_ok = pytest.mark.filterwarnings("ignore:.*created but never used")


# Constructor ---------------------------------------------------------------------------------

def test_init():
    unit = NormQuantizer(SMALL)
    assert unit.params is SMALL
    assert unit.tree_stages == 1
    assert unit.max_shift == 80 and unit.max_coarse_shift == 10
    assert len(unit.operands.payload.as_value()) == 2 * 2 * 32
    assert len(unit.result.payload.as_value()) == 2 * 32
    assert len(unit.scale.payload.as_value()) == 16 + SCALE_EXPONENT_BITS
    assert sum_of_squares_bits(SMALL) == 62
    # The command fields hold the largest legal values.
    Const.cast(command_layout(SMALL).const({
        "operation": Operation.QUANT, "length": 24, "epsilon_term": (1 << 62) - 1,
        "constant": {"mantissa": 65535, "exponent": -128}}))
    assert operand_layout(SMALL).size == 128


@unused_ok
def test_init_wrong_params():
    with pytest.raises(TypeError, match=r"^params must be an AcceleratorParameters, not 'micro'$"):
        NormQuantizer("micro")
    gc.collect()


@unused_ok
def test_init_wrong_mantissa_bits():
    with pytest.raises(ValueError, match=r"^scale_mantissa_bits = 26 leaves no room for the 7-bit "
                                         r"fine shift in a 32-bit multiplier operand; use at "
                                         r"most 25$"):
        NormQuantizer(SMALL.replace(scale_mantissa_bits=26))
    gc.collect()


@unused_ok
def test_init_wrong_table_bits():
    with pytest.raises(ValueError, match=r"^the scalar engine needs rsqrt_table_bits from 3 to "
                                         r"12, not 2$"):
        ScalarEngine(SMALL.replace(rsqrt_table_bits=2))
    gc.collect()


@pytest.mark.parametrize("table_bits", range(3, 13))
def test_rsqrt_iterate_fits_the_multiplier(table_bits):
    """The engine's 32 x 32 multiplier holds every rsqrt product: y < 2**31 and
    0 < 3 * 2**30 - error < 2**32 at the ends of every seed interval and in between."""
    params = SMALL.replace(rsqrt_table_bits=table_bits, rsqrt_newton_steps=3)
    table = numerics.rsqrt_table(params)
    step = 1 << (RSQRT_INPUT_BITS - table_bits)
    starts = np.arange(1 << (table_bits - 2), 1 << table_bits) * step
    rng = np.random.default_rng(table_bits)
    inputs = np.concatenate([starts, starts + step - 1, rng.integers(1 << 30, 1 << 32, 2000)])
    for normalised in inputs.tolist():
        y = int(table[normalised >> (RSQRT_INPUT_BITS - table_bits)]) << 14
        assert 0 < y < 1 << 31
        for _ in range(params.rsqrt_newton_steps):
            error = (normalised * ((y * y) >> RSQRT_FRAC_BITS)) >> RSQRT_INPUT_BITS
            assert 0 < (3 << RSQRT_FRAC_BITS) - error < 1 << 32
            y = (y * ((3 << RSQRT_FRAC_BITS) - error)) >> (RSQRT_FRAC_BITS + 1)
            assert 0 < y < 1 << 31


# Scalar engine -------------------------------------------------------------------------------

def _engine_requests(params, rng, count):
    bits = sum_of_squares_bits(params)
    top = 1 << (params.vector_bits - 1)
    extremes = [(0, 1, 0), ((1 << bits) - 1, (1 << bits) - 1, top), (1, 0, 1), (0, 3, top - 1)]
    for total, epsilon, largest in extremes:
        yield total, epsilon, Scale(1 << 15, -3), largest
    for _ in range(count):
        total = int(rng.integers(0, 1 << int(rng.integers(1, bits + 1))))
        epsilon = int(rng.integers(1, 1 << int(rng.integers(1, 40))))
        constant = Scale(int(rng.integers(0, 1 << 16)), int(rng.integers(-40, 20)))
        largest = int(rng.integers(0, 1 << int(rng.integers(1, params.vector_bits))))
        yield total, epsilon, constant, largest


@pytest.mark.parametrize("newton_steps", [2, 3])
def test_scalar_engine(newton_steps):
    """Every field of the result against the numerics, and the documented latency."""
    params = SMALL.replace(rsqrt_newton_steps=newton_steps)
    engine = ScalarEngine(params)
    requests = list(_engine_requests(params, np.random.default_rng(newton_steps), 100))
    results, latencies = [], []

    async def testbench(ctx):
        layout = request_layout(params)
        for index, (total, epsilon, constant, largest) in enumerate(requests):
            quantize = index % 3 != 0
            ctx.set(engine.request.payload.as_value(), Const.cast(layout.const({
                "quantize": quantize, "sum_of_squares": total, "epsilon_term": epsilon,
                "constant": constant._asdict(), "largest": largest})).value)
            ctx.set(engine.request.valid, 1)
            await ctx.tick().until(engine.request.ready)
            ctx.set(engine.request.valid, 0)
            ctx.set(engine.result.ready, 1)
            cycles = 0
            while True:
                *_, valid, payload = await ctx.tick().sample(engine.result.valid,
                                                             engine.result.payload)
                cycles += 1
                if valid:
                    break
            results.append(payload)
            latencies.append(cycles == engine.latency(quantize))
            ctx.set(engine.result.ready, 0)

    simulator = Simulator(engine)
    simulator.add_clock(1e-8)
    simulator.add_testbench(testbench)
    simulator.run()
    assert all(latencies)
    exponent_range = range(-(1 << (SCALE_EXPONENT_BITS - 1)), 1 << (SCALE_EXPONENT_BITS - 1))
    for index, ((total, epsilon, constant, largest), result) in enumerate(
            zip(requests, results, strict=True)):
        norm = numerics.scale_multiply(numerics.rsqrt_scale(total + epsilon, params), constant,
                                       params)
        assert (result.norm_scale.mantissa, result.norm_scale.exponent) == norm
        if index % 3 == 0:
            continue
        largest = max(largest, 1)
        output = numerics.scale_multiply(norm, numerics.scale_from_int(largest, params), params)
        if output.exponent in exponent_range:
            assert (result.output_scale.mantissa, result.output_scale.exponent) == output
        shift = params.reciprocal_bits + largest.bit_length()
        assert result.reciprocal == (params.activation_max << shift) // largest
        assert result.largest_bits == largest.bit_length()


# The whole unit in Amaranth's simulator ------------------------------------------------------

def _amaranth_run(params, cases, probability, seed):
    return run_in_amaranth(NormQuantizer(params), cases, probability, seed, params)


# Parameter sets away from the presets: other lane counts, Newton steps, seed tables, and a
# 24-bit vector format (whose reciprocal must shrink to fit the lane multiplier).
VARIANTS = {
    "v2": SMALL,
    "v1-one-newton-step": SMALL.replace(vector_lanes=1, max_features=9, rsqrt_newton_steps=1),
    "v4-coarse-table": SMALL.replace(vector_lanes=4, max_features=30, rsqrt_table_bits=4,
                                     rsqrt_newton_steps=3, square_shift=4),
    "v2-24-bit": SMALL.replace(vector_bits=24, frac_bits=12, reciprocal_bits=9,
                               scale_mantissa_bits=12, max_features=5),
}


@pytest.mark.parametrize("variant, probability", [
    ("v2", 1.0), ("v2", 0.6), ("v1-one-newton-step", 0.8), ("v4-coarse-table", 0.8),
    ("v2-24-bit", 0.8)])
def test_amaranth_simulation(variant, probability):
    params = VARIANTS[variant]
    rng = np.random.default_rng(list(VARIANTS).index(variant) + int(probability * 10))
    cases = [make_case(Operation(index % 2), int(rng.integers(1, params.max_features + 1)),
                       distribution, params, rng)
             for index, distribution in enumerate(DISTRIBUTIONS * 2)]
    lanes, scales = _amaranth_run(params, cases, probability, seed=3)
    assert lanes == [lane for case in cases for lane in case.expected]
    assert scales == [case.scale for case in cases if case.scale is not None]


# cocotb + Verilator ----------------------------------------------------------------------------

VERILATOR_PRESETS = {2: "micro", 8: "demo"}


@functools.cache
def verilator_build(lanes):
    params = PRESETS[VERILATOR_PRESETS[lanes]]
    return build_component(NormQuantizer(params), "norm_quantizer",
                           f"V{lanes}-{params.hash:016x}", optimize="-O0")


def run_verilator(lanes, commands, probabilities, seed):
    """One simulation: ``commands`` once per set of stall chances in ``probabilities``
    (command, operands, result, scale)."""
    params = PRESETS[VERILATOR_PRESETS[lanes]]
    verilator_build(lanes).run("tern_fpga.sim.rtl.testbenches.norm_quantizer", {
        "params": params.to_dict(), "commands": commands, "probabilities": probabilities,
        "seed": seed,
    }, testcase="random_commands")


def by_lanes(function):
    return pytest.mark.parametrize("lanes", [
        pytest.param(lanes, marks=pytest.mark.xdist_group(f"verilator-norm-v{lanes}"),
                     id=f"v{lanes}") for lanes in VERILATOR_PRESETS])(function)


@by_lanes
def test_verilator_lengths(lanes):
    """Lengths 1, V - 1, 3V + 1 and max_features, both operations, fast and stalling streams."""
    maximum = PRESETS[VERILATOR_PRESETS[lanes]].max_features
    lengths = sorted({1, lanes - 1, 3 * lanes + 1, maximum})
    distributions = iter(DISTRIBUTIONS * 4)
    commands = [[operation, length, next(distributions)]
                for length in lengths for operation in ("NORM", "QUANT")]
    run_verilator(lanes, commands, [[1, 1, 1, 1], [0.8, 0.7, 0.6, 0.5]], seed=lanes)


@by_lanes
def test_verilator_distributions(lanes):
    """Every distribution, both operations, random lengths, random stalls."""
    rng = np.random.default_rng(lanes)
    maximum = PRESETS[VERILATOR_PRESETS[lanes]].max_features
    commands = [[operation, int(rng.integers(1, min(maximum, 40 * lanes) + 1)), distribution]
                for distribution in DISTRIBUTIONS for operation in ("NORM", "QUANT")]
    run_verilator(lanes, commands, [[0.9, 0.8, 0.7, 0.6]], seed=100 + lanes)


def test_the_normaliser_pipeline_depth_is_the_one_its_input_timing_relies_on():
    """A normalising state's input is valid only in its first cycle (``product`` changes after
    it); with three stages the settled result is the first cycle's (docs/hardware.md)."""
    from tern_fpga.hw import scalar_engine

    assert scalar_engine.NORMALISER_STAGES == 3, \
        "limit the normaliser's input capture to a state's first cycle before deepening it"
