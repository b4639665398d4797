"""The weight memory's contents: ternary matrices packed in the matrix unit's word layout.

A word holds ``P = params.ternary_lanes`` weights of 2 bits: lane ``j`` at bits ``2j+1:2j``, with
code ``0b00`` = 0, ``0b01`` = +1, ``0b11`` = -1 (``0b10`` is never written and reads as 0). A
matrix ``[rows, columns]`` takes ``rows * beats`` consecutive words, ``beats = ceil(columns / P)``:
word ``r * beats + c`` holds row ``r``, columns ``c*P .. c*P + P - 1``; columns past the end are
code 0. The image is the words' little-endian bytes, ``P / 4`` bytes a word, matrices one after
another in the order given.
"""

from __future__ import annotations

import numpy as np

from tern.params import AcceleratorParameters

__all__ = ["CODE_OF_TRIT", "TRIT_OF_CODE", "pack_weight_image", "unpack_weight_image"]

CODE_OF_TRIT = {0: 0b00, 1: 0b01, -1: 0b11}
TRIT_OF_CODE = np.array([0, 1, 0, -1], dtype=np.int8)  # indexed by the 2-bit code


def pack_weight_image(matrices: list[np.ndarray], params: AcceleratorParameters) -> np.ndarray:
    """Ternary ``int8`` matrices to the weight memory's bytes (``uint8``)."""
    lanes = params.ternary_lanes
    chunks = []
    for matrix in matrices:
        matrix = np.asarray(matrix)
        if matrix.ndim != 2 or not np.isin(matrix, (-1, 0, 1)).all():
            raise ValueError("weight matrices must be 2-D with values in {-1, 0, +1}")
        rows, columns = matrix.shape
        beats = -(-columns // lanes)
        codes = np.zeros((rows, beats * lanes), dtype=np.uint8)
        codes[:, :columns] = matrix.astype(np.int8).view(np.uint8) & 0b11  # -1 -> 0b11
        quads = codes.reshape(-1, 4)
        chunks.append((quads[:, 0] | quads[:, 1] << 2 | quads[:, 2] << 4 | quads[:, 3] << 6)
                      .astype(np.uint8))
    return np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.uint8)


def unpack_weight_image(image: np.ndarray, params: AcceleratorParameters) -> np.ndarray:
    """The weight memory's bytes to ``int8`` trits, one row of ``P`` lanes per word."""
    image = np.asarray(image, dtype=np.uint8)
    bytes_per_word = params.ternary_lanes // 4
    if image.size % bytes_per_word:
        raise ValueError(
            f"a weight image is whole words of {bytes_per_word} bytes, not {image.size} bytes")
    codes = (image[:, None] >> np.array([0, 2, 4, 6], dtype=np.uint8)) & 0b11
    return TRIT_OF_CODE[codes].reshape(-1, params.ternary_lanes)
