"""The row-sum scaler: the matrix unit's row sums times the TMV's per-token scale, into the
vector format, beside the matrix unit instead of in the row unit (issue 15: SCALE must not take
the row unit, so that element-wise work can run beside a TMV).

Each beat is one group of :class:`~tern_fpga.hw.dataflow.segmented_matvec.SegmentedMatVec`'s
result: up to ``S`` row sums. Lane ``s`` computes
:func:`tern_fpga.contracts.numerics.apply_scale` of sum ``s`` bit for bit:
``saturate(round(sum * mantissa * 2**exponent))``, with numpy's 64-bit wrap-around of a left
shift.

It writes that as one rounding step: ``t = sum * mantissa * 2**(exponent + 1)``, floored (an
arithmetic right shift when ``exponent + 1 < 0``), wrapped to 65 bits; the result is
``saturate((t + 1) >> 1)``. For ``exponent >= 0`` that is the product shifted left (``t`` is
even), wrapped to 64 bits as numpy wraps it; for ``exponent < 0`` it is
``(p + 2**(s - 1)) >> s`` with ``s = -exponent``, numerics' ``round_shift``. The shift is one
left shift of the product by ``exponent + 1 + R`` (``R`` = the product's width less one: a
right shift by more than that gives ``t`` = 0 or -1 and a result of 0 alike), split over two
registered stages of eight and one positions.

Stages (latency :attr:`RowSumScaler.latency`): the input register, two partial products
(one DSP each) and their sum, the coarse and fine shifts, round and saturate. The
pipeline never stalls: a credit counter admits a beat only when the output FIFO will have
room for it.
"""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Shape, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from tern_fpga.contracts import numerics
from tern_fpga.contracts.params import AcceleratorParameters
from tern_fpga.hw.dataflow.pipeline import CreditedOutput, delay, register
from tern_fpga.hw.dataflow.segmented_matvec import result_layout as sums_layout
from tern_fpga.hw.row_unit import _limit, _saturate  # shared; row_unit.py is a design source
from tern_fpga.hw.scale_layout import scale_layout

__all__ = ["RowSumScaler", "values_layout"]

# numerics.apply_scale shifts left by at most this (then numpy wraps at 64 bits).
LEFT_SHIFT_LIMIT = numerics._MAX_SHIFT - 20
WRAP_BITS = 64
# The row sum's low bits that go into the second partial product.
SPLIT = 9


def values_layout(params: AcceleratorParameters, max_segments: int) -> data.StructLayout:
    """Payload of ``values``: ``values`` (``max_segments`` signed ``vector_bits`` lanes; lanes
    from ``count`` on are undefined), ``count`` and ``last`` as the sums' beat had them."""
    return data.StructLayout({
        "values": data.ArrayLayout(signed(params.vector_bits), max_segments),
        "count": Shape.cast(range(1, max_segments + 1)),
        "last": unsigned(1),
    })


class RowSumScaler(wiring.Component):
    """Row sums times a per-command scale, ``S`` lanes, one beat a cycle.

    Parameters
    ----------
    params : tern_fpga.contracts.params.AcceleratorParameters
    max_segments : int
        ``S``, as the matrix unit's.

    Members
    -------
    scale : ``In(stream.Signature(scale_layout(params)))``
        One per command: taken with the command's last beat (``sums.payload.last``).
    sums : ``In(stream.Signature(segmented_matvec.result_layout(params, max_segments)))``
    values : ``Out(stream.Signature(values_layout(params, max_segments)))``
    busy : ``Out(1)``
        High while a beat is in the pipeline or the FIFO.
    """

    def __init__(self, params: AcceleratorParameters, *, max_segments: int):
        if not isinstance(params, AcceleratorParameters):
            raise TypeError(f"params must be an AcceleratorParameters, not {params!r}")
        self._params = params
        self._max_segments = max_segments
        super().__init__({
            "scale": In(stream.Signature(scale_layout(params))),
            "sums": In(stream.Signature(sums_layout(params, max_segments))),
            "values": Out(stream.Signature(values_layout(params, max_segments))),
            "busy": Out(1),
        })

    #: Cycles from a beat passing to its values entering the FIFO.
    latency = 6

    @property
    def fifo_depth(self) -> int:
        """Enough credits for one beat a cycle (latency, two cycles through the buffered FIFO,
        one to return the credit)."""
        return self.latency + 3

    @property
    def product_bits(self) -> int:
        """Signed width of ``sum * mantissa``."""
        return self._params.accumulator_bits + self._params.scale_mantissa_bits

    def elaborate(self, platform):
        m = Module()
        params = self._params
        right_limit = self.product_bits - 1
        output = CreditedOutput(m, self.values, self.fifo_depth)
        fire = self.sums.valid & self.scale.valid & output.available
        m.d.comb += [
            self.sums.ready.eq(self.scale.valid & output.available),
            self.scale.ready.eq(fire & self.sums.payload.last),
            self.busy.eq(~output.idle),
        ]
        output.admit(m, fire)

        # 1: input registers; the left shift L = exponent + 1 + R, clamped to [0, 43 + R].
        exponent = self.scale.payload.exponent
        shift = Signal(range(LEFT_SHIFT_LIMIT + 2 + right_limit))
        clamped = Mux(exponent > LEFT_SHIFT_LIMIT, LEFT_SHIFT_LIMIT,
                      Mux(exponent < -right_limit - 1, -right_limit - 1, exponent))
        tag = {"valid": register(m, fire, "valid_1", reset_less=False),
               "count": register(m, self.sums.payload.count, "count_1"),
               "last": register(m, self.sums.payload.last, "last_1")}
        m.d.sync += shift.eq(clamped + 1 + right_limit)
        mantissa = register(m, self.scale.payload.mantissa, "mantissa_1")
        sums = [register(m, self.sums.payload.sums[lane], f"sum{lane}_1")
                for lane in range(self._max_segments)]
        stages = [tag]
        for number in range(2, self.latency + 1):
            stages.append(delay(m, stages[-1], str(number)))
        shift_2 = register(m, shift, "shift_2")
        shift_3 = register(m, shift_2, "shift_3")
        shift_4 = register(m, shift_3, "shift_4")

        values = Signal(values_layout(params, self._max_segments))
        for lane, value in enumerate(sums):
            # 2: two partial products, one multiplier each (the sum is wider than a DSP's
            # 18-bit port: its high part is signed, its low SPLIT bits unsigned); 3: their sum.
            high = register(m, (value >> SPLIT) * mantissa, f"high{lane}_2")
            low = register(m, value[:SPLIT] * mantissa, f"low{lane}_2")
            product = register(m, (high << SPLIT) + low, f"product{lane}_3",
                             shape=signed(self.product_bits))
            # 4: the coarse shift (multiples of 8), 5: the fine one; then t is the 65-bit
            # window from bit R on.
            window = WRAP_BITS + 1 + right_limit
            coarse = Signal(signed(window), name=f"coarse{lane}")
            m.d.comb += coarse.eq(product << (shift_3[3:] << 3))
            coarse = register(m, coarse, f"coarse{lane}_4")
            fine = Signal(signed(window), name=f"fine{lane}")
            m.d.comb += fine.eq(coarse << shift_4[:3])
            t = register(m, fine[right_limit:], f"t{lane}_5", shape=signed(WRAP_BITS + 1))
            # 6: round half up and saturate: (t + 1) >> 1 needs t's low bits when the rest are
            # a sign extension, and saturates by t's sign otherwise.
            width = params.vector_bits
            rounded = (t[:width + 1].as_signed() + 1) >> 1
            upper = t[width:]
            result = Mux(upper.all() | ~upper.any(), _saturate(rounded, width),
                         _limit(t[-1], width))
            m.d.sync += values.values[lane].eq(result)
        final = stages[-2]
        m.d.sync += [values.count.eq(final["count"]), values.last.eq(final["last"])]
        m.d.comb += [output.w_data.eq(values), output.w_en.eq(stages[-1]["valid"])]
        return m

