"""Golden model of the base-3 weight decoder (``hw/base3_decoder.py``).

The packing itself is :mod:`tern_fpga.contracts.packing` (re-exported here);
:func:`decode_base3_bytes` is
what the circuit computes for every byte, the invalid ones included.
"""

from __future__ import annotations

import numpy as np

from tern_fpga.contracts.packing import (
    WEIGHTS_PER_BYTE_BASE3,
    pack_base3,
    trits_to_codes,
    unpack_base3,
)

__all__ = ["decode_base3_bytes", "pack_base3", "unpack_base3"]


def decode_base3_bytes(data) -> tuple[np.ndarray, np.ndarray]:
    """The decoder's outputs for each byte of ``data``.

    Parameters
    ----------
    data : array of uint8
        Any bytes, 243 to 255 included.

    Returns
    -------
    codes : numpy.ndarray of uint8, shape ``[len(data), 5]``
        2-bit codes of the five weights of each byte; all zero for an invalid byte.
    invalid : numpy.ndarray of bool, shape ``[len(data)]``
        Whether the byte is 243 or above.
    """
    data = np.asarray(data, dtype=np.uint8).reshape(-1)
    invalid = data >= 3 ** WEIGHTS_PER_BYTE_BASE3
    valid_bytes = np.where(invalid, 0, data).astype(np.uint8)
    codes = trits_to_codes(unpack_base3(valid_bytes, WEIGHTS_PER_BYTE_BASE3 * data.size))
    codes = codes.reshape(-1, WEIGHTS_PER_BYTE_BASE3)
    codes[invalid] = 0
    return codes, invalid
