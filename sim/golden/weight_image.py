"""The weight memory's contents: every matrix's weight words, as the memory's bytes.

The word layout is :mod:`sim.golden.ternary_matvec`'s (``P`` 2-bit codes a word, a row padded to
whole words). The image is the words' little-endian bytes, ``P / 4`` bytes a word, the matrices
one after another in the order given; the export stores it and the host loads it as is.
"""

from __future__ import annotations

import numpy as np

from sim.golden.ternary_matvec import pack_weight_words
from tern.params import AcceleratorParameters

__all__ = ["pack_weight_image", "unpack_weight_image"]

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
