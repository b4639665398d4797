"""The weight memory in the ULX3S's SDRAM: a backend of
:class:`~tern_fpga.hw.weight_memory.WeightMemorySignature` on LiteDRAM's native port.

Layout (:mod:`tern_fpga.contracts.sdram_image`): the weight image in the packing that the
host chose at load time, ``"2bit"`` (weight word ``w`` of ``2P`` bits is SDRAM words ``w * B ..
w * B + B - 1``, ``B = 2P / 16``, least significant first) or ``"base3"`` (10 trits an SDRAM
word, 20 % fewer words to read), so a TMV's words are one run of consecutive addresses, along
rows and across banks (LiteDRAM's ROW_BANK_COL mapping). The host's 32-bit word ``a`` is SDRAM
words ``2a`` (low half) and ``2a + 1``: the same bytes, in the same order. The packing is a
register at the weights space's last host word (``packing_address``), which resets to 2-bit.

Read-ahead: a ``prefetch`` goes through the :class:`~.weight_unpacker.RunPlanner`, which names
the run's SDRAM words; from then on a read command goes out whenever the beat FIFO has room for
it and for every read already in flight (LiteDRAM's ``rdata`` has no back-pressure:
docs/sdram.md), so the memory streams at its own pace while the core consumes. The
:class:`~.weight_unpacker.WeightUnpacker` makes weight words of the beats; ``matrix_available``
is high while a whole word waits, and ``matrix_en`` takes it (``matrix_data`` holds it from the
next cycle on). ``matrix_addr`` is not used: the core reads the announced words in order. Up
to four planned runs wait for the unpacker, so the next TMV's reads start as soon as this one's
are out.

Host accesses wait for the read-ahead to finish; a write is two write commands, a read two
read commands whose halves are joined into the response.

With ``embeddings=True`` the embeddings live in the SDRAM too, right after the weight memory:
element ``e`` is SDRAM word ``weight_memory_words * B + e`` (:func:`sdram_layout`). An
``embedding_request`` starts a read-ahead of its elements through the same FIFO, assembled into
``V``-element words for ``embedding_data``; host requests with ``embeddings`` set address that
region. A request that changes between weights and embeddings waits until the FIFO and the
assembly are empty (the core never leaves words of a run untaken).

``status`` is 1 until the controller's initialisation has finished (``init_done``), 0 after.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Signal
from amaranth.lib import fifo, wiring

from tern_fpga.contracts.params import AcceleratorParameters
from tern_fpga.contracts.sdram_image import packing_register_address
from tern_fpga.hw.sdram.weight_unpacker import RunPlanner, WeightUnpacker, run_layout
from tern_fpga.hw.weight_memory import (
    EMBEDDING_ELEMENT_BITS,
    WeightMemorySignature,
    weight_word_bits,
)

__all__ = ["SDRAM_WORD_BITS", "STATUS_NOT_INITIALISED", "SDRAMWeights", "sdram_layout"]

STATUS_NOT_INITIALISED = 1
SDRAM_WORD_BITS = 16


def sdram_layout(params: AcceleratorParameters) -> tuple[int, int]:
    """``(B, embedding_base)``: SDRAM words a weight word, and the SDRAM word of embedding
    element 0 (right after the weight memory)."""
    beats = weight_word_bits(params) // SDRAM_WORD_BITS
    return beats, params.weight_memory_words * beats


class SDRAMWeights(wiring.Component):
    """Weights in SDRAM through ``controller`` (an :class:`~.controller.SDRAMController`, which
    becomes a submodule).

    Parameters
    ----------
    params : AcceleratorParameters
        ``2 * ternary_lanes`` must be a multiple of the SDRAM's 16 bits, and
        ``weight_memory_words`` words must fit its size.
    controller : SDRAMController
    fifo_beats : int
        Depth of the read-ahead FIFO in 16-bit beats (at least the reads that can be in
        flight: the controller's latency, about 12 cycles at 50 MHz).
    embeddings : bool
        Hold the embeddings too (the signature's ``embedding_*`` members).
    """

    def __init__(self, params: AcceleratorParameters, controller, *, fifo_beats: int = 64,
                 embeddings: bool = False):
        data_width = controller.rdata.payload.data.shape().width
        address_width = controller.cmd.payload.addr.shape().width
        word_bits = weight_word_bits(params)
        if word_bits % data_width:
            raise ValueError(f"a weight word of {word_bits} bits is not whole {data_width}-bit "
                             f"SDRAM words: choose ternary_lanes a multiple of {data_width // 2}")
        if data_width != SDRAM_WORD_BITS:
            raise ValueError(f"the SDRAM's words must be {SDRAM_WORD_BITS} bits, not {data_width}")
        self.beats = word_bits // data_width
        needed = params.weight_memory_words * self.beats + (
            params.embedding_memory_words if embeddings else 0)
        if needed > 1 << address_width:
            what = f"weight_memory_words {params.weight_memory_words} of {word_bits} bits"
            if embeddings:
                what += f" and {params.embedding_memory_words} int16 embeddings"
            raise ValueError(f"{what} need {needed * data_width // 8:,} bytes; the SDRAM holds "
                             f"{(1 << address_width) * data_width // 8:,}: use a smaller model "
                             f"or preset")
        self._params = params
        self.controller = controller
        self._data_width, self._address_width = data_width, address_width
        self._fifo_beats = fifo_beats
        self.packing_address = packing_register_address(params)
        self.embeddings = bool(embeddings)
        if embeddings and EMBEDDING_ELEMENT_BITS != data_width:
            raise ValueError(f"an embedding element of {EMBEDDING_ELEMENT_BITS} bits must be one "
                             f"SDRAM word of {data_width}")
        super().__init__(WeightMemorySignature(params, embeddings=embeddings).flip())

    def elaborate(self, platform):
        m = Module()
        m.submodules.controller = controller = self.controller
        width, beats, lanes = self._data_width, self.beats, self._params.vector_lanes
        _, embedding_base = sdram_layout(self._params)
        m.submodules.beat_fifo = beat_fifo = fifo.SyncFIFOBuffered(width=width,
                                                                   depth=self._fifo_beats)
        m.d.comb += self.status.eq(Mux(controller.init_done, 0, STATUS_NOT_INITIALISED))

        # Read-ahead: prefetch -> planner -> (reads, a run for the unpacker) -------------------
        m.submodules.planner = planner = RunPlanner(self._params, self._address_width)
        m.submodules.unpacker = unpacker = WeightUnpacker(self._params, self._address_width)
        m.submodules.runs = runs = fifo.SyncFIFOBuffered(
            width=run_layout(self._params, self._address_width).size, depth=4)
        base3 = Signal()                 # the packing register (PACKING_CODES)
        m.d.comb += [planner.base3.eq(base3), unpacker.base3.eq(base3)]
        run_address = Signal(self._address_width)       # next SDRAM word to read
        run_left = Signal(range(max(self._params.weight_memory_words * beats + 1,
                                    self._params.embedding_memory_words) + 1))
        in_flight = Signal(range(self._fifo_beats + 1))  # reads issued, data not yet in
        streaming_read = Signal()
        room = self._fifo_beats - beat_fifo.level - in_flight
        assembled = Signal(range(lanes + 1))
        # The run's kind: 0 weight words, 1 embedding words (``embeddings`` only).
        embedding_mode = Signal()
        # No weight run planned, waiting or being unpacked (the planner's ready: it holds none).
        weights_idle = planner.request.ready & ~runs.r_rdy & unpacker.idle
        # Every beat read has been taken (an embedding run's words included).
        drained = (in_flight == 0) & ~beat_fifo.r_rdy & (assembled == 0)
        m.d.comb += [planner.request.valid.eq(self.prefetch.valid),
                     planner.request.payload.eq(self.prefetch.payload),
                     self.prefetch.ready.eq(planner.request.ready)]
        plan = planner.plan.payload
        m.d.comb += [runs.w_data.eq(plan),
                     planner.plan.ready.eq((run_left == 0) & runs.w_rdy
                                           & (~embedding_mode | drained)),
                     runs.w_en.eq(planner.plan.valid & planner.plan.ready),
                     unpacker.run.valid.eq(runs.r_rdy), unpacker.run.payload.eq(runs.r_data),
                     runs.r_en.eq(unpacker.run.ready)]
        with m.If(planner.plan.valid & planner.plan.ready):
            m.d.sync += [run_address.eq(plan.first), run_left.eq(plan.beats),
                         embedding_mode.eq(0)]
        if self.embeddings:
            request = self.embedding_request
            m.d.comb += request.ready.eq((run_left == 0) & ~self.prefetch.valid & weights_idle
                                         & (embedding_mode | drained))
            with m.If(request.valid & request.ready):
                m.d.sync += [run_address.eq(embedding_base + request.payload.start),
                             run_left.eq(request.payload.elements), embedding_mode.eq(1)]

        # Host accesses (only while no run is left to fetch) ------------------------------------
        request = self.host.payload
        host_half = Signal()            # which half of a host word goes out next
        host_reading = Signal()         # the two read commands are out: wait for the data
        host_low = Signal(width)
        host_data_half = Signal()
        pending_write = Signal()        # a host write's command is out, its data not yet taken
        pending_data = Signal(width)
        response_valid = Signal()
        response = Signal(32)
        m.d.comb += [self.host_response.valid.eq(response_valid),
                     self.host_response.payload.eq(response)]
        with m.If(self.host_response.ready):
            m.d.sync += response_valid.eq(0)

        issue_stream = (run_left != 0) & (room > 1)
        packing_access = self.host.valid & (request.address == self.packing_address)
        if self.embeddings:
            packing_access &= ~request.embeddings
        # The packing register, not SDRAM: only while no run is in flight.
        packing_now = (run_left == 0) & weights_idle & ~response_valid
        with m.If(packing_access):
            m.d.comb += self.host.ready.eq(packing_now)
            with m.If(packing_now & request.write):
                m.d.sync += base3.eq(request.write_data[0])
            with m.If(packing_now & ~request.write):
                m.d.sync += [response.eq(base3), response_valid.eq(1)]
        with m.Elif(issue_stream):
            m.d.comb += [controller.cmd.valid.eq(1), controller.cmd.payload.we.eq(0),
                         controller.cmd.payload.addr.eq(run_address), streaming_read.eq(1)]
            with m.If(controller.cmd.ready):
                m.d.sync += [run_address.eq(run_address + 1), run_left.eq(run_left - 1)]
        with m.Elif(self.host.valid & (run_left == 0) & (~host_reading | host_half)
                    & ~response_valid & (in_flight == 0) & ~pending_write):
            address = Cat(host_half, request.address)
            if self.embeddings:
                address = Mux(request.embeddings, embedding_base + address, address)
            m.d.comb += [controller.cmd.valid.eq(1), controller.cmd.payload.we.eq(request.write),
                         controller.cmd.payload.addr.eq(address),
                         controller.wdata.valid.eq(request.write),
                         controller.wdata.payload.data.eq(
                             request.write_data.word_select(host_half, width))]
            with m.If(controller.cmd.ready):
                m.d.sync += host_half.eq(~host_half)
                with m.If(~request.write):     # its data may come before the second command
                    m.d.sync += host_reading.eq(1)
                with m.If(host_half):
                    m.d.comb += self.host.ready.eq(1)
        m.d.comb += controller.wdata.payload.we.eq((1 << (width // 8)) - 1)  # whole words
        # A write's data must be at the port until the controller takes it (docs/sdram.md).
        with m.If(controller.cmd.valid & controller.cmd.ready & controller.cmd.payload.we
                  & ~controller.wdata.ready):
            m.d.sync += [pending_write.eq(1), pending_data.eq(controller.wdata.payload.data)]
        with m.If(pending_write):
            m.d.comb += [controller.wdata.valid.eq(1),
                         controller.wdata.payload.data.eq(pending_data)]
            with m.If(controller.wdata.ready):
                m.d.sync += pending_write.eq(0)

        # Read data: stream beats into the FIFO, host halves into the response.
        m.d.comb += controller.rdata.ready.eq(1)
        issued = streaming_read & controller.cmd.ready
        arrived = controller.rdata.valid & ~host_reading
        m.d.sync += in_flight.eq(in_flight + issued - arrived)
        m.d.comb += [beat_fifo.w_en.eq(arrived),
                     beat_fifo.w_data.eq(controller.rdata.payload.data)]
        with m.If(controller.rdata.valid & host_reading):
            m.d.sync += host_data_half.eq(~host_data_half)
            with m.If(host_data_half):
                m.d.sync += [response.eq(Cat(host_low, controller.rdata.payload.data)),
                             response_valid.eq(1), host_reading.eq(0)]
            with m.Else():
                m.d.sync += host_low.eq(controller.rdata.payload.data)

        # Weight words through the unpacker ----------------------------------------------------
        m.d.comb += [unpacker.sdram.valid.eq(beat_fifo.r_rdy & ~embedding_mode),
                     unpacker.sdram.payload.eq(beat_fifo.r_data),
                     self.matrix_available.eq(unpacker.words.valid),
                     unpacker.words.ready.eq(self.matrix_en)]
        with m.If(self.matrix_en):
            m.d.sync += self.matrix_data.eq(unpacker.words.payload)
        if not self.embeddings:
            m.d.comb += beat_fifo.r_en.eq(unpacker.sdram.ready)
            return m

        # Embedding words: V beats shift in from the top -------------------------------------
        assembly = Signal(width * lanes)
        stream = self.embedding_data
        word_ready = assembled == lanes
        take = stream.valid & stream.ready
        m.d.comb += [stream.valid.eq(word_ready & embedding_mode), stream.payload.eq(assembly),
                     beat_fifo.r_en.eq(Mux(embedding_mode, ~word_ready | take,
                                           unpacker.sdram.ready))]
        with m.If(take):
            m.d.sync += assembled.eq(0)
        with m.If(beat_fifo.r_en & beat_fifo.r_rdy & embedding_mode):
            m.d.sync += [assembly.eq(Cat(assembly[width:], beat_fifo.r_data)),
                         assembled.eq(assembled + 1)]
            with m.If(take):
                m.d.sync += assembled.eq(1)
        return m
