"""SDRAMWeights (hw/sdram/weight_memory.py) on Verilator against LiteDRAM's memory model:
host words in and out, a TMV's run of weight words read ahead and streamed back equal, and the
cycles it took against the SDRAM's one 16-bit word a cycle (docs/sdram.md)."""

import shutil
import sys
from pathlib import Path

import pytest
from amaranth.hdl import Shape

from tern_fpga.contracts.params import preset
from tern_fpga.hw.core_interface import address_bits
from tern_fpga.hw.sdram.litedram_core import generate_core
from tern_fpga.hw.weight_memory import prefetch_layout, weight_word_bits

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
PARAMS = preset("micro")
# TMVs back to back (start, words): base-3 runs that start at trits 4, 4, 0, 2 and 8 of an SDRAM
# word (P = 32), the second and later re-reading words of the first.
RUNS = [(37, 64), (47, 32), (40, 7), (41, 3), (44, 20)]


def _build_and_run(packing):
    from tern_fpga.hw.sdram.controller import SDRAMController
    from tern_fpga.hw.sdram.weight_memory import SDRAMWeights
    from tern_fpga.sim.rtl.cocotb_support import build_component

    generated = generate_core(variant="sim")
    dut = SDRAMWeights(PARAMS, SDRAMController(generated))
    build = build_component(dut, "sdram_weights_top", f"{generated.directory.name}-"
                            f"{PARAMS.hash:016x}", optimize="-O1",
                            verilator_args=("--timescale", "1ns/1ps", str(generated.verilog)))
    lanes = weight_word_bits(PARAMS) // 32
    words = sum(count for _, count in RUNS)
    results = build.run("weight_checks", {
        "seed": 5, "ternary_lanes": PARAMS.ternary_lanes, "packing": packing,
        "runs": RUNS, "image_words": max(start + count for start, count in RUNS) * lanes,
        "packing_address": dut.packing_address, "address_bits": address_bits(PARAMS),
        "prefetch_word_bits": Shape.cast(prefetch_layout(PARAMS)["start"].shape).width,
        "init_timeout": 20_000, "matrix_timeout": 40 * words * dut.beats,
    }, module_dir=HERE)
    return results.with_suffix(".log").read_text(errors="replace")


@pytest.mark.skipif(shutil.which("verilator") is None, reason="needs verilator (make setup)")
@pytest.mark.parametrize("packing", ["2bit", "base3"])
def test_weights_stream_from_sdram_equal_and_near_the_memorys_rate(packing):
    log = _build_and_run(packing)
    assert "violation" not in log, "LiteDRAM's timing checker complained"
    line = next((line for line in log.splitlines() if "tern-matrix" in line), None)
    assert line, "the cocotb test did not finish:\n" + log[-3000:]
    fields = dict(item.split("=") for item in line.split() if "=" in item)
    cycles, beats, words = int(fields["cycles"]), int(fields["beats"]), int(fields["words"])
    efficiency = beats / cycles
    print(f"{packing}: {words} weight words, {beats} SDRAM words in {cycles} cycles: "
          f"{efficiency:.3f} SDRAM words a cycle (latency and five run starts included)")
    assert efficiency >= 0.8, line
    if packing == "base3":    # 10 trits an SDRAM word instead of 8
        assert beats <= -(-words * PARAMS.ternary_lanes // 10) + len(RUNS), line


def test_a_model_larger_than_the_sdram_is_refused_with_the_sizes():
    from tern_fpga.hw.sdram.controller import SDRAMController
    from tern_fpga.hw.sdram.weight_memory import SDRAMWeights

    huge = PARAMS.replace(weight_memory_words=1 << 26)
    with pytest.raises(ValueError, match="the SDRAM holds 33,554,432"):
        SDRAMWeights(huge, SDRAMController(generate_core(variant="sim")))
