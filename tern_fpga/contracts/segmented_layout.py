"""The segmented weight layout: several matrix rows in one weight word when a row is narrower
than the matrix unit (issue 15: ``P`` wider than ``d`` should not be padding).

A matrix of ``rows x in_features`` at ``P = params.ternary_lanes`` lanes with ``segments = k``
(a power of two, 1 to ``P``) splits every weight word into ``k`` segments of ``w = P / k``
lanes, each segment a piece of a different row:

- the rows go in *groups* of ``k``: group ``g`` holds rows ``g*k .. g*k + k - 1`` (rows past
  ``rows`` in the last group are all code ``00``);
- a group is ``beats = ceil(in_features / w)`` words; word ``g * beats + c`` holds, in lanes
  ``s*w .. s*w + w - 1`` (segment ``s``), row ``g*k + s``'s columns ``c*w .. c*w + w - 1``;
- within a word, lanes and codes are :mod:`tern_fpga.contracts.weight_layout`'s (2-bit codes,
  lane ``j`` at bits ``2j+1 .. 2j``; columns past ``in_features`` are code ``00``);
- the activation beat ``c`` that goes with word ``g * beats + c`` holds
  ``x[c*w .. c*w + w - 1]`` in every segment (:func:`segmented_activation_words`), so one beat
  serves all ``k`` rows of a group.

``segments = 1`` is the plain layout: :func:`pack_segmented_words` then equals
:func:`~tern_fpga.contracts.weight_layout.pack_weight_words`. A matrix takes
``groups * beats`` words, so choosing ``k`` per matrix (:func:`best_segments`) turns the padding
of a narrow row into rows: the demo model (d = 128) at ``P = 256`` takes 4,224 words instead of
8,448.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from tern_fpga.contracts.isa import Opcode, decode, encode
from tern_fpga.contracts.params import AcceleratorParameters
from tern_fpga.contracts.weight_layout import (
    check_ternary,
    pack_weight_words,
    unpack_weight_image,
    unpack_weight_words,
)

__all__ = [
    "MAX_SEGMENTS",
    "SegmentedShape",
    "best_segments",
    "default_segments",
    "pack_segmented_words",
    "plain_matrix",
    "segment_program",
    "segmented_activation_words",
    "segmented_export",
    "segmented_shape",
    "segments_for_inputs",
    "unpack_segmented_words",
    "word_lanes",
]


@dataclasses.dataclass(frozen=True)
class SegmentedShape:
    """Where a ``rows x in_features`` matrix's weights go with ``segments`` rows a word.

    Members
    -------
    rows, in_features, lanes, segments : int
        The matrix, ``P`` and ``k``.
    width : int
        Lanes of one segment, ``P / k``.
    beats : int
        Words of one group, ``ceil(in_features / width)``.
    groups : int
        ``ceil(rows / k)``.
    words : int
        ``groups * beats``: the matrix's weight words, and its matrix-unit cycles.
    last_rows : int
        Rows in the last group (1 to ``k``).
    """

    rows: int
    in_features: int
    lanes: int
    segments: int

    def __post_init__(self):
        for name in ("rows", "in_features", "lanes", "segments"):
            value = getattr(self, name)
            if not (isinstance(value, (int, np.integer)) and value >= 1):
                raise ValueError(f"{name} must be a positive integer, not {value!r}")
        for name in ("lanes", "segments"):
            value = getattr(self, name)
            if value & (value - 1):
                raise ValueError(f"{name} must be a power of two, not {value}")
        if self.segments > self.lanes:
            raise ValueError(f"segments={self.segments} is more than the {self.lanes} lanes of "
                             f"a word; use at most {self.lanes}")

    @property
    def width(self) -> int:
        return self.lanes // self.segments

    @property
    def beats(self) -> int:
        return math.ceil(self.in_features / self.width)

    @property
    def groups(self) -> int:
        return math.ceil(self.rows / self.segments)

    @property
    def words(self) -> int:
        return self.groups * self.beats

    @property
    def last_rows(self) -> int:
        return self.rows - (self.groups - 1) * self.segments


def segmented_shape(rows: int, in_features: int, params: AcceleratorParameters,
                    segments: int) -> SegmentedShape:
    """The :class:`SegmentedShape` of a matrix on ``params``' matrix unit.

    Raises
    ------
    ValueError
        If ``in_features`` is more than ``params.max_features`` or a field is not valid (the
        message names it).
    """
    if not (isinstance(in_features, (int, np.integer)) and
            1 <= in_features <= params.max_features):
        raise ValueError(
            f"in_features must be an integer from 1 to max_features = {params.max_features} "
            f"of preset {params.name!r}, not {in_features!r}")
    return SegmentedShape(rows, in_features, params.ternary_lanes, segments)


def best_segments(rows: int, in_features: int, params: AcceleratorParameters,
                  max_segments: int) -> int:
    """The ``segments`` (1 to ``max_segments``) that takes the fewest words; the fewest
    segments among equals (a wider segment keeps the adder tree's sums whole)."""
    if not (isinstance(max_segments, int) and max_segments >= 1
            and not max_segments & (max_segments - 1)):
        raise ValueError(f"max_segments must be a power of two, not {max_segments!r}")
    choices = [1 << bit for bit in range(max_segments.bit_length())
               if 1 << bit <= params.ternary_lanes]
    return min(choices,
               key=lambda k: (segmented_shape(rows, in_features, params, k).words, k))


def segments_for_inputs(in_features: int, params: AcceleratorParameters,
                        max_segments: int) -> int:
    """The ``segments`` chosen from ``in_features`` alone: the fewest words *a row*
    (``ceil(in_features / w) / k``), the fewest segments among equals.

    It is :func:`best_segments` without the last group's rounding, so a matrix whose rows fill
    whole groups takes as few words with it; on every model shape measured (micro, demo, and
    the released 370 M, 1.3 B and 2.7 B shapes, at ``P`` = 256 to 1,024) the totals are equal
    (``tests/contracts/test_segmented_layout.py``). Its point: a QUANT's length *is* its TMVs'
    ``in_features``, so the hardware that writes a QUANT's activations finds the ``k`` of the
    TMVs that read them without a field in the instruction. ``k`` depends on
    ``ceil(in_features / V)`` only (every ``w`` is a multiple of ``V``), so a table of
    ``max_features / V`` entries holds it.
    """
    if not (isinstance(max_segments, int) and max_segments >= 1
            and not max_segments & (max_segments - 1)):
        raise ValueError(f"max_segments must be a power of two, not {max_segments!r}")
    if not (isinstance(in_features, int) and 1 <= in_features <= params.max_features):
        raise ValueError(f"in_features must be an integer from 1 to max_features = "
                         f"{params.max_features} of preset {params.name!r}, not {in_features!r}")
    lanes = params.ternary_lanes
    choices = [1 << bit for bit in range(max_segments.bit_length()) if 1 << bit <= lanes]
    # ceil(in / w) / k compared as fractions: a / k < b / l  <=>  a * l < b * k.
    best = choices[0]
    for k in choices[1:]:
        if -(-in_features // (lanes // k)) * best < -(-in_features // (lanes // best)) * k:
            best = k
    return best


def pack_segmented_words(w_t, params: AcceleratorParameters, segments: int) -> np.ndarray:
    """Weight words of a ternary matrix in the segmented layout, in the unit's order.

    Returns
    -------
    numpy.ndarray of uint64, shape ``[words, ceil(2P / 64)]``
        As :func:`~tern_fpga.contracts.weight_layout.pack_weight_words` returns its words.

    Raises
    ------
    ValueError
        If a weight is not ternary or the shape does not fit (the message names it).
    """
    w_t = check_ternary(w_t)
    shape = segmented_shape(*w_t.shape, params, segments)
    k, width, beats = shape.segments, shape.width, shape.beats
    # Rows padded to whole groups and columns to whole segments, then word (g, c)'s lanes in
    # order: segment s of it is row g*k + s, columns c*w .. c*w + w - 1.
    padded = np.zeros((shape.groups * k, beats * width), dtype=np.int8)
    padded[:shape.rows, :shape.in_features] = w_t
    lanes = padded.reshape(shape.groups, k, beats, width).transpose(0, 2, 1, 3)
    plain = lanes.reshape(shape.words, params.ternary_lanes)
    return pack_weight_words(plain, _one_word_rows(params))


def _one_word_rows(params: AcceleratorParameters) -> AcceleratorParameters:
    """``params`` that take a row of ``P`` columns: each word is then one row of the plain
    layout, whatever rows its segments hold."""
    return dataclasses.replace(params, max_features=max(params.max_features,
                                                        params.ternary_lanes))


def word_lanes(words, params: AcceleratorParameters) -> np.ndarray:
    """Each weight word's ``P`` lanes as ternary values (``int8``, ``[len(words), P]``), the
    reserved code read as 0, as the matrix unit reads it."""
    words = np.asarray(words, dtype=np.uint64)
    return unpack_weight_words(words, _one_word_rows(params), len(words), params.ternary_lanes)


def unpack_segmented_words(words, params: AcceleratorParameters, shape: SegmentedShape
                           ) -> np.ndarray:
    """The ternary matrix (``int8``, ``[rows, in_features]``) that segmented words stand for.

    Raises
    ------
    ValueError
        If ``words`` does not have ``shape.words`` words of ``params``' width.
    """
    words = np.asarray(words, dtype=np.uint64)
    if len(words) != shape.words:
        raise ValueError(f"a {shape.rows} x {shape.in_features} matrix with "
                         f"segments={shape.segments} is {shape.words} words, not {len(words)}")
    plain = word_lanes(words, params)
    k, width, beats = shape.segments, shape.width, shape.beats
    rows = plain.reshape(shape.groups, beats, k, width).transpose(0, 2, 1, 3)
    return rows.reshape(shape.groups * k, beats * width)[:shape.rows, :shape.in_features]


def segmented_activation_words(activations, shape: SegmentedShape) -> np.ndarray:
    """The ``beats`` activation beats (``int8``, ``[beats, P]``) that go with every group:
    beat ``c`` holds ``x[c*w .. c*w + w - 1]`` (zeros past ``in_features``) in each segment.

    Raises
    ------
    ValueError
        If ``activations`` is not ``in_features`` int8 values.
    """
    activations = np.asarray(activations)
    if activations.shape != (shape.in_features,):
        raise ValueError(f"activations must have shape ({shape.in_features},), "
                         f"not {activations.shape}")
    if activations.size and (activations.min() < -128 or activations.max() > 127):
        raise ValueError("activations must be int8 (-128 to 127)")
    padded = np.zeros(shape.beats * shape.width, dtype=np.int8)
    padded[:shape.in_features] = activations
    return np.tile(padded.reshape(shape.beats, 1, shape.width), (1, shape.segments, 1)
                   ).reshape(shape.beats, shape.lanes)


def segment_program(program, matrix, params: AcceleratorParameters, max_segments: int):
    """A program's matrices in the segmented layout that the dataflow core reads.

    Each TMV reads the activations of the latest QUANT before it, so its ``in_features`` is
    that QUANT's length and its ``k`` is :func:`segments_for_inputs` of it (what the core's norm
    reader writes the activations with). Its matrix (``matrix(instruction)``: the ``length x
    a * P`` ternary matrix the plain layout holds at ``imm``) is packed with that ``k`` from
    ``in_features`` columns (those past it must be zero: the golden model's rule), and the
    TMV's ``imm`` becomes its first word in the new image; a matrix read twice with one ``k`` is
    packed once.

    Returns
    -------
    (list of Instruction, numpy.ndarray of uint64)
        The program with the TMVs' ``imm`` rewritten, and the weight words
        (:func:`pack_segmented_words`' rows, one after another).

    Raises
    ------
    ValueError
        If a TMV comes before any QUANT, or its matrix has non-zero weights past the QUANT's
        length.
    """
    rewritten, words, placed, in_features = [], [], {}, None
    for index, instruction in enumerate(program):
        if instruction.opcode == Opcode.QUANT:
            in_features = instruction.length
        if instruction.opcode != Opcode.TMV:
            rewritten.append(instruction)
            continue
        if in_features is None:
            raise ValueError(f"instruction {index} (tmv) comes before any quant: its "
                             f"activations, and so its segments, are undefined")
        segments = segments_for_inputs(in_features, params, max_segments)
        key = (instruction.imm, instruction.length, instruction.a, in_features, segments)
        if key not in placed:
            w_t = np.asarray(matrix(instruction))
            if np.any(w_t[:, in_features:]):
                raise ValueError(
                    f"instruction {index} (tmv at weight word {instruction.imm}) has non-zero "
                    f"weights past column {in_features}, the length of the quant it reads; "
                    f"pad the matrix with zero weights or quantise the whole input")
            placed[key] = sum(len(chunk) for chunk in words)
            words.append(pack_segmented_words(w_t[:, :in_features], params, segments))
        rewritten.append(dataclasses.replace(instruction, imm=placed[key]))
    chunks = -(-2 * params.ternary_lanes // 64)
    image = np.concatenate(words) if words else np.zeros((0, chunks), np.uint64)
    return rewritten, image


#: The most rows a weight word holds in the dataflow core that the host and the virtual board
#: agree on (a divisor of ``V``; ``docs/dataflow.md``: four at P = 512).
MAX_SEGMENTS = 4


def default_segments(params: AcceleratorParameters) -> int:
    """``S`` of a dataflow core for ``params``: :data:`MAX_SEGMENTS`, or ``V`` if smaller."""
    return min(params.vector_lanes, MAX_SEGMENTS)


def plain_matrix(weights, instruction) -> np.ndarray:
    """A TMV's ``length x a * P`` ternary matrix as the plain layout holds it at ``imm`` in
    ``weights`` (:func:`~tern_fpga.contracts.weight_layout.unpack_weight_image`'s rows): the
    ``matrix`` that :func:`segment_program` asks for."""
    rows, beats = instruction.length, instruction.a
    return weights[instruction.imm:instruction.imm + rows * beats].reshape(rows, -1)


def segmented_export(export, max_segments: int | None = None):
    """``export`` (a :class:`~tern_fpga.contracts.export_format.TernExport`) as the dataflow
    core loads it: its program with the TMVs' ``imm`` rewritten and its weights in the segmented
    layout (:func:`segment_program`), both as sections of the same names (the weights as the
    little-endian bytes of the segmented words, so that the host writes word ``w`` at WEIGHTS
    word ``w * P / 16``); the other sections and the entry points as they are (the rewrite
    changes no instruction's place). ``max_segments``: :func:`default_segments` unless given.

    Raises
    ------
    ValueError
        If ``P`` is below 32 (a segmented word is then not a whole number of 64-bit chunks), or
        the segmented weights do not fit the preset's weight memory.
    """
    params = export.params
    if params.ternary_lanes < 32:
        raise ValueError(f"P = {params.ternary_lanes}: the segmented layout's words are whole "
                         f"64-bit chunks only from P = 32 on; use a preset with P >= 32")
    program = decode(export.sections["program"])
    plain = unpack_weight_image(export.sections["weights"], params)
    rewritten, image = segment_program(
        program, lambda instruction: plain_matrix(plain, instruction), params,
        default_segments(params) if max_segments is None else max_segments)
    if len(image) > params.weight_memory_words:
        raise ValueError(f"the segmented weights take {len(image):,} words, the preset's weight "
                         f"memory {params.weight_memory_words:,}; use a preset with more")
    words = np.asarray(encode(rewritten), dtype=export.sections["program"].dtype)
    weights = np.ascontiguousarray(image.astype("<u8")).view(np.uint8).reshape(-1)
    return dataclasses.replace(export, sections={**export.sections, "program": words,
                                                 "weights": weights})
