"""Benchmark of the whole core in Verilator: cycles per token against the ideal, one d=512 block
against the paper's accelerator, and tokens/s projected at the clock (``make bench`` provider).

The ideal is one weight word per cycle with nothing else in the way: ``weight words = ternary
weights / P``. The paper's accelerator (Zhu et al. 2024, shared/MODEL.md) took about 2.8 million
cycles (46.36 ms at 60 MHz, measured) for one d=512 block.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from tern_fpga.contracts import paths
from tern_fpga.contracts.boards import board
from tern_fpga.contracts.isa import Opcode
from tern_fpga.contracts.params import preset
from tern_fpga.explore.report import Figure
from tern_fpga.explore.schedule import overlap_bound
from tern_fpga.host.session import bitstream_fmax_mhz
from tern_fpga.quant.compiler import compile_model
from tern_fpga.quant.config import HGRNBitConfig
from tern_fpga.sim.rtl.core_case import run_core, write_case

__all__ = ["PAPER_BLOCK_CYCLES", "run"]

PAPER_BLOCK_CYCLES = 46.36e-3 * 60e6     # measured by the paper: 46.36 ms at 60 MHz
PROMPT = list(b"The for statement")


def _block_params():
    """The ``large`` preset's datapath (P=512, V=32) with memories cut to one d=512 block, so
    that Verilator's model of them fits in memory."""
    return preset("large").replace(name="large-block", weight_memory_words=1 << 14,
                                   vector_memory_words=1 << 15, vector_work_words=1 << 14,
                                   embedding_memory_words=256 * 512)


def block_cycles(work: Path) -> tuple[int, int]:
    """Cycles of one d=512 MLGRU + GLU block (layer 0's instructions) and its weight words."""
    import torch  # here, not at the top: loads torch

    # here, not at the top: loads torch
    from tern_fpga.quant.model import HGRNBitForCausalLM  # here, not at the top: loads torch

    torch.manual_seed(0)
    model = HGRNBitForCausalLM(HGRNBitConfig(vocab_size=256, hidden_size=512,
                                             num_hidden_layers=1))
    params = _block_params()
    case = work / "block.npz"
    compiled = write_case(model, params, PROMPT[:1], 1, case)["compiled"]  # one step
    profile = run_core(params, case, "profile", work)["profile"]
    program = compiled.program
    first = next(pc for pc, ins in enumerate(program) if ins.opcode == Opcode.EMBED) + 1
    last = next(pc for pc in range(len(program) - 1, 0, -1)
                if program[pc].opcode == Opcode.NORM)   # the final norm starts the head
    block_words = sum(words for name, (_, rows, beats) in compiled.matrices.items()
                      if name.startswith("model.layers.0") for words in [rows * beats])
    return sum(profile.get(pc, 0) for pc in range(first, last)), block_words


def run(quick: bool = False) -> list:
    from tern_fpga.quant.checkpoint import load_pretrained  # here, not at the top: loads torch

    figures = []
    with tempfile.TemporaryDirectory() as directory:
        work = Path(directory)
        for name in ("micro", "demo"):
            folder = paths.CHECKPOINTS / name
            if not (folder / "config.json").exists():
                continue
            params = preset(name)
            model = load_pretrained(folder)
            case = work / f"{name}.npz"
            write_case(model, params, PROMPT, 2 if quick else 16, case)
            cycles = run_core(params, case, "whole_model", work)["cycles"]
            per_token = sorted(cycles)[len(cycles) // 2]
            compiled = compile_model(model, params)
            ideal = compiled.weight_words
            bound = overlap_bound(compiled)
            fmax, fmax_source = bitstream_fmax_mhz(params, board("ulx3s-85f").board_id)
            source = "tern_fpga.explore.bench_core"
            note = f"whole-model Verilator run of the trained {name} model, median of " \
                   f"{len(cycles)} steps"
            figures += [
                Figure(f"core.{name}.cycles_per_token", per_token, "cycles", "simulated",
                       source, note),
                Figure(f"core.{name}.ideal_cycles_per_token", ideal, "cycles", "simulated",
                       source, f"one weight word a cycle: ternary weights / P "
                               f"(P={params.ternary_lanes})"),
                Figure(f"core.{name}.cycles_over_ideal", round(per_token / ideal, 3), "",
                       "simulated", source, "goal: at most 1.15"),
                Figure(f"core.{name}.overlapped_bound_cycles_per_token", bound.overlapped,
                       "cycles", "projected", "tern_fpga.explore.schedule",
                       f"{bound.overlapped / ideal:.3f}x the ideal: the same program with the "
                       f"three units overlapped wherever dependences allow (the core overlaps "
                       f"only a TMV and the QUANT after it)"),
                Figure(f"core.{name}.tokens_per_s", round(fmax * 1e6 / per_token, 1),
                       "tokens/s", "projected", source,
                       f"{fmax:.1f} MHz ({fmax_source}) / simulated cycles per token"),
                Figure(f"core.{name}.weight_bandwidth",
                       round(fmax * 1e6 * params.ternary_lanes / 4 * ideal / per_token),
                       "B/s", "projected", source, "2-bit weights streamed at that rate"),
            ]
        if not quick:
            cycles, words = block_cycles(work)
            source = "tern_fpga.explore.bench_core.block_cycles"
            figures += [
                Figure("core.block_d512.cycles", cycles, "cycles", "simulated", source,
                       "one MLGRU + GLU block, d=512, I=1536, P=512, V=32 (large preset "
                       "datapath), Verilator"),
                Figure("core.block_d512.ideal_cycles", words, "cycles", "simulated", source,
                       "the block's weight words at P=512"),
                Figure("core.block_d512.paper_cycles", round(PAPER_BLOCK_CYCLES), "cycles",
                       "measured", "shared/MODEL.md",
                       "Zhu et al. 2024: 46.36 ms at 60 MHz on an Intel D5005 (their "
                       "measurement, quoted)", machine="Intel D5005 (Stratix 10)"),
                Figure("core.block_d512.speedup_over_paper",
                       round(PAPER_BLOCK_CYCLES / cycles, 1), "x", "simulated", source,
                       "in cycles, not time"),
            ]
    return figures
