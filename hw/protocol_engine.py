"""The host link's on-chip protocol engine: frames in, commands against the core, frames out.

:class:`ProtocolEngine` speaks the protocol of :mod:`tern_fpga.contracts.protocol`
(``docs/host-protocol.md``) over a pair of byte streams and drives the core through
:class:`tern_fpga.hw.core_interface.CoreInterface`, with the framing of :mod:`tern_fpga.hw.framing`
and the :class:`~tern_fpga.hw.runner.Runner`. Its executor (``_Executor``) takes one frame at a
time and checks it completely (length, space, bounds, busy) before it touches the core, so that a
bad frame never writes anything, then executes it and replies."""

# No ``from __future__ import annotations``: Amaranth reads the signature annotations.
from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal
from amaranth.lib import crc, stream, wiring
from amaranth.lib.wiring import In, Out

from tern_fpga.contracts.params import AcceleratorParameters
from tern_fpga.contracts.protocol import (
    ABORT_REPLY,
    COMMAND_LIMIT,
    DUPLICATE,
    IDENTIFY_REPLY,
    MAX_FEED_TOKENS,
    MAX_PAYLOAD,
    MAX_READ_WORDS,
    MAX_TOKENS_PER_REPLY,
    MEMORY_HEADER,
    PROTOCOL_VERSION,
    RESPONSE,
    STATUS_REPLY,
    Code,
    MemorySpace,
    RunMode,
    Status,
    space_words,
)
from tern_fpga.hw.core_interface import CoreInterface
from tern_fpga.hw.framing import FrameReceiver, FrameTransmitter, frame_layout
from tern_fpga.hw.runner import Runner

__all__ = ["ProtocolEngine"]

HEADER_WORDS = MEMORY_HEADER.size // 4
# Reply fields are shifted out of one register: wide enough for the longest fixed reply.
REPLY_BYTES = max(IDENTIFY_REPLY.size, STATUS_REPLY.size)


class ProtocolEngine(wiring.Component):
    """The host protocol over byte streams, executed against the core.

    Every frame is checked completely before the core is touched: its length against the
    command, the space, ``address + count`` against the space's size
    (:func:`tern_fpga.contracts.protocol.space_words`), and that no run is in progress. A frame that
    fails gets an error status and has no effect. A WRITE or RUN frame with the sequence number and
    code of the frame executed just before is a repeat (its reply was lost): it is answered
    with the first answer's status and the :data:`~tern_fpga.contracts.protocol.DUPLICATE` bit, and
    not executed again. Reads have no side effects and are simply executed again.

    Parameters
    ----------
    params : AcceleratorParameters
        Memory sizes, the program size and the clock; its hash is reported by IDENTIFY.
    build_id : int
        32-bit build identifier reported by IDENTIFY (the board passes the git commit).
    board_id : int
        16-bit board identifier reported by IDENTIFY.
    frame_timeout_cycles : int, optional
        A frame with no byte for this long is dropped; 20 ms of ``params.clock_hz`` by default.
    token_history : int
        Tokens of a run kept for the TOKENS command; a power of two.

    Members
    -------
    rx : ``In(stream.Signature(8))``
        Received bytes.
    tx : ``Out(stream.Signature(8))``
        Bytes to send.
    core : ``Out(CoreInterface(params))``
    uart_error : ``In(1)``
        One cycle pulse per UART framing error or overrun, counted for STATUS.
    idle : ``Out(1)``
        Nothing in progress and nothing to send (a simulator may stop the clock).

    Raises
    ------
    TypeError, ValueError
        If an argument is of the wrong type or out of range.
    """

    def __init__(self, params: AcceleratorParameters, *, build_id: int = 0, board_id: int = 0,
                 frame_timeout_cycles: int | None = None, token_history: int = 256):
        if not isinstance(params, AcceleratorParameters):
            raise TypeError(f"params must be an AcceleratorParameters, not {params!r}")
        for name, value, bits in (("build_id", build_id, 32), ("board_id", board_id, 16)):
            if not (isinstance(value, int) and 0 <= value < 1 << bits):
                raise ValueError(f"{name} must be an integer of {bits} bits, not {value!r}")
        if frame_timeout_cycles is None:
            frame_timeout_cycles = params.clock_hz // 50
        if not (isinstance(frame_timeout_cycles, int) and frame_timeout_cycles > 0):
            raise ValueError(f"frame_timeout_cycles must be a positive integer, "
                             f"not {frame_timeout_cycles!r}")
        if not (isinstance(token_history, int) and 2 <= token_history <= 1 << 15
                and token_history & (token_history - 1) == 0):
            raise ValueError(f"token_history must be a power of two from 2 to 32768, "
                             f"not {token_history!r}")
        self._params = params
        self._build_id = build_id
        self._board_id = board_id
        self._receiver = FrameReceiver(frame_timeout_cycles)
        self._token_history = token_history
        super().__init__({
            "rx": In(stream.Signature(8)),
            "tx": Out(stream.Signature(8)),
            "core": Out(CoreInterface(params)),
            "uart_error": In(1),
            "idle": Out(1),
        })

    @property
    def params(self) -> AcceleratorParameters:
        return self._params

    @property
    def token_history(self) -> int:
        return self._token_history

    @property
    def build_id(self) -> int:
        return self._build_id

    @property
    def board_id(self) -> int:
        return self._board_id

    def elaborate(self, platform):
        m = Module()
        m.submodules.receiver = receiver = self._receiver
        m.submodules.transmitter = transmitter = FrameTransmitter()
        m.submodules.runner = runner = Runner(self._token_history)
        m.submodules.checksum = checksum = crc.catalog.CRC32_ISO_HDLC(data_width=32).create()
        wiring.connect(m, wiring.flipped(self.rx), receiver.i)
        wiring.connect(m, transmitter.o, wiring.flipped(self.tx))
        wiring.connect(m, runner.run, wiring.flipped(self.core.run))
        wiring.connect(m, wiring.flipped(self.core.done), runner.done)
        _Executor(self, m, receiver, transmitter, runner, checksum).elaborate()
        return m


class _Executor:
    """The engine's command execution, one frame at a time (see :class:`ProtocolEngine`).

    The first three payload words are fetched from the receiver's buffer into ``words``;
    each command reads them its own way::

        WRITE, READ, CRC   space, address, count
        RUN                entry, token | count << 16, mode
        TOKENS             first index | most wanted << 16

    A reply is a header, then the bytes loaded into ``reply`` (low byte first), then a data
    phase that refills ``reply`` with memory words (READ) or tokens (TOKENS).
    """

    def __init__(self, engine, m, receiver, transmitter, runner, checksum):
        self.engine, self.m = engine, m
        self.receiver, self.transmitter, self.runner = receiver, transmitter, runner
        self.checksum = checksum
        self.core = engine.core
        self.frame = Signal(frame_layout)
        self.words = [Signal(32, name=f"word{i}") for i in range(HEADER_WORDS)]
        self.header = Signal(frame_layout)
        self.reply = Signal(8 * REPLY_BYTES)
        self.reply_left = Signal(range(REPLY_BYTES + 1))
        self.phase = Signal(2)   # 0: no data phase, 1: memory words, 2: tokens
        self.index = Signal(16)  # words written, feed tokens copied, tokens sent
        self.tokens_left = Signal(16)
        self.run_seq = Signal(8)
        self.counters = {name: Signal(32, name=name) for name in (
            "tokens", "bytes_received", "frame_errors", "crc_errors", "uart_errors",
            "duplicates")}
        self.counters["uptime"] = Signal(48, name="uptime")
        self.not_a_command = Signal()
        # Memory reads (READ, CRC) run in the background: requests as fast as the core takes
        # them, responses as fast as the reply (or the CRC) takes them.
        self.reading = Signal()
        self.request_address = Signal.like(self.core.memory_request.payload.address)
        self.requests_left = Signal(33)
        self.responses_left = Signal(33)

    # Helpers used inside FSM states ---------------------------------------------------------

    def send(self, value, nbytes, *, length=None, code=None, seq=None, data_phase=0):
        """Start a reply: ``nbytes`` bytes of ``value``, then the data phase."""
        m, frame = self.m, self.frame
        m.d.sync += [
            self.header.seq.eq(frame.seq if seq is None else seq),
            self.header.code.eq(frame.code | RESPONSE if code is None else code),
            self.header.length.eq(nbytes if length is None else length),
            self.reply.eq(value), self.reply_left.eq(nbytes), self.phase.eq(data_phase),
        ]
        m.next = "header"

    def release(self):
        """Done with the receiver's buffer: it may take the next frame."""
        self.m.d.comb += self.receiver.frame.ready.eq(1)

    def start_reading(self):
        _, address, count = self.words
        self.m.d.sync += [self.reading.eq(1), self.request_address.eq(address),
                          self.requests_left.eq(count), self.responses_left.eq(count)]

    # Elaboration ----------------------------------------------------------------------------

    def elaborate(self):
        self._elaborate_counters()
        self._elaborate_datapath()
        self._elaborate_fsm()

    def _elaborate_counters(self):
        m, counters, receiver = self.m, self.counters, self.receiver
        rx = self.engine.rx
        m.d.sync += [
            counters["uptime"].eq(counters["uptime"] + 1),
            counters["tokens"].eq(counters["tokens"] + self.runner.token_done),
            counters["bytes_received"].eq(counters["bytes_received"] + (rx.valid & rx.ready)),
            counters["frame_errors"].eq(counters["frame_errors"] + receiver.frame_error
                                        + self.not_a_command),
            counters["crc_errors"].eq(counters["crc_errors"] + receiver.crc_error),
            counters["uart_errors"].eq(counters["uart_errors"] + self.engine.uart_error),
        ]

    def _frame_status(self):
        """The checks of a frame that depend on the frame alone (registered before decode, so
        that they are not in one path with the live ones): its status if they fail, else OK."""
        m, frame = self.m, self.frame
        params, history = self.engine.params, self.engine.token_history
        sizes = space_words(params)
        size = Array(Const(sizes[s], range(max(sizes.values()) + 1)) for s in MemorySpace)
        word0, word1, word2 = self.words
        status = Signal(8)

        def first_failing(*conditions):
            for index, (failed, value) in enumerate(conditions):
                with (m.If if index == 0 else m.Elif)(failed):
                    m.d.comb += status.eq(value)
            with m.Else():
                m.d.comb += status.eq(Status.OK)

        space, address, count = word0, word1, word2
        entry, run_count, feed = word0, word1[16:], word2[:8] == RunMode.FEED
        with m.Switch(frame.code):
            with m.Case(Code.IDENTIFY, Code.STATUS, Code.ABORT):
                first_failing((frame.length != 0, Status.BAD_LENGTH))
            with m.Case(Code.WRITE, Code.READ, Code.CRC):
                expected = Mux(frame.code == Code.WRITE, MEMORY_HEADER.size + (count << 2),
                               MEMORY_HEADER.size)
                first_failing(
                    (frame.length != expected, Status.BAD_LENGTH),
                    (space >= len(MemorySpace), Status.BAD_SPACE),
                    ((frame.code == Code.READ) & (count > MAX_READ_WORDS), Status.BAD_ARGUMENT),
                    (address + count > size[space[:3]], Status.OUT_OF_RANGE))
            with m.Case(Code.RUN):
                first_failing(
                    (word2[:8] > RunMode.GENERATE, Status.BAD_ARGUMENT),
                    (frame.length != Mux(feed, MEMORY_HEADER.size + (run_count << 1),
                                         MEMORY_HEADER.size), Status.BAD_LENGTH),
                    ((run_count == 0) | (feed & (run_count > min(history, MAX_FEED_TOKENS))),
                     Status.BAD_ARGUMENT),
                    (entry >= params.program_words, Status.OUT_OF_RANGE))
            with m.Case(Code.TOKENS):
                first_failing((frame.length != 4, Status.BAD_LENGTH))
            with m.Default():
                m.d.comb += status.eq(Status.BAD_COMMAND)
        return status

    def _status(self, frame_status):
        """The status a frame gets if it is executed now: every check before any effect. The
        frame's own checks (registered, ``frame_status``) come first, then the live ones: a
        memory access or a run while the core is busy; tokens no longer in the ring."""
        m, frame, runner = self.m, self.frame, self.runner
        history = self.engine.token_history
        word0 = self.words[0]
        busy = runner.running | self.core.busy
        start, produced = word0[:16], runner.produced
        status = Signal(8)
        m.d.comb += status.eq(frame_status)
        with m.If(frame_status == Status.OK), m.Switch(frame.code):
            with m.Case(Code.WRITE, Code.READ, Code.CRC, Code.RUN), m.If(busy):
                m.d.comb += status.eq(Status.BUSY)
            # The ring holds the last ``history`` tokens; while running, the next token may
            # overwrite one more before the reply has read it.
            gone = (start > produced) | (produced - start + runner.running > history)
            with m.Case(Code.TOKENS), m.If(gone):
                m.d.comb += status.eq(Status.OUT_OF_RANGE)
        return status

    def _elaborate_datapath(self):
        m, runner, receiver = self.m, self.runner, self.receiver
        request, transmitter = self.core.memory_request, self.transmitter
        word0, word1, word2 = self.words
        index, reply, reply_left = self.index, self.reply, self.reply_left
        m.d.comb += [
            transmitter.header.payload.eq(self.header),
            transmitter.payload.payload.eq(reply[:8]),
            transmitter.payload.valid.eq(reply_left != 0),
            request.payload.space.eq(word0[:3]),
            self.checksum.data.eq(self.core.memory_response.payload),
        ]
        with m.If(transmitter.payload.valid & transmitter.payload.ready):
            m.d.sync += [reply.eq(reply >> 8), reply_left.eq(reply_left - 1)]
        with m.If(self.reading):
            m.d.comb += [request.valid.eq(self.requests_left != 0),
                         request.payload.address.eq(self.request_address)]
            with m.If(request.valid & request.ready):
                m.d.sync += [self.request_address.eq(self.request_address + 1),
                             self.requests_left.eq(self.requests_left - 1)]
        history_bits = (self.engine.token_history - 1).bit_length()
        m.d.comb += [
            runner.entry.eq(word0[:24]),
            runner.token.eq(word1[:16]),
            runner.count.eq(word1[16:]),
            runner.mode.eq(word2[0]),
            runner.load_address.eq(index[:history_bits]),
            runner.load_data.eq(Mux(index[0], receiver.read_data[16:], receiver.read_data[:16])),
            runner.history_address.eq(index[:history_bits]),
        ]

    def _replies(self):
        """The fixed replies of IDENTIFY and STATUS, as they would be sent now."""
        engine, params, counters, runner = self.engine, self.engine.params, self.counters, \
            self.runner
        identify = Cat(
            Const(Status.OK, 8), Const(PROTOCOL_VERSION, 8), Const(engine.board_id, 16),
            Const(engine.build_id, 32), Const(params.hash, 64), Const(MAX_PAYLOAD, 16),
            Const(engine.token_history, 16), Const(params.clock_hz, 32))
        status = Cat(
            Const(Status.OK, 8), self.core.busy, runner.running, Const(0, 6),
            self.core.memory_status, Const(0, 16 - len(self.core.memory_status)), self.core.cycles, Const(0, 16), self.core.instructions,
            counters["tokens"], counters["bytes_received"], counters["frame_errors"],
            counters["crc_errors"], counters["uart_errors"], counters["duplicates"],
            counters["uptime"], Const(0, 16))
        assert len(identify) == 8 * IDENTIFY_REPLY.size
        assert len(status) == 8 * STATUS_REPLY.size
        return identify, status

    def _elaborate_fsm(self):
        m, frame, receiver, runner = self.m, self.frame, self.receiver, self.runner
        frame_status = Signal(8)
        status = self._status(frame_status)
        last_valid, last_seq, last_code, last_status = Signal(), Signal(8), Signal(8), Signal(8)
        duplicate = (last_valid & ((frame.code == Code.WRITE) | (frame.code == Code.RUN))
                     & (frame.seq == last_seq) & (frame.code == last_code))
        nak_pending, nak_seq, nak_reason = Signal(), Signal(8), Signal(8)
        duplicates = self.counters["duplicates"]

        with m.FSM(name="executor"):
            with m.State("idle"):
                m.d.comb += self.engine.idle.eq(
                    (self.reply_left == 0) & ~nak_pending & ~runner.notify.valid
                    & ~runner.running & receiver.idle & ~self.engine.rx.valid
                    & self.transmitter.idle)
                with m.If(self.reply_left != 0):
                    pass    # the previous reply is still being sent from ``reply``
                with m.Elif(nak_pending):
                    m.d.sync += nak_pending.eq(0)
                    self.send(nak_reason, 1, code=Code.NAK, seq=nak_seq)
                with m.Elif(receiver.frame.valid):
                    # A command before a token notification: a core that makes tokens faster
                    # than the line carries their notifications would otherwise starve the
                    # host's commands (ABORT among them) until the run ends. The host sends one
                    # frame at a time, so notifications still go out between them.
                    m.d.sync += frame.eq(receiver.frame.payload)
                    m.d.comb += receiver.read_address.eq(0)
                    m.next = "fetch1"
                with m.Elif(runner.notify.valid):
                    m.d.comb += runner.notify.ready.eq(1)
                    self.send(runner.notify.payload.as_value(), 4, code=Code.TOKEN,
                              seq=self.run_seq)
            for i in range(1, HEADER_WORDS + 1):
                with m.State(f"fetch{i}"):
                    m.d.comb += receiver.read_address.eq(i)
                    m.d.sync += self.words[i - 1].eq(receiver.read_data)
                    m.next = f"fetch{i + 1}" if i < HEADER_WORDS else "check"
            with m.State("check"):
                m.d.sync += frame_status.eq(self._frame_status())
                m.next = "decode"
            with m.State("decode"):
                with m.If(frame.code >= COMMAND_LIMIT):
                    # Not a command (a reply or board code echoed back?): no answer, which
                    # could itself be taken for a reply or a token.
                    self.release()
                    m.d.comb += self.not_a_command.eq(1)
                    m.next = "idle"
                with m.Elif(duplicate):
                    self.release()
                    m.d.sync += duplicates.eq(duplicates + 1)
                    self.send(last_status | DUPLICATE, 1)
                with m.Else():
                    m.d.sync += [last_valid.eq(1), last_seq.eq(frame.seq),
                                 last_code.eq(frame.code), last_status.eq(status),
                                 self.index.eq(0)]
                    self._start(status)
            self._elaborate_memory_states()
            self._elaborate_reply_states()

        # After the FSM, so that a NAK arriving as the last one is taken is not lost.
        with m.If(receiver.nak):
            m.d.sync += [nak_pending.eq(1), nak_seq.eq(receiver.nak_seq),
                         nak_reason.eq(receiver.nak_reason)]

    def _start(self, status):
        """In the decode state, for a new frame: reply with an error, or start executing."""
        m, frame, runner = self.m, self.frame, self.runner
        word0, _, word2 = self.words
        identify, status_reply = self._replies()
        with m.If(status != Status.OK):
            self.release()
            self.send(status, 1)
        with m.Else(), m.Switch(frame.code):
            with m.Case(Code.IDENTIFY):
                self.release()
                self.send(identify, IDENTIFY_REPLY.size)
            with m.Case(Code.STATUS):
                self.release()
                self.send(status_reply, STATUS_REPLY.size)
            with m.Case(Code.WRITE):
                with m.If(word2 == 0):
                    self.release()
                    self.send(Status.OK, 1)
                with m.Else():
                    m.next = "write_fetch"
            with m.Case(Code.READ):
                self.release()
                self.start_reading()
                self.send(Status.OK, 1, length=1 + (word2[:16] << 2), data_phase=1)
            with m.Case(Code.CRC):
                self.release()
                self.start_reading()
                m.d.comb += self.checksum.start.eq(1)
                m.next = "crc"
            with m.Case(Code.RUN):
                m.d.sync += self.run_seq.eq(frame.seq)
                with m.If(word2[:8] == RunMode.FEED):
                    m.next = "copy_fetch"
                with m.Else():
                    self.release()
                    m.d.comb += runner.start.eq(1)
                    self.send(Status.OK, 1)
            with m.Case(Code.ABORT):
                # Taken while running, too: the run ends at the next token boundary, and the
                # reply says whether one was still running and how many steps it finished.
                self.release()
                m.d.comb += runner.stop.eq(1)
                self.send(Cat(Const(Status.OK, 8), runner.running, Const(0, 7),
                              runner.produced), ABORT_REPLY.size)
            with m.Case(Code.TOKENS):
                self.release()
                available = Signal(16)
                wanted = Signal(16)
                m.d.comb += [available.eq(runner.produced - word0[:16]),
                             wanted.eq(Mux(word0[16:] < available, word0[16:], available))]
                sent = Mux(wanted < MAX_TOKENS_PER_REPLY, wanted, MAX_TOKENS_PER_REPLY)
                m.d.sync += [self.tokens_left.eq(sent), self.index.eq(word0[:16])]
                self.send(Cat(Const(Status.OK, 8), runner.running, Const(0, 7),
                              runner.produced), 4, length=4 + (sent << 1), data_phase=2)

    def _elaborate_memory_states(self):
        """WRITE and feed copies from the buffer, and the CRC over memory."""
        m, receiver, runner, index = self.m, self.receiver, self.runner, self.index
        request, response = self.core.memory_request, self.core.memory_response
        _, word1, word2 = self.words
        with m.State("write_fetch"):
            m.d.comb += receiver.read_address.eq(HEADER_WORDS + index)
            m.next = "write"
        with m.State("write"):
            m.d.comb += [
                receiver.read_address.eq(HEADER_WORDS + index),
                request.valid.eq(1),
                request.payload.write.eq(1),
                request.payload.address.eq(word1 + index),
                request.payload.write_data.eq(receiver.read_data),
            ]
            with m.If(request.ready):
                m.d.sync += index.eq(index + 1)
                m.next = "write_fetch"
                with m.If(index + 1 == word2):
                    self.release()
                    self.send(Status.OK, 1)
        with m.State("copy_fetch"):
            m.d.comb += receiver.read_address.eq(HEADER_WORDS + index[1:])
            m.next = "copy"
        with m.State("copy"):
            m.d.comb += [receiver.read_address.eq(HEADER_WORDS + index[1:]),
                         runner.load_enable.eq(1)]
            m.d.sync += index.eq(index + 1)
            m.next = "copy_fetch"
            with m.If(index + 1 == word1[16:]):
                self.release()
                m.d.comb += runner.start.eq(1)
                self.send(Status.OK, 1)
        with m.State("crc"):
            m.d.comb += [response.ready.eq(1), self.checksum.valid.eq(response.valid)]
            with m.If(response.valid):
                m.d.sync += self.responses_left.eq(self.responses_left - 1)
            with m.If(self.responses_left == 0):
                m.d.sync += self.reading.eq(0)
                m.next = "crc_done"
        with m.State("crc_done"):
            self.send(Cat(Const(Status.OK, 8), self.checksum.crc), 5)

    def _elaborate_reply_states(self):
        """The reply's header, and the data phases of READ and TOKENS."""
        m, runner, response = self.m, self.runner, self.core.memory_response
        reply, reply_left = self.reply, self.reply_left
        with m.State("header"):
            m.d.comb += self.transmitter.header.valid.eq(1)
            with m.If(self.transmitter.header.ready), m.Switch(self.phase):
                with m.Case(0):
                    m.next = "idle"
                with m.Case(1):
                    m.next = "read_data"
                with m.Case(2):
                    m.next = "tokens_fetch"
        with m.State("read_data"):
            m.d.comb += response.ready.eq(reply_left == 0)
            with m.If(response.valid & response.ready):
                m.d.sync += [reply.eq(response.payload), reply_left.eq(4),
                             self.responses_left.eq(self.responses_left - 1)]
            with m.If(self.responses_left == 0):
                m.d.sync += self.reading.eq(0)
                m.next = "idle"
        with m.State("tokens_fetch"):
            # The history read port follows ``index``: its data is there in the next state.
            with m.If(self.tokens_left == 0):
                m.next = "idle"
            with m.Else():
                m.next = "tokens"
        with m.State("tokens"), m.If(reply_left == 0):
            m.d.sync += [reply.eq(runner.history_data), reply_left.eq(2),
                         self.index.eq(self.index + 1), self.tokens_left.eq(self.tokens_left - 1)]
            m.next = "tokens_fetch"
