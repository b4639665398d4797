# amaranth: UnusedElaboratable=no
"""The iCE40 port's work bank in EBR: in Amaranth's simulator against a dictionary (random writes,
then random reads on both ports with random gaps and random back-pressure), the read rates (both
ports asking: one read every two cycles each; one alone: one a cycle), a read and a write of one
address in one cycle, the host's window; and Yosys mapping it to block RAM."""

import random

import pytest
from amaranth.hdl import Fragment

from tern_fpga.contracts.params import PRESETS
from tern_fpga.hw.ice40.work_bank import READ_PORTS, UNDEFINED_COLLISION, WorkBank
from tern_fpga.hw.synthesis import cells_after

from support import simulation

pytestmark = pytest.mark.xdist_group("yosys")

PARAMS = PRESETS["micro"].replace(vector_lanes=1)
WORDS = PARAMS.vector_work_words
MASK = 2**PARAMS.vector_bits - 1


def test_init():
    assert WORDS == 2048 and PARAMS.vector_bits == 32
    for words, dut in ((WORDS, WorkBank(PARAMS)), (1664, WorkBank(PARAMS, 1664))):
        assert dut.words == words
        assert dut.a.addr.payload.shape().width == 11 and len(dut.b.data.payload) == 32
        Fragment.get(dut, None)  # elaborates
    with pytest.raises(ValueError, match="^the work bank needs at least one word, not 0$"):
        WorkBank(PARAMS, 0)


async def write(ctx, dut, model, address, value):
    """One write on the core's port, into ``model`` too."""
    ctx.set(dut.write.addr, address)
    ctx.set(dut.write.data, value)
    ctx.set(dut.write.en, 1)
    await ctx.tick()
    ctx.set(dut.write.en, 0)
    model[address] = value


async def read_both(ctx, rng, dut, wanted: dict, *, gaps: bool, ready: float,
                    limit: int) -> tuple[dict, dict]:
    """Each port's addresses ``wanted[name]`` sent on its ``addr`` stream (each held valid until
    taken; with ``gaps``, a random gap before each), its ``data`` ready with probability
    ``ready``, until every word has come or ``limit`` cycles have gone. Returns each port's
    words and the cycles (from 0) in which its addresses were taken."""
    ports = [getattr(dut, name) for name in READ_PORTS]
    sent = dict.fromkeys(READ_PORTS, 0)
    wait = {name: rng.choice((0, 0, 1, 3)) if gaps else 0 for name in READ_PORTS}
    words = {name: [] for name in READ_PORTS}
    taken = {name: [] for name in READ_PORTS}
    for cycle in range(limit):
        if all(len(words[name]) == len(wanted[name]) for name in READ_PORTS):
            break
        for name, port in zip(READ_PORTS, ports):
            asking = sent[name] < len(wanted[name]) and wait[name] == 0
            ctx.set(port.addr.valid, asking)
            if asking:
                ctx.set(port.addr.payload, wanted[name][sent[name]])
            ctx.set(port.data.ready, rng.random() < ready)
        signals = [signal for port in ports for signal in
                   (port.addr.valid, port.addr.ready, port.data.valid, port.data.ready,
                    port.data.payload)]
        _, _, *sampled = await ctx.tick().sample(*signals)
        for index, name in enumerate(READ_PORTS):
            addr_valid, addr_ready, data_valid, data_ready, payload = sampled[5 * index:][:5]
            if addr_valid and addr_ready:
                sent[name] += 1
                taken[name].append(cycle)
                wait[name] = rng.choice((0, 0, 1, 3)) if gaps else 0
            elif not addr_valid and wait[name]:
                wait[name] -= 1
            if data_valid and data_ready:
                words[name].append(payload)
    for port in ports:
        ctx.set(port.addr.valid, 0)
    return words, taken


def test_random_writes_then_reads_under_stalls():
    rng = random.Random(18)
    model = {}
    addresses = rng.sample(range(WORDS), 300) + [0, WORDS - 1]

    async def testbench(ctx, dut):
        for address in addresses + rng.sample(addresses, 60):  # some written twice
            await write(ctx, dut, model, address, rng.getrandbits(32))
            for _ in range(rng.choice((0, 0, 1, 2))):  # a random gap
                await ctx.tick()
        for gaps, ready in ((True, 0.6), (False, 0.3), (True, 1.0)):
            wanted = {name: rng.choices(addresses, k=150) for name in READ_PORTS}
            words, _ = await read_both(ctx, rng, dut, wanted, gaps=gaps, ready=ready,
                                       limit=2000)
            for name in READ_PORTS:  # each in order, none lost, none repeated
                assert words[name] == [model[address] for address in wanted[name]], name

    simulation.simulate(WorkBank(PARAMS), testbench)
    assert len(model) == len(addresses)


@pytest.mark.parametrize("names", [READ_PORTS, ("a",), ("b",)])
def test_read_rates(names):
    """Every asking port's ``addr`` valid and ``data`` ready every cycle: both ports get one
    read every two cycles each, alternating (a first); one port alone gets one a cycle; each
    word comes the cycle after its address is taken."""
    rng = random.Random(5)
    reads = 64
    model = {address: rng.getrandbits(32) for address in range(100)}

    async def testbench(ctx, dut):
        for address, value in model.items():
            await write(ctx, dut, {}, address, value)
        wanted = {name: rng.choices(range(100), k=reads if name in names else 0)
                  for name in READ_PORTS}
        words, taken = await read_both(ctx, rng, dut, wanted, gaps=False, ready=1.0,
                                       limit=3 * reads)
        cycles = {name: taken[name][-1] - taken[name][0] + 1 for name in names}
        for name in names:
            assert words[name] == [model[address] for address in wanted[name]]
            assert cycles[name] == (2 * reads - 1 if len(names) == 2 else reads), cycles
        if len(names) == 2:
            assert taken["a"] == list(range(0, 2 * reads, 2))
            assert taken["b"] == list(range(1, 2 * reads, 2))

    simulation.simulate(WorkBank(PARAMS), testbench)


def test_latency_and_hold():
    """A word is offered the cycle after its address is taken and held (from ``held``) while
    not taken, over the other port's reads; its port takes no address until then."""

    async def testbench(ctx, dut):
        model = {}
        for address, value in ((3, 0x1111_1111), (4, 0x2222_2222), (5, 0x3333_3333)):
            await write(ctx, dut, model, address, value)
        ctx.set(dut.a.addr.payload, 3)
        ctx.set(dut.a.addr.valid, 1)
        assert ctx.get(dut.a.addr.ready) and not ctx.get(dut.a.data.valid)
        await ctx.tick()
        ctx.set(dut.a.addr.payload, 5)    # a's next address, while its word waits
        ctx.set(dut.b.addr.payload, 4)
        ctx.set(dut.b.addr.valid, 1)
        ctx.set(dut.b.data.ready, 1)
        for _ in range(3):   # b reads 4 each cycle; a's word 3 is held, a's 5 waits
            assert ctx.get(dut.a.data.valid) and ctx.get(dut.a.data.payload) == 0x1111_1111
            assert not ctx.get(dut.a.addr.ready) and ctx.get(dut.b.addr.ready)
            await ctx.tick()
            assert ctx.get(dut.b.data.valid) and ctx.get(dut.b.data.payload) == 0x2222_2222
        ctx.set(dut.b.addr.valid, 0)
        ctx.set(dut.a.data.ready, 1)       # word 3 taken, 5 asked in the same cycle
        assert ctx.get(dut.a.addr.ready)
        await ctx.tick()
        ctx.set(dut.a.addr.valid, 0)
        assert ctx.get(dut.a.data.valid) and ctx.get(dut.a.data.payload) == 0x3333_3333
        await ctx.tick()
        assert not ctx.get(dut.a.data.valid) and not ctx.get(dut.b.data.valid)

    simulation.simulate(WorkBank(PARAMS), testbench)


def test_read_and_write_of_one_address():
    """In one cycle: the read gets the old word (in Amaranth; undefined in the EBR, see
    UNDEFINED_COLLISION); a read in the next cycle gets the new one."""

    async def testbench(ctx, dut):
        await write(ctx, dut, {}, 9, 0xAAAA_AAAA)
        ctx.set(dut.a.data.ready, 1)
        ctx.set(dut.a.addr.payload, 9)
        ctx.set(dut.a.addr.valid, 1)
        ctx.set(dut.write.addr, 9)
        ctx.set(dut.write.data, 0x5555_5555)
        ctx.set(dut.write.en, 1)
        await ctx.tick()
        ctx.set(dut.write.en, 0)
        assert ctx.get(dut.a.data.payload) == 0xAAAA_AAAA
        await ctx.tick()
        assert ctx.get(dut.a.data.valid) and ctx.get(dut.a.data.payload) == 0x5555_5555

    simulation.simulate(WorkBank(PARAMS), testbench)


def test_host_window():
    """The host's writes (over the core's, in one cycle) and reads (the word the cycle after
    ``read_en``, held; a port asking meanwhile waits, then gets its word)."""
    rng = random.Random(7)

    async def testbench(ctx, dut):
        model = {}
        for address in rng.sample(range(1, WORDS), 40):
            model[address] = rng.getrandbits(32)
            ctx.set(dut.host.addr, address)
            ctx.set(dut.host.write_data, model[address])
            ctx.set(dut.host.write_en, 1)
            ctx.set(dut.write.addr, rng.choice((0, address)))   # the core's write loses
            ctx.set(dut.write.data, ~model[address] & MASK)
            ctx.set(dut.write.en, 1)
            await ctx.tick()
        ctx.set(dut.host.write_en, 0)
        ctx.set(dut.write.en, 0)
        model[0] = 0   # never written: the memory's initial zero
        first, *others = list(model)
        ctx.set(dut.a.addr.payload, first)
        ctx.set(dut.a.addr.valid, 1)
        ctx.set(dut.a.data.ready, 1)
        ctx.set(dut.host.read_en, 1)
        for address in others:
            ctx.set(dut.host.addr, address)
            assert not ctx.get(dut.a.addr.ready)
            await ctx.tick()
            assert ctx.get(dut.host.read_data) == model[address]
            assert not ctx.get(dut.a.data.valid)
        ctx.set(dut.host.read_en, 0)
        for _ in range(2):
            await ctx.tick()   # a's read, then more of them; the host's word is overwritten
            assert ctx.get(dut.a.data.valid) and ctx.get(dut.a.data.payload) == model[first]

    simulation.simulate(WorkBank(PARAMS), testbench)


def flip_flops(cells: dict) -> int:
    return sum(count for cell, count in cells.items() if cell.startswith("SB_DFF"))


def test_yosys_maps_it_to_block_ram():
    """micro (2,048 x 32 bits = 64 Kbit): 16 SB_RAM40_4K of 4 Kbit (2,048 x 2 bits each), of
    the plan's 26 for all the EBR; Yosys 0.70, measured: 154 SB_LUT4 and 69 flip-flops after
    UNDEFINED_COLLISION, 50 SB_LUT4 and 77 flip-flops more without it (the old word on a
    collision, kept by delaying the writes)."""
    assert WORDS * PARAMS.vector_bits == 16 * 4096
    cells = cells_after(WorkBank(PARAMS), f"{UNDEFINED_COLLISION}; synth_ice40 -top top")
    assert cells["SB_RAM40_4K"] == 16, cells
    assert cells["SB_LUT4"] <= 170 and flip_flops(cells) <= 69, cells
    assert not [cell for cell in cells if cell.startswith("$")], cells
    kept = cells_after(WorkBank(PARAMS), "synth_ice40 -top top")
    assert kept["SB_RAM40_4K"] == 16, kept
    assert flip_flops(kept) - flip_flops(cells) >= 70, (kept, cells)
