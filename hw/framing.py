"""The host link's framing in gateware (``docs/host-protocol.md``): :class:`FrameReceiver`
unstuffs bytes, restarts on every FLAG, checks the length and the CRC-16 and keeps a good frame's
payload until it is used (a damaged frame is dropped with a NAK, a frame cut short after
``timeout_cycles`` without a byte); :class:`FrameTransmitter` sends one frame from a header and a
payload byte stream, stuffing and appending the CRC."""

# No ``from __future__ import annotations``: Amaranth reads the signature annotations.
from amaranth.hdl import Cat, Module, Mux, Signal
from amaranth.lib import crc, data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from tern_fpga.contracts.protocol import (
    ESCAPE,
    ESCAPE_XOR,
    FLAG,
    MAX_PAYLOAD,
    NakReason,
)

__all__ = ["BUFFER_WORDS", "FrameReceiver", "FrameTransmitter", "frame_layout"]

BUFFER_WORDS = -(-MAX_PAYLOAD // 4)

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
