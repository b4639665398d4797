"""BlockRAMWeights in Amaranth's simulator, against a dictionary: the host's 32-bit writes
(each a read and a merged write-back of one wide word) and reads, then a TMV's word stream
read through ``matrix``, on random addresses and data (not yet wired into the core: see
docs/sdram.md, "Next step")."""

import random

import pytest

from tern_fpga.contracts.params import preset
from tern_fpga.hw.weight_memory import (
    BlockRAMWeights,
    WeightMemorySignature,
    weight_word_bits,
)

from support import simulation

PARAMS = preset("micro")
LANES = weight_word_bits(PARAMS) // 32


def run(testbench):
    dut = BlockRAMWeights(PARAMS)
    assert dut.signature == WeightMemorySignature(PARAMS).flip()
    simulation.simulate(dut, testbench)


async def host_write(ctx, dut, address, value):
    ctx.set(dut.host.payload, {"address": address, "write_data": value, "write": 1})
    ctx.set(dut.host.valid, 1)
    cycles = 0
    while True:
        taken = ctx.get(dut.host.ready)    # the transfer happens at this cycle's edge
        await ctx.tick()
        cycles += 1
        if taken:
            break
    ctx.set(dut.host.valid, 0)
    return cycles


async def host_read(ctx, dut, address):
    ctx.set(dut.host.payload, {"address": address, "write_data": 0, "write": 0})
    ctx.set(dut.host.valid, 1)
    await ctx.tick().until(dut.host.ready)
    ctx.set(dut.host.valid, 0)
    ctx.set(dut.host_response.ready, 1)
    (value,) = await ctx.tick().sample(dut.host_response.payload).until(
        dut.host_response.valid)
    ctx.set(dut.host_response.ready, 0)
    return value


def test_signature_wants_parameters():
    with pytest.raises(TypeError, match="AcceleratorParameters"):
        WeightMemorySignature("micro")


def test_host_writes_then_reads_and_matrix_stream_return_the_written_words():
    rng = random.Random(1609)
    words = PARAMS.weight_memory_words
    touched = rng.sample(range(words), 12)
    expected = {}          # 32-bit host address -> value

    async def testbench(ctx, dut):
        assert ctx.get(dut.matrix_available) == 1 and ctx.get(dut.status) == 0
        for word in touched:
            for lane in rng.sample(range(LANES), LANES):
                address, value = word * LANES + lane, rng.getrandbits(32)
                await host_write(ctx, dut, address, value)
                expected[address] = value
        # A rewrite of one lane keeps its neighbours (the write is a merge).
        address = touched[0] * LANES + 1
        expected[address] = rng.getrandbits(32)
        await host_write(ctx, dut, address, expected[address])
        for address in rng.sample(sorted(expected), len(expected)):
            assert await host_read(ctx, dut, address) == expected[address], hex(address)
        # The matrix side: consecutive words from the announced start, one per en, data a
        # cycle later and held while en is low.
        start = min(touched)
        count = min(6, words - start)
        ctx.set(dut.prefetch.payload, {"start": start, "words": count})
        ctx.set(dut.prefetch.valid, 1)
        await ctx.tick()
        assert ctx.get(dut.prefetch.ready) == 1
        ctx.set(dut.prefetch.valid, 0)
        for index in range(count):
            ctx.set(dut.matrix_addr, start + index)
            ctx.set(dut.matrix_en, 1)
            await ctx.tick()
            ctx.set(dut.matrix_en, 0)
            await ctx.tick()            # held while en is low
            word = start + index
            want = sum(expected.get(word * LANES + lane, 0) << (32 * lane)
                       for lane in range(LANES))   # (never written: zero, the memory's init)
            assert ctx.get(dut.matrix_data) == want, f"word {word}"

    run(testbench)


def test_a_host_write_takes_two_cycles_and_a_read_one():
    """The merge costs a cycle (read, then write back): the same timing as the core had with
    the memory inside it, so its cycle counts do not change."""
    cycles = []

    async def testbench(ctx, dut):
        cycles.append(await host_write(ctx, dut, 3, 0xDEADBEEF))
        cycles.append(await host_write(ctx, dut, 4, 0x01234567))
        assert await host_read(ctx, dut, 3) == 0xDEADBEEF
        assert await host_read(ctx, dut, 4) == 0x01234567

    run(testbench)
    assert cycles == [2, 2]
