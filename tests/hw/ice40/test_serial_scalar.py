"""The iCE40 port's serial normaliser and divider: their golden functions against the numerics
and the committed engine's normaliser, Amaranth's simulator against them (random gaps and
back-pressure, the documented latencies) and Yosys's SB_LUT4 counts."""

import random

import pytest
from amaranth.hdl import Module, Signal
from amaranth.sim import Simulator

from tern_fpga.contracts import numerics
from tern_fpga.contracts.params import PRESETS
from tern_fpga.hw.ice40.serial_scalar import (
    SerialDivider,
    SerialNormaliser,
    normalise,
    reciprocal,
)
from tern_fpga.hw.scalar_engine import _normalise_left, _round_mantissa
from tern_fpga.hw.synthesis import synthesize

pytestmark = [pytest.mark.xdist_group("yosys"),
              pytest.mark.filterwarnings("ignore:.*created but never used")]

PARAMS = PRESETS["micro"]
WIDTH = 64
# 0, 1, the largest, powers of two and their neighbours, and runs of ones that round up.
EDGES = sorted({0, 1, 2**WIDTH - 1}
               | {(2**j + d) % 2**WIDTH for j in range(WIDTH) for d in (-1, 0, 1)}
               | {(2**17 - 1) << j for j in range(WIDTH - 16)})


def random_values(rng, count):
    """The edges, then random values of random bit lengths, an edge in about a quarter."""
    values = list(EDGES)
    while len(values) < count:
        values.append(rng.choice(EDGES) if rng.random() < 0.25
                      else rng.getrandbits(rng.randrange(1, WIDTH + 1)))
    return values


def run(dut, *testbenches):
    simulator = Simulator(dut)
    simulator.add_clock(1e-6)
    for testbench in testbenches:
        simulator.add_testbench(testbench)
    simulator.run()


def test_normalise_is_the_numerics():
    rng = random.Random(4)
    for value in random_values(rng, 600):
        exponent = rng.randrange(-500, 500)
        result = normalise(value, exponent, False, PARAMS)
        assert (result.mantissa, result.exponent) == numerics._normalise(value, exponent, PARAMS)
        assert result.aligned == value << result.count < 2**WIDTH
        even = normalise(value, exponent, True, PARAMS)
        if value:  # numerics.rsqrt_scale's even shift to [2**30, 2**32)
            shift = value.bit_length() - 32
            shift += shift & 1
            assert even.count == WIDTH - 32 - shift
            assert even.aligned >> (WIDTH - 32) == (value >> shift if shift >= 0
                                                    else value << -shift)
    assert normalise(0, 5, False, PARAMS) == (0, 63, 0, 0)
    assert normalise(0, 5, True, PARAMS) == (0, 62, 0, 0)
    with pytest.raises(ValueError) as error:
        normalise(-1, 0, False, PARAMS)
    assert str(error.value) == ("value must be an unsigned 64-bit integer, not -1; the engine "
                                "normalises only magnitudes")


def test_normalise_is_the_committed_normaliser():
    """The committed engine's shifter and rounding, combinationally, give the same."""
    m = Module()
    value, even = Signal(WIDTH), Signal()
    aligned, count = _normalise_left(m, value, even)
    mantissa, offset = _round_mantissa(m, PARAMS, aligned, count, WIDTH)
    values = random_values(random.Random(5), 500)

    async def testbench(ctx):
        for number in values:
            for flag in (False, True):
                ctx.set(value, number)
                ctx.set(even, flag)
                golden = normalise(number, 0, flag, PARAMS)
                assert (ctx.get(aligned), ctx.get(count)) == golden[:2]
                if number:
                    assert (ctx.get(mantissa), ctx.get(offset)) == golden[2:]

    simulator = Simulator(m)
    simulator.add_testbench(testbench)
    simulator.run()


@pytest.mark.parametrize("bits", [0, 3, 18, True, "4"])
def test_wrong_bits_per_cycle(bits):
    with pytest.raises(ValueError) as error:
        SerialNormaliser(PARAMS, bits_per_cycle=bits)
    assert str(error.value) == (f"bits_per_cycle must be 1 or an even number from 2 to 16, "
                                f"not {bits!r}")


def test_latency():
    assert [SerialNormaliser(PARAMS, bits_per_cycle=b).max_latency for b in (1, 2, 4)] == [
        64, 33, 19]
    dut = SerialNormaliser(PARAMS)
    assert dut.latency(2**63, False) == 1
    assert dut.latency(2**58, False) == 1 + 1 + 1  # one shift of 4, one of 1
    assert dut.latency(2**58, True) == 1 + 1       # one shift of 4
    assert SerialDivider(PARAMS).latency == 25


@pytest.mark.parametrize("bits", [1, 4])
def test_normaliser_back_to_back(bits):
    """Results always taken, a request whenever ready: each result :meth:`latency` edges after
    its request's."""
    dut = SerialNormaliser(PARAMS, bits_per_cycle=bits)
    rng = random.Random(bits)
    requests = [(value, rng.randrange(-500, 500), rng.random() < 0.5)
                for value in random_values(rng, 250 if bits == 4 else 80)]
    taken, given = [], []

    async def testbench(ctx):
        ctx.set(dut.result.ready, 1)
        pending, cycle = list(requests), 0
        while len(given) < len(requests) and cycle < 70 * len(requests):  # or lost
            if pending:
                value, exponent, even = pending[0]
                ctx.set(dut.request.payload, {"value": value, "exponent": exponent,
                                              "even": even})
            ctx.set(dut.request.valid, bool(pending))
            _, _, ready, valid, result = await ctx.tick().sample(
                dut.request.ready, dut.result.valid, dut.result.payload)
            if ready and pending:
                taken.append(cycle)
                pending.pop(0)
            if valid:
                given.append((cycle, (result.aligned, result.count, result.scale.mantissa,
                                      result.scale.exponent)))
            cycle += 1

    run(dut, testbench)
    assert len(given) == len(requests)
    for (value, exponent, even), start, (end, result) in zip(requests, taken, given):
        assert result == normalise(value, exponent, even, PARAMS), hex(value)
        assert end - start == dut.latency(value, even), hex(value)


def stream_through(dut, requests, rng):
    """Requests with random gaps, results taken in random cycles: the payloads received."""
    received = []

    async def producer(ctx):
        for request in requests:
            for _ in range(rng.choice((0, 0, 1, 3))):
                await ctx.tick()
            ctx.set(dut.request.payload, request)
            ctx.set(dut.request.valid, 1)
            for _ in range(100):  # taken within a few results (or the test fails)
                if (await ctx.tick().sample(dut.request.ready))[2]:
                    break
            ctx.set(dut.request.valid, 0)

    async def consumer(ctx):
        for _ in range(100 * len(requests)):  # or results are lost
            ctx.set(dut.result.ready, rng.random() < 0.6)
            _, _, valid, ready, payload = await ctx.tick().sample(
                dut.result.valid, dut.result.ready, dut.result.payload)
            if valid and ready:
                received.append(payload)
                if len(received) == len(requests):
                    break

    run(dut, producer, consumer)
    return received


def test_normaliser_gaps_and_back_pressure():
    rng = random.Random(18)
    dut = SerialNormaliser(PARAMS)
    requests = [{"value": value, "exponent": rng.randrange(-500, 500),
                 "even": rng.random() < 0.5} for value in random_values(rng, 300)]
    received = stream_through(dut, requests, rng)
    assert [(r.aligned, r.count, r.scale.mantissa, r.scale.exponent) for r in received] == [
        tuple(normalise(q["value"], q["exponent"], q["even"], PARAMS)) for q in requests]


def test_reciprocal_is_the_numerics():
    for largest in [1, 2, 3, 127, 128, 2**31 - 1, 2**31] + random.Random(6).sample(
            range(1, 2**31), 300):
        e = largest.bit_length()
        assert reciprocal(largest << (32 - e), PARAMS) == (
            PARAMS.activation_max << (PARAMS.reciprocal_bits + e)) // largest
    with pytest.raises(ValueError) as error:
        reciprocal(5, PARAMS)
    assert str(error.value) == ("divisor must have its top bit, bit 31, set, not 5; "
                                "normalise m first")


def test_divider_gaps_and_back_pressure():
    rng = random.Random(15)
    divisors = [2**31, 2**31 + 1, 2**32 - 1, 3 << 30] + [
        2**31 | rng.getrandbits(31) for _ in range(60)]
    dut = SerialDivider(PARAMS)
    assert stream_through(dut, divisors, rng) == [reciprocal(d, PARAMS) for d in divisors]


def test_divider_latency():
    dut = SerialDivider(PARAMS)
    ends = []

    async def testbench(ctx):
        ctx.set(dut.result.ready, 1)
        ctx.set(dut.request.payload, 2**31 + 12345)
        ctx.set(dut.request.valid, 1)
        for cycle in range(3 * dut.latency):
            _, _, ready, valid = await ctx.tick().sample(dut.request.ready, dut.result.valid)
            if valid:
                ends.append(cycle)
            if ready:
                ends.append(("taken", cycle))

    run(dut, testbench)
    assert ends[:3] == [("taken", 0), dut.latency, ("taken", dut.latency + 1)]


def test_yosys_luts():
    """``synth_ice40`` (Yosys 0.70), measured: the normaliser 196 SB_LUT4 at 4 bits a cycle
    (the committed one, with its registers, rounding and exponent add: 437); the divider 118."""
    normaliser = synthesize(SerialNormaliser(PARAMS), "ice40").mapped
    assert normaliser["SB_LUT4"] <= 220, normaliser
    divider = synthesize(SerialDivider(PARAMS), "ice40").mapped
    assert divider["SB_LUT4"] <= 140, divider
    assert "SB_RAM40_4K" not in normaliser and "SB_RAM40_4K" not in divider
