"""Ternary weight packings: the plain 2-bit code and the dense base-3 code (1.6 bits per weight).

Both take and give *trits*: integer arrays whose values are -1, 0 or +1, in weight order.

2-bit (4 weights per byte)
    Weight ``i`` of a byte sits in bits ``2i+1..2i`` (the first weight in the least significant
    bits); its code is ``00`` for 0, ``01`` for +1 and ``11`` for -1 (the two's complement of
    the weight, cut to 2 bits). ``10`` is invalid. A weight-memory word of ``P`` weights is the
    same code, so its little-endian bytes are exactly ``pack_2bit`` of its weights.
base-3 (5 weights per byte)
    ``byte = sum((w_i + 1) * 3**i for i in range(5))``, so a byte is 0 to 242; 243 to 255 are
    invalid. ``3**5 = 243 <= 256`` makes this the densest byte-aligned ternary code:
    8 / 5 = 1.6 bits per weight, against log2(3) = 1.585 for an ideal code.

A last byte that is not full is padded with zero weights (code ``00`` in 2-bit, digit 1 in
base-3); the unpackers check that the padding is exactly that, so every stream has one encoding.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "WEIGHTS_PER_BYTE_2BIT",
    "WEIGHTS_PER_BYTE_BASE3",
    "codes_to_trits",
    "pack_2bit",
    "pack_base3",
    "trits_to_codes",
    "unpack_2bit",
    "unpack_base3",
]

WEIGHTS_PER_BYTE_2BIT = 4
WEIGHTS_PER_BYTE_BASE3 = 5

_POWERS_OF_3 = np.array([1, 3, 9, 27, 81], dtype=np.uint8)
# Row b: the five trits of base-3 byte b (rows 243..255 are unused and stay 0).
_BASE3_TRITS = np.zeros((256, WEIGHTS_PER_BYTE_BASE3), dtype=np.int8)
_BASE3_TRITS[:243] = (np.arange(243)[:, None] // _POWERS_OF_3.astype(np.int64)) % 3 - 1
# Row b: the four trits of 2-bit byte b; code 10 never occurs in a valid byte, so it maps to 0
# here and _2BIT_VALID marks the bytes free of it.
_CODE_TRIT = np.array([0, 1, 0, -1], dtype=np.int8)
_FIELDS = (np.arange(256)[:, None] >> (2 * np.arange(WEIGHTS_PER_BYTE_2BIT))) & 3
_2BIT_TRITS = _CODE_TRIT[_FIELDS]
_2BIT_VALID = (_FIELDS != 2).all(axis=1)


def _check_trits(trits) -> np.ndarray:
    trits = np.asarray(trits)
    if trits.ndim != 1:
        raise ValueError(f"trits must be a 1-D array, not one of shape {trits.shape}")
    if trits.size and not np.issubdtype(trits.dtype, np.integer):
        raise ValueError(f"trits must be integers -1, 0 or +1, not dtype {trits.dtype}")
    bad = np.flatnonzero((trits < -1) | (trits > 1))
    if bad.size:
        raise ValueError(
            f"trit {bad[0]} is {trits[bad[0]]}; a ternary weight must be -1, 0 or +1 "
            f"(ternarise with clamp(round(W * s_w), -1, 1) first)")
    return np.ascontiguousarray(trits, dtype=np.int8)


def _check_bytes(data, count: int, per_byte: int, code: str) -> np.ndarray:
    data = np.asarray(data)
    if data.dtype != np.uint8 or data.ndim != 1:
        raise ValueError(
            f"{code} data must be a 1-D uint8 array, not {data.dtype} of shape {data.shape}")
    if not (isinstance(count, (int, np.integer)) and count >= 0):
        raise ValueError(f"weight count must be a non-negative integer, not {count!r}")
    expected = -(-count // per_byte)
    if data.size != expected:
        raise ValueError(
            f"{count} weights in {code} take {expected} bytes ({per_byte} per byte), "
            f"but {data.size} bytes were given")
    return data


def _padded_groups(trits: np.ndarray, per_byte: int, pad) -> np.ndarray:
    groups = np.full(-(-trits.size // per_byte) * per_byte, pad, dtype=trits.dtype)
    groups[:trits.size] = trits
    return groups.reshape(-1, per_byte)


def _check_padding(trits: np.ndarray, count: int, code: str):
    if np.any(trits[count:]):
        raise ValueError(
            f"the last {code} byte pads {count} weights with non-zero weights; "
            f"the padding must be zero weights (the data is corrupt or the count is wrong)")


def trits_to_codes(trits) -> np.ndarray:
    """2-bit codes (uint8 0, 1 or 3) of ternary weights: ``00`` = 0, ``01`` = +1, ``11`` = -1."""
    return (_check_trits(trits).view(np.uint8) & 3).astype(np.uint8)


def codes_to_trits(codes) -> np.ndarray:
    """Ternary weights (int8) of 2-bit codes; raises ``ValueError`` on the invalid code ``10``."""
    codes = np.asarray(codes)
    bad = np.flatnonzero((codes < 0) | (codes > 3) | (codes == 2))
    if bad.size:
        raise ValueError(
            f"2-bit code {bad[0]} is {codes[bad[0]]}; valid codes are 0 (0), 1 (+1), 3 (-1)")
    return _CODE_TRIT[codes]


def pack_2bit(trits) -> np.ndarray:
    """Pack ternary weights four to a byte, the first weight in the least significant bits.

    Parameters
    ----------
    trits : array of int
        1-D, values -1, 0 or +1.

    Returns
    -------
    numpy.ndarray
        uint8, ``ceil(len(trits) / 4)`` bytes.

    Raises
    ------
    ValueError
        If a value is not a trit.
    """
    fields = _padded_groups(trits_to_codes(trits), WEIGHTS_PER_BYTE_2BIT, 0)
    return (fields[:, 0] | fields[:, 1] << 2 | fields[:, 2] << 4 | fields[:, 3] << 6).astype(
        np.uint8)


def unpack_2bit(data, count: int) -> np.ndarray:
    """Unpack ``count`` ternary weights from :func:`pack_2bit` bytes.

    Raises
    ------
    ValueError
        If ``data`` is not ``ceil(count / 4)`` uint8 bytes, holds the invalid code ``10`` or
        pads its last byte with anything but zero weights.
    """
    data = _check_bytes(data, count, WEIGHTS_PER_BYTE_2BIT, "2-bit")
    invalid = np.flatnonzero(~_2BIT_VALID[data])
    if invalid.size:
        byte = int(data[invalid[0]])
        raise ValueError(
            f"2-bit byte {invalid[0]} is 0x{byte:02x}, which holds the invalid code 10; "
            f"valid codes are 00 (0), 01 (+1), 11 (-1)")
    trits = _2BIT_TRITS[data].reshape(-1)
    _check_padding(trits, count, "2-bit")
    return trits[:count]


def pack_base3(trits) -> np.ndarray:
    """Pack ternary weights five to a byte: ``byte = sum((w_i + 1) * 3**i)``.

    Parameters
    ----------
    trits : array of int
        1-D, values -1, 0 or +1.

    Returns
    -------
    numpy.ndarray
        uint8, ``ceil(len(trits) / 5)`` bytes, each below 243.

    Raises
    ------
    ValueError
        If a value is not a trit.
    """
    digits = _padded_groups(_check_trits(trits), WEIGHTS_PER_BYTE_BASE3, 0).view(np.uint8) + 1
    # Digits are 0..2, so the weighted sum is at most 242 and fits uint8 at every step.
    return (digits * _POWERS_OF_3).sum(axis=1, dtype=np.uint8)


def unpack_base3(data, count: int) -> np.ndarray:
    """Unpack ``count`` ternary weights from :func:`pack_base3` bytes.

    Raises
    ------
    ValueError
        If ``data`` is not ``ceil(count / 5)`` uint8 bytes, holds a byte above 242 or pads its
        last byte with anything but zero weights.
    """
    data = _check_bytes(data, count, WEIGHTS_PER_BYTE_BASE3, "base-3")
    invalid = np.flatnonzero(data >= 243)
    if invalid.size:
        raise ValueError(
            f"base-3 byte {invalid[0]} is {int(data[invalid[0]])}; a base-3 byte holds five "
            f"trits and must be below 243")
    trits = _BASE3_TRITS[data].reshape(-1)
    _check_padding(trits, count, "base-3")
    return trits[:count]
