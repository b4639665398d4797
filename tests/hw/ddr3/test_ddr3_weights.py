"""DDR3Weights (hw/ddr3/weight_memory.py) on DDR3Controller's sim core in Verilator (cocotb):
random host words written and read back, prefetch runs streamed back equal and in order, and a
long run's rate against the native port's peak of one 128-bit word a cycle.

The rate is *simulated on LiteDRAM's memory model*: a 1:4 PHY (DDR3 clock 4 x 75 MHz) with a
read latency of 8 cycles, not the ECP5DDRPHY's 1:2 (150 MHz) and 13 (docs/ddr3.md). On the
board the round trip is longer (the FIFO covers it) and a BL8 burst takes 4 DRAM clocks, two
sys cycles (its tCCD is 2): the board's peak is half the model's, one 128-bit word every
other cycle. Both cores take tRFC as 260 ns (hw/ddr3/config.py): 21 cycles here, 20 on the
board, so a refresh costs about the same share of the time on both.

The cocotb test (:func:`weights_through_ddr3`) lives in this file too; the simulator imports
the file as the cocotb test module (``pytest`` collects only the ``test_*`` functions).
"""

import functools
import itertools
import random
import shutil
from pathlib import Path

import cocotb
import pytest
from amaranth.hdl import Shape
from cocotb.triggers import FallingEdge, with_timeout

from tern_fpga.contracts.params import preset
from tern_fpga.hw.core_interface import address_bits
from tern_fpga.hw.ddr3.litedram_ddr3 import generate_ddr3_core
from tern_fpga.hw.weight_memory import prefetch_layout, weight_word_bits
from tern_fpga.sim.rtl.cocotb_support import (
    StreamDriver,
    StreamSink,
    announce_prefetches,
    await_memory_ready,
    current_cycle,
    start_clock_and_reset,
    test_config,
)

pytestmark = pytest.mark.xdist_group("ddr3")

HERE = Path(__file__).parent
# P = 64: a weight word is one DRAM word, so the port's peak is one weight word a cycle; the
# demo preset's P = 128 gathers two DRAM words a weight word (a smaller image and long run).
PARAMS = preset("demo").replace(name="ddr3-p64", ternary_lanes=64, weight_memory_words=1 << 16)
SIZES = {64: (2304, 2048), 128: (640, 512)}   # P: (weight words written, long run's words)
LONG_RUN = SIZES[64][1]
# DRAM words a row: 1,024 columns of the MT41K256M16 over BL8. LiteDRAM maps addresses
# ROW_BANK_COL, so a run moves to the next bank every ROW_WORDS words.
ROW_WORDS = 1024 // 8
RUNS = 8                # random runs back to back, per consumer
STALLING = 0.6          # chance that the stalling consumer takes an available word
# LiteDRAM's checker flags reads (writes) one cycle apart at 75 MHz by rounding
# (tests/hw/ddr3/test_ddr3_core.py): those two rules only are ignored.
ROUNDING = ("RD->RD violation", "WR->WR violation")


@functools.cache
def _log(params=PARAMS) -> str:
    from tern_fpga.hw.ddr3.controller import DDR3Controller  # here: loads the RTL
    from tern_fpga.hw.ddr3.weight_memory import DDR3Weights  # here: loads the RTL
    from tern_fpga.sim.rtl.cocotb_support import build_component  # here: builds

    image_words, long_run = SIZES[params.ternary_lanes]
    generated = generate_ddr3_core(variant="sim")
    dut = DDR3Weights(params, DDR3Controller(generated))
    build = build_component(dut, "ddr3_weights_top",
                            f"{generated.directory.name}-{params.hash:016x}", optimize="-O1",
                            verilator_args=("--timescale", "1ns/1ps", str(generated.verilog)))
    results = build.run("test_ddr3_weights", {
        "seed": 17, "lanes": weight_word_bits(params) // 32, "image_words": image_words,
        "long_run": long_run, "runs": RUNS, "stalling": STALLING, "row_words": ROW_WORDS,
        "t_rfc": generated.timings["tRFC"],
        "address_bits": address_bits(params),
        "prefetch_word_bits": Shape.cast(prefetch_layout(params)["start"].shape).width,
    }, module_dir=HERE)
    return results.with_suffix(".log").read_text(errors="replace")


def _fields(log: str, tag: str) -> dict:
    line = next((line for line in log.splitlines() if tag in line), None)
    assert line, f"no {tag} line: the cocotb test did not finish:\n" + log[-3000:]
    return {key: int(value) for key, value in
            (item.split("=") for item in line.split() if "=" in item)}


needs_verilator = pytest.mark.skipif(shutil.which("verilator") is None,
                                     reason="needs verilator (make setup)")


@needs_verilator
@pytest.mark.parametrize("params", [PARAMS, preset("demo")], ids=["P64", "P128"])
def test_host_words_and_prefetch_runs_come_back_equal_and_in_order(params):
    """The cocotb test passed (its asserts compare every word), LiteDRAM's DFI timing checker
    saw nothing but its rounding at 75 MHz, and the long run lost no cycle to the backend
    (at P = 128 too, where two DRAM words make a weight word)."""
    log = _log(params)
    violations = [line for line in log.splitlines()
                  if "violation" in line and not any(rule in line for rule in ROUNDING)]
    assert not violations, "\n".join(violations[:20])
    fields = _fields(log, "tern-ddr3-runs")
    assert fields["words"] > 2 * RUNS, fields
    assert _fields(log, "tern-ddr3-bandwidth")["other_gaps"] == 0
    host = _fields(log, "tern-ddr3-host")
    print(f"host: {host['writes']} writes in {host['cycles']} cycles")


@needs_verilator
def test_a_long_run_streams_near_one_word_a_cycle():
    """From the first word to the last of a 2,048-word run, the consumer taking every word
    the cycle it is available: the fraction of cycles that deliver one (*simulated*, on the
    sim model). Every cycle without a word is LiteDRAM's: a refresh (tRFC plus the precharge
    and activate around it) or a new row (the crossbar holds a port's command for another bank
    until its commands to this one are out; then precharge and activate). Nothing else stalls.

    Measured (seed 17, tRFC 21 cycles = 260 ns): 2,048 words in 2,280 cycles, 0.898 of peak;
    4 refreshes of 30 cycles (120, 5.3 % of the run: tRFC 21 plus 9 for the precharge before
    and the activate after), 16 new rows of 7 (112, 4.9 %). The steady state is about
    (1 - 30/586) x 128/135 = 0.90; a run that meets 5 refreshes and 17 new rows gives about
    0.88, hence the bound 0.87. (With LiteDRAM's tRFC of 52 cycles it was 0.853.)
    """
    fields = _fields(_log(PARAMS), "tern-ddr3-bandwidth")  # the P64 case's run, cached
    words, cycles = fields["words"], fields["cycles"]
    rate = words / cycles
    print(f"{words} words in {cycles} cycles from the first to the last: {rate:.3f} of peak; "
          f"first word {fields['latency']} cycles after the prefetch; {fields['refreshes']} "
          f"refreshes ({fields['refresh_cycles']} cycles), {fields['row_gaps']} new rows "
          f"({fields['row_cycles']} cycles), {fields['other_gaps']} other gaps")
    timings = generate_ddr3_core(variant="sim").timings
    assert words == LONG_RUN
    assert fields["other_gaps"] == 0, fields
    # Every cycle without a word is in a refresh's gap or a new row's (one word a cycle at P = 64).
    assert fields["refresh_cycles"] + fields["row_cycles"] == cycles - words, fields
    # A refresh: tRFC (at least: a shorter gap is not counted as one) and the precharge and
    # activate around it (9 cycles measured), a new row's 7 at times too.
    assert fields["longest_refresh"] <= timings["tRFC"] + 20, fields
    assert fields["longest_row"] <= 10, fields
    # One refresh each tREFI (586 cycles), LiteDRAM's postponing of one: a run of 2,280 cycles
    # meets 3 to 5.
    assert cycles // timings["tREFI"] <= fields["refreshes"] <= -(-cycles // timings["tREFI"]) + 1, \
        fields
    assert rate >= 0.87, fields


def test_a_preset_that_does_not_fit_the_port_or_the_dram_is_refused():
    from tern_fpga.hw.ddr3.controller import DDR3Controller  # here: loads the RTL
    from tern_fpga.hw.ddr3.weight_memory import DDR3Weights  # here: loads the RTL

    generated = generate_ddr3_core(variant="sim")
    for params, message in ((preset("micro"), "ternary_lanes 32.*multiple of 64"),
                            (preset("large"), "the DRAM holds 536,870,912")):
        controller = DDR3Controller(generated)
        with pytest.raises(ValueError, match=message):
            DDR3Weights(params, controller)
        # refused above, never elaborated
        controller._MustUse__silence = controller.sequencer._MustUse__silence = True
    with pytest.raises(ValueError, match="variant='sim'"):
        DDR3Controller(generate_ddr3_core(variant="hw"))


# The cocotb test (runs in the simulator) ----------------------------------------------------


async def _stream(dut, config, runs, probability, rng):
    """Announce ``runs`` back to back on ``prefetch`` (each as soon as it is taken) and take
    their words, ``matrix_en`` with chance ``probability`` while ``matrix_available``: the
    words and the cycle each was taken in."""
    total = sum(count for _, count in runs)
    cocotb.start_soon(announce_prefetches(dut, runs, config["prefetch_word_bits"]))
    received, cycles, taken_before = [], [], False
    for _ in range(40 * total + 1000):
        await FallingEdge(dut.clk)
        if taken_before:
            received.append(int(dut.matrix_data.value))
        if len(received) == total:
            break
        taken_before = bool(int(dut.matrix_available.value)) and rng.random() < probability
        dut.matrix_en.value = int(taken_before)
        if taken_before:
            cycles.append(current_cycle())
    dut.matrix_en.value = 0
    assert len(received) == total, f"only {len(received)} of {total} words came"
    return received, cycles


@cocotb.test()
async def weights_through_ddr3(dut):
    config = test_config()
    rng = random.Random(config["seed"])
    lanes, image_words = config["lanes"], config["image_words"]
    await start_clock_and_reset(dut)
    assert int(dut.status.value) == 1, "status must say 'not initialised' before init_done"
    await await_memory_ready(dut, 200, "status stayed 1: the controller's init_done did not rise")

    # The host writes every 32-bit word once, in random order (four byte-enabled writes build
    # each DRAM word), then reads some back with random stalls on both sides.
    address_bits = config["address_bits"]
    image = [rng.getrandbits(32) for _ in range(image_words * lanes)]
    order = rng.sample(range(len(image)), len(image))
    host = StreamDriver(dut, "host", seed=rng.getrandbits(32))
    start = current_cycle()
    await with_timeout(host.send([address | image[address] << address_bits
                                  | 1 << (address_bits + 32) for address in order]), 10, "ms")
    dut._log.info("tern-ddr3-host writes=%d cycles=%d", len(image), current_cycle() - start)
    host.probability = 0.6
    responses = StreamSink(dut, "host_response", probability=0.6, seed=rng.getrandbits(32))

    async def read(address):
        await with_timeout(host.send([address]), 10, "us")
        (answer,) = await with_timeout(responses.receive(1), 10, "us")
        assert answer == image[address], (address, hex(image[address]), hex(answer))

    for address in rng.sample(range(len(image)), 64):
        await read(address)
    for address in rng.sample(range(len(image)), 16):   # a new word, read right after
        image[address] = rng.getrandbits(32)
        await with_timeout(host.send([address | image[address] << address_bits
                                      | 1 << (address_bits + 32)]), 10, "us")
        await read(address)

    words = [sum(image[w * lanes + j] << 32 * j for j in range(lanes))
             for w in range(image_words)]

    def check(runs, received, case):
        expected = [word for start, count in runs for word in words[start:start + count]]
        for index, (got, want) in enumerate(zip(received, expected, strict=True)):
            assert got == want, f"{case}: weight word {index} of {runs}: {got:#x} != {want:#x}"

    # Random runs back to back: a consumer that takes every word, then one that stalls.
    total = 0
    for case, probability in (("eager", 1.0), ("stalling", config["stalling"])):
        runs = []
        for _ in range(config["runs"]):
            count = rng.randrange(1, 200)
            runs.append((rng.randrange(image_words - count), count))
        received, _ = await _stream(dut, config, runs, probability, rng)
        check(runs, received, case)
        total += len(received)
    dut._log.info("tern-ddr3-runs words=%d", total)

    # The long run: its rate from the first word taken to the last.
    runs = [(rng.randrange(image_words - config["long_run"]), config["long_run"])]
    announced = current_cycle()
    received, cycles = await _stream(dut, config, runs, 1.0, rng)
    check(runs, received, "long")
    # Cycles without a word: gaps of at least tRFC (a refresh), shorter gaps where the run
    # enters a new row (and bank), and any other (weight words of B DRAM words).
    (first, _), beats, t_rfc = runs[0], lanes // 4, config["t_rfc"]
    gaps = [(b - a - beats, (first + index + 1) * beats)
            for index, (a, b) in enumerate(itertools.pairwise(cycles)) if b - a > beats]
    refreshes = [gap for gap, _ in gaps if gap >= t_rfc]
    rows = [gap for gap, address in gaps
            if gap < t_rfc and address % config["row_words"] == 0]
    dut._log.info("tern-ddr3-bandwidth words=%d cycles=%d latency=%d refreshes=%d "
                  "refresh_cycles=%d longest_refresh=%d row_gaps=%d row_cycles=%d longest_row=%d "
                  "other_gaps=%d", len(cycles), cycles[-1] - cycles[0] + 1,
                  cycles[0] - announced, len(refreshes), sum(refreshes), max(refreshes, default=0),
                  len(rows), sum(rows), max(rows, default=0),
                  len(gaps) - len(refreshes) - len(rows))
