"""Golden model of the segmented matrix unit (``hw/dataflow/segmented_matvec.py``): what it
sends for one command, computed from the weight words and activation beats it is given, in the
layout of :mod:`tern_fpga.contracts.segmented_layout`.

The unit's meaning is still ``W_t @ x`` (:func:`tern_fpga.sim.golden.ternary_matvec.
ternary_matvec`); this function is the word-level contract that the hardware is checked against,
and the tests check it against ``W_t @ x`` in turn.

This module never imports Amaranth.
"""

from __future__ import annotations

import numpy as np

from tern_fpga.contracts.params import AcceleratorParameters
from tern_fpga.contracts.segmented_layout import SegmentedShape, word_lanes

__all__ = ["segmented_matvec_results"]


def segmented_matvec_results(words, activation_words, shape: SegmentedShape,
                             params: AcceleratorParameters) -> list[tuple[list[int], int]]:
    """The unit's result beats for one command: one ``(sums, count)`` a group, in order.

    Parameters
    ----------
    words : array of uint64, shape ``[shape.words, ceil(2P / 64)]``
        The command's weight words (:func:`~tern_fpga.contracts.segmented_layout.
        pack_segmented_words`), or any words: the reserved code reads as 0.
    activation_words : array of int, shape ``[shape.beats, P]``
        The activation beats, the same for every group (any int8 values in every lane: the
        unit multiplies each lane's own value).
    shape : tern_fpga.contracts.segmented_layout.SegmentedShape
    params : tern_fpga.contracts.params.AcceleratorParameters
        Gives ``P`` (``shape.lanes``).

    Returns
    -------
    list of (list of int, int)
        ``sums[s]`` is segment ``s``'s sum over the group's beats (``shape.segments`` of them);
        ``count`` is how many of them are rows (``shape.last_rows`` for the last group, else
        ``shape.segments``).
    """
    lanes = shape.lanes
    if params.ternary_lanes != lanes:
        raise ValueError(f"shape is for P = {lanes} lanes, params for {params.ternary_lanes}")
    words = np.asarray(words, dtype=np.uint64)
    activation_words = np.asarray(activation_words, dtype=np.int64)
    if words.shape[0] != shape.words:
        raise ValueError(f"the command takes {shape.words} words, not {words.shape[0]}")
    if activation_words.shape != (shape.beats, lanes):
        raise ValueError(f"activation_words must have shape ({shape.beats}, {lanes}), "
                         f"not {activation_words.shape}")
    trits = word_lanes(words, params).astype(np.int64)
    products = trits.reshape(shape.groups, shape.beats, lanes) * activation_words
    sums = products.reshape(shape.groups, shape.beats, shape.segments, shape.width
                            ).sum(axis=(1, 3))
    counts = [shape.segments] * (shape.groups - 1) + [shape.last_rows]
    return [([int(value) for value in row], count) for row, count in zip(sums, counts)]

