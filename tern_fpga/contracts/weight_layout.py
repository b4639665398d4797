"""The weight layout shared by the matrix unit, the compiler, the export and the golden model:
ternary weights as *weight words* of ``P = params.ternary_lanes`` 2-bit codes, and the weight
memory's image of every matrix's words.

- a row is ``beats = ceil(in_features / P)`` words; word ``k`` holds row ``k // beats``,
  columns ``c*P .. c*P + P - 1`` with ``c = k % beats``;
- lane ``j`` of a word occupies bits ``2j+1 .. 2j``; code ``00`` is 0, ``01`` is +1, ``11`` is -1;
  ``10`` is never written, and the unit (and :func:`unpack_weight_words`) read it as 0;
- columns past ``in_features`` (the padding of a row's last word) hold code ``00``.

A word is stored here as ``ceil(2P / 64)`` little-endian ``uint64`` chunks: chunk ``i`` holds
bits ``64i+63 .. 64i`` of the word. :func:`weight_word_to_int` turns one word into a Python int.
The weight memory's image is the words' little-endian bytes, ``P / 4`` bytes a word, the
matrices one after another in the order given; the export stores it and the host loads it as is.
"""

from __future__ import annotations

import math

import numpy as np

from tern_fpga.contracts.params import AcceleratorParameters

__all__ = [
    "CODE_MINUS",
    "CODE_PLUS",
    "CODE_RESERVED",
    "CODE_ZERO",
    "beats_per_row",
    "check_ternary",
    "int_to_weight_word",
    "pack_weight_image",
    "pack_weight_words",
    "unpack_weight_image",
    "unpack_weight_words",
    "weight_word_to_int",
]

CODE_ZERO = 0b00
CODE_PLUS = 0b01
CODE_MINUS = 0b11
# Never written by the exporter; the unit decodes it as 0 (only bit 0 marks a non-zero weight).
CODE_RESERVED = 0b10

_CHUNK_BITS = 64
_LANES_PER_CHUNK = _CHUNK_BITS // 2
# Index: a 2-bit code; value: the weight it stands for.
_CODE_VALUE = np.array([0, 1, 0, -1], dtype=np.int8)


def beats_per_row(in_features: int, params) -> int:
    """Weight words per matrix row: ``ceil(in_features / params.ternary_lanes)``.

    Raises
    ------
    ValueError
        If ``in_features`` is not from 1 to ``params.max_features``.
    """
    if not (isinstance(in_features, (int, np.integer)) and
            1 <= in_features <= params.max_features):
        raise ValueError(
            f"in_features must be an integer from 1 to max_features = {params.max_features} "
            f"of preset {params.name!r}, not {in_features!r}")
    return math.ceil(in_features / params.ternary_lanes)


def _chunks_per_word(params) -> int:
    return math.ceil(params.weight_word_bits / _CHUNK_BITS)


def check_ternary(w_t) -> np.ndarray:
    w_t = np.asarray(w_t)
    if w_t.ndim != 2:
        raise ValueError(f"w_t must be a 2-D [out_features, in_features] array, "
                         f"not one of shape {w_t.shape}")
    if w_t.size and not np.issubdtype(w_t.dtype, np.integer):
        raise ValueError(f"w_t must hold integers -1, 0 or +1, not dtype {w_t.dtype}")
    bad = np.argwhere((w_t < -1) | (w_t > 1))
    if len(bad):
        row, col = bad[0]
        raise ValueError(f"w_t must hold only -1, 0 or +1; w_t[{row}, {col}] = {w_t[row, col]}")
    return w_t


def pack_weight_words(w_t, params) -> np.ndarray:
    """Weight words of a ternary matrix, in the order the unit consumes them.

    Parameters
    ----------
    w_t : array of int, shape ``[out_features, in_features]``
        Ternary weights, each -1, 0 or +1; ``in_features`` at most ``params.max_features``.
    params : tern_fpga.contracts.params.AcceleratorParameters
        Gives ``P = params.ternary_lanes``.

    Returns
    -------
    numpy.ndarray of uint64, shape ``[out_features * beats, ceil(2P / 64)]``
        Row ``k`` is word ``k`` as little-endian 64-bit chunks (see the module docstring).

    Raises
    ------
    ValueError
        If a weight is not ternary or ``in_features`` is out of range.
    """
    w_t = check_ternary(w_t)
    out_features, in_features = w_t.shape
    lanes = params.ternary_lanes
    beats = beats_per_row(in_features, params)
    codes = np.zeros((out_features, beats * lanes), dtype=np.uint64)
    codes[:, :in_features] = np.where(w_t < 0, CODE_MINUS, w_t).astype(np.uint64)
    chunks = _chunks_per_word(params)
    # Lanes padded up to whole chunks (only for P < 32) stay code 00.
    per_chunk = np.zeros((out_features * beats, chunks * _LANES_PER_CHUNK), dtype=np.uint64)
    per_chunk[:, :lanes] = codes.reshape(out_features * beats, lanes)
    per_chunk = per_chunk.reshape(-1, chunks, _LANES_PER_CHUNK)
    shifts = (2 * np.arange(_LANES_PER_CHUNK)).astype(np.uint64)
    return np.bitwise_or.reduce(per_chunk << shifts, axis=2)


def unpack_weight_words(words, params, out_features: int, in_features: int) -> np.ndarray:
    """The ternary matrix that weight words stand for, decoded as the unit decodes them.

    The reserved code ``10`` reads as 0, like in the unit; the padding columns are dropped.

    Parameters
    ----------
    words : array of uint64, shape ``[out_features * beats, ceil(2P / 64)]``
        As returned by :func:`pack_weight_words`.
    params : tern_fpga.contracts.params.AcceleratorParameters
    out_features, in_features : int
        Shape of the matrix.

    Returns
    -------
    numpy.ndarray of int8, shape ``[out_features, in_features]``

    Raises
    ------
    ValueError
        If ``words`` does not have the shape that the matrix shape implies.
    """
    lanes = params.ternary_lanes
    beats = beats_per_row(in_features, params)
    words = np.asarray(words, dtype=np.uint64)
    expected = (out_features * beats, _chunks_per_word(params))
    if words.shape != expected:
        raise ValueError(f"words must have shape {expected} for a {out_features} x {in_features} "
                         f"matrix with P = {lanes}, not {words.shape}")
    shifts = (2 * np.arange(_LANES_PER_CHUNK)).astype(np.uint64)
    codes = (words[:, :, None] >> shifts) & np.uint64(3)
    codes = codes.reshape(len(words), -1)[:, :lanes]
    values = _CODE_VALUE[codes.astype(np.intp)]
    return values.reshape(out_features, beats * lanes)[:, :in_features]


def weight_word_to_int(word) -> int:
    """One weight word (a row of :func:`pack_weight_words`) as a Python int."""
    return sum(int(chunk) << (_CHUNK_BITS * i) for i, chunk in enumerate(word))


def int_to_weight_word(value: int, params) -> np.ndarray:
    """The inverse of :func:`weight_word_to_int`: a Python int as one row of uint64 chunks.

    Raises
    ------
    ValueError
        If ``value`` does not fit ``params.weight_word_bits`` unsigned bits.
    """
    if not 0 <= value < (1 << params.weight_word_bits):
        raise ValueError(f"a weight word of P = {params.ternary_lanes} lanes is an unsigned "
                         f"{params.weight_word_bits}-bit integer, not {value:#x}")
    mask = (1 << _CHUNK_BITS) - 1
    return np.array([(value >> (_CHUNK_BITS * i)) & mask
                     for i in range(_chunks_per_word(params))], dtype=np.uint64)


# Index: a 2-bit code; value: the weight it stands for (the reserved code 10 reads as 0).
_TRIT_OF_CODE = np.array([0, 1, 0, -1], dtype=np.int8)


def pack_weight_image(matrices: list[np.ndarray], params: AcceleratorParameters) -> np.ndarray:
    """Ternary matrices to the weight memory's bytes (``uint8``)."""
    bytes_per_word = params.ternary_lanes // 4
    chunks = []
    for matrix in matrices:
        words = pack_weight_words(matrix, params).astype("<u8")
        chunks.append(words.view(np.uint8).reshape(len(words), -1)[:, :bytes_per_word].ravel())
    return np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.uint8)


def unpack_weight_image(image: np.ndarray, params: AcceleratorParameters) -> np.ndarray:
    """The weight memory's bytes to ``int8`` weights, one row of ``P`` lanes per word."""
    image = np.asarray(image, dtype=np.uint8)
    bytes_per_word = params.ternary_lanes // 4
    if image.size % bytes_per_word:
        raise ValueError(
            f"a weight image is whole words of {bytes_per_word} bytes, not {image.size} bytes")
    codes = (image[:, None] >> np.array([0, 2, 4, 6], dtype=np.uint8)) & 0b11
    return _TRIT_OF_CODE[codes].reshape(-1, params.ternary_lanes)
