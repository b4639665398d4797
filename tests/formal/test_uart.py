"""Formal properties of the UART (4 cycles a bit, the fewest allowed): the receiver's stream
rules for any line (k-induction), and a transmitter looped back into a receiver delivering
every byte once, unchanged, with no framing error or overrun (bounded)."""

import pytest
from amaranth.hdl import Array, Module, Signal

from tern_fpga.hw.uart import MIN_CYCLES_PER_BIT, UartRx, UartTx

from support.formal import (
    Assert,
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

BAUD = 1
CLOCK_HZ = MIN_CYCLES_PER_BIT * BAUD
# A frame is 10 bits of 4 cycles; the receiver decides it a few cycles after the transmitter
# has taken the next byte. DEPTH holds the first byte's delivery with the second in flight.
FRAME_CYCLES = 10 * MIN_CYCLES_PER_BIT
DEPTH = FRAME_CYCLES + 8


class ReceiverStreams(Properties):
    """The receiver on any line: ``o`` keeps valid until taken and keeps its byte unless an
    overrun replaced it (documented); nothing out of reset."""

    def __init__(self, receiver=None):
        super().__init__()
        self.receiver = receiver if receiver is not None else UartRx(CLOCK_HZ, BAUD)

    def build(self, m: Module):
        m.submodules.receiver = receiver = self.receiver
        started = self.started(m)
        m.d.comb += receiver.rx.eq(self.free(1, "line"))
        self.watch(m, receiver.o, "o", replaced=receiver.overrun)
        with m.If(~started):
            m.d.comb += [Assert(~receiver.o.valid, "no_byte_out_of_reset"),
                         Assert(~receiver.busy, "idle_out_of_reset")]


class Loopback(Properties):
    """Any bytes offered to a transmitter whose line feeds a receiver (always ready): each
    byte received is the oldest one sent and not yet received, bytes received never pass bytes sent and equal them
    whenever both sides are idle; no framing error, no overrun; the line idles high out
    of reset."""

    def __init__(self, transmitter=None, receiver=None):
        super().__init__()
        self.transmitter = transmitter if transmitter is not None else UartTx(CLOCK_HZ, BAUD)
        self.receiver = receiver if receiver is not None else UartRx(CLOCK_HZ, BAUD)

    def build(self, m: Module):
        m.submodules.transmitter = transmitter = self.transmitter
        m.submodules.receiver = receiver = self.receiver
        started = self.started(m)
        sent = self.drive(m, transmitter.i, "i")
        received = self.watch(m, receiver.o, "o", ready=1)
        m.d.comb += receiver.rx.eq(transmitter.tx)
        # The receiver may still be deciding one byte when the next is taken: the bytes in
        # flight, by the parity of their count.
        in_flight = Array(Signal(8, name=f"in_flight_{index}") for index in range(2))
        with m.If(transmitter.i.valid & transmitter.i.ready):
            m.d.sync += in_flight[sent[0]].eq(transmitter.i.payload)
        with m.If(~started):
            m.d.comb += [Assert(transmitter.tx, "line_high_out_of_reset"),
                         Assert(~transmitter.busy, "transmitter_idle_out_of_reset")]
        with m.If(receiver.o.valid):
            m.d.comb += Assert(receiver.o.payload == in_flight[received[0]], "byte_unchanged")
        m.d.comb += [Assert(received <= sent, "no_made_up_byte"),
                     Assert(sent - received <= 2, "two_bytes_in_flight_at_most"),
                     Assert(~receiver.framing_error, "no_framing_error"),
                     Assert(~receiver.overrun, "no_overrun")]
        # The receiver decides a frame in the middle of its stop bit, some cycles behind the
        # transmitter (the synchroniser): the counts agree once both sides are idle.
        with m.If(~transmitter.busy & ~receiver.busy & ~receiver.o.valid):
            m.d.comb += Assert(received == sent, "no_lost_byte")
        m.d.comb += [Cover((sent == 2) & receiver.o.valid, "byte_out_with_next_in_flight"),
                     Cover(transmitter.i.valid & ~transmitter.i.ready, "byte_waits")]


class FastTransmitter(UartTx):
    """A mutant: the transmitter's bits a quarter shorter than the receiver expects."""

    def __init__(self):
        super().__init__(CLOCK_HZ, BAUD)
        self._period = self._period * 3 // 4


def test_receiver_stream_rules_proved():
    prove(ReceiverStreams(), depth=4)


def test_loopback_bounded():
    bounded(Loopback(), depth=DEPTH)


def test_loopback_covered():
    cover(Loopback(), depth=DEPTH)


@pytest.mark.parametrize("fault", ["drop_valid", "change_payload"])
def test_broken_receiver_refuted(fault):
    refuted(ReceiverStreams(BrokenOutput(UartRx(CLOCK_HZ, BAUD), "o", fault)), depth=DEPTH)


def test_receiver_losing_a_byte_refuted():
    mutant = BrokenOutput(UartRx(CLOCK_HZ, BAUD), "o", "lose_first")
    refuted(Loopback(receiver=mutant), depth=DEPTH)


def test_fast_transmitter_refuted():
    refuted(Loopback(transmitter=FastTransmitter()), depth=DEPTH)
