"""Golden model of the base-3 weight decoder (``hw/base3_decoder.py``) and of the SDRAM's
weight unpacker (``hw/sdram/weight_unpacker.py``).

The packing itself is :mod:`tern_fpga.contracts.packing` (re-exported here);
:func:`decode_base3_bytes` is what the decoder computes for every byte, the invalid ones
included; :func:`sdram_run_words` is what the unpacker gives for a run of SDRAM words.
"""

from __future__ import annotations

import numpy as np

from tern_fpga.contracts.packing import (
    WEIGHTS_PER_BYTE_BASE3,
    pack_base3,
    trits_to_codes,
    unpack_base3,
)

__all__ = ["decode_base3_bytes", "pack_base3", "sdram_run_words", "unpack_base3"]


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


def sdram_run_words(sdram, first: int, beats: int, skip: int, words: int, lanes: int,
                    packing: str) -> list[int]:
    """The weight words (``lanes`` 2-bit codes each, lane 0 least significant) that the
    unpacker gives for SDRAM words ``first .. first + beats - 1`` of ``sdram`` (16-bit words),
    dropping the first ``skip`` trits: each SDRAM word is 8 codes as they are (``"2bit"``), or
    its low and then its high byte through :func:`decode_base3_bytes` (``"base3"``)."""
    run = np.asarray(sdram, dtype=np.uint16)[first:first + beats].astype(np.int64)
    if packing == "base3":
        data = np.stack([run & 0xFF, run >> 8], axis=1).reshape(-1).astype(np.uint8)
        codes = decode_base3_bytes(data)[0].reshape(-1)
    else:
        codes = ((run[:, None] >> (2 * np.arange(8))) & 3).reshape(-1)
    codes = codes[skip:skip + words * lanes].astype(object).reshape(words, lanes)
    weights = (1 << (2 * np.arange(lanes))).astype(object)
    return [int(value) for value in (codes * weights).sum(axis=1)]
