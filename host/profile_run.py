"""The workload that trains a virtual board's profile-guided build.

:func:`tern_fpga.sim.rtl.virtual_board.build_board` compiles the board once with GCC's
``-fprofile-generate``, runs a workload on it, and compiles it again with ``-fprofile-use``
(about 10 % more simulated cycles a second on the demo design; docs/simulation.md). The
workload is what the host's commands do, in little: load a slice of the export through the
driver (every section, each cut to at most :data:`SLICE_BYTES`, checked by the chip's CRCs) and
generate :data:`TOKENS` tokens with the export's own program. It takes a few seconds.

The profile only steers the compiler (which branches are likely, what to inline): the
simulated design, and every token, are the same with or without it.
"""

from __future__ import annotations

import dataclasses

from tern_fpga.host.driver import Board
from tern_fpga.sim.rtl.virtual_board import ProfileWorkload, VirtualBoard

__all__ = ["PROFILE_KEY", "SLICE_BYTES", "TOKENS", "profile_workload", "slice_export"]

# Names the workload in the build's key: change it whenever the workload changes.
PROFILE_KEY = "slice-8KiB-then-2-tokens-v1"
SLICE_BYTES = 8192
TOKENS = 2
PROMPT = (0, 1)


def profile_workload(design, params, export) -> ProfileWorkload:
    """The workload for a board of ``design`` (an :class:`tern_fpga.hw.board.Accelerator`)
    built for ``params``, run on a slice of ``export``."""
    sliced = slice_export(export)

    def run(binary):
        with VirtualBoard(design, params, name=params.name, binary=binary) as url, \
                Board(url, baud=design.baud) as board:
            board.load_export(sliced, progress=False)
            generated = list(board.generate(list(PROMPT), TOKENS))
            if len(generated) != TOKENS:
                raise RuntimeError(f"the instrumented board gave {len(generated)} tokens, "
                                   f"not {TOKENS}")

    return ProfileWorkload(PROFILE_KEY, run)


def slice_export(export):
    """``export`` with each section but the program and its entry points cut to its first
    :data:`SLICE_BYTES` bytes (whole rows, and whole weight words for the weights)."""
    weight_word_bytes = export.params.ternary_lanes // 4
    sections = {}
    for name, array in export.sections.items():
        if name in ("program", "entry_points") or array.nbytes <= SLICE_BYTES:
            sections[name] = array
            continue
        row_bytes = array.nbytes // len(array)
        rows = max(1, SLICE_BYTES // row_bytes)
        if name == "weights":
            rows -= rows % weight_word_bytes
        sections[name] = array[:rows]
    return dataclasses.replace(export, sections=sections)
