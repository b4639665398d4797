"""Benchmark of the weights streamed from SDRAM: the stdlib model (20.6 M ternary weights) on the
virtual board of the ``stdlib`` preset, LiteDRAM's controller and memory model in Verilator
(``make bench`` provider; sim/rtl/sdram_board.py, docs/sdram.md).

The SDRAM moves at most one 16-bit word a cycle, 8 weights in 2-bit or 10 in base-3
(contracts/sdram_image.py), so a token needs at least its weights / 10 cycles in base-3 (the
default for this preset): the bandwidth bound. The same model in 2-bit is run too, for the
speed-up that base-3 brings. The whole token's cycles (the chip's own counter) include the
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
from tern_fpga.contracts.sdram_image import (
    TRITS_PER_SDRAM_WORD,
    preferred_packing,
    sdram_weight_run,
)
from tern_fpga.explore.bench import Skipped
from tern_fpga.explore.report import Figure
from tern_fpga.host import session
from tern_fpga.sim.golden.model import golden_from_export

__all__ = ["PROMPT", "run"]

PROMPT = list(b"import ")


def _generate(folder, params, packing: str, count: int):
    """The stdlib model exported in ``packing``, ``count`` tokens on the virtual board, checked
    against the golden model; returns ``(export, report, virtual)``."""
    from tern_fpga.quant.export import export_checkpoint  # here, not at the top: loads torch

    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "stdlib.tern"
        export_checkpoint(folder, params, path, packing=packing)
        export = read_export(path)
        expected = golden_from_export(export).generate(PROMPT, count)
        with session.connect("sim", params, export=export) as (board, virtual):
            if session.reuse_if_loaded(board, export) is None:
                session.load(board, export, progress=False)
            report = session.generate_text(board, export, PROMPT, count, show=False)
    if report.generated != expected:
        raise AssertionError(f"the SDRAM virtual board ({packing}) generated "
                             f"{report.generated}, the golden model {expected}")
    if virtual.messages:
        raise AssertionError(f"LiteDRAM's timing checker: {virtual.messages[:3]}")
    return export, report, virtual


def _bound(export, packing: str) -> int:
    """SDRAM words a token must read: every weight word's, 8 or 10 trits an SDRAM word (the run
    planner's count for the whole image)."""
    lanes = export.params.ternary_lanes
    words = export.sections["weights"].size * 4 // lanes
    return sdram_weight_run(0, words, lanes, packing)[1]


def run(quick: bool = False) -> list:
    folder = paths.CHECKPOINTS / "stdlib" if paths.CHECKPOINTS else None
    if folder is None or not (folder / "config.json").exists():
        raise Skipped("no checkpoints/stdlib in this checkout")
    params = preset("stdlib")
    count = 2 if quick else 16
    packing = preferred_packing(params)
    export, report, virtual = _generate(folder, params, packing, count)
    bound = _bound(export, packing)
    cycles = report.cycles_per_token
    clock = params.clock_hz
    source = "tern_fpga.explore.bench_sdram"
    note = (f"stdlib model on the stdlib preset's virtual board (weights in LiteDRAM's SDRAM "
            f"model in {packing}, P={params.ternary_lanes}, {clock / 1e6:.0f} MHz), "
            f"{report.steps} steps of which {count} generated, every token equal to the golden "
            f"model's")
    figures = [
        Figure("core.stdlib.cycles_per_token", round(cycles), "cycles", "simulated", source,
               note),
        Figure("core.stdlib.sdram_bound_cycles_per_token", bound, "cycles", "simulated", source,
               f"{export.sections['weights'].size * 4:,} trits at "
               f"{TRITS_PER_SDRAM_WORD[packing]} an SDRAM word ({packing}), one SDRAM word a "
               f"cycle"),
        Figure("core.stdlib.fraction_of_sdram_bound", round(bound / cycles, 3), "", "simulated",
               source, "tokens/s over the bandwidth-bound tokens/s; goal: at least 0.85"),
        Figure("core.stdlib.sdram_stream_efficiency", round(bound / cycles, 3), "",
               "simulated", source,
               "SDRAM words streamed per cycle over the whole token, a lower bound of the "
               "rate during matrix instructions (goal: at least 0.90 of the peak)"),
        Figure("core.stdlib.tokens_per_s", round(clock / cycles, 2), "tokens/s", "projected",
               source, f"at the preset's {clock / 1e6:.0f} MHz (docs/sdram.md: the bitstream)"),
        Figure("core.stdlib.weight_bandwidth", round(clock * bound * 2 / cycles),
               "B/s", "projected", source, f"{packing} weights streamed from the SDRAM at that "
                                           f"rate"),
        Figure("core.stdlib.simulation_cycles_per_s",
               round(virtual.stats.get("cycles_per_second", 0)), "cycles/s", "measured", source,
               "Verilator's speed on the virtual board (this machine)"),
    ]
    if quick:
        return figures
    plain, plain_report, _ = _generate(folder, params, "2bit", count)
    plain_cycles = plain_report.cycles_per_token
    return figures + [
        Figure("core.stdlib.2bit.cycles_per_token", round(plain_cycles), "cycles", "simulated",
               source, "the same model and bitstream with the weights in 2-bit (tern export "
                       "--packing 2bit)"),
        Figure("core.stdlib.2bit.fraction_of_sdram_bound",
               round(_bound(plain, "2bit") / plain_cycles, 3), "", "simulated", source,
               "2-bit: 8 trits an SDRAM word"),
        Figure("core.stdlib.base3_speedup", round(plain_cycles / cycles, 3), "", "simulated",
               source, "tokens/s in base-3 over tokens/s in 2-bit (goal: about 1.2 when "
                       "memory-bound)"),
    ]
