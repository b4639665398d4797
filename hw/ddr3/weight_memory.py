"""The weight memory in DDR3: a backend of
:class:`~tern_fpga.hw.weight_memory.WeightMemorySignature` on LiteDRAM's 128-bit native port
(:class:`~.controller.DDR3Controller`), the SDRAM backend's scheme
(:mod:`tern_fpga.hw.sdram.weight_memory`) without its unpacker: 2-bit packing only.

Layout: weight word ``w`` of ``2P`` bits is DRAM words ``w * B .. w * B + B - 1``,
``B = 2P / 128``, least significant first, so a TMV's words are one run of consecutive
addresses (along rows, then across banks: LiteDRAM's ROW_BANK_COL mapping). The host's 32-bit
word ``a`` is bits ``32 * (a % 4)`` up of DRAM word ``a // 4``: the same bytes in the same
order. A host write is one write command with that word's 4 byte enables set (no
read-modify-write); a host read one read command, its 32 bits picked from the 128.

Read-ahead: a ``prefetch`` names its run's DRAM words; from then on a read command goes out
every cycle the controller takes one and the FIFO has room for it and for every read already
in flight (LiteDRAM's ``rdata`` has no back-pressure: docs/sdram.md, "Native port"). The next
``prefetch`` is taken as soon as this run's reads are out, so runs stream back to back.
``matrix_available`` is high while a whole weight word waits (``B - 1`` words gathered and the
last at the FIFO's head); ``matrix_en`` takes it and ``matrix_data`` holds it from the next
cycle on. ``matrix_addr`` is not used: the core reads the announced words in order.

Host accesses wait until no run is left to issue and no read is in flight (the core makes
them only while idle). ``status`` is 1 until the controller's ``init_done``, 0 after.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import fifo, wiring

from tern_fpga.contracts.params import AcceleratorParameters
from tern_fpga.hw.weight_memory import WeightMemorySignature, weight_word_bits

__all__ = ["STATUS_NOT_INITIALISED", "DDR3Weights"]

STATUS_NOT_INITIALISED = 1
HOST_WORD_BITS = 32


class DDR3Weights(wiring.Component):
    """Weights in DDR3 through ``controller`` (a :class:`~.controller.DDR3Controller`, which
    becomes a submodule).

    Parameters
    ----------
    params : AcceleratorParameters
        ``2 * ternary_lanes`` must be a whole number of the DRAM's 128-bit words (``P`` a
        multiple of 64), and ``weight_memory_words`` words must fit the DRAM.
    controller : DDR3Controller
    fifo_words : int
        Depth of the read-ahead FIFO in DRAM words. Reads go back to back only while it holds
        every read in flight: more than the controller's round trip in cycles (a prefetch's
        first word comes 19 cycles later on the sim model, read latency 8; the board's is 13).
    """

    def __init__(self, params: AcceleratorParameters, controller, *, fifo_words: int = 64):
        width = controller.rdata.payload.data.shape().width
        address_width = controller.cmd.payload.addr.shape().width
        word_bits = weight_word_bits(params)
        self._MustUse__silence = True  # until the checks pass: a refused one is never used
        if word_bits % width:
            raise ValueError(f"a weight word of {word_bits} bits (ternary_lanes "
                             f"{params.ternary_lanes}) is not whole {width}-bit DRAM words: "
                             f"choose ternary_lanes a multiple of {width // 2}")
        self.beats = word_bits // width
        needed = params.weight_memory_words * self.beats
        if needed > 1 << address_width:
            raise ValueError(f"weight_memory_words {params.weight_memory_words} of {word_bits} "
                             f"bits need {needed * width // 8:,} bytes; the DRAM holds "
                             f"{(1 << address_width) * width // 8:,}: use a smaller model or "
                             f"preset")
        if fifo_words < self.beats:
            raise ValueError(f"fifo_words {fifo_words} cannot hold one weight word of "
                             f"{self.beats} DRAM words: use at least {self.beats}")
        self._params = params
        self.controller = controller
        self._width, self._address_width = width, address_width
        self._fifo_words = fifo_words
        self._MustUse__silence = False
        super().__init__(WeightMemorySignature(params).flip())

    def elaborate(self, platform):
        m = Module()
        m.submodules.controller = controller = self.controller
        width, beats, depth = self._width, self.beats, self._fifo_words
        cmd, wdata, rdata = controller.cmd, controller.wdata, controller.rdata
        m.submodules.words = words = fifo.SyncFIFOBuffered(width=width, depth=depth)
        m.d.comb += self.status.eq(Mux(controller.init_done, 0, STATUS_NOT_INITIALISED))

        # Read-ahead: one run's read commands, as fast as the FIFO's room allows -------------
        run_address = Signal(self._address_width)     # next DRAM word to read
        run_left = Signal(range(self._params.weight_memory_words * beats + 1))
        in_flight = Signal(range(depth + 1))           # reads issued, their data not yet in
        room = depth - words.level - in_flight
        host_idle = Signal()
        m.d.comb += self.prefetch.ready.eq((run_left == 0) & host_idle)
        with m.If(self.prefetch.valid & self.prefetch.ready):
            m.d.sync += [run_address.eq(self.prefetch.payload.start * beats),
                         run_left.eq(self.prefetch.payload.words * beats)]
        streaming = Signal()
        with m.If(run_left != 0):
            m.d.comb += [cmd.valid.eq(room > 0), cmd.payload.we.eq(0),
                         cmd.payload.addr.eq(run_address), streaming.eq(room > 0)]
            with m.If(streaming & cmd.ready):
                m.d.sync += [run_address.eq(run_address + 1), run_left.eq(run_left - 1)]

        # Host accesses: one command each, only while no read-ahead is in progress. A request
        # is taken with its command; its lane and data are kept for the data or the answer.
        request = self.host.payload
        lane, data = Signal(2), Signal(HOST_WORD_BITS)        # of the request being served
        kept_lane, kept_data = Signal(2), Signal(HOST_WORD_BITS)
        response = Signal(HOST_WORD_BITS)
        response_valid = Signal()
        m.d.comb += [self.host_response.valid.eq(response_valid),
                     self.host_response.payload.eq(response)]
        with m.If(self.host_response.ready):
            m.d.sync += response_valid.eq(0)
        with m.FSM() as host_fsm:
            with m.State("IDLE"):
                m.d.comb += [host_idle.eq(1), lane.eq(request.address[:2]),
                             data.eq(request.write_data)]
                with m.If(self.host.valid & (run_left == 0) & (in_flight == 0)
                          & ~self.prefetch.valid & ~response_valid):
                    m.d.comb += [cmd.valid.eq(1), cmd.payload.we.eq(request.write),
                                 cmd.payload.addr.eq(request.address[2:]),
                                 wdata.valid.eq(request.write), self.host.ready.eq(cmd.ready)]
                    with m.If(cmd.ready):
                        m.d.sync += [kept_lane.eq(lane), kept_data.eq(data)]
                        m.next = "WRITE"
                        with m.If(~request.write):
                            m.next = "READ"
            with m.State("WRITE"):     # the data waits at wdata until the controller takes it
                m.d.comb += [wdata.valid.eq(1), lane.eq(kept_lane), data.eq(kept_data)]
                with m.If(wdata.ready):
                    m.next = "IDLE"
            with m.State("READ"), m.If(rdata.valid):
                m.d.sync += [response.eq(rdata.payload.data.word_select(kept_lane, 32)),
                             response_valid.eq(1)]
                m.next = "IDLE"
        m.d.comb += [wdata.payload.data.eq(data.replicate(width // HOST_WORD_BITS)),
                     wdata.payload.we.eq(Const(0xF, width // 8) << (lane * 4))]

        # Read data: a run's words into the FIFO (a host read's bypass it) ---------------------
        m.d.comb += rdata.ready.eq(1)
        arrived = rdata.valid & ~host_fsm.ongoing("READ")
        m.d.sync += in_flight.eq(in_flight + (streaming & cmd.ready) - arrived)
        m.d.comb += [words.w_en.eq(arrived), words.w_data.eq(rdata.payload.data)]

        # Weight words: B - 1 DRAM words gathered (shifted in from the top), the last at the
        # FIFO's head; with B = 1 the gathering is empty and a word is the FIFO's head.
        gathered = Signal(width * (beats - 1))
        count = Signal(range(beats))
        complete = count == beats - 1
        m.d.comb += [self.matrix_available.eq(complete & words.r_rdy),
                     words.r_en.eq(Mux(complete, self.matrix_en, 1))]
        with m.If(~complete & words.r_rdy):
            m.d.sync += [gathered.eq(Cat(gathered[width:], words.r_data)), count.eq(count + 1)]
        with m.If(self.matrix_en):
            m.d.sync += [self.matrix_data.eq(Cat(gathered, words.r_data)), count.eq(0)]
        return m
