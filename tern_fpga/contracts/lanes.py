"""Lanes of a wide memory word: ``V`` two's-complement values side by side, lane 0 in the least
significant bits, as an Amaranth ``ArrayLayout`` payload flattens them. The RTL's initial
memory contents and the testbenches that read memories back both use this packing."""

from __future__ import annotations

__all__ = ["pack_lanes", "unpack_lanes"]


def pack_lanes(values, bits: int) -> int:
    """Lane ``j`` of ``values`` (two's complement, ``bits`` wide) into bits ``bits*j`` up:
    the flattened form of an Amaranth ``ArrayLayout`` payload."""
    mask = (1 << bits) - 1
    word = 0
    for lane, value in enumerate(values):
        word |= (int(value) & mask) << (bits * lane)
    return word


def unpack_lanes(word: int, bits: int, count: int) -> list[int]:
    """The inverse of :func:`pack_lanes`: ``count`` lanes of ``bits``, two's complement."""
    mask, sign = (1 << bits) - 1, 1 << (bits - 1)
    return [((word >> (bits * lane) & mask) ^ sign) - sign for lane in range(count)]
