"""The weight memory in the ULX3S's SDRAM: a backend of
:class:`~tern_fpga.hw.weight_memory.WeightMemorySignature` on LiteDRAM's native port.

Layout: weight word ``w`` (``2P`` bits) is SDRAM words ``w * B .. w * B + B - 1`` (``B = 2P /
16`` beats, least significant first), so a TMV's words are one run of consecutive addresses,
along rows and across banks (LiteDRAM's ROW_BANK_COL mapping). The host's 32-bit word ``a`` is
SDRAM words ``2a`` (low half) and ``2a + 1``: the same bytes, in the same order.

Read-ahead: a ``prefetch`` names the run; from then on a read command goes out whenever the
beat FIFO has room for it and for every read already in flight (LiteDRAM's ``rdata`` has no
back-pressure: docs/sdram.md), so the memory streams at its own pace while the core consumes.
Beats are assembled into weight words; ``matrix_available`` is high while a whole word waits,
and ``matrix_en`` takes it (``matrix_data`` holds it from the next cycle on). ``matrix_addr``
is not used: the core reads the announced words in order.

Host accesses wait for the read-ahead to finish; a write is two write commands, a read two
read commands whose halves are joined into the response.

``status`` is 1 until the controller's initialisation has finished (``init_done``), 0 after.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Signal
from amaranth.lib import fifo, wiring

from tern_fpga.contracts.params import AcceleratorParameters
from tern_fpga.hw.weight_memory import WeightMemorySignature, weight_word_bits

__all__ = ["STATUS_NOT_INITIALISED", "SDRAMWeights"]

STATUS_NOT_INITIALISED = 1


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
    """

    def __init__(self, params: AcceleratorParameters, controller, *, fifo_beats: int = 64):
        data_width = controller.rdata.payload.data.shape().width
        address_width = controller.cmd.payload.addr.shape().width
        word_bits = weight_word_bits(params)
        if word_bits % data_width:
            raise ValueError(f"a weight word of {word_bits} bits is not whole {data_width}-bit "
                             f"SDRAM words: choose ternary_lanes a multiple of {data_width // 2}")
        self.beats = word_bits // data_width
        capacity = (1 << address_width) // self.beats
        if params.weight_memory_words > capacity:
            raise ValueError(
                f"weight_memory_words {params.weight_memory_words} of {word_bits} bits need "
                f"{params.weight_memory_words * word_bits // 8:,} bytes; the SDRAM holds "
                f"{(1 << address_width) * data_width // 8:,} ({capacity} words): use a "
                f"smaller model or preset")
        if fifo_beats < max(2 * self.beats, 16):
            raise ValueError(f"fifo_beats must be at least {max(2 * self.beats, 16)}, "
                             f"not {fifo_beats}")
        self._params = params
        self.controller = controller
        self._data_width, self._address_width = data_width, address_width
        self._fifo_beats = fifo_beats
        super().__init__(WeightMemorySignature(params).flip())

    def elaborate(self, platform):
        m = Module()
        m.submodules.controller = controller = self.controller
        width, beats = self._data_width, self.beats
        m.submodules.beat_fifo = beat_fifo = fifo.SyncFIFOBuffered(width=width,
                                                                   depth=self._fifo_beats)
        m.d.comb += self.status.eq(Mux(controller.init_done, 0, STATUS_NOT_INITIALISED))

        # Read-ahead ------------------------------------------------------------------------------
        run_address = Signal(self._address_width)       # next SDRAM word to read
        run_left = Signal(range(self._params.weight_memory_words * beats + 1))
        in_flight = Signal(range(self._fifo_beats + 1))  # reads issued, data not yet in
        streaming_read = Signal()
        room = self._fifo_beats - beat_fifo.level - in_flight
        m.d.comb += self.prefetch.ready.eq(run_left == 0)
        with m.If(self.prefetch.valid & self.prefetch.ready):
            m.d.sync += [run_address.eq(self.prefetch.payload.start * beats),
                         run_left.eq(self.prefetch.payload.words * beats)]

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
        with m.If(issue_stream):
            m.d.comb += [controller.cmd.valid.eq(1), controller.cmd.payload.we.eq(0),
                         controller.cmd.payload.addr.eq(run_address), streaming_read.eq(1)]
            with m.If(controller.cmd.ready):
                m.d.sync += [run_address.eq(run_address + 1), run_left.eq(run_left - 1)]
        with m.Elif(self.host.valid & (run_left == 0) & (~host_reading | host_half)
                    & ~response_valid & (in_flight == 0) & ~pending_write):
            address = Cat(host_half, request.address)
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

        # Assemble words -------------------------------------------------------------------------
        assembly = Signal(width * beats)
        assembled = Signal(range(beats + 1))
        word_ready = assembled == beats
        m.d.comb += [self.matrix_available.eq(word_ready),
                     beat_fifo.r_en.eq(~word_ready | self.matrix_en)]
        with m.If(self.matrix_en):
            m.d.sync += [self.matrix_data.eq(assembly), assembled.eq(0)]
        with m.If(beat_fifo.r_en & beat_fifo.r_rdy):
            m.d.sync += [assembly.eq(Cat(assembly[width:], beat_fifo.r_data)),
                         assembled.eq(assembled + 1)]
            with m.If(self.matrix_en):
                m.d.sync += assembled.eq(1)
        return m
