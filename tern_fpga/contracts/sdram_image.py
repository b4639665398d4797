"""How a preset with its weights in SDRAM lays the weight image out (docs/sdram.md), shared by
the gateware (:mod:`tern_fpga.hw.sdram.weight_memory`), the host driver and the virtual
board's preload.

The weight memory holds the export's weight image in one of two packings
(:mod:`tern_fpga.contracts.packing`), chosen at load time by the export's own packing:

``"2bit"``
    The image as the block-RAM designs hold it: weight word ``w`` (``P`` 2-bit codes) is host
    words ``w * P / 16 ...``, 8 weights in each 16-bit SDRAM word.
``"base3"``
    The trits of the whole image, in weight order, 5 per byte (``pack_base3``), so 10 in each
    16-bit SDRAM word: 20 % fewer words to read, which is 25 % more weights a cycle when the
    SDRAM's bandwidth is the limit. A weight word then starts inside an SDRAM word; the
    gateware's unpacker drops the first ``skip`` trits of a run.

Either way host word ``a`` is SDRAM words ``2a`` (low half) and ``2a + 1``. The packing in use is
a one-bit register that the host writes at :func:`packing_register_address` of the weights
space (its last word, which no export may use) and reads back with the rest; it resets to
``"2bit"``.
"""

from __future__ import annotations

import numpy as np

from tern_fpga.contracts.boards import weights_in_sdram
from tern_fpga.contracts.packing import pack_base3, unpack_2bit
from tern_fpga.contracts.protocol import MemorySpace, space_words, to_words

__all__ = ["PACKING_CODES", "TRITS_PER_SDRAM_WORD", "export_packing", "packing_register_address",
           "preferred_packing", "sdram_weight_run", "sdram_weight_words"]

PACKING_CODES = {"2bit": 0, "base3": 1}
TRITS_PER_SDRAM_WORD = {"2bit": 8, "base3": 10}


def _check_packing(packing: str) -> None:
    if packing not in PACKING_CODES:
        raise ValueError(f"the SDRAM's weight packing must be one of {sorted(PACKING_CODES)}, "
                         f"not {packing!r}")


def preferred_packing(params) -> str:
    """The packing ``tern export`` and ``make demo`` choose for a preset: ``"base3"`` where a
    board streams the weights from SDRAM (fewer words to read), else ``"2bit"`` (block RAM
    holds the 2-bit image either way)."""
    return "base3" if weights_in_sdram(params) else "2bit"


def export_packing(export) -> str:
    """The packing an export's weights were stored in (its metadata's ``weight_packing``; an
    export made in memory and never written is ``"2bit"``), which is the packing the board's
    SDRAM gets."""
    packing = export.metadata.get("weight_packing", "2bit")
    _check_packing(packing)
    return packing


def packing_register_address(params) -> int:
    """Host word of the weights space that holds the packing register: its last."""
    return space_words(params)[MemorySpace.WEIGHTS] - 1


def sdram_weight_words(weights, packing: str) -> np.ndarray:
    """The host words that the SDRAM holds for a weight image.

    Parameters
    ----------
    weights : array
        The export's ``weights`` section (2-bit codes, as :func:`to_words` takes it).
    packing : str
        ``"2bit"`` or ``"base3"``.
    """
    _check_packing(packing)
    words = to_words(weights)
    if packing == "2bit":
        return words
    data = words.view(np.uint8)
    return to_words(pack_base3(unpack_2bit(data, 4 * data.size)))


def sdram_weight_run(start: int, words: int, lanes: int, packing: str) -> tuple[int, int, int]:
    """``(first, beats, skip)``: the SDRAM words that hold weight words ``start`` to
    ``start + words - 1`` of ``lanes`` weights each: ``beats`` words from ``first``, of which
    the first ``skip`` trits belong to the word before ``start``. This is what the gateware's
    run planner computes for every TMV."""
    _check_packing(packing)
    per_word = TRITS_PER_SDRAM_WORD[packing]
    first_trit, end_trit = start * lanes, (start + words) * lanes
    first = first_trit // per_word
    return first, -(-end_trit // per_word) - first, first_trit - first * per_word
