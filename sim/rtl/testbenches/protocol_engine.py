"""cocotb fuzz test of :class:`tern_fpga.hw.protocol_engine.ProtocolEngine`, run by
``test_protocol_engine.py``.

The engine's byte streams are driven directly (no UART) with a seeded mix of good frames,
frames with a good CRC but a wrong length, space, address or argument, repeated frames,
damaged and cut frames and random bytes. A Python model of the core answers the memory port
(with random stalls) and runs; a Python model of the engine predicts every reply. Some runs
pause after ``k`` of their tokens while more frames arrive: the core either holds the next
token (busy) or does not take its run (idle, the RUN still in progress). Memory commands and
RUN must then be answered BUSY, STATUS must show the two flags apart, and TOKENS the tokens so
far, with one fewer kept while running. The test checks that each frame that should be
answered is answered exactly as predicted and in order, that the engine issues exactly the
predicted writes and never a request outside a space, that every frame it sends has a good
CRC, and that after all of it the engine answers IDENTIFY and
goes idle.
"""

import collections
import random
import struct

import cocotb
import numpy as np
from cocotb.triggers import ReadOnly, RisingEdge

from tern_fpga.contracts.params import AcceleratorParameters
from tern_fpga.contracts.protocol import (
    ABORT_REPLY,
    COMMAND_LIMIT,
    CRC_REPLY,
    DUPLICATE,
    FLAG,
    IDENTIFY_REPLY,
    MAX_PAYLOAD,
    MAX_READ_WORDS,
    MAX_TOKENS_PER_REPLY,
    MEMORY_HEADER,
    PROTOCOL_VERSION,
    RESPONSE,
    RUN_HEADER,
    STATUS_REPLY,
    TOKEN_NOTIFICATION,
    TOKENS_REPLY,
    Code,
    FrameDecoder,
    MemorySpace,
    RunMode,
    Status,
    crc32_words,
    encode_frame,
    space_words,
)
from tern_fpga.hw.core_interface import memory_request_layout, run_layout
from tern_fpga.sim.rtl.cocotb_support import StreamDriver, start_clock_and_reset, test_config

CORE_CYCLES = 0x123456789ABC
CORE_INSTRUCTIONS = 0xDEADBEEF
UART_ERRORS = 5


def field(value: int, layout, name: str) -> int:
    offset, width = layout[name].offset, layout[name].shape.width
    return (value >> offset) & ((1 << width) - 1)


class CoreModel:
    """The core side: memories (random at start) behind the memory port, a fake run."""

    def __init__(self, dut, params, config, rng):
        self.dut, self.rng = dut, rng
        self.sizes = space_words(params)
        self.memory = {space: np.array([rng.randrange(1 << 32) for _ in range(size)],
                                       dtype=np.uint64)
                       for space, size in self.sizes.items()}
        self.layout = memory_request_layout(params)
        self.vocab = config["vocab"]
        self.writes = []
        self.violations = []
        # A pause: ("hold" or "stall", k): after k more finished tokens the core holds the
        # next token (busy) or does not take the next run (idle).
        self.pause = None
        self.finished = 0

    async def serve_memory(self):
        dut, queue = self.dut, collections.deque()
        while True:
            await RisingEdge(dut.clk)
            ready = self.rng.random() < 0.7
            offered = bool(queue)
            dut.core__memory_request__ready.value = int(ready)
            dut.core__memory_response__valid.value = int(offered)
            if offered:
                dut.core__memory_response__payload.value = int(queue[0])
            await ReadOnly()
            if offered and dut.core__memory_response__ready.value:
                queue.popleft()
            if ready and dut.core__memory_request__valid.value:
                self._request(dut.core__memory_request__payload.value.to_unsigned(), queue)

    def _request(self, value, queue):
        space = field(value, self.layout, "space")
        address = field(value, self.layout, "address")
        if space >= len(MemorySpace) or address >= self.sizes[MemorySpace(space)]:
            self.violations.append((space, address))
            return
        space = MemorySpace(space)
        if field(value, self.layout, "write"):
            data = field(value, self.layout, "write_data")
            self.memory[space][address] = data
            self.writes.append((int(space), address, data))
        else:
            queue.append(self.memory[space][address])

    async def serve_runs(self):
        dut, busy, remaining, answer = self.dut, False, 0, 0
        dut.core__cycles.value = CORE_CYCLES
        dut.core__instructions.value = CORE_INSTRUCTIONS
        while True:
            await RisingEdge(dut.clk)
            paused = self.pause[0] if self.pause and self.finished >= self.pause[1] else None
            finishing = busy and remaining == 0 and paused != "hold"
            ready = not busy and paused != "stall"
            dut.core__run__ready.value = int(ready)
            dut.core__done__valid.value = int(finishing)
            dut.core__done__payload.value = answer
            dut.core__busy.value = int(busy)
            await ReadOnly()
            if ready and dut.core__run__valid.value:
                token = field(dut.core__run__payload.value.to_unsigned(), run_layout, "token")
                busy, remaining = True, self.rng.randrange(0, 12)
                answer = (token * 31 + 7) % self.vocab
            elif finishing and dut.core__done__ready.value:
                busy = False
                self.finished += 1
            elif busy and remaining:
                remaining -= 1


class EngineModel:
    """What the engine answers to each frame, and the writes and runs it causes."""

    def __init__(self, params, config, memory):
        self.params, self.config = params, config
        self.sizes = space_words(params)
        self.memory = {space: words.copy() for space, words in memory.items()}
        self.history = [0] * config["token_history"]
        self.last = None
        self.produced = 0
        self.tokens = 0
        self.duplicates = 0
        self.writes = []
        # While a run is paused: (how, its (index, token) list, tokens produced so far).
        self.paused = None
        self.kept_one_fewer = 0         # TOKENS refused only because a run is in progress
        self.tokens_while_running = 0   # TOKENS replies with tokens, during a run
        self.history_before_run = list(self.history)
        # An ABORT during a paused run: the run's length once it has stopped (the step under
        # way finishes, no further one starts).
        self.stop_after = None
        self.aborted_runs = 0

    def reply(self, seq, code, payload, bytes_received):
        """The expected reply payload (bytes), and the run's (index, token) list if any."""
        if code in (Code.WRITE, Code.RUN) and self.last and self.last[:2] == (seq, code):
            self.duplicates += 1
            return bytes([self.last[2] | DUPLICATE]), []
        status, data, run = self._execute(code, payload, bytes_received)
        self.last = (seq, code, status)
        return (data if isinstance(data, tuple) else bytes([status]) + data), run

    def _execute(self, code, payload, bytes_received):
        words = list(struct.unpack("<III", (payload + bytes(12))[:12]))
        if code in (Code.IDENTIFY, Code.STATUS):
            if payload:
                return Status.BAD_LENGTH, b"", []
            if code == Code.IDENTIFY:
                return Status.OK, IDENTIFY_REPLY.pack(
                    0, PROTOCOL_VERSION, self.config["board_id"], self.config["build_id"],
                    self.params.hash, MAX_PAYLOAD, len(self.history),
                    self.params.clock_hz)[1:], []
            flags, tokens = 0, self.tokens
            if self.paused:     # bit 0 the core busy (holding a token), bit 1 a RUN
                how, run, produced = self.paused
                flags, tokens = (0b11 if how == "hold" else 0b10), tokens - len(run) + produced
            return Status.OK, ("status", flags, bytes_received, tokens, self.duplicates), []
        if code in (Code.WRITE, Code.READ, Code.CRC):
            return self._memory(code, payload, *words)
        if code == Code.RUN:
            return self._run(payload, *words)
        if code == Code.TOKENS:
            return self._tokens(payload, words[0])
        if code == Code.ABORT:
            return self._abort(payload)
        return Status.BAD_COMMAND, b"", []

    def _memory(self, code, payload, space, address, count):
        expected = 12 + 4 * count if code == Code.WRITE else 12
        if len(payload) != expected:
            return Status.BAD_LENGTH, b"", []
        if space >= len(MemorySpace):
            return Status.BAD_SPACE, b"", []
        if code == Code.READ and count > MAX_READ_WORDS:
            return Status.BAD_ARGUMENT, b"", []
        space = MemorySpace(space)
        if address + count > self.sizes[space]:
            return Status.OUT_OF_RANGE, b"", []
        if self.paused:
            return Status.BUSY, b"", []
        memory = self.memory[space]
        if code == Code.WRITE:
            data = np.frombuffer(payload[12:], dtype="<u4")
            memory[address:address + count] = data
            self.writes += [(int(space), address + i, int(v)) for i, v in enumerate(data)]
            return Status.OK, b"", []
        words = memory[address:address + count].astype("<u4")
        if code == Code.READ:
            return Status.OK, words.tobytes(), []
        return Status.OK, CRC_REPLY.pack(0, crc32_words(words))[1:], []

    def _run(self, payload, entry, token_and_count, mode_word):
        mode, count, token = mode_word & 0xFF, token_and_count >> 16, token_and_count & 0xFFFF
        if mode > RunMode.GENERATE:
            return Status.BAD_ARGUMENT, b"", []
        feed = mode == RunMode.FEED
        if len(payload) != (12 + 2 * count if feed else 12):
            return Status.BAD_LENGTH, b"", []
        if count == 0 or (feed and count > len(self.history)):
            return Status.BAD_ARGUMENT, b"", []
        if entry >= self.params.program_words:
            return Status.OUT_OF_RANGE, b"", []
        if self.paused:
            return Status.BUSY, b"", []
        inputs = struct.unpack(f"<{count}H", payload[12:]) if feed else None
        self.history_before_run = list(self.history)
        run, previous = [], token
        for index in range(count):
            previous = ((inputs[index] if feed else previous) * 31 + 7) % self.config["vocab"]
            self.history[index % len(self.history)] = previous
            run.append((index, previous))
        self.produced, self.tokens = count, self.tokens + count
        return Status.OK, b"", run

    def _abort(self, payload):
        if payload:
            return Status.BAD_LENGTH, b"", []
        if not self.paused:
            return Status.OK, ABORT_REPLY.pack(0, 0, self.produced)[1:], []
        _, run, produced = self.paused
        if self.stop_after is None:
            self.stop_after = min(len(run), produced + 1)
        return Status.OK, ABORT_REPLY.pack(0, 1, produced)[1:], []

    def end_abort(self, run):
        """After a paused run has gone on: the part of ``run`` that an ABORT left, with the
        ring and the counters as the engine has them."""
        if self.stop_after is None:
            return run
        kept, self.stop_after = run[:self.stop_after], None
        self.aborted_runs += len(kept) < len(run)
        self.history = self.history_before_run
        for index, token in kept:
            self.history[index % len(self.history)] = token
        self.tokens -= len(run) - len(kept)
        self.produced = len(kept)
        return kept

    def _tokens(self, payload, word):
        start, wanted = word & 0xFFFF, word >> 16
        if len(payload) != 4:
            return Status.BAD_LENGTH, b"", []
        # While running, the next token may overwrite one more of the ring.
        if self.paused:
            _, run, produced = self.paused
            running, output = 1, lambda index: run[index][1]
        else:
            running, produced = 0, self.produced
            output = lambda index: self.history[index % len(self.history)]
        if start > produced or produced - start + running > len(self.history):
            self.kept_one_fewer += produced - start == len(self.history) and running
            return Status.OUT_OF_RANGE, b"", []
        self.tokens_while_running += running and produced > start
        sent = min(wanted, produced - start, MAX_TOKENS_PER_REPLY)
        tokens = [output(start + i) for i in range(sent)]
        return Status.OK, TOKENS_REPLY.pack(0, running, produced)[1:] + struct.pack(
            f"<{sent}H", *tokens), []


class Fuzzer:
    """Draws the frames: mostly commands near the edges of the spaces, some damage."""

    def __init__(self, params, config, rng):
        self.rng, self.config = rng, config
        self.sizes = space_words(params)
        self.program_words = params.program_words
        self.history = config["token_history"]
        self.seq = rng.randrange(256)
        self.previous = None

    def _header(self):
        rng = self.rng
        space = rng.choice([*MemorySpace] * 4 + [6, 7, 255, 0x100 + rng.randrange(6)])
        size = self.sizes[MemorySpace(space)] if space < len(MemorySpace) else 64
        count = rng.choice([0, 1, 2, rng.randrange(1, 40)])
        address = rng.choice([0, rng.randrange(size), max(0, size - count),
                              size - count + rng.randrange(1, 4), rng.randrange(1 << 32)])
        return space, max(address, 0), count

    def command(self):
        """(code, payload) of a frame with a good CRC."""
        rng = self.rng
        kind = rng.choice(["write"] * 5 + ["read", "crc", "bad", "run", "run", "run", "tokens",
                                          "tokens", "status", "identify"])
        space, address, count = self._header()
        if kind == "write":
            data = [rng.randrange(1 << 32) for _ in range(count)]
            extra = rng.choice([0] * 6 + [-4, 4, 1])
            payload = MEMORY_HEADER.pack(space, address, count) + struct.pack(
                f"<{count}I", *data)
            return Code.WRITE, payload[:len(payload) + extra] if extra < 0 else payload + bytes(
                extra)
        if kind in ("read", "crc"):
            count = rng.choice([count, count, MAX_READ_WORDS + 1])
            payload = MEMORY_HEADER.pack(space, address, count)
            return (Code.READ if kind == "read" else Code.CRC), payload + bytes(
                rng.choice([0] * 5 + [4]))
        if kind == "run":
            mode = rng.choice([RunMode.FEED, RunMode.GENERATE, RunMode.GENERATE, 2])
            count = rng.choice([0, 1, rng.randrange(1, 6), rng.randrange(1, 6),
                                self.config["token_history"] + 1])
            entry = rng.choice([0, 3, 7, rng.randrange(64), 1 << 20])
            payload = RUN_HEADER.pack(entry, rng.randrange(1 << 16), count, mode)
            if mode == RunMode.FEED:
                payload += struct.pack(f"<{count}H", *(rng.randrange(1 << 16)
                                                       for _ in range(count)))
            return Code.RUN, payload + bytes(rng.choice([0] * 5 + [2]))
        if kind == "tokens":
            return Code.TOKENS, struct.pack("<HH", rng.randrange(8), rng.randrange(1, 40)) + \
                bytes(rng.choice([0] * 5 + [1]))
        if kind == "bad":
            # 0x08 is ABORT, mostly with a payload it must refuse
            return (rng.choice([0, 0x08, 0x3F, 0x40, 0x7F, 0x81, 0xC0, 0xFF]),
                    rng.randbytes(rng.randrange(20)))
        return (Code.STATUS if kind == "status" else Code.IDENTIFY), bytes(
            rng.choice([0] * 5 + [3]))

    def valid_command(self, kind=None):
        """(code, payload) of a command (``kind``: write, read, crc or run; default any) that
        passes its own checks: only a run in progress can refuse it."""
        rng = self.rng
        space = rng.choice([*MemorySpace])
        count = rng.randrange(1, 5)
        address = rng.randrange(self.sizes[space] - count + 1)
        kind = kind or rng.choice(["write", "read", "crc", "run"])
        if kind == "run":   # up to past the token history
            return Code.RUN, RUN_HEADER.pack(rng.randrange(self.program_words),
                                             rng.randrange(1 << 16),
                                             rng.randrange(1, self.history + 9),
                                             RunMode.GENERATE)
        header = MEMORY_HEADER.pack(space, address, count)
        if kind == "write":
            return Code.WRITE, header + struct.pack(f"<{count}I", *(
                rng.randrange(1 << 32) for _ in range(count)))
        return (Code.READ if kind == "read" else Code.CRC), header

    def custom(self, code, payload):
        """(seq, code, payload, bytes on the wire) of the given command, as the next frame."""
        self.seq = (self.seq + 1) & 0xFF
        self.previous = (self.seq, code, payload, encode_frame(self.seq, code, payload))
        return self.previous

    def frame(self, valid=False, kind=None):
        """(seq, code, payload, bytes on the wire); a valid command's if ``valid``."""
        if self.previous and self.previous[1] in (Code.WRITE, Code.RUN) and \
                self.rng.random() < 0.15:
            return self.previous   # a repeat, as when a reply is lost
        self.seq = (self.seq + 1) & 0xFF
        code, payload = self.valid_command(kind) if valid else self.command()
        self.previous = (self.seq, code, payload, encode_frame(self.seq, code, payload))
        return self.previous

    def damage(self):
        """Bytes that must not execute anything: a damaged or cut frame, or random bytes."""
        rng = self.rng
        wire = encode_frame((self.seq + 1) & 0xFF, *self.command())
        kind = rng.choice(["flip", "cut", "garbage"])
        if kind == "flip":
            wire = bytearray(wire)
            wire[rng.randrange(1, len(wire))] ^= 1 << rng.randrange(8)
            return bytes(wire), False
        if kind == "cut":
            return wire[:rng.randrange(1, len(wire))], True
        return bytes(rng.choice([FLAG, rng.randrange(256)]) for _ in range(rng.randrange(60))), \
            True


class Monitor:
    """Collects the engine's output bytes (with random stalls) and decodes them."""

    def __init__(self, dut, rng):
        self.dut, self.rng = dut, rng
        self.decoder = FrameDecoder()
        self.frames = []

    async def collect(self):
        dut = self.dut
        while True:
            await RisingEdge(dut.clk)
            ready = self.rng.random() < 0.8
            dut.tx__ready.value = int(ready)
            await ReadOnly()
            if ready and dut.tx__valid.value:
                self.frames += self.decoder.feed(bytes([dut.tx__payload.value.to_unsigned()]))

    async def wait_until(self, condition, cycles, what):
        """Wait until ``condition()``; after ``cycles`` cycles fail naming ``what`` (or return
        quietly when ``what`` is None)."""
        for _ in range(cycles):
            if condition():
                return
            await RisingEdge(self.dut.clk)
        if what is not None:
            raise AssertionError(f"the engine hung: no {what} within {cycles} cycles")


def check_status(payload, expected):
    _, flags, bytes_received, tokens, duplicates = expected
    fields = STATUS_REPLY.unpack(payload)
    assert fields[0] == Status.OK and fields[1] == flags, f"STATUS flags {fields[:2]} != {flags}"
    assert fields[3] == CORE_CYCLES and fields[4] == CORE_INSTRUCTIONS
    assert fields[5] == tokens, f"tokens {fields[5]} != {tokens}"
    assert fields[6] == bytes_received, f"bytes received {fields[6]} != {bytes_received}"
    assert fields[9] == UART_ERRORS and fields[10] == duplicates
    assert fields[11] > 0


@cocotb.test()
async def fuzz(dut):
    config = test_config()
    params = AcceleratorParameters.from_dict(config["params"])
    rng = random.Random(config["seed"])
    dut.rx__valid.value = 0
    dut.uart_error.value = 0
    await start_clock_and_reset(dut)
    core = CoreModel(dut, params, config, rng)
    model = EngineModel(params, config, core.memory)
    monitor = Monitor(dut, random.Random(config["seed"] + 1))
    fuzzer = Fuzzer(params, config, rng)
    aborts = random.Random(config["seed"] + 2)
    cocotb.start_soon(core.serve_memory())
    cocotb.start_soon(core.serve_runs())
    cocotb.start_soon(monitor.collect())
    for _ in range(UART_ERRORS):
        dut.uart_error.value = 1
        await RisingEdge(dut.clk)
        dut.uart_error.value = 0
        await RisingEdge(dut.clk)

    driver = StreamDriver(dut, "rx", probability=0.9, seed=config["seed"])
    expected, runs, sent = [], [], 0

    history = config["token_history"]

    def replies_received():
        return sum(f.code not in (Code.NAK, Code.TOKEN) for f in monitor.frames)

    def tokens_received():
        return sum(f.code == Code.TOKEN for f in monitor.frames)

    async def send(seq, code, payload, wire):
        """Send a frame; returns its run (empty if it starts none)."""
        nonlocal sent
        await driver.send(wire)
        sent += len(wire)
        if code >= COMMAND_LIMIT:
            return []   # not a command: ignored, no reply, no effect
        reply, run = model.reply(seq, code, payload, sent)
        expected.append((seq, code | RESPONSE, reply))
        return run

    async def execute(frame, pause=None, during=None):
        """Send ``frame``; if it starts a run and ``pause`` is ``(how, k)``, the core pauses
        after k tokens and ``during(k)`` sends more frames while the run is in progress. Then
        wait until the run (as an ABORT may have shortened it) has sent all its tokens."""
        core.pause, core.finished = pause, 0
        run = await send(*frame)
        if run and pause:
            how, produced = pause
            tokens_out = sum(len(r) for _, r in runs) + produced
            await monitor.wait_until(lambda out=tokens_out: replies_received() >= len(expected)
                                     and tokens_received() >= out, 20_000,
                                     "the paused run's reply and first tokens")
            model.paused = (how, run, produced)
            await during(produced)
            await monitor.wait_until(lambda: replies_received() >= len(expected), 20_000,
                                     "reply to a frame during a run")
            model.paused = None
            run = model.end_abort(run)
        core.pause = None
        if run:
            runs.append((frame[0], run))
            # Let the run finish (with all its tokens out) before the next frame, so that the
            # model knows the engine is not busy.
            count = sum(len(r) for _, r in runs)
            await monitor.wait_until(lambda count=count: tokens_received() == count, 20_000,
                                     "end of the run")

    async def fuzzed_frames_during(produced):
        """Fuzzed frames, valid commands, TOKENS near the ring's edges, STATUS, ABORT."""
        for _ in range(rng.randrange(1, 6)):
            kind = rng.choice(["fuzzed", "valid", "tokens", "status"])
            if kind == "status":
                await send(*fuzzer.custom(Code.STATUS, b""))
            elif kind == "tokens":
                start = max(0, rng.choice([produced - history, produced - history + 1,
                                           produced, produced + 1,
                                           rng.randrange(produced + 1)]))
                await send(*fuzzer.custom(Code.TOKENS, struct.pack(
                    "<HH", start, rng.randrange(1, 40))))
            else:
                await send(*fuzzer.frame(valid=kind == "valid"))
            if aborts.random() < 0.15:
                await send(*fuzzer.custom(Code.ABORT, b""))

    async def every_case_during(produced):
        """Each case a run in progress must answer, once: TOKENS at the ring's edge and
        within it, STATUS, a command the run makes BUSY, then ABORT."""
        for start in (produced - history, produced - 3):
            await send(*fuzzer.custom(Code.TOKENS, struct.pack("<HH", start, 8)))
        await send(*fuzzer.custom(Code.STATUS, b""))
        await send(*fuzzer.frame(valid=True, kind="write"))
        await send(*fuzzer.custom(Code.ABORT, b""))

    for _ in range(config["frames"]):
        if rng.random() < 0.25:
            wire, pause = fuzzer.damage()
            await driver.send(wire)
            sent += len(wire)
            if pause and rng.random() < 0.5:
                for _ in range(config["frame_timeout_cycles"] + rng.randrange(-50, 50)):
                    await RisingEdge(dut.clk)
            continue
        pausing = rng.random() < 0.12
        previous = fuzzer.previous
        frame = fuzzer.frame(valid=True, kind="run") if pausing else fuzzer.frame()
        pause = None
        if pausing and frame is not previous:   # not a repeat of an earlier frame
            count = RUN_HEADER.unpack_from(frame[2])[2]
            # k: any, or the last (often past the ring's size)
            produced = rng.choice([rng.randrange(count), count - 1])
            pause = (rng.choice(["hold", "stall"]), produced)
        await execute(frame, pause, fuzzed_frames_during)
    # Then every case of a run in progress at least once, whatever the draws above reached: a
    # run paused with the ring full, once holding a token in the core and once stalled before
    # the next step, each ended by ABORT.
    for how in ("hold", "stall"):
        frame = fuzzer.custom(Code.RUN, RUN_HEADER.pack(0, rng.randrange(1 << 16), history + 8,
                                                        RunMode.GENERATE))
        await execute(frame, (how, history + 2), every_case_during)

    seq = (fuzzer.seq + 1) & 0xFF
    await driver.send(encode_frame(seq, Code.IDENTIFY))
    reply, _ = model.reply(seq, Code.IDENTIFY, b"", 0)
    expected.append((seq, Code.IDENTIFY | RESPONSE, reply))
    # Wait for the last reply; on a hang, the comparison below says where the replies stop.
    await monitor.wait_until(lambda: replies_received() >= len(expected), 20_000, None)

    assert monitor.decoder.crc_errors == monitor.decoder.frame_errors == 0
    assert not core.violations, f"requests outside a space: {core.violations[:5]}"
    replies = [f for f in monitor.frames if f.code not in (Code.NAK, Code.TOKEN)]
    for number, (frame, (seq, code, reply)) in enumerate(zip(replies, expected)):
        where = f"frame {number} (seq {seq}, code 0x{code:02x})"
        assert (frame.seq, frame.code) == (seq, code), f"{where}: got {frame}"
        if isinstance(reply, bytes):
            assert frame.payload == reply, f"{where}: {frame.payload.hex()} != {reply.hex()}"
        else:
            check_status(frame.payload, reply)
    assert len(replies) == len(expected), (
        f"the engine hung or lost frames: {len(replies)} replies, {len(expected)} expected; the "
        f"next expected is {expected[len(replies)] if len(replies) < len(expected) else None}")
    await monitor.wait_until(lambda: dut.idle.value == 1, 2_000, "idle")
    tokens = [(f.seq, *TOKEN_NOTIFICATION.unpack(f.payload)) for f in monitor.frames
              if f.code == Code.TOKEN]
    assert tokens == [(seq, index, token) for seq, run in runs for index, token in run]
    assert core.writes == model.writes
    for space in MemorySpace:
        np.testing.assert_array_equal(core.memory[space], model.memory[space])
    statuses = collections.Counter(Status(r[0] & ~DUPLICATE).name for _, _, r in expected
                                   if isinstance(r, bytes))
    paused_statuses = {r[1] for _, _, r in expected if not isinstance(r, bytes) and r[1]}
    assert statuses["BUSY"], "no frame came during a run: the BUSY path went unchecked"
    assert model.tokens_while_running and model.kept_one_fewer, \
        "no TOKENS during a run returned tokens, or none met the ring's edge"
    assert model.aborted_runs, "no ABORT during a run ended it early: the ABORT path went " \
        "unchecked"
    assert paused_statuses == {0b10, 0b11}, \
        f"STATUS during paused runs showed only the flags {paused_statuses}"
    dut._log.info(f"{len(expected)} replies checked {dict(statuses)}, {len(core.writes)} writes, "
                  f"{len(tokens)} tokens, {model.duplicates} repeats, "
                  f"{model.tokens_while_running} TOKENS with tokens during a run, "
                  f"{model.kept_one_fewer} refused at the ring's edge, "
                  f"{model.aborted_runs} runs ended early by ABORT, "
                  f"{sum(f.code == Code.NAK for f in monitor.frames)} NAKs")
