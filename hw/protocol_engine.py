"""The host link's on-chip protocol engine: frames in, commands against the core, frames out.

:class:`ProtocolEngine` speaks the protocol of :mod:`host.protocol` (``docs/host-protocol.md``)
over a pair of byte streams and drives the core through :class:`hw.core_interface.CoreInterface`.
:class:`HostLink` puts it behind a UART: the piece a board's top level instantiates next to the
core. Inside the engine:

:class:`FrameReceiver`
    Unstuffs bytes, restarts on every FLAG, checks the length and the CRC-16 and keeps a good
    frame's payload in a buffer until the executor has used it; a damaged frame is dropped
    (with a NAK), a frame cut short is dropped after ``timeout_cycles`` without a byte.
:class:`FrameTransmitter`
    Sends one frame from a header and a payload byte stream, stuffing and appending the CRC.
:class:`Runner`
    Runs the program ``count`` times (feed or generate), keeps the tokens in a ring buffer that
    the host can read back, and offers each token for a notification frame.
the executor (``_Executor``, part of :class:`ProtocolEngine`)
    Takes one frame at a time: checks it completely (length, space, bounds, busy) before it
    touches the core, so that a bad frame never writes anything, then executes it and replies.
"""

# No ``from __future__ import annotations``: Amaranth reads the signature annotations.
from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal
from amaranth.lib import crc, data, fifo, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from host.protocol import (
    COMMAND_LIMIT,
    DUPLICATE,
    ESCAPE,
    ESCAPE_XOR,
    FLAG,
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
    NakReason,
    RunMode,
    Status,
    space_words,
)
from hw.core_interface import TOKEN_BITS, CoreInterface, run_layout
from hw.uart import UartRx, UartTx
from tern.params import AcceleratorParameters

__all__ = ["FrameReceiver", "FrameTransmitter", "HostLink", "ProtocolEngine", "Runner",
           "frame_layout"]

BUFFER_WORDS = -(-MAX_PAYLOAD // 4)
HEADER_WORDS = MEMORY_HEADER.size // 4
# Reply fields are shifted out of one register: wide enough for the longest fixed reply.
REPLY_BYTES = max(IDENTIFY_REPLY.size, STATUS_REPLY.size)

frame_layout = data.StructLayout({"length": 16, "seq": 8, "code": 8})


class FrameReceiver(wiring.Component):
    """Bytes to checked frames; the payload waits in a buffer until the frame is taken.

    Parameters
    ----------
    timeout_cycles : int
        A frame with no byte for this many cycles is dropped.

    Members
    -------
    i : ``In(stream.Signature(8))``
        Received bytes.
    frame : ``Out(stream.Signature(frame_layout))``
        Valid while a good frame is held; taking it releases the buffer for the next frame.
    read_address : ``In(range(BUFFER_WORDS))``
    read_data : ``Out(32)``
        The payload buffer, little-endian words, one cycle after the address.
    nak : ``Out(1)``, nak_seq : ``Out(8)``, nak_reason : ``Out(8)``
        One cycle pulse: a frame was damaged (the sequence number as received).
    crc_error, frame_error : ``Out(1)``
        One cycle pulses for the counters.
    idle : ``Out(1)``
        Not inside a frame and not holding one.
    """

    i: In(stream.Signature(8))
    frame: Out(stream.Signature(frame_layout))
    read_address: In(range(BUFFER_WORDS))
    read_data: Out(32)
    nak: Out(1)
    nak_seq: Out(8)
    nak_reason: Out(8)
    crc_error: Out(1)
    frame_error: Out(1)
    idle: Out(1)

    def __init__(self, timeout_cycles: int):
        if not (isinstance(timeout_cycles, int) and timeout_cycles > 0):
            raise ValueError(f"timeout_cycles must be a positive integer, not {timeout_cycles!r}")
        self._timeout_cycles = timeout_cycles
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        m.submodules.buffer = buffer = Memory(shape=32, depth=BUFFER_WORDS, init=[])
        write = buffer.write_port(granularity=8)
        read = buffer.read_port()
        m.submodules.crc = checker = crc.catalog.CRC16_CCITT_FALSE().create()
        m.d.comb += [read.addr.eq(self.read_address), self.read_data.eq(read.data)]

        header = Signal(frame_layout)
        index = Signal(range(MAX_PAYLOAD + 7))   # decoded bytes of this frame so far
        escaped = Signal()
        silence = Signal(range(self._timeout_cycles + 1))
        m.d.comb += self.frame.payload.eq(header)

        byte = self.i.payload
        decoded = byte ^ Mux(escaped, ESCAPE_XOR, 0)
        take = self.i.valid & self.i.ready
        payload_index = Signal(16)
        m.d.comb += [
            payload_index.eq(index - 4),
            checker.data.eq(decoded),
            write.addr.eq(payload_index[2:]),
            write.data.eq(Cat(decoded, decoded, decoded, decoded)),
        ]

        def restart():
            m.d.sync += [index.eq(0), escaped.eq(0), silence.eq(0)]
            m.d.comb += checker.start.eq(1)

        with m.FSM():
            with m.State("hunt"):
                m.d.comb += [self.i.ready.eq(1), self.idle.eq(1)]
                with m.If(take & (byte == FLAG)):
                    restart()
                    m.next = "body"
            with m.State("body"):
                m.d.comb += self.i.ready.eq(1)
                m.d.sync += silence.eq(silence + 1)
                with m.If(take & (byte == FLAG)):
                    m.d.comb += self.frame_error.eq(index != 0)
                    restart()
                with m.Elif(take & (byte == ESCAPE)):
                    m.d.sync += [escaped.eq(1), silence.eq(0)]
                with m.Elif(take):
                    m.d.sync += [escaped.eq(0), silence.eq(0), index.eq(index + 1)]
                    m.d.comb += checker.valid.eq(1)
                    length = Cat(header.length[:8], decoded)
                    with m.Switch(index):
                        with m.Case(0):
                            m.d.sync += header.length[:8].eq(decoded)
                        with m.Case(1):
                            m.d.sync += header.length[8:].eq(decoded)
                            with m.If(length > MAX_PAYLOAD):
                                m.d.comb += [self.frame_error.eq(1), self.nak.eq(1),
                                             self.nak_reason.eq(NakReason.TOO_LONG)]
                                m.next = "hunt"
                        with m.Case(2):
                            m.d.sync += header.seq.eq(decoded)
                        with m.Case(3):
                            m.d.sync += header.code.eq(decoded)
                        with m.Default():
                            with m.If(payload_index < header.length):
                                m.d.comb += write.en.eq(1 << payload_index[:2])
                            with m.If(index == header.length + 5):
                                m.next = "check"
                with m.Elif(silence == self._timeout_cycles):
                    m.d.comb += self.frame_error.eq(1)
                    m.next = "hunt"
            with m.State("check"):
                # The CRC register has taken the last byte: a good frame leaves it at 0.
                with m.If(checker.match_detected):
                    m.next = "ready"
                with m.Else():
                    m.d.comb += [self.crc_error.eq(1), self.nak.eq(1),
                                 self.nak_reason.eq(NakReason.CRC)]
                    m.next = "hunt"
            with m.State("ready"):
                m.d.comb += self.frame.valid.eq(1)
                with m.If(self.frame.ready):
                    m.next = "hunt"
        m.d.comb += self.nak_seq.eq(header.seq)
        return m


class FrameTransmitter(wiring.Component):
    """One frame from a header and ``length`` payload bytes: FLAG, stuffed body, CRC.

    Members
    -------
    header : ``In(stream.Signature(frame_layout))``
    payload : ``In(stream.Signature(8))``
        Exactly ``length`` bytes after each header.
    o : ``Out(stream.Signature(8))``
    idle : ``Out(1)``
    """

    header: In(stream.Signature(frame_layout))
    payload: In(stream.Signature(8))
    o: Out(stream.Signature(8))
    idle: Out(1)

    def elaborate(self, platform):
        m = Module()
        m.submodules.crc = generator = crc.catalog.CRC16_CCITT_FALSE().create()
        header = Signal(frame_layout)
        sent = Signal(16)

        # The unstuffed byte offered this cycle; ``raw`` bytes (the FLAG) are not escaped.
        byte, valid, raw = Signal(8), Signal(), Signal()
        pending, held = Signal(), Signal(8)
        special = ~raw & ((byte == FLAG) | (byte == ESCAPE))
        accepted = Signal()
        with m.If(pending):
            m.d.comb += [self.o.payload.eq(held ^ ESCAPE_XOR), self.o.valid.eq(1)]
            with m.If(self.o.ready):
                m.d.sync += pending.eq(0)
        with m.Else():
            m.d.comb += [self.o.payload.eq(Mux(special, ESCAPE, byte)),
                         self.o.valid.eq(valid), accepted.eq(valid & self.o.ready)]
            with m.If(accepted & special):
                m.d.sync += [pending.eq(1), held.eq(byte)]
        trailer = Signal()   # the CRC bytes themselves are not added to the CRC
        m.d.comb += [generator.data.eq(byte), generator.valid.eq(accepted & ~raw & ~trailer)]

        def send(value, next_state):
            m.d.comb += [byte.eq(value), valid.eq(1)]
            with m.If(accepted):
                m.next = next_state

        with m.FSM():
            with m.State("idle"):
                m.d.comb += [self.header.ready.eq(~pending), self.idle.eq(~pending)]
                with m.If(self.header.valid & ~pending):
                    m.d.sync += [header.eq(self.header.payload), sent.eq(0)]
                    m.next = "flag"
            with m.State("flag"):
                m.d.comb += [raw.eq(1), generator.start.eq(1)]
                send(FLAG, "length_low")
            with m.State("length_low"):
                send(header.length[:8], "length_high")
            with m.State("length_high"):
                send(header.length[8:], "seq")
            with m.State("seq"):
                send(header.seq, "code")
            with m.State("code"):
                send(header.code, "payload")
            with m.State("payload"):
                with m.If(sent == header.length):
                    m.next = "crc_high"
                with m.Else():
                    m.d.comb += [byte.eq(self.payload.payload), valid.eq(self.payload.valid),
                                 self.payload.ready.eq(accepted)]
                    with m.If(accepted):
                        m.d.sync += sent.eq(sent + 1)
            with m.State("crc_high"):
                m.d.comb += trailer.eq(1)
                send(generator.crc[8:], "crc_low")
            with m.State("crc_low"):
                m.d.comb += trailer.eq(1)
                send(generator.crc[:8], "idle")
        return m


class Runner(wiring.Component):
    """Runs the program ``count`` times and keeps the tokens in a ring buffer.

    In feed mode step ``i`` takes the token at ring slot ``i`` (loaded beforehand through the
    ``load_*`` port); in generate mode step 0 takes ``token`` and step ``i`` the output of step
    ``i - 1``. Step ``i`` writes its output to slot ``i mod history`` and offers it on
    ``notify``; the next step starts only when ``notify`` is free again, so that every token
    is offered.

    Parameters
    ----------
    history : int
        Ring buffer slots, a power of two.

    Members
    -------
    start : ``In(1)``
        Start a run with ``entry``, ``token``, ``count`` (at least 1) and ``mode``.
    run : ``Out(stream.Signature(run_layout))``, done : ``In(stream.Signature(16))``
        To the core.
    notify : ``Out(stream.Signature({"index": 16, "token": 16}))``
    running : ``Out(1)``
    produced : ``Out(16)``
        Steps finished in the current (or last) run.
    token_done : ``Out(1)``
        One cycle pulse per finished step.
    history_address : ``In(range(history))``, history_data : ``Out(16)``
        A read port of the ring, one cycle latency.
    load_address : ``In(range(history))``, load_data : ``In(16)``, load_enable : ``In(1)``
        A write port of the ring, for feed tokens; ignored while running.
    """

    def __init__(self, history: int):
        if not (isinstance(history, int) and history >= 2 and history & (history - 1) == 0):
            raise ValueError(f"the token history must be a power of two of at least 2, "
                             f"not {history!r}")
        self._history = history
        super().__init__({
            "start": In(1),
            "entry": In(24),
            "token": In(TOKEN_BITS),
            "count": In(16),
            "mode": In(1),
            "run": Out(stream.Signature(run_layout)),
            "done": In(stream.Signature(TOKEN_BITS)),
            "notify": Out(stream.Signature(data.StructLayout({"index": 16, "token": 16}))),
            "running": Out(1),
            "produced": Out(16),
            "token_done": Out(1),
            "history_address": In(range(history)),
            "history_data": Out(TOKEN_BITS),
            "load_address": In(range(history)),
            "load_data": In(TOKEN_BITS),
            "load_enable": In(1),
        })

    def elaborate(self, platform):
        m = Module()
        depth = self._history
        m.submodules.ring = ring = Memory(shape=TOKEN_BITS, depth=depth, init=[])
        write, reader, own_read = ring.write_port(), ring.read_port(), ring.read_port()
        m.d.comb += [reader.addr.eq(self.history_address), self.history_data.eq(reader.data)]

        entry, count = Signal(24), Signal(16)
        generate, previous = Signal(), Signal(TOKEN_BITS)
        slot = self.produced[:(depth - 1).bit_length()]
        m.d.comb += [
            own_read.addr.eq(slot),
            self.run.payload.entry.eq(entry),
            self.run.payload.token.eq(Mux(generate, previous, own_read.data)),
            write.addr.eq(Mux(self.running, slot, self.load_address)),
            write.data.eq(Mux(self.running, self.done.payload, self.load_data)),
            write.en.eq(Mux(self.running, self.token_done, self.load_enable)),
        ]
        with m.If(self.notify.ready):
            m.d.sync += self.notify.valid.eq(0)

        with m.FSM():
            with m.State("idle"), m.If(self.start):
                m.d.sync += [entry.eq(self.entry), count.eq(self.count),
                             generate.eq(self.mode == RunMode.GENERATE),
                             previous.eq(self.token), self.produced.eq(0)]
                m.next = "fetch"
            with m.State("fetch"):
                # The feed token of this step is read from the ring in this cycle.
                m.d.comb += self.running.eq(1)
                m.next = "issue"
            with m.State("issue"):
                m.d.comb += [self.running.eq(1), self.run.valid.eq(1)]
                with m.If(self.run.ready):
                    m.next = "wait"
            with m.State("wait"):
                m.d.comb += [self.running.eq(1), self.done.ready.eq(~self.notify.valid)]
                with m.If(self.done.valid & self.done.ready):
                    m.d.comb += self.token_done.eq(1)
                    m.d.sync += [
                        self.notify.valid.eq(1),
                        self.notify.payload.index.eq(self.produced),
                        self.notify.payload.token.eq(self.done.payload),
                        previous.eq(self.done.payload),
                        self.produced.eq(self.produced + 1),
                    ]
                    m.next = "step_done"
            with m.State("step_done"):
                m.d.comb += self.running.eq(self.produced != count)
                m.next = "idle"
                with m.If(self.produced != count):
                    m.next = "fetch"
        return m


class ProtocolEngine(wiring.Component):
    """The host protocol over byte streams, executed against the core.

    Every frame is checked completely before the core is touched: its length against the
    command, the space, ``address + count`` against the space's size
    (:func:`host.protocol.space_words`), and that no run is in progress. A frame that fails
    gets an error status and has no effect. A WRITE or RUN frame with the sequence number and
    code of the frame executed just before is a repeat (its reply was lost): it is answered
    with the first answer's status and the :data:`~host.protocol.DUPLICATE` bit, and not
    executed again. Reads have no side effects and are simply executed again.

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
            with m.Case(Code.IDENTIFY, Code.STATUS):
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
            Const(0, 16), self.core.cycles, Const(0, 16), self.core.instructions,
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
                with m.Elif(runner.notify.valid):
                    m.d.comb += runner.notify.ready.eq(1)
                    self.send(runner.notify.payload.as_value(), 4, code=Code.TOKEN,
                              seq=self.run_seq)
                with m.Elif(receiver.frame.valid):
                    m.d.sync += frame.eq(receiver.frame.payload)
                    m.d.comb += receiver.read_address.eq(0)
                    m.next = "fetch1"
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


class HostLink(wiring.Component):
    """The protocol engine behind a UART: what a board's top level puts next to the core.

    Received bytes pass through a FIFO (the engine stops taking bytes while a frame waits to
    be executed); UART framing errors and overruns are counted in STATUS.

    Parameters
    ----------
    params : AcceleratorParameters
        ``params.clock_hz`` sets the UART's bit timing.
    baud : int
        Line rate (see :func:`hw.uart.bit_period` for the limits).
    rx_fifo_depth : int
        Bytes the receive FIFO holds.
    **engine_options
        ``build_id``, ``board_id``, ``frame_timeout_cycles``, ``token_history``: see
        :class:`ProtocolEngine`.

    Members
    -------
    uart_rx : ``In(1, init=1)``
    uart_tx : ``Out(1, init=1)``
    core : ``Out(CoreInterface(params))``
    idle : ``Out(1)``
        Nothing in progress anywhere, the core included: a simulator may stop the clock.
    """

    def __init__(self, params: AcceleratorParameters, *, baud: int = 3_000_000,
                 rx_fifo_depth: int = 32, **engine_options):
        self._engine = ProtocolEngine(params, **engine_options)
        self._receiver = UartRx(params.clock_hz, baud)
        self._transmitter = UartTx(params.clock_hz, baud)
        self._baud = baud
        self._rx_fifo_depth = rx_fifo_depth
        super().__init__({
            "uart_rx": In(1, init=1),
            "uart_tx": Out(1, init=1),
            "core": Out(CoreInterface(params)),
            "idle": Out(1),
        })

    @property
    def baud(self) -> int:
        return self._baud

    @property
    def engine(self) -> ProtocolEngine:
        return self._engine

    def elaborate(self, platform):
        m = Module()
        m.submodules.engine = engine = self._engine
        m.submodules.uart_rx = receiver = self._receiver
        m.submodules.uart_tx = transmitter = self._transmitter
        m.submodules.rx_fifo = rx_fifo = fifo.SyncFIFOBuffered(width=8, depth=self._rx_fifo_depth)
        wiring.connect(m, receiver.o, rx_fifo.w_stream)
        wiring.connect(m, rx_fifo.r_stream, engine.rx)
        wiring.connect(m, engine.tx, transmitter.i)
        wiring.connect(m, engine.core, wiring.flipped(self.core))
        m.d.comb += [
            receiver.rx.eq(self.uart_rx),
            self.uart_tx.eq(transmitter.tx),
            engine.uart_error.eq(receiver.framing_error | receiver.overrun),
            self.idle.eq(engine.idle & ~receiver.busy & ~receiver.o.valid & ~rx_fifo.r_rdy
                         & ~transmitter.busy & ~self.core.busy),
        ]
        return m
