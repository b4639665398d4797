"""The iCE40UP5K port's multiplier arbiter (``docs/boards.md``, the iCEBreaker plan's step 3):
the N clients of the V=1 vector datapath (the row lanes, the norm lanes, the scalar engine) on
one :class:`~tern_fpga.hw.ice40.shared_multiplier.SharedMultiplier`.

Each client has a request stream into the arbiter and a result stream out of it, in the
multiplier's own layouts (:func:`~tern_fpga.hw.ice40.shared_multiplier.request_layout` and
:func:`~tern_fpga.hw.ice40.shared_multiplier.result_layout` of the multiplier's ``tag_bits``),
so that a client such as :class:`~tern_fpga.hw.ice40.serial_engine.SerialScalarEngine` (of the
same ``tag_bits``) connects to ``requests[i]`` and ``results[i]`` with :func:`wiring.connect`,
and the arbiter's ``multiplier_request`` and ``multiplier_result`` to the multiplier's
``requests`` and ``results``.

Grant: one request a cycle, round-robin among the clients whose request is valid. A register
holds the last client served; the grant goes to the first valid client after it (in index
order, wrapping), so a client that keeps its request valid waits for at most N - 1 other
grants: N cycles while the multiplier takes a request a cycle. No client starves.

Tags: the request that goes to the multiplier carries the client's index as its tag, in place
of the client's own ``tag`` field, which the arbiter ignores; the multiplier gives its results
in request order, so each client's results come back in its own request order and a client
needs no tag of its own (:class:`~tern_fpga.hw.ice40.serial_engine.SerialScalarEngine` asks one
product at a time and ignores the results' tags). Passing the client's tag through in upper tag
bits would widen the multiplier's four tag registers and this arbiter's payload mux for no
client that uses them. A result reaches the client with the multiplier's tag: its index.

Back-pressure: a result is offered (``valid``) only to the client that its tag names, and is
taken from the multiplier only when that client's result stream is ready; until then the whole
multiplier stalls (its ``requests.ready`` is low, so no client is granted), as
:class:`~tern_fpga.hw.ice40.shared_multiplier.SharedMultiplier` says. There is no buffer (no
LUT RAM on the iCE40): a client that holds back a result holds back every client, so a client
must not wait for one of its later requests to be taken before taking an earlier result.

Logic: the operands' N-to-1 mux (64 bits), the grant and the tag's decoding; the only register
is the last client's index. Yosys 0.70 ``synth_ice40`` for 3 clients (2-bit tag): 142
``SB_LUT4`` (128 of them the mux, two a bit) and 2 flip-flops; 73 and 1 for 2 clients, 218 and
2 for 4 (three LUT4 a bit for a 4-to-1 mux).
"""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from tern_fpga.hw.ice40.shared_multiplier import request_layout, result_layout

__all__ = ["MultiplierArbiter"]


class MultiplierArbiter(wiring.Component):
    """Round-robin arbiter of ``clients`` request streams onto one shared multiplier, each
    result routed back by its tag (see the module's description).

    Parameters
    ----------
    clients : int
        Number of client ports (``1`` or more).
    tag_bits : int, optional
        The tag width of the
        :class:`~tern_fpga.hw.ice40.shared_multiplier.SharedMultiplier` behind the arbiter,
        which must hold the largest client index, ``clients - 1``; by default the fewest bits
        that do (at least 1).

    Members
    -------
    requests : ``In(stream.Signature(request_layout(tag_bits))).array(clients)``
        Client ``i``'s requests; ``tag`` is ignored.
    results : ``Out(stream.Signature(result_layout(tag_bits))).array(clients)``
        Client ``i``'s results, in its request order, with the tag ``i``.
    multiplier_request : ``Out(stream.Signature(request_layout(tag_bits)))``
        To the multiplier's ``requests``: the granted request, its tag the client's index.
    multiplier_result : ``In(stream.Signature(result_layout(tag_bits)))``
        From the multiplier's ``results``: taken when the client that the tag names is ready.

    Raises
    ------
    ValueError
        If ``clients`` is not a positive integer, or ``tag_bits`` not a positive integer or too
        narrow for the client indices.
    """

    def __init__(self, clients: int, tag_bits: int | None = None):
        if not isinstance(clients, int) or isinstance(clients, bool) or clients < 1:
            raise ValueError(f"clients must be a positive integer, not {clients!r}")
        needed = max(1, (clients - 1).bit_length())
        if tag_bits is None:
            tag_bits = needed
        if not isinstance(tag_bits, int) or isinstance(tag_bits, bool) or tag_bits < 1:
            raise ValueError(f"tag_bits must be a positive integer, not {tag_bits!r}")
        if tag_bits < needed:
            raise ValueError(
                f"tag_bits {tag_bits} cannot hold the client index {clients - 1} of {clients} "
                f"clients; give the multiplier tag_bits={needed} or more")
        self._clients, self._tag_bits = clients, tag_bits
        super().__init__({
            "requests": In(stream.Signature(request_layout(tag_bits))).array(clients),
            "results": Out(stream.Signature(result_layout(tag_bits))).array(clients),
            "multiplier_request": Out(stream.Signature(request_layout(tag_bits))),
            "multiplier_result": In(stream.Signature(result_layout(tag_bits))),
        })

    @property
    def clients(self) -> int:
        return self._clients

    @property
    def tag_bits(self) -> int:
        return self._tag_bits

    def elaborate(self, platform):
        m = Module()
        clients, requests, results = self._clients, self.requests, self.results
        outgoing, incoming = self.multiplier_request, self.multiplier_result

        # The grant: the first valid client after the last one served, wrapping. The later
        # assignment wins, so the candidates go in reverse order of priority.
        last = Signal(range(clients))
        grant = Signal(range(clients))
        for served in range(clients):
            with m.If(last == served):
                for offset in reversed(range(1, clients + 1)):
                    candidate = (served + offset) % clients
                    with m.If(requests[candidate].valid):
                        m.d.comb += grant.eq(candidate)
        with m.If(outgoing.valid & outgoing.ready):
            m.d.sync += last.eq(grant)

        operands = _select([Cat(request.payload.a, request.payload.b) for request in requests],
                           grant)
        width = len(outgoing.payload.a)
        m.d.comb += [
            outgoing.valid.eq(Cat(request.valid for request in requests).any()),
            outgoing.payload.a.eq(operands[:width]), outgoing.payload.b.eq(operands[width:]),
            outgoing.payload.tag.eq(grant),
        ]
        for index, request in enumerate(requests):
            m.d.comb += request.ready.eq(outgoing.ready & (grant == index))

        # Each result to the client that its tag names, taken when that client is ready.
        # A tag that names no client (never stamped) is never taken.
        tag = incoming.payload.tag
        named = [tag == index for index in range(clients)]
        m.d.comb += incoming.ready.eq(Cat(ours & result.ready
                                          for ours, result in zip(named, results)).any())
        for ours, result in zip(named, results):
            m.d.comb += [result.valid.eq(incoming.valid & ours),
                         result.payload.eq(incoming.payload)]
        return m


def _select(values, index):
    """``values[index]`` (``index`` below ``len(values)``) as a tree of 2-to-1 muxes, one level
    per bit of ``index``: two LUT4 a bit for three values, where Yosys 0.70 maps
    Amaranth's ``Array`` (a case statement without a default) to about three."""
    level = 0
    while len(values) > 1:
        values = [Mux(index[level], *pair[::-1]) if len(pair) == 2 else pair[0]
                  for pair in (values[i:i + 2] for i in range(0, len(values), 2))]
        level += 1
    return values[0]
