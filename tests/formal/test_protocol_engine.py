"""Formal properties of the host link's protocol engine (small memories, a 16-cycle frame
timeout, a two-token history): its byte stream's rules and its memory requests' bounds for any
frames at all (the frame receiver replaced by free frames, a superset of what it can deliver),
and an answer to IDENTIFY within a stated number of cycles after any bytes (bounded)."""

import pytest
from amaranth.hdl import Array, Const, Module, Signal
from amaranth.lib import wiring

from tern_fpga.contracts.params import PRESETS
from tern_fpga.contracts.protocol import (
    FLAG,
    IDENTIFY_REPLY,
    RESPONSE,
    Code,
    MemorySpace,
    Status,
    encode_frame,
    space_words,
)
from tern_fpga.hw import protocol_engine
from tern_fpga.hw.framing import FrameReceiver
from tern_fpga.hw.protocol_engine import ProtocolEngine

from support.formal import (
    Assert,
    Assume,
    BrokenOutput,
    Cover,
    Properties,
    bounded,
    cover,
    refuted,
)

# every proof runs on one test worker (make test: --dist loadgroup), beside the rest of the suite
pytestmark = pytest.mark.xdist_group("formal")

# Spaces of 2 to 16 words: a write past any of them fits in a short bounded check.
PARAMS = PRESETS["micro"].replace(
    name="formal-link", ternary_lanes=8, vector_lanes=1, program_words=2,
    weight_memory_words=4, vector_memory_words=4, vector_work_words=0,
    embedding_memory_words=4, max_features=8, rsqrt_table_bits=3, sigmoid_table_bits=2)
SIZES = space_words(PARAMS)
TIMEOUT_CYCLES = 16
# Cycles of the bounds check: a frame, its three header words, the checks, and the first four
# writes (two cycles each); 20 cycles took 3 minutes, 16 took 25 s.
BOUNDS_DEPTH = 14
# The liveness check: any bytes (or none) for PREFIX_CYCLES, then an IDENTIFY frame offered
# byte after byte; its reply's header has left within ANSWER_CYCLES of the frame's first byte.
# A prefix of 7 bytes can be a whole good frame (the solver finds one: a STATUS), whose reply
# of 48 bytes goes first; 6 bytes make at most a NAK (a length over MAX_PAYLOAD).
PREFIX_CYCLES = 6
IDENTIFY_FRAME = encode_frame(0x11, Code.IDENTIFY)
ANSWER_CYCLES = 28   # 26 is not enough (a test shows it)
REPLY_HEADER = bytes([FLAG, IDENTIFY_REPLY.size, 0, 0x11, Code.IDENTIFY | RESPONSE])


def engine(**options):
    return ProtocolEngine(PARAMS, frame_timeout_cycles=TIMEOUT_CYCLES, token_history=2,
                          **options)


class AnyFrames(wiring.Component):
    """A stand-in for the frame receiver that drives nothing: the properties drive its
    outputs with free values (any header, any payload words, any pulses)."""

    def __init__(self):
        real = FrameReceiver(TIMEOUT_CYCLES)
        real._MustUse__silence = True
        super().__init__(dict(real.signature.members))

    def elaborate(self, platform):
        return Module()


def engine_with_any_frames(engine_=None):
    """An engine whose receiver is :class:`AnyFrames`."""
    unit = engine_ if engine_ is not None else engine()
    unit._receiver._MustUse__silence = True
    unit._receiver = AnyFrames()
    return unit


class CoreSide(Properties):
    """The core: requests taken at will, responses and run ends offered at will (following
    the stream rules), any busy; its counters (only reported) at 0."""

    def core(self, m, core):
        m.d.comb += [core.memory_request.ready.eq(self.free(1, "request_ready")),
                     core.run.ready.eq(self.free(1, "run_ready")),
                     core.busy.eq(self.free(1, "core_busy"))]
        self.drive(m, core.memory_response, "response")
        self.drive(m, core.done, "done")


class EngineSafety(CoreSide):
    """For any frames and any core: ``tx`` keeps valid and byte until taken; nothing is
    offered out of reset; every memory request (read or write) names a space that exists and
    an address inside it."""

    def __init__(self, unit=None):
        super().__init__()
        self.unit = unit if unit is not None else engine_with_any_frames()

    def build(self, m: Module):
        m.submodules.engine = unit = self.unit
        frames = unit._receiver
        started = self.started(m)
        self.core(m, unit.core)
        self.drive(m, unit.rx, "rx")
        self.watch(m, unit.tx, "tx")
        self.drive(m, frames.frame, "frame")
        # Any frame header and any payload words; the receiver's error pulses only make NAKs
        # and count, so they stay low here (fewer free bits: a deeper check in the same time).
        m.d.comb += [frames.read_data.eq(self.free(32, "receiver_read_data")),
                     frames.idle.eq(~frames.frame.valid), unit.uart_error.eq(0)]
        request = unit.core.memory_request
        space, address = request.payload.space, request.payload.address
        size = Array(Const(SIZES[space], 32) for space in MemorySpace)
        with m.If(~started):
            m.d.comb += [Assert(~unit.tx.valid, "no_byte_out_of_reset"),
                         Assert(~request.valid, "no_request_out_of_reset"),
                         Assert(~unit.core.run.valid, "no_run_out_of_reset")]
        with m.If(request.valid):
            m.d.comb += [Assert(space < len(MemorySpace), "request_space_exists"),
                         Assert(address < size[space[:3]], "request_in_bounds")]
        m.d.comb += [
            Cover(request.valid & request.payload.write & (space == MemorySpace.PROGRAM)
                  & (address == SIZES[MemorySpace.PROGRAM] - 1), "last_program_word_written"),
            Cover(request.valid & ~request.payload.write
                  & (space == MemorySpace.TABLES), "table_read"),
            Cover(unit.tx.valid & ~unit.tx.ready, "byte_waits"),
        ]


class IdentifyAnswered(CoreSide):
    """Any bytes (or none) for :data:`PREFIX_CYCLES`, then :data:`IDENTIFY_FRAME` offered byte
    after byte and the line always ready: by :data:`ANSWER_CYCLES` after the frame's first
    byte the reply's header (:data:`REPLY_HEADER`) has left on ``tx``."""

    def __init__(self, unit=None, *, answer_cycles=ANSWER_CYCLES):
        super().__init__()
        self.unit = unit if unit is not None else engine()
        self.answer_cycles = answer_cycles

    def build(self, m: Module):
        m.submodules.engine = unit = self.unit
        self.core(m, unit.core)
        m.d.comb += unit.uart_error.eq(0)
        bound = PREFIX_CYCLES + self.answer_cycles
        cycle = Signal(range(bound + 2))
        m.d.sync += cycle.eq(cycle + (cycle <= bound))
        prefix = cycle < PREFIX_CYCLES
        taken = self.drive(m, unit.rx, "rx")
        # The frame's bytes, offered from the end of the prefix (the prefix's last byte may
        # still wait: the stream rules hold it).
        sent = Signal(range(len(IDENTIFY_FRAME) + 1))
        frame_bytes = Array(Const(byte, 8) for byte in IDENTIFY_FRAME)
        pending = Signal()
        m.d.sync += pending.eq(unit.rx.valid & ~unit.rx.ready)
        with m.If(~prefix & ~pending):
            m.d.comb += Assume(unit.rx.valid == (sent < len(IDENTIFY_FRAME)))
            with m.If(unit.rx.valid):
                m.d.comb += Assume(unit.rx.payload == frame_bytes[sent])
        with m.If(~prefix & unit.rx.valid & unit.rx.ready & ~pending):
            m.d.sync += sent.eq(sent + 1)
        del taken
        m.d.comb += unit.tx.ready.eq(1)
        matched = Signal(range(len(REPLY_HEADER) + 1))
        expected = Array(Const(byte, 8) for byte in REPLY_HEADER)
        with m.If(unit.tx.valid & (matched < len(REPLY_HEADER))):
            with m.If(unit.tx.payload == expected[matched]):
                m.d.sync += matched.eq(matched + 1)
            with m.Else():
                m.d.sync += matched.eq(unit.tx.payload == FLAG)
        with m.If(cycle == bound):
            m.d.comb += Assert(matched == len(REPLY_HEADER), "identify_answered")


class _SkipsRangeCheck(protocol_engine._Executor):
    """A mutant executor that forgets OUT_OF_RANGE (the space and length checks remain)."""

    def _frame_status(self):
        status = super()._frame_status()
        fixed = Signal(8)
        self.m.d.comb += fixed.eq(status)
        with self.m.If(status == Status.OUT_OF_RANGE):
            self.m.d.comb += fixed.eq(Status.OK)
        return fixed


class SkipsRangeCheck(ProtocolEngine):
    def elaborate(self, platform):
        real, protocol_engine._Executor = protocol_engine._Executor, _SkipsRangeCheck
        try:
            return super().elaborate(platform)
        finally:
            protocol_engine._Executor = real


def test_engine_safety_bounded():
    bounded(EngineSafety(), depth=BOUNDS_DEPTH)


def test_engine_safety_covered():
    cover(EngineSafety(), depth=BOUNDS_DEPTH)


def test_engine_without_range_check_refuted():
    mutant = engine_with_any_frames(SkipsRangeCheck(
        PARAMS, frame_timeout_cycles=TIMEOUT_CYCLES, token_history=2))
    refuted(EngineSafety(mutant), depth=BOUNDS_DEPTH)


@pytest.mark.parametrize("fault", ["drop_valid", "change_payload"])
def test_broken_tx_refuted(fault):
    mutant = BrokenOutput(engine_with_any_frames(), "tx", fault)
    mutant._receiver = mutant._unit._receiver
    refuted(EngineSafety(mutant), depth=BOUNDS_DEPTH)


def test_identify_answered_bounded():
    bounded(IdentifyAnswered(), depth=PREFIX_CYCLES + ANSWER_CYCLES + 1)


def test_identify_answer_bound_nearly_tight_refuted():
    # Two cycles fewer are not enough for some prefix: the bound is not loose.
    refuted(IdentifyAnswered(answer_cycles=ANSWER_CYCLES - 2),
            depth=PREFIX_CYCLES + ANSWER_CYCLES - 1)


def test_engine_losing_its_answer_refuted():
    refuted(IdentifyAnswered(BrokenOutput(engine(), "tx", "lose_first")),
            depth=PREFIX_CYCLES + ANSWER_CYCLES + 1)
