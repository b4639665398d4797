"""The iCE40UP5K port's shared multiplier (``docs/boards.md``, the iCEBreaker plan's step 3):
one 32 x 32 signed product a cycle, made of four 16 x 16 partial products that Yosys's
``synth_ice40 -dsp`` maps to four of the UP5K's eight ``SB_MAC16``, for the V=1 vector
datapath whose row lanes, norm lanes and scalar engine take turns on it.

A request carries the operands ``a`` and ``b`` and a ``tag`` that its client chooses (whose
result it is); the result carries the exact product ``a * b`` (:func:`exact_product`) and the
same tag, in request order. Each operand is split into a signed high half and an unsigned low
half, ``a = a_high * 2**16 + a_low``, so that

    a * b = a_high * b_high * 2**32 + (a_high * b_low + a_low * b_high) * 2**16 + a_low * b_low

with ``a_high * b_high`` signed by signed, the middle two signed by unsigned and ``a_low *
b_low`` unsigned by unsigned: each one ``SB_MAC16`` with its operands' signedness
(:func:`~tern_fpga.hw.dataflow.products.partial_product`). Stages (:data:`LATENCY` = 4):

1. the operand halves (the ``SB_MAC16`` input registers);
2. the four partial products (their output registers; Yosys 0.70 leaves the top 16 bits of the
   middle two in flip-flops of the fabric, since its ``mul2dsp`` splits Amaranth's
   17 x 16-bit signed form of an unsigned by signed product into a 16 x 16 ``SB_MAC16`` and an
   adder that is removed only after the registers are packed);
3. ``a_high * b_high * 2**32 + a_low * b_low`` (side by side, no adder) and the middle sum;
4. the product (a 48-bit add above bit 16): the ``results`` stream's payload.

:func:`~tern_fpga.hw.dataflow.products.four_products` would register the products a second
time (for the ECP5's paths out of its DSP row), which the ``SB_MAC16`` cannot absorb: 128
flip-flops more and a cycle.

When the ``results`` stream is not ready while it holds a result, the whole pipeline stalls
(``requests.ready`` is low), so nothing is lost or repeated. A stall costs only the registers'
clock enables (the ``SB_MAC16`` takes them as its hold inputs), where
:class:`~tern_fpga.hw.dataflow.pipeline.CreditedOutput` would need a FIFO of
``LATENCY + 2`` = 6 results for one request a cycle: with no LUT RAM on the iCE40, 287 LUT4
and 396 flip-flops (Yosys 0.70), three times the multiplier's own logic.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from tern_fpga.hw.dataflow.products import HALF, partial_product

__all__ = ["LATENCY", "OPERAND_BITS", "SharedMultiplier", "check_client_tag", "client_ports",
           "exact_product", "request_layout",
           "result_layout"]

#: Bits of each signed operand; the product has twice as many.
OPERAND_BITS = 2 * HALF
#: Cycles from a request taken (``valid`` and ``ready`` at a clock edge) to its result on
#: ``results`` (valid after that many edges), when the results are taken as they come.
LATENCY = 4


def exact_product(a: int, b: int) -> int:
    """The golden function: ``a * b`` of two signed :data:`OPERAND_BITS`-bit operands.

    Raises
    ------
    ValueError
        If an operand is outside the signed 32-bit range.
    """
    for name, value in (("a", a), ("b", b)):
        if not -2 ** (OPERAND_BITS - 1) <= value < 2 ** (OPERAND_BITS - 1):
            raise ValueError(f"operand {name} must be a signed {OPERAND_BITS}-bit integer, "
                             f"not {value!r}; saturate or split it first")
    return a * b


def request_layout(tag_bits: int) -> data.StructLayout:
    """A request: the operands ``a``, ``b`` and the client's ``tag``."""
    return data.StructLayout({"a": signed(OPERAND_BITS), "b": signed(OPERAND_BITS),
                              "tag": tag_bits})


def result_layout(tag_bits: int) -> data.StructLayout:
    """A result: the ``product`` and the request's ``tag``."""
    return data.StructLayout({"product": signed(2 * OPERAND_BITS), "tag": tag_bits})


def client_ports(tag_bits: int) -> dict:
    """A client's port on the shared multiplier, as signature members: ``multiplier_request``
    (``Out``) and ``multiplier_result`` (``In``), in this module's layouts."""
    return {"multiplier_request": Out(stream.Signature(request_layout(tag_bits))),
            "multiplier_result": In(stream.Signature(result_layout(tag_bits)))}


def check_client_tag(tag_bits, tag) -> None:
    """Refuse a client's ``tag_bits`` that is not a positive integer, or a ``tag`` that it
    cannot hold, naming the value."""
    if not isinstance(tag_bits, int) or isinstance(tag_bits, bool) or tag_bits < 1:
        raise ValueError(f"tag_bits must be a positive integer, not {tag_bits!r}")
    if not isinstance(tag, int) or isinstance(tag, bool) or not 0 <= tag < 1 << tag_bits:
        raise ValueError(f"tag must be an integer from 0 to {(1 << tag_bits) - 1}, not "
                         f"{tag!r}")


class SharedMultiplier(wiring.Component):
    """The shared 32 x 32 multiplier (see the module's description).

    Parameters
    ----------
    tag_bits : int
        Width of the tag that a request carries to its result (``1`` or more).

    Members
    -------
    requests : ``In(stream.Signature(request_layout(tag_bits)))``
        Taken one a cycle while the results are taken.
    results : ``Out(stream.Signature(result_layout(tag_bits)))``
        In request order, :data:`LATENCY` cycles after the request when not held back.

    Raises
    ------
    ValueError
        If ``tag_bits`` is not a positive integer.
    """

    def __init__(self, tag_bits: int = 2):
        if not isinstance(tag_bits, int) or isinstance(tag_bits, bool) or tag_bits < 1:
            raise ValueError(f"tag_bits must be a positive integer, not {tag_bits!r}; a "
                             f"single client uses 1")
        self._tag_bits = tag_bits
        super().__init__({"requests": In(stream.Signature(request_layout(tag_bits))),
                          "results": Out(stream.Signature(result_layout(tag_bits)))})

    @property
    def tag_bits(self) -> int:
        return self._tag_bits

    def elaborate(self, platform):
        m = Module()
        request, result = self.requests, self.results
        # The pipeline moves when its last stage is empty or its result is taken.
        advance = ~result.valid | result.ready

        def stage(value, name, number, shape=None, *, reset_less=True):
            registered = Signal(value.shape() if shape is None else shape,
                                name=f"{name}_{number}", reset_less=reset_less)
            with m.If(advance):
                m.d.sync += registered.eq(value)
            return registered

        valid, tag = request.valid, request.payload.tag
        for number in range(1, LATENCY + 1):
            valid = stage(valid, "valid", number, reset_less=False)
            tag = stage(tag, "tag", number)
        a, b = request.payload.a, request.payload.b
        halves = {"high": (a[HALF:].as_signed(), b[HALF:].as_signed()),
                  "low": (a[:HALF], b[:HALF])}
        pieces = {f"{left}_{right}": partial_product(m, stage, halves[left][0],
                                                     halves[right][1], f"{left}_{right}", 1)
                  for left in halves for right in halves}
        outer = stage(Cat(pieces["low_low"], pieces["high_high"]).as_signed(), "outer", 3)
        middle = stage(pieces["high_low"] + pieces["low_high"], "middle", 3)
        product = stage(outer + (middle << HALF), "product", 4, signed(2 * OPERAND_BITS))
        m.d.comb += [request.ready.eq(advance), result.valid.eq(valid),
                     result.payload.product.eq(product), result.payload.tag.eq(tag)]
        return m
