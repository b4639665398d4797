"""Benchmark of the weights streamed from SDRAM: the stdlib model (20.6 M ternary weights) on the
virtual board of the ``stdlib`` preset, LiteDRAM's controller and memory model in Verilator
(``make bench`` provider; sim/rtl/sdram_board.py, docs/sdram.md).

The SDRAM moves at most one 16-bit word a cycle, so a token needs at least ``2P / 16`` cycles a
weight word: the bandwidth bound. The whole token's cycles (the chip's own counter) include the
norm, quantiser and element-wise work between the matrix instructions, during which the SDRAM
idles; so weight words streamed per cycle over the whole token are a lower bound of the stream's
efficiency during the matrix instructions.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from tern_fpga.contracts import paths
from tern_fpga.contracts.export_format import read_export
from tern_fpga.contracts.params import preset
from tern_fpga.explore.bench import Skipped
from tern_fpga.explore.report import Figure
from tern_fpga.host import session
from tern_fpga.hw.sdram.weight_memory import sdram_layout
from tern_fpga.sim.golden.model import golden_from_export

__all__ = ["PROMPT", "run"]

PROMPT = list(b"import ")


def run(quick: bool = False) -> list:
    from tern_fpga.quant.export import export_checkpoint  # here, not at the top: loads torch

    folder = paths.CHECKPOINTS / "stdlib" if paths.CHECKPOINTS else None
    if folder is None or not (folder / "config.json").exists():
        raise Skipped("no checkpoints/stdlib in this checkout")
    params = preset("stdlib")
    count = 2 if quick else 16
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "stdlib.tern"
        export_checkpoint(folder, params, path)
        export = read_export(path)
        expected = golden_from_export(export).generate(PROMPT, count)
        with session.connect("sim", params, export=export) as (board, virtual):
            if session.reuse_if_loaded(board, export) is None:
                session.load(board, export, progress=False)
            report = session.generate_text(board, export, PROMPT, count, show=False)
    if report.generated != expected:
        raise AssertionError(f"the SDRAM virtual board generated {report.generated}, the golden "
                             f"model {expected}")
    if virtual.messages:
        raise AssertionError(f"LiteDRAM's timing checker: {virtual.messages[:3]}")
    beats, _ = sdram_layout(params)
    words = export.sections["weights"].size * 8 // params.weight_word_bits
    bound = words * beats
    cycles = report.cycles_per_token
    clock = params.clock_hz
    source = "tern_fpga.explore.bench_sdram"
    note = (f"stdlib model on the stdlib preset's virtual board (weights in LiteDRAM's SDRAM "
            f"model, P={params.ternary_lanes}, {clock / 1e6:.0f} MHz), {report.steps} steps of "
            f"which {count} generated, every token equal to the golden model's")
    return [
        Figure("core.stdlib.cycles_per_token", round(cycles), "cycles", "simulated", source,
               note),
        Figure("core.stdlib.sdram_bound_cycles_per_token", bound, "cycles", "simulated", source,
               f"{words:,} weight words x {beats} SDRAM words, one SDRAM word a cycle"),
        Figure("core.stdlib.fraction_of_sdram_bound", round(bound / cycles, 3), "", "simulated",
               source, "tokens/s over the bandwidth-bound tokens/s; goal: at least 0.85"),
        Figure("core.stdlib.sdram_stream_efficiency", round(bound / cycles, 3), "",
               "simulated", source,
               "SDRAM words streamed per cycle over the whole token, a lower bound of the "
               "rate during matrix instructions (goal: at least 0.90 of the peak)"),
        Figure("core.stdlib.tokens_per_s", round(clock / cycles, 2), "tokens/s", "projected",
               source, f"at the preset's {clock / 1e6:.0f} MHz (no bitstream yet: it does not "
                       f"fit the ECP5-85F's block RAM, docs/sdram.md)"),
        Figure("core.stdlib.weight_bandwidth", round(clock * words * beats * 2 / cycles),
               "B/s", "projected", source, "2-bit weights streamed from the SDRAM at that rate"),
        Figure("core.stdlib.simulation_cycles_per_s",
               round(virtual.stats.get("cycles_per_second", 0)), "cycles/s", "measured", source,
               "Verilator's speed on the virtual board (this machine)"),
    ]
