"""QUANT's second pass for the dataflow core: ``u = x * weight`` into int8 activations, ``V``
lanes a cycle, once :class:`~tern_fpga.hw.dataflow.reciprocal.Reciprocal` has ``R`` and the
shift (issue 15, ``docs/dataflow.md``: the int8 values wait for the reciprocal alone).

Lane ``j`` computes, bit for bit as :func:`tern_fpga.contracts.numerics.quantize_activations`
does, ``q = sign(u) * min(round_shift(|u| * R, shift), A)`` (``A = activation_max``).

``round_shift(p, s) = ((p >> (s - 1)) + 1) >> 1``, so the lane needs ``t = p >> (s - 1)`` only
as far as ``2A + 1``: ``t >= 2A + 1`` gives ``A``. The shift is split into a coarse step (a
multiple of 8, keeping whether anything above the window was set) and a fine one.

Stages (:attr:`QuantizeLanes.latency`): 1 ``|u|`` and the sign; 2 the operands again (beside
the DSPs); 3 four partial products of ``|u|``'s and ``R``'s 16-bit halves; 4 the products again;
5 the outer and middle sums; 6 ``p``; 7 the coarse shift; 8 the fine shift; 9 round, saturate
and sign. No stall signal: credits and an output FIFO, as the other dataflow units.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from tern_fpga.contracts.params import AcceleratorParameters
from tern_fpga.hw.dataflow.pipeline import CommandBeats, CreditedOutput, delay, register
from tern_fpga.hw.dataflow.reciprocal import result_layout as reciprocal_layout
from tern_fpga.hw.row_unit import operand_layout

__all__ = ["QuantizeLanes", "command_layout", "result_layout"]

HALF = 16
# The coarse shift's step and the window it keeps.
COARSE = 8
WINDOW = 16


def command_layout(params: AcceleratorParameters) -> data.StructLayout:
    """One QUANT's second pass: ``reciprocal`` and ``shift`` (as ``Reciprocal`` gives them) and
    ``length`` (elements, 1 to ``max_features``)."""
    fields = dict(reciprocal_layout(params).members)
    return data.StructLayout({**fields, "length": range(1, params.max_features + 1)})


def result_layout(params: AcceleratorParameters) -> data.StructLayout:
    """Payload of ``result``: ``data`` (``V`` int8 lanes), ``mask`` and ``last``."""
    return data.StructLayout({
        "data": data.ArrayLayout(signed(params.activation_bits), params.vector_lanes),
        "mask": unsigned(params.vector_lanes),
        "last": unsigned(1),
    })


class QuantizeLanes(wiring.Component):
    """``u`` into int8 activations with a QUANT's reciprocal, ``V`` lanes a beat.

    Parameters
    ----------
    params : tern_fpga.contracts.params.AcceleratorParameters

    Members
    -------
    command : ``In(stream.Signature(command_layout(params)))``
    u : ``In(stream.Signature(row_unit.operand_layout(params)))``
        ``ceil(length / V)`` beats a command; lanes past ``length`` carry any value.
    result : ``Out(stream.Signature(result_layout(params)))``
    busy : ``Out(1)``

    Raises
    ------
    ValueError
        If ``vector_bits`` is not 32 or the reciprocal is wider than 32 bits (the partial
        products take 16-bit halves).
    """

    #: Cycles from a beat passing to its result entering the output FIFO.
    latency = 9

    def __init__(self, params: AcceleratorParameters):
        if not isinstance(params, AcceleratorParameters):
            raise TypeError(f"params must be an AcceleratorParameters, not {params!r}")
        reciprocal_bits = reciprocal_layout(params)["reciprocal"].shape.width
        if params.vector_bits != 2 * HALF or reciprocal_bits > 2 * HALF:
            raise ValueError(f"the quantiser lanes multiply 16-bit halves: vector_bits must be "
                             f"{2 * HALF} (not {params.vector_bits}) and the reciprocal at most "
                             f"{2 * HALF} bits (not {reciprocal_bits})")
        self._params = params
        super().__init__({
            "command": In(stream.Signature(command_layout(params))),
            "u": In(stream.Signature(operand_layout(params))),
            "result": Out(stream.Signature(result_layout(params))),
            "busy": Out(1),
        })

    @property
    def fifo_depth(self) -> int:
        return self.latency + 3

    def elaborate(self, platform):
        m = Module()
        params, lanes = self._params, self._params.vector_lanes
        output = CreditedOutput(m, self.result, self.fifo_depth)
        beats = CommandBeats(m, self.command, lanes, params.max_features,
                             fields=("reciprocal", "shift"))
        fire = beats.active & output.available & self.u.valid
        m.d.comb += [self.u.ready.eq(beats.active & output.available),
                     self.busy.eq(beats.active | ~output.idle)]
        output.admit(m, fire)
        beats.step(m, fire)

        # The shift less one, split: the coarse position (a multiple of COARSE) and the rest.
        below = Signal.like(beats.fields["shift"], name="below")
        m.d.comb += below.eq(beats.fields["shift"] - 1)
        tag = {"valid": register(m, fire, "valid_1", reset_less=False),
               "mask": register(m, beats.mask, "mask_1"),
               "last": register(m, beats.at_last, "last_1"),
               "coarse": register(m, below >> 3, "coarse_1"),
               "fine": register(m, below[:3], "fine_1")}
        stages = [tag]
        for number in range(2, self.latency + 1):
            stages.append(delay(m, stages[-1], str(number)))
        # Only stage 2 reads the reciprocal: it does not travel with the tag.
        reciprocal = register(m, beats.fields["reciprocal"], "reciprocal_1")

        result = Signal(result_layout(params))
        for lane in range(lanes):
            m.d.sync += result.data[lane].eq(
                self._lane(m, stages, reciprocal, self.u.payload[lane], lane))
        m.d.sync += [result.mask.eq(stages[-2]["mask"]), result.last.eq(stages[-2]["last"])]
        m.d.comb += [output.w_data.eq(result), output.w_en.eq(stages[-1]["valid"])]
        return m

    def _lane(self, m, stages, reciprocal, u, lane):
        """One lane's stages 1 to 8; returns the value its output register (stage 9) loads."""
        params = self._params
        limit = params.activation_max

        def stage(value, name, number, shape=None):
            return register(m, value, f"lane{lane}_{name}_{number}", shape=shape)

        # 1: |u| (2**31 included) and the sign.
        negative = stage(u < 0, "negative", 1)
        magnitude = stage(Mux(u < 0, -u, u), "magnitude", 1, unsigned(2 * HALF))
        # 2: the operands again, beside the DSPs; 3: the partial products; 4: again.
        magnitude = stage(magnitude, "magnitude", 2)
        reciprocal = stage(reciprocal, "reciprocal", 2, unsigned(2 * HALF))
        pieces = {}
        for name, left, right in (("high_high", magnitude[HALF:], reciprocal[HALF:]),
                                  ("high_low", magnitude[HALF:], reciprocal[:HALF]),
                                  ("low_high", magnitude[:HALF], reciprocal[HALF:]),
                                  ("low_low", magnitude[:HALF], reciprocal[:HALF])):
            pieces[name] = stage(stage(left * right, name, 3), name, 4)
        # 5: the outer products side by side (no overlap) and the middle ones' sum.
        outer = stage(Cat(pieces["low_low"], pieces["high_high"]), "outer", 5)
        middle = stage(pieces["high_low"] + pieces["low_high"], "middle", 5)
        # 6: p = |u| * R.
        product = stage(outer + (middle << HALF), "product", 6)
        # 7: p >> (8 * coarse), its low WINDOW bits and whether any bit above them is set.
        coarse = Signal.like(product, name=f"lane{lane}_coarse")
        m.d.comb += coarse.eq(product >> (stages[5]["coarse"] << 3))
        window = stage(coarse[:WINDOW], "window", 7)
        above = stage(coarse[WINDOW:].any(), "above", 7)
        # 8: t = p >> (shift - 1), as far as 2A + 1.
        t = Signal(WINDOW, name=f"lane{lane}_t")
        m.d.comb += t.eq(window >> stages[6]["fine"])
        saturated = stage(above | (t > 2 * limit), "saturated", 8)
        t = stage(t[:(2 * limit + 1).bit_length()], "t", 8)
        for number in range(2, 9):
            negative = stage(negative, "negative", number)
        # 9 (the caller's register): round, saturate, sign.
        levels = Mux(saturated, limit, (t + 1) >> 1)
        return Mux(negative, -levels, levels)
