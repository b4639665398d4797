"""Pieces that the dataflow units' pipelines share: a register, a tag delayed a stage, and the
credit-guarded output FIFO that lets a pipeline run without a stall signal."""

from __future__ import annotations

from amaranth.hdl import Shape, Signal
from amaranth.lib import fifo

__all__ = ["CreditedOutput", "delay", "register"]


def register(m, value, name, *, shape=None, reset_less=True):
    """``value`` registered every cycle (as ``shape``, by default its own)."""
    result = Signal(value.shape() if shape is None else shape, name=name,
                    reset_less=reset_less)
    m.d.sync += result.eq(value)
    return result


def delay(m, tag, suffix):
    """A dict of tag signals registered once more (``valid`` with a reset, the rest without)."""
    return {name: register(m, value, f"{name}_{suffix}", reset_less=name != "valid")
            for name, value in tag.items()}


class CreditedOutput:
    """An output FIFO of ``depth`` results in front of the ``Out`` stream ``port``, and its
    credits: a pipeline admits a beat that will make a result only while ``available``, so the
    FIFO always has room and the pipeline needs no stall. Write a result with ``w_data`` and
    ``w_en``; call :meth:`admit` once with the signal that spends a credit. ``idle``: every
    credit is back (no result in the pipeline or the FIFO)."""

    def __init__(self, m, port, depth: int):
        self._port = port
        self.credits = Signal(range(depth + 1), init=depth)
        m.submodules.fifo = results = fifo.SyncFIFOBuffered(
            width=Shape.cast(port.payload.shape()).width, depth=depth)
        self.w_data, self.w_en = results.w_data, results.w_en
        m.d.comb += [port.payload.eq(results.r_data), port.valid.eq(results.r_rdy),
                     results.r_en.eq(port.ready)]
        self.available = self.credits != 0
        self.idle = self.credits == depth

    def admit(self, m, admitted):
        returned = self._port.valid & self._port.ready
        m.d.sync += self.credits.eq(self.credits - admitted + returned)
