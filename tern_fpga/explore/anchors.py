"""Published anchors: other people's ternary-LLM accelerators, their own figures, with sources.

None of these was measured here. Each figure's notes begin with "theirs", name the publication
(and where the number sits in it), the model and the board; its label is the one its authors'
method earns under :data:`tern_fpga.explore.report.LABELS` (a board run with a meter is
*measured*, a power budget or a throughput from a design study is *estimated*), and its
``machine`` is their board. They set the scale for the FPGA figures of this project: none runs
the same model as ours, so a ratio to them is a comparison of design points, not of speed on
one workload.

Sources (read 2026-12-04):

- the paper: Zhu et al., "Scalable MatMul-free Language Modeling", arXiv:2406.02528, section
  on the FPGA implementation (summarised in /work/shared/MODEL.md): Intel D5005 (Stratix 10),
  60 MHz, one d=512 block forward in 46.36 ms, 13.67 W board power (idle 13.68 W);
- bitnet-kv260: github.com/MerlijnW70/bitnet-kv260, docs/measurements.md (commit 04feec2):
  BitNet b1.58 2B on an AMD Kria KV260, generation 16.78 tokens/s, 6.206 W while generating
  (INA260 sampled every 50 ms), 0.381 J per generated token, idle 3.808 W;
- TeLLMe v2: Qiao et al., arXiv:2510.15926 (abstract): ternary LLM prefill and decode on edge
  FPGAs (AMD KV260), up to 25 tokens/s decoding under a 5 W power budget;
- TerEffic: Yin et al., arXiv:2502.16473v2 (abstract): 370M-parameter MatMul-free model, fully
  on-chip over several FPGAs, 16,300 tokens/s single batch at 455 tokens/s/W;
- ZyboGPT: github.com/mpai17/ZyboGPT, README "Performance" (commit 115585a): 115K-parameter
  ternary transformer on a Zybo Z7-10 (Zynq xc7z010), 3,072 tokens/s on the board at 150 MHz,
  board power "~2-3 W".
"""

from __future__ import annotations

from tern_fpga.explore.report import Figure

__all__ = ["ANCHORS", "run"]

SOURCE = "tern_fpga.explore.anchors"
READ_ON = "2026-12-04"
PAPER = "theirs: Zhu et al., arXiv:2406.02528 (the MatMul-free LM paper), FPGA section"
KV260 = ("theirs: github.com/MerlijnW70/bitnet-kv260 docs/measurements.md (commit 04feec2), "
         "BitNet b1.58 2B, generation over five prompts x 3 repeats, INA260 board meter")
TELLME = ("theirs: Qiao et al., TeLLMe v2, arXiv:2510.15926, abstract; decoding throughput of "
          "a ternary (1.58-bit) LLM, 5 W is the design's power budget, not a meter reading")
TEREFFIC = ("theirs: Yin et al., TerEffic, arXiv:2502.16473v2, abstract; 370M MatMul-free "
            "model, fully on-chip design spread over several FPGAs, single batch; claimed by "
            "the authors, how it was obtained not checked here (v1 of the paper gave 12,700 "
            "tokens/s at 467 tokens/s/W)")
ZYBO = ("theirs: github.com/mpai17/ZyboGPT README 'Performance' (commit 115585a); 115K-parameter "
        "ternary transformer, 2 layers, d=64, on-board cycle counter at 150 MHz; board power "
        "given as '~2-3 W', no meter named")
D5005 = "Intel D5005 (Stratix 10), 60 MHz"
KRIA = "AMD Kria KV260"
ZYBO_BOARD = "Digilent Zybo Z7-10 (xc7z010)"
SEVERAL = "several AMD FPGAs (on-chip)"

# (name, value, unit, label, machine, notes); each figure's date is the day it was read.
ANCHORS = (
    ("paper_d5005.block_d512_ms", 46.36, "ms", "measured", D5005,
     f"{PAPER}: one d=512 block forward"),
    ("paper_d5005.board_w", 13.67, "W", "measured", D5005,
     f"{PAPER}: board power while running (idle 13.68 W: no dynamic power distinguishable)"),
    ("bitnet_kv260.tokens_per_s", 16.78, "tokens/s", "measured", KRIA, KV260),
    ("bitnet_kv260.watts", 6.206, "W", "measured", KRIA,
     f"{KV260}; whole board while generating (idle 3.808 W)"),
    ("bitnet_kv260.joules_per_token", 0.381, "J/token", "measured", KRIA,
     f"{KV260}; idle power included (0.147 J over idle)"),
    ("bitnet_kv260.tokens_per_joule", 1 / 0.381, "tokens/J", "measured", KRIA,
     f"{KV260}; 1 / 0.381 J per token, idle power included"),
    ("tellme_v2.tokens_per_s", 25.0, "tokens/s", "measured", KRIA, f"{TELLME}; 'up to'"),
    ("tellme_v2.power_budget_w", 5.0, "W", "estimated", KRIA, TELLME),
    ("tereffic.tokens_per_s", 16300.0, "tokens/s", "estimated", SEVERAL, TEREFFIC),
    ("tereffic.tokens_per_joule", 455.0, "tokens/J", "estimated", SEVERAL,
     f"{TEREFFIC}; 455 tokens/s/W"),
    ("zybogpt.tokens_per_s", 3072.0, "tokens/s", "measured", ZYBO_BOARD, ZYBO),
    ("zybogpt.board_w_low", 2.0, "W", "estimated", ZYBO_BOARD, ZYBO),
    ("zybogpt.board_w_high", 3.0, "W", "estimated", ZYBO_BOARD, ZYBO),
)


def run(quick: bool) -> list[Figure]:
    """``tern bench`` provider: the published anchors as figures named ``anchors.<name>``."""
    return [Figure(f"anchors.{name}", value, unit, label, SOURCE, notes, machine, READ_ON)
            for name, value, unit, label, machine, notes in ANCHORS]
