"""From a TMV's run of weight words to SDRAM words and back, in either packing of the weight
image (:mod:`tern_fpga.contracts.sdram_image`: ``"2bit"``, 8 trits an SDRAM word, or
``"base3"``, 10).

:class:`RunPlanner` turns a ``prefetch`` (``start``, ``words``) into the SDRAM words to read
(``first``, ``beats``) and the trits of the first one to drop (``skip``); its golden model is
:func:`~tern_fpga.contracts.sdram_image.sdram_weight_run`. Dividing a trit index by 10 is a
multiplication by a reciprocal (exact for every index the weight memory can name), registered
on both sides; by 8 it is a shift.

:class:`WeightUnpacker` takes the run's SDRAM words in order and gives its weight words of
``P`` 2-bit codes: each SDRAM word is 8 codes as they are, or two base-3 bytes through two
:class:`~tern_fpga.hw.base3_decoder.Base3Decoder` (10 codes), appended to a buffer of ``P +
10`` codes from which a word leaves whenever ``P`` are there. It accepts an SDRAM word and gives
a weight word in the same cycle, so it keeps up with the SDRAM (one word a cycle) and with the
core (one weight word a cycle). At the end of a run the trits left over (the rest of its last
SDRAM word) are dropped. The golden model is
:func:`~tern_fpga.sim.golden.base3.sdram_run_words`.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from tern_fpga.contracts.params import AcceleratorParameters
from tern_fpga.contracts.sdram_image import TRITS_PER_SDRAM_WORD
from tern_fpga.hw.base3_decoder import Base3Decoder
from tern_fpga.hw.weight_memory import prefetch_layout, weight_word_bits

__all__ = ["RunPlanner", "WeightUnpacker", "run_layout"]

SDRAM_WORD_BITS = 16
BASE3_TRITS = TRITS_PER_SDRAM_WORD["base3"]
PLAIN_TRITS = TRITS_PER_SDRAM_WORD["2bit"]


def _trit_bound(params: AcceleratorParameters) -> int:
    """One past the largest trit index a run can end at."""
    return 2 * params.weight_memory_words * params.ternary_lanes + 1


def run_layout(params: AcceleratorParameters, address_width: int) -> data.StructLayout:
    """A planned run: ``first`` SDRAM word, ``beats`` SDRAM words, ``skip`` trits of the first
    to drop, ``words`` weight words it gives."""
    beats = -(-_trit_bound(params) // PLAIN_TRITS) + 1
    return data.StructLayout({"first": address_width, "beats": range(beats + 1),
                              "skip": range(BASE3_TRITS),
                              "words": range(1, params.weight_memory_words + 1)})


def _divide_by_10(m: Module, value, width: int, name: str):
    """``value // 10`` for ``value < 2**width``, registered: ``value * ceil(2**s / 10) >> s``
    with ``s = width + 4`` is exact there (the reciprocal's error times the value stays below
    ``2**s``)."""
    shift = width + 4
    reciprocal = -(-(1 << shift) // 10)
    quotient = Signal(width, name=name)
    m.d.sync += quotient.eq((value * Const(reciprocal)) >> shift)
    return quotient


class RunPlanner(wiring.Component):
    """``request`` (a prefetch) in, ``plan`` (:func:`run_layout`) out two cycles later; one run
    at a time. ``base3`` selects the packing; it must not change while a run is planned."""

    def __init__(self, params: AcceleratorParameters, address_width: int):
        self._params, self._address_width = params, address_width
        if params.ternary_lanes % PLAIN_TRITS:
            raise ValueError(f"ternary_lanes {params.ternary_lanes} is not a multiple of "
                             f"{PLAIN_TRITS}: a 2-bit weight word must be whole SDRAM words")
        super().__init__({
            "request": In(stream.Signature(prefetch_layout(params))),
            "base3": In(1),
            "plan": Out(stream.Signature(run_layout(params, address_width))),
        })

    def elaborate(self, platform):
        m = Module()
        lanes = self._params.ternary_lanes
        width = (_trit_bound(self._params) + BASE3_TRITS).bit_length()
        stage = Signal(range(3))         # 0 empty, 1 dividing, 2 planned
        first_trit, end_trit = Signal(width), Signal(width)   # end rounded up for ceil
        words = Signal.like(self.plan.payload.words)
        m.d.comb += self.request.ready.eq(stage == 0)
        with m.If(self.request.valid & self.request.ready):
            start = self.request.payload.start
            end = (start + self.request.payload.words) * lanes
            m.d.sync += [first_trit.eq(start * lanes),
                         end_trit.eq(end + Mux(self.base3, BASE3_TRITS - 1, PLAIN_TRITS - 1)),
                         words.eq(self.request.payload.words), stage.eq(1)]
        first_tenth = _divide_by_10(m, first_trit, width, "first_tenth")
        end_tenth = _divide_by_10(m, end_trit, width, "end_tenth")
        with m.If(stage == 1):
            m.d.sync += stage.eq(2)
        first = Mux(self.base3, first_tenth, first_trit >> 3)
        end = Mux(self.base3, end_tenth, end_trit >> 3)
        skip = Mux(self.base3, first_trit - (first_tenth << 3) - (first_tenth << 1), 0)
        plan = self.plan.payload
        m.d.comb += [self.plan.valid.eq(stage == 2), plan.first.eq(first),
                     plan.beats.eq(end - first), plan.skip.eq(skip), plan.words.eq(words)]
        with m.If(self.plan.valid & self.plan.ready):
            m.d.sync += stage.eq(0)
        return m


class WeightUnpacker(wiring.Component):
    """SDRAM words (``sdram``) in, weight words (``words``, ``2P`` bits: ``P`` 2-bit codes,
    lane 0 least significant) out, one planned ``run`` (:func:`run_layout`) at a time.

    ``base3`` selects the packing and must not change while a run is in progress; ``idle``
    is high when no run is in progress."""

    def __init__(self, params: AcceleratorParameters, address_width: int):
        self._params = params
        super().__init__({
            "run": In(stream.Signature(run_layout(params, address_width))),
            "base3": In(1),
            "sdram": In(stream.Signature(SDRAM_WORD_BITS)),
            "words": Out(stream.Signature(weight_word_bits(params))),
            "idle": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        lanes = self._params.ternary_lanes
        capacity = lanes + BASE3_TRITS
        buffer = Signal(2 * capacity)        # codes held, lane order; zero above ``count``
        count = Signal(range(capacity + 1))
        active, first_beat = Signal(), Signal()
        beats_left = Signal.like(self.run.payload.beats)
        words_left = Signal.like(self.run.payload.words)
        skip = Signal.like(self.run.payload.skip)
        m.d.comb += self.idle.eq(~active)

        m.submodules.low_byte = low = Base3Decoder()
        m.submodules.high_byte = high = Base3Decoder()
        beat = self.sdram.payload
        m.d.comb += [low.byte.eq(beat[:8]), high.byte.eq(beat[8:])]
        decoded = Mux(self.base3, Cat(low.codes, high.codes), beat)   # 20 or 16 bits
        trits_in = Mux(self.base3, BASE3_TRITS, PLAIN_TRITS) - Mux(first_beat, skip, 0)
        fresh = decoded >> Mux(first_beat, skip << 1, 0)

        m.d.comb += [self.words.valid.eq(active & (count >= lanes) & (words_left != 0)),
                     self.words.payload.eq(buffer[:2 * lanes])]
        take = self.words.valid & self.words.ready
        kept = Signal.like(count)
        m.d.comb += kept.eq(count - Mux(take, lanes, 0))
        shifted = Mux(take, buffer >> (2 * lanes), buffer)
        m.d.comb += self.sdram.ready.eq(active & (beats_left != 0) & (kept <= lanes))
        accept = self.sdram.valid & self.sdram.ready

        with m.If(accept):
            m.d.sync += [buffer.eq(shifted | (fresh << (kept << 1))),
                         count.eq(kept + trits_in), beats_left.eq(beats_left - 1),
                         first_beat.eq(0)]
        with m.Else():
            m.d.sync += [buffer.eq(shifted), count.eq(kept)]
        with m.If(take):
            m.d.sync += words_left.eq(words_left - 1)
            with m.If(words_left == 1):    # the run's last word: drop what is left of it
                m.d.sync += [active.eq(0), buffer.eq(0), count.eq(0)]

        m.d.comb += self.run.ready.eq(~active)
        with m.If(self.run.valid & self.run.ready):
            run = self.run.payload
            m.d.sync += [active.eq(1), first_beat.eq(1), beats_left.eq(run.beats),
                         words_left.eq(run.words), skip.eq(run.skip)]
        return m
