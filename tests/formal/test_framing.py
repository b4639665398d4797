"""Formal properties of the host link's framing: the receiver's ``frame`` stream for any bytes
(k-induction), the transmitter's byte stream (k-induction), and a transmitter looped back into
a receiver delivering each frame once with its header and first payload byte unchanged, with no
NAK, CRC or frame error (bounded)."""

import pytest
from amaranth.hdl import Array, Module, Signal

from tern_fpga.hw.framing import FrameReceiver, FrameTransmitter

from support.formal import (
    Assert,
    Assume,
    BrokenOutput,
    Cover,
    Properties,
    bounded,
    cover,
    prove,
    refuted,
)

# every proof runs on one test worker (make test: --dist loadgroup), beside the rest of the suite
pytestmark = pytest.mark.xdist_group("formal")

# The receiver drops a frame after this many cycles without a byte.
TIMEOUT_CYCLES = 8
# Payloads of the loopback: at most this many bytes (a frame is then at most 15 bytes on the
# line, every byte escaped), so that one frame and its check fit in DEPTH.
MAX_LENGTH = 1
DEPTH = 20
# The values of the loopback's sequence numbers, codes and payload bytes.
BYTES = (0x00, 0x7D, 0x7E, 0xA5)


class ReceiverStreams(Properties):
    """The receiver on any bytes: ``frame`` keeps valid and header until taken; nothing out of
    reset; it takes no byte while it holds a frame."""

    def __init__(self, receiver=None):
        super().__init__()
        self.receiver = receiver if receiver is not None else FrameReceiver(TIMEOUT_CYCLES)

    def build(self, m: Module):
        m.submodules.receiver = receiver = self.receiver
        started = self.started(m)
        self.drive(m, receiver.i, "i")
        self.watch(m, receiver.frame, "frame")
        m.d.comb += receiver.read_address.eq(self.free(receiver.read_address.shape(), "address"))
        with m.If(~started):
            m.d.comb += [Assert(~receiver.frame.valid, "no_frame_out_of_reset"),
                         Assert(receiver.idle, "idle_out_of_reset")]
        with m.If(receiver.frame.valid):
            m.d.comb += Assert(~receiver.i.ready, "no_byte_while_holding_a_frame")


class TransmitterStreams(Properties):
    """The transmitter: its byte stream keeps valid and byte until taken (the header and
    payload streams assumed to follow the rules); nothing out of reset."""

    def __init__(self, transmitter=None):
        super().__init__()
        self.transmitter = transmitter if transmitter is not None else FrameTransmitter()

    def build(self, m: Module):
        m.submodules.transmitter = transmitter = self.transmitter
        started = self.started(m)
        self.drive(m, transmitter.header, "header")
        self.drive(m, transmitter.payload, "payload")
        self.watch(m, transmitter.o, "o")
        with m.If(~started):
            m.d.comb += [Assert(~transmitter.o.valid, "no_byte_out_of_reset"),
                         Assert(transmitter.idle, "idle_out_of_reset")]


class Loopback(Properties):
    """Headers (payloads of at most :data:`MAX_LENGTH` bytes, offered without gaps) through a
    transmitter into a receiver: a frame received has the header sent and its first payload
    byte, frames received never pass headers sent, no NAK, CRC or frame error."""

    def __init__(self, transmitter=None, receiver=None):
        super().__init__()
        self.transmitter = transmitter if transmitter is not None else FrameTransmitter()
        self.receiver = receiver if receiver is not None else FrameReceiver(TIMEOUT_CYCLES)

    def build(self, m: Module):
        m.submodules.transmitter = transmitter = self.transmitter
        m.submodules.receiver = receiver = self.receiver
        m.d.comb += [receiver.i.payload.eq(transmitter.o.payload),
                     receiver.i.valid.eq(transmitter.o.valid),
                     transmitter.o.ready.eq(receiver.i.ready),
                     receiver.read_address.eq(0)]
        headers = self.drive(m, transmitter.header, "header")
        self.drive(m, transmitter.payload, "payload")
        m.d.comb += Assume(transmitter.payload.valid)   # no gap: the receiver would time out
        frames = self.watch(m, receiver.frame, "frame")
        header = transmitter.header.payload
        m.d.comb += Assume(~transmitter.header.valid | (header.length <= MAX_LENGTH))
        # Bytes from a few values (the two that are escaped among them): the solver proves
        # the two CRCs equal for these quickly; for free bytes it had not in 10 minutes.
        for byte in (header.seq, header.code, transmitter.payload.payload):
            m.d.comb += Assume(byte.matches(*BYTES))
        # The receiver may hold one frame while the transmitter sends the next: the frames in
        # flight (header, first payload byte), by the parity of their count.
        sent = Array(Signal.like(transmitter.header.payload, name=f"sent_{index}")
                     for index in range(2))
        first_byte = Array(Signal(8, name=f"first_byte_{index}") for index in range(2))
        sending = Signal()   # parity of the frame in the transmitter
        bytes_of_frame = Signal(range(MAX_LENGTH + 1))
        with m.If(transmitter.header.valid & transmitter.header.ready):
            m.d.sync += [sent[headers[0]].eq(transmitter.header.payload),
                         sending.eq(headers[0]), bytes_of_frame.eq(0)]
        with m.If(transmitter.payload.valid & transmitter.payload.ready):
            m.d.sync += bytes_of_frame.eq(bytes_of_frame + 1)
            with m.If(bytes_of_frame == 0):
                m.d.sync += first_byte[sending].eq(transmitter.payload.payload)
        held = sent[frames[0]]
        with m.If(receiver.frame.valid):
            m.d.comb += Assert(receiver.frame.payload.as_value() == held.as_value(),
                               "header_unchanged")
            with m.If(held.length != 0):
                m.d.comb += Assert(receiver.read_data[:8] == first_byte[frames[0]],
                                   "payload_unchanged")
        m.d.comb += [Assert(frames <= headers, "no_made_up_frame"),
                     Assert(headers - frames <= 2, "two_frames_in_flight_at_most"),
                     Assert(~receiver.nak, "no_nak"),
                     Assert(~receiver.crc_error, "no_crc_error"),
                     Assert(~receiver.frame_error, "no_frame_error"),
                     Cover(receiver.frame.valid & (held.length == MAX_LENGTH), "longest_frame"),
                     Cover(transmitter.o.valid & (transmitter.o.payload == 0x7D), "escape_sent")]


def test_receiver_stream_rules_proved():
    prove(ReceiverStreams(), depth=3)


def test_transmitter_stream_rules_proved():
    prove(TransmitterStreams(), depth=3)


def test_loopback_bounded():
    bounded(Loopback(), depth=DEPTH)


def test_loopback_covered():
    cover(Loopback(), depth=DEPTH)


@pytest.mark.parametrize("fault", ["drop_valid", "change_payload"])
def test_broken_transmitter_refuted(fault):
    refuted(TransmitterStreams(BrokenOutput(FrameTransmitter(), "o", fault)), depth=DEPTH)


@pytest.mark.parametrize("fault", ["drop_valid", "change_payload"])
def test_broken_receiver_refuted(fault):
    mutant = BrokenOutput(FrameReceiver(TIMEOUT_CYCLES), "frame", fault)
    refuted(ReceiverStreams(mutant), depth=DEPTH)


@pytest.mark.parametrize("fault", ["change_payload", "lose_first"])
def test_broken_loopback_refuted(fault):
    refuted(Loopback(BrokenOutput(FrameTransmitter(), "o", fault)), depth=DEPTH)
