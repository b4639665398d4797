"""The SDRAM weight path's planner and unpacker (hw/sdram/weight_unpacker.py) in Amaranth's
simulator against their golden models (contracts.sdram_image.sdram_weight_run,
sim.golden.base3.sdram_run_words), in both packings, on random runs, random SDRAM contents
(invalid base-3 bytes included) and random stalls; and the golden chain itself: an export's
weight image packed for the SDRAM and unpacked by run gives the image's own weight words."""

import random

import numpy as np
import pytest
from amaranth.sim import Simulator

from tern_fpga.contracts.params import preset
from tern_fpga.contracts.protocol import to_words
from tern_fpga.contracts.sdram_image import (
    PACKING_CODES,
    packing_register_address,
    sdram_weight_run,
    sdram_weight_words,
)
from tern_fpga.hw.sdram.weight_unpacker import RunPlanner, WeightUnpacker
from tern_fpga.sim.golden.base3 import sdram_run_words

ADDRESS_WIDTH = 24
PACKINGS = sorted(PACKING_CODES)


def _simulate(dut, testbench):
    async def bench(ctx):
        await testbench(ctx)

    simulator = Simulator(dut)
    simulator.add_clock(1e-6)
    simulator.add_testbench(bench)
    simulator.run()


@pytest.mark.parametrize("preset_name", ["micro", "stdlib"])
@pytest.mark.parametrize("packing", PACKINGS)
def test_run_planner_names_the_golden_sdram_words(preset_name, packing):
    params = preset(preset_name)
    rng = random.Random(f"{preset_name}{packing}")
    limit = params.weight_memory_words
    runs = [(0, 1), (limit - 1, 1), (limit - 1, limit), (3, limit)] + [
        (rng.randrange(limit), rng.randrange(1, limit)) for _ in range(40)]
    dut = RunPlanner(params, ADDRESS_WIDTH)

    async def testbench(ctx):
        ctx.set(dut.base3, PACKING_CODES[packing])
        ctx.set(dut.plan.ready, 1)
        for start, words in runs:
            ctx.set(dut.request.payload, {"start": start, "words": words})
            ctx.set(dut.request.valid, 1)
            await ctx.tick().until(dut.request.ready)
            ctx.set(dut.request.valid, 0)
            (plan,) = await ctx.tick().sample(dut.plan.payload).until(dut.plan.valid)
            got = (plan.first, plan.beats, plan.skip, plan.words)
            want = (*sdram_weight_run(start, words, params.ternary_lanes, packing), words)
            assert got == want, (start, words)

    _simulate(dut, testbench)


@pytest.mark.parametrize("lanes_preset", ["stdlib", "micro"])
@pytest.mark.parametrize("packing", PACKINGS)
def test_unpacker_gives_the_golden_words_under_random_stalls(lanes_preset, packing):
    params = preset(lanes_preset)
    lanes = params.ternary_lanes
    rng = random.Random(f"unpack{lanes_preset}{packing}")
    sdram = np.array([rng.getrandbits(16) for _ in range(600)], dtype=np.uint16)
    runs = []
    for start, words in [(0, 5), (37, 20), (41, 3), (43, 1), (44, 17), (90, 30)]:
        first, beats, skip = sdram_weight_run(start, words, lanes, packing)
        runs.append((first, beats, skip, words))
    skips = {skip for *_, skip, _ in runs}
    assert packing == "2bit" or len(skips) >= 3, skips   # the runs start inside SDRAM words
    expected = [word for run in runs for word in sdram_run_words(sdram, *run, lanes, packing)]
    dut = WeightUnpacker(params, ADDRESS_WIDTH)
    received = []

    async def feed(ctx):
        ctx.set(dut.base3, PACKING_CODES[packing])
        for first, beats, skip, words in runs:
            ctx.set(dut.run.payload, {"first": first, "beats": beats, "skip": skip,
                                      "words": words})
            ctx.set(dut.run.valid, 1)
            await ctx.tick().until(dut.run.ready)
            ctx.set(dut.run.valid, 0)
            for address in range(first, first + beats):
                while rng.random() < 0.3:
                    await ctx.tick()
                ctx.set(dut.sdram.payload, int(sdram[address]))
                ctx.set(dut.sdram.valid, 1)
                await ctx.tick().until(dut.sdram.ready)
                ctx.set(dut.sdram.valid, 0)

    async def take(ctx):
        for _ in range(20 * len(expected) + 2000):
            ready = rng.random() < 0.7
            ctx.set(dut.words.ready, ready)
            _, _, valid, payload = await ctx.tick().sample(dut.words.valid, dut.words.payload)
            if ready and valid:
                received.append(payload)
            if len(received) == len(expected):
                break
        assert ctx.get(dut.idle)

    simulator = Simulator(dut)
    simulator.add_clock(1e-6)
    simulator.add_testbench(feed)
    simulator.add_testbench(take)
    simulator.run()
    assert received == expected


def test_unpacker_takes_an_sdram_word_and_gives_a_weight_word_each_cycle():
    """No stalls: a base-3 run of 64 words of 16 lanes takes one cycle an SDRAM word."""
    params = preset("stdlib")
    first, beats, skip = sdram_weight_run(3, 64, params.ternary_lanes, "base3")
    dut = WeightUnpacker(params, ADDRESS_WIDTH)
    cycles = []

    async def testbench(ctx):
        ctx.set(dut.base3, 1)
        ctx.set(dut.words.ready, 1)
        ctx.set(dut.run.payload, {"first": first, "beats": beats, "skip": skip, "words": 64})
        ctx.set(dut.run.valid, 1)
        await ctx.tick()
        ctx.set(dut.run.valid, 0)
        ctx.set(dut.sdram.valid, 1)
        taken = 0
        for cycle in range(400):
            accepted = ctx.get(dut.sdram.ready)
            await ctx.tick()
            taken += accepted
            if taken == beats:
                ctx.set(dut.sdram.valid, 0)
            if ctx.get(dut.idle):
                cycles.append(cycle)
                break

    _simulate(dut, testbench)
    assert cycles and cycles[0] <= beats + 2, (cycles, beats)


@pytest.mark.parametrize("packing", PACKINGS)
def test_a_weight_image_in_the_sdram_unpacks_to_its_own_words(packing):
    params = preset("stdlib")
    lanes = params.ternary_lanes
    rng = np.random.default_rng(7)
    trits = rng.integers(-1, 2, size=300 * lanes)
    codes = np.where(trits < 0, 3, trits).reshape(300, lanes).astype(np.int64)
    image = (codes << (2 * np.arange(lanes))).sum(axis=1).astype(np.uint32)  # P = 16: a word
    host = sdram_weight_words(image, packing)
    sdram = np.empty(2 * len(host), dtype=np.uint16)
    sdram[0::2], sdram[1::2] = host & 0xFFFF, host >> 16
    if packing == "base3":
        assert len(host) == -(-300 * lanes // 20)      # 1.6 bits a weight
    for start, words in [(0, 300), (1, 7), (123, 100), (299, 1)]:
        run = sdram_weight_run(start, words, lanes, packing)
        assert sdram_run_words(sdram, *run, words, lanes, packing) == \
            [int(value) for value in image[start:start + words]]


def test_packing_register_is_the_weights_spaces_last_word_and_packings_are_checked():
    params = preset("stdlib")
    assert packing_register_address(params) == params.weight_memory_words - 1   # P = 16
    with pytest.raises(ValueError, match="one of"):
        sdram_weight_words(to_words(np.zeros(4, np.uint32)), "ternary")
