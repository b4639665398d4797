"""The iCE40 port's unified SPRAM memory: its address map for micro, the shared port in
Amaranth's simulator against a dictionary (the host's random writes, then each reader's random
reads with random gaps, and what a conflict does), and Yosys mapping it to four SPRAMs."""

import itertools
import random

import pytest

from tern_fpga.contracts.params import PRESETS
from tern_fpga.hw.ice40.unified_memory import (
    DELETE_ZERO_INIT,
    SPRAM_WORDS,
    Region,
    UnifiedMemory,
    memory_map,
)
from tern_fpga.hw.synthesis import cells_after

from support import simulation

pytestmark = pytest.mark.xdist_group("yosys")

PARAMS = PRESETS["micro"]
READERS = ("weights", "embeddings", "constants")
DEMO_TOO_BIG = ("preset 'demo' needs 33,792 (weights) + 8,192 (embeddings) + 3,584 (constants) "
                "= 45,568 words of 64 bits, more than the 16,384 of the four SPRAMs; make "
                "weight_memory_words, embedding_memory_words or the constants bank "
                "(vector_memory_words - vector_work_words) smaller")


def test_memory_map_micro():
    regions = memory_map(PARAMS)
    assert regions == {"weights": Region(0, 9216), "embeddings": Region(9216, 4096),
                       "constants": Region(13312, 1792)}
    ordered = list(regions.values())
    assert all(first.stop <= second.start for first, second in itertools.pairwise(ordered))
    assert ordered[-1].stop == 15104 <= SPRAM_WORDS


def test_memory_map_wrong_preset():
    with pytest.raises(ValueError) as error:
        memory_map(PRESETS["demo"])
    assert str(error.value) == DEMO_TOO_BIG
    with pytest.raises(ValueError, match="^preset 'demo' needs"):
        UnifiedMemory(PRESETS["demo"])


def simulate(testbench):
    dut = UnifiedMemory(PARAMS)
    assert dut.regions == memory_map(PARAMS)
    simulation.simulate(dut, testbench)


async def host_write(ctx, dut, model, address, value):
    """One 32-bit write at ``address`` (32-bit words), into ``model`` too."""
    ctx.set(dut.host.payload, {"address": address, "data": value})
    ctx.set(dut.host.valid, 1)
    assert ctx.get(dut.host.ready) and not ctx.get(dut.conflict)
    await ctx.tick()
    ctx.set(dut.host.valid, 0)
    shift = 32 * (address & 1)
    word = model.get(address >> 1, 0) & ~(0xFFFF_FFFF << shift)
    model[address >> 1] = word | value << shift


async def read(ctx, dut, port, address):
    """``port``'s word at ``address`` (of its region): ``data`` the cycle after ``en``; no
    other client asks."""
    ctx.set(port.addr, address)
    ctx.set(port.en, 1)
    assert not ctx.get(dut.conflict)
    await ctx.tick()
    ctx.set(port.en, 0)
    return ctx.get(port.data)


def test_host_writes_then_each_reader_reads():
    rng = random.Random(18)
    regions = memory_map(PARAMS)
    written = {name: rng.sample(range(region.words), 40) + [0, region.words - 1]
               for name, region in regions.items()}
    model = {}

    async def testbench(ctx, dut):
        halves = [2 * (regions[name].start + word) + half
                  for name, words in written.items() for word in words for half in (0, 1)]
        for address in rng.sample(halves, len(halves)) + rng.sample(halves, 50):  # some twice
            await host_write(ctx, dut, model, address, rng.getrandbits(32))
            for _ in range(rng.choice((0, 0, 1, 2))):  # a random gap
                await ctx.tick()
        for name in rng.sample(READERS, len(READERS)):
            port = getattr(dut, name)
            for word in rng.choices(written[name], k=60):
                expected = model[regions[name].start + word]
                assert await read(ctx, dut, port, word) == expected
                for _ in range(rng.randrange(4)):  # a gap: the word is held
                    await ctx.tick()
                    assert ctx.get(port.data) == expected

    simulate(testbench)
    assert len(model) == sum(len(set(words)) for words in written.values())


def test_conflicts_are_flagged_and_the_first_client_wins():
    """Host write over a read, and two readers at once: ``conflict`` is high, the higher client
    is served (the write lands; the weights read is done), the lower one is dropped (``data``
    keeps the last word read)."""
    model = {}
    embeddings = memory_map(PARAMS)["embeddings"].start

    async def testbench(ctx, dut):
        await host_write(ctx, dut, model, 2 * 5, 0x1111_1111)
        await host_write(ctx, dut, model, 2 * (embeddings + 7), 0x2222_2222)
        assert await read(ctx, dut, dut.weights, 5) == 0x1111_1111
        # A write at weights word 9 while the constants reader asks for its word 3.
        ctx.set(dut.constants.addr, 3)
        ctx.set(dut.constants.en, 1)
        ctx.set(dut.host.payload, {"address": 2 * 9 + 1, "data": 0x3333_3333})
        ctx.set(dut.host.valid, 1)
        assert ctx.get(dut.conflict)
        await ctx.tick()
        ctx.set(dut.host.valid, 0)
        ctx.set(dut.constants.en, 0)
        assert ctx.get(dut.constants.data) == 0x1111_1111  # dropped: the last word read
        assert await read(ctx, dut, dut.weights, 9) == 0x3333_3333 << 32  # the write was made
        # Two readers at once: weights before embeddings.
        ctx.set(dut.embeddings.addr, 7)
        ctx.set(dut.embeddings.en, 1)
        ctx.set(dut.weights.addr, 5)
        ctx.set(dut.weights.en, 1)
        assert ctx.get(dut.conflict)
        await ctx.tick()
        assert ctx.get(dut.embeddings.data) == 0x1111_1111
        ctx.set(dut.weights.en, 0)
        assert not ctx.get(dut.conflict)
        await ctx.tick()
        assert ctx.get(dut.embeddings.data) == 0x2222_2222

    simulate(testbench)


def test_yosys_maps_it_to_four_sprams():
    """Four SPRAMs, no block RAM, no flip-flops (the component has no register of its own, so a
    memory left to flip-flops would show): the rest is the mux, 60 LUT4. With Yosys 0.70 either
    ``ram_style = "huge"`` or ``-spram`` alone gives the four SPRAMs, neither gives 256
    SB_RAM40_4K; a read enabled during writes or a zero init left in gives no mapping at all."""
    cells = cells_after(UnifiedMemory(PARAMS), f"{DELETE_ZERO_INIT}; synth_ice40 -spram -top top")
    assert cells["SB_SPRAM256KA"] == 4
    assert "SB_RAM40_4K" not in cells
    assert not [cell for cell in cells if cell.startswith(("SB_DFF", "$"))], cells
    assert cells["SB_LUT4"] <= 80, cells
