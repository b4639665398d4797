"""The iCE40 port's shared 32 x 32 multiplier: its golden function and arguments, Amaranth's
simulator against the exact products (back to back at the documented latency; random gaps and
random back-pressure, every result once and in order), and Yosys mapping it to four SB_MAC16."""

import random

import pytest
from amaranth.sim import Simulator

from tern_fpga.hw.ice40.shared_multiplier import (
    LATENCY,
    SharedMultiplier,
    exact_product,
    request_layout,
    result_layout,
)
from tern_fpga.hw.synthesis import synthesize

pytestmark = pytest.mark.xdist_group("yosys")

TAG_BITS = 3
# The extremes, and the values at which a low half's top bit or a high half's sign changes.
EXTREMES = (-2**31, 2**31 - 1, 0, -1, 1, 0x7FFF, 0x8000, 0xFFFF, 0x1_0000, -0x8000, -0x1_0000)


def random_requests(rng, count):
    """``count`` requests ``(a, b, tag)``: every pair of extremes once, then random operands,
    an extreme in about a third of them."""
    def operand():
        return rng.choice(EXTREMES) if rng.random() < 0.35 else rng.getrandbits(32) - 2**31

    pairs = [(a, b) for a in EXTREMES for b in EXTREMES]
    pairs += [(operand(), operand()) for _ in range(count - len(pairs))]
    return [(a, b, rng.getrandbits(TAG_BITS)) for a, b in pairs]


def simulate(*testbenches):
    dut = SharedMultiplier(TAG_BITS)
    simulator = Simulator(dut)
    simulator.add_clock(1e-6)
    for testbench in testbenches:
        async def bench(ctx, testbench=testbench):
            await testbench(ctx, dut)

        simulator.add_testbench(bench)
    simulator.run()


@pytest.mark.filterwarnings("ignore:.*created but never used")
def test_init():
    dut = SharedMultiplier(TAG_BITS)
    assert dut.tag_bits == TAG_BITS
    assert dut.requests.payload.shape() == request_layout(TAG_BITS)
    assert dut.results.payload.shape() == result_layout(TAG_BITS)
    assert dict(result_layout(1))["product"].shape.width == 64


@pytest.mark.filterwarnings("ignore:.*created but never used")
@pytest.mark.parametrize("tag_bits", [0, -2, 2.0, True, "2"])
def test_init_wrong_tag_bits(tag_bits):
    with pytest.raises(ValueError) as error:
        SharedMultiplier(tag_bits)
    assert str(error.value) == (f"tag_bits must be a positive integer, not {tag_bits!r}; a "
                                f"single client uses 1")


def test_exact_product():
    assert exact_product(-2**31, -2**31) == 2**62
    assert exact_product(2**31 - 1, -2**31) == -(2**62) + 2**31
    with pytest.raises(ValueError) as error:
        exact_product(3, 2**31)
    assert str(error.value) == ("operand b must be a signed 32-bit integer, not 2147483648; "
                                "saturate or split it first")


def test_back_to_back_at_the_documented_latency():
    """One request a cycle, results always taken: never a stall, and each request's result on
    ``results`` exactly :data:`LATENCY` cycles after the cycle it was taken in."""
    assert LATENCY == 4  # as docs/boards.md has it
    requests = random_requests(random.Random(3), 200)
    seen = {}

    async def testbench(ctx, dut):
        ctx.set(dut.results.ready, 1)
        for cycle in range(len(requests) + LATENCY + 3):
            if cycle < len(requests):
                a, b, tag = requests[cycle]
                ctx.set(dut.requests.payload, {"a": a, "b": b, "tag": tag})
            ctx.set(dut.requests.valid, cycle < len(requests))
            _, _, ready, valid, product, tag = await ctx.tick().sample(
                dut.requests.ready, dut.results.valid, dut.results.payload.product,
                dut.results.payload.tag)
            assert ready
            if valid:
                seen[cycle] = (product, tag)

    simulate(testbench)
    assert seen == {cycle + LATENCY: (exact_product(a, b), tag)
                    for cycle, (a, b, tag) in enumerate(requests)}


def test_random_gaps_and_back_pressure():
    """Requests with random gaps, results taken in random cycles (long holds too): each result
    is the exact product with its request's tag, in request order, none lost or repeated."""
    rng = random.Random(18)
    requests = random_requests(rng, 700)
    received = []

    async def producer(ctx, dut):
        for a, b, tag in requests:
            for _ in range(rng.choice((0, 0, 0, 1, 3))):
                await ctx.tick()
            ctx.set(dut.requests.payload, {"a": a, "b": b, "tag": tag})
            ctx.set(dut.requests.valid, 1)
            for _ in range(100):  # taken within a hold of the results (or the test fails)
                _, _, ready = await ctx.tick().sample(dut.requests.ready)
                if ready:
                    break
            ctx.set(dut.requests.valid, 0)

    async def consumer(ctx, dut):
        cycles = 0
        while len(received) < len(requests) and cycles < 10 * len(requests):  # or results lost
            hold = rng.random() < 0.05
            for _ in range(rng.randrange(5, 12) if hold else 1):
                cycles += 1
                ctx.set(dut.results.ready, not hold and rng.random() < 0.7)
                _, _, valid, ready, product, tag = await ctx.tick().sample(
                    dut.results.valid, dut.results.ready, dut.results.payload.product,
                    dut.results.payload.tag)
                if valid and ready:
                    received.append((product, tag))
        for _ in range(2 * LATENCY):  # nothing more comes
            ctx.set(dut.results.ready, 1)
            _, _, valid = await ctx.tick().sample(dut.results.valid)
            assert not valid

    simulate(producer, consumer)
    assert received == [(exact_product(a, b), tag) for a, b, tag in requests]


def test_yosys_maps_it_to_four_mac16():
    """``synth_ice40 -dsp`` (Yosys 0.70): the four ``*`` of 16-bit halves, each one SB_MAC16
    with its registers (measured with a 3-bit tag: 84 SB_LUT4, 79 SB_CARRY, 209 flip-flops), no
    block RAM."""
    result = synthesize(SharedMultiplier(TAG_BITS), "ice40")
    assert result.generic["$mul"] == 4
    assert result.mapped["SB_MAC16"] == 4, result.mapped
    assert "SB_RAM40_4K" not in result.mapped
    assert result.mapped["SB_LUT4"] <= 100, result.mapped
    flip_flops = sum(count for cell, count in result.mapped.items() if cell.startswith("SB_DFF"))
    assert flip_flops <= 220, result.mapped
