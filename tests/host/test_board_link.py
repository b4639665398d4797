"""The host driver against the simulated board (engine + UART + memory-only stand-in core)."""

import contextlib
import os
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tern_fpga.contracts.errors import TernError
from tern_fpga.contracts.params import PRESETS
from tern_fpga.contracts.protocol import (
    RUN_HEADER,
    Code,
    MemorySpace,
    RunMode,
    crc32_words,
    space_words,
    to_words,
)
from tern_fpga.host.driver import Board, BoardError, WrongBoardError
from tern_fpga.host.transport import SerialTransport, TransportError
from tern_fpga.sim.rtl.link_test_board import stand_in_token
from tern_fpga.sim.rtl.virtual_board import VirtualBoard

from support.link import (
    BAUD,
    BOARD_OPTIONS,
    LINK_PARAMS,
    VOCAB,
    expected_chain,
    random_export,
    section_crcs_match,
)
from support.processes import alive

SIZES = space_words(LINK_PARAMS)
BYTES_PER_SECOND = BAUD / 10    # 8N1


def test_identify_and_status(virtual_board):
    with Board(virtual_board) as board:
        identity = board.identity
        assert identity.params_hash == LINK_PARAMS.hash
        assert (identity.board_id, identity.build_id) == (BOARD_OPTIONS["board_id"],
                                                          BOARD_OPTIONS["build_id"])
        assert (identity.max_payload, identity.token_history, identity.clock_hz) == (
            1036, 256, LINK_PARAMS.clock_hz)
        status = board.status()
        assert not status.core_busy and not status.running
        assert status.frame_errors == status.crc_errors == status.uart_errors == 0
        # The chip counted every byte of IDENTIFY and STATUS (7 to 9 bytes each, with escapes).
        assert status.bytes_received == board.link.stats["bytes_sent"]
        assert 14 <= status.bytes_received <= 18
        assert status.uptime_cycles > 0


def test_memory_round_trip_in_every_space(virtual_board):
    rng = np.random.default_rng(5)
    with Board(virtual_board) as board:
        for space in MemorySpace:
            size = SIZES[space]
            before = board.read_memory(space, 0, size)
            count = min(size, int(rng.integers(size // 2, size + 1)))
            address = int(rng.integers(0, size - count + 1))
            words = rng.integers(0, 1 << 32, count, dtype=np.uint32)
            board.write_memory(space, address, words)
            after = board.read_memory(space, 0, size)
            np.testing.assert_array_equal(after[address:address + count], words)
            # Nothing outside the written range changed.
            np.testing.assert_array_equal(after[:address], before[:address])
            np.testing.assert_array_equal(after[address + count:], before[address + count:])
            assert board.memory_crc(space, address, count) == crc32_words(words)


def test_out_of_range_is_refused_and_writes_nothing(virtual_board):
    with Board(virtual_board) as board:
        size = SIZES[MemorySpace.VECTOR]
        tail = board.read_memory(MemorySpace.VECTOR, size - 4, 4)
        with pytest.raises(BoardError, match=r"refused WRITE of 5 words to VECTOR at 508: "
                                             r"OUT_OF_RANGE"):
            board.write_memory(MemorySpace.VECTOR, size - 4, np.arange(1, 6))
        np.testing.assert_array_equal(board.read_memory(MemorySpace.VECTOR, size - 4, 4), tail)
        with pytest.raises(BoardError, match="OUT_OF_RANGE"):
            board.read_memory(MemorySpace.TABLES, SIZES[MemorySpace.TABLES], 1)


def test_load_export_streams_at_near_line_rate(virtual_board):
    export = random_export(2)
    with Board(virtual_board) as board:
        before = board.status()
        board.load_export(export, progress=False)
        after = board.status()
        assert board.entry_points == {"reset": 0, "step": 3}
        assert section_crcs_match(board, export)
        weights = to_words(export.sections["weights"])
        np.testing.assert_array_equal(board.read_memory(MemorySpace.WEIGHTS, 0, 256),
                                      weights[:256])
    # The on-chip byte counter over simulated time against the raw line rate: stop-and-wait
    # costs a reply per 1 KB frame, framing, escapes and the CRC checks a few %.
    simulated_seconds = (after.uptime_cycles - before.uptime_cycles) / LINK_PARAMS.clock_hz
    rate = (after.bytes_received - before.bytes_received) / simulated_seconds
    assert 0.9 * BYTES_PER_SECOND < rate <= BYTES_PER_SECOND


def test_wrong_parameters_are_refused_naming_both(virtual_board):
    export = random_export(3)
    export.params = PRESETS["demo"]
    with Board(virtual_board) as board, pytest.raises(WrongBoardError) as error:
        board.load_export(export, progress=False)
    message = str(error.value)
    assert f"the board runs unknown parameters (hash 0x{LINK_PARAMS.hash:016x})" in message
    assert f"compiled for preset 'demo' (hash 0x{PRESETS['demo'].hash:016x})" in message


def test_a_weight_memory_fault_is_reported_and_stops_a_load(virtual_board):
    export = random_export(4)
    program_words = space_words(LINK_PARAMS)[MemorySpace.PROGRAM]
    with Board(virtual_board) as board:
        assert board.status().memory_status == 0
        board.check_memory()
        # The stand-in core reports the last program word's low bits as its memory's fault.
        board.write_memory(MemorySpace.PROGRAM, program_words - 1, [0xFFFF_FFF1])
        assert board.status().memory_status == 1
        weights_before = board.memory_crc(MemorySpace.WEIGHTS, 0, 64)
        for attempt in (board.load_export, board.holds_export):
            with pytest.raises(BoardError) as error:
                attempt(export, **({"progress": False} if attempt == board.load_export else {}))
            assert "weight memory reports fault 1" in str(error.value)
            assert "SDRAM did not finish initialisation" in str(error.value)
        assert board.memory_crc(MemorySpace.WEIGHTS, 0, 64) == weights_before  # nothing written
        board.write_memory(MemorySpace.PROGRAM, program_words - 1, [0])
        assert board.status().memory_status == 0
        board.load_export(export, progress=False)
        assert board.holds_export(export)


def test_feed_and_generate(virtual_board):
    rng = np.random.default_rng(9)
    prompt = [int(t) for t in rng.integers(0, VOCAB, 300)]   # more than one RUN's worth
    # A generous reply timeout: on a loaded 2-core machine a short one makes the driver poll
    # TOKENS while the notifications are merely late, and fall behind the chip's history.
    with Board(virtual_board, timeout=5.0) as board:
        with pytest.raises(TernError, match="no step entry point: load an export first"):
            board.run(1)
        board.entry_points = {"reset": 0, "step": 1}
        board.reset()
        assert board.feed(prompt) == stand_in_token(prompt[-1], VOCAB)
        assert board.run(17) == stand_in_token(17, VOCAB)
        # Longer than the chip's token history: streamed as produced, not read back at the end.
        generated = list(board.generate(prompt[:3], 400))
        assert generated == expected_chain(prompt[2], 400)
        status = board.status()
        assert status.tokens == 1 + 300 + 1 + 2 + 400
        assert status.instructions == status.tokens     # the stand-in: one per run
        assert status.cycles == status.tokens * BOARD_OPTIONS["run_cycles"]


def test_virtual_board_outlives_its_clients_and_refuses_a_second(board_top):
    virtual = VirtualBoard(board_top, LINK_PARAMS, name="link-test")
    words = np.arange(1, 9, dtype=np.uint32) * 0x01010101
    with virtual as url:
        with Board(url) as first:
            first.write_memory(MemorySpace.VECTOR, 5, words)
            with pytest.raises(TransportError, match=rf"the virtual board at {url} hung up: in "
                                                     r"use: another client is connected"):
                Board(url, timeout=5.0)
        # Like a board: the next client finds what the last one left.
        with Board(url) as second:
            np.testing.assert_array_equal(second.read_memory(MemorySpace.VECTOR, 5, 8), words)
        assert virtual.running, "the harness stopped when its client left"
    assert not virtual.running
    stats = virtual.stats
    assert stats["connections"] == 2 and stats["refused"] == 1 and stats["framing_errors"] == 0
    assert stats["cycles"] > 0 and stats["cycles_per_second"] > 1e5
    assert 0 < stats["cpu_seconds"] and stats["cycles_per_cpu_second"] > 1e5


def test_the_harness_ends_with_its_owner_killed(board_top, tmp_path):
    """A process that dies without cleaning up (SIGKILL) leaves no simulator running."""
    with subprocess.Popen(      # the with-block closes its pipe and waits for it
            [sys.executable, "-c", OWNER_SCRIPT], cwd=tmp_path, stdout=subprocess.PIPE,
            text=True, env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])}) as owner:
        try:
            harness = int(owner.stdout.readline())
            assert alive(harness)
        finally:
            owner.kill()
    deadline = time.monotonic() + 10
    while alive(harness) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(harness), f"the harness (pid {harness}) outlived its owner"
    assert list(tmp_path.iterdir()) == []


OWNER_SCRIPT = """
from support.link import LINK_PARAMS, make_board
from tern_fpga.sim.rtl.virtual_board import VirtualBoard
board = VirtualBoard(make_board(), LINK_PARAMS, name="link-test")
board.__enter__()
print(board.process_id, flush=True)
import time
time.sleep(120)
"""


def test_a_flood_is_held_back_and_the_board_answers_after_it(board_top):
    """A client that sends 100 MB at once is held back by TCP's flow control (the harness
    buffers 4 KiB); when it dies (its connection reset), the next client is answered in seconds.

    The reset is forced with SO_LINGER 0: a plain close() leaves the unsent megabytes in the
    kernel with the FIN behind them, so the board stays that client's until they trickle through
    the UART, as a real serial port drains its buffer. Without it the test passed only when the
    design's NAKs had reached the flood's unread receive buffer first (which makes Linux reset)."""
    virtual = VirtualBoard(board_top, LINK_PARAMS, name="link-test")
    with virtual as url:
        port = int(url.rpartition(":")[2])
        accepted = 0
        chunk = bytes(range(256)) * 4096    # 1 MiB, no valid frame in it
        with socket.create_connection(("127.0.0.1", port)) as flood:   # closed on a failure too
            flood.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            flood.settimeout(1.0)
            try:
                while accepted < 100 << 20:
                    accepted += flood.send(chunk)
            except TimeoutError:
                pass
            assert accepted < 32 << 20, f"{accepted:,} bytes taken without back-pressure"
        start = time.monotonic()
        with Board(url, timeout=2.0) as board:
            assert board.identity.board_id == BOARD_OPTIONS["board_id"]
        assert time.monotonic() - start < 20
    assert virtual.stats["bytes_to_design"] < accepted


def test_a_run_goes_on_without_its_host_and_abort_ends_it(virtual_board):
    with Board(virtual_board) as host:
        # A host that starts a very long run and dies without a word.
        host._command(Code.RUN, RUN_HEADER.pack(1, 5, 60_000, RunMode.GENERATE), "RUN")
    with Board(virtual_board, timeout=5.0) as board:
        before = board.status()
        time.sleep(0.3)
        after = board.status()
        assert before.running and after.tokens > before.tokens, "the run stopped with its host"
        with pytest.raises(BoardError, match="BUSY"):
            board.read_memory(MemorySpace.VECTOR, 0, 1)
        finished = board.abort()
        status = board.status()
        assert not status.running and 0 < finished < 60_000
        assert status.tokens - after.tokens <= finished    # ended within a step of the ABORT
        assert board.abort() is None    # nothing left to stop
        board.read_memory(MemorySpace.VECTOR, 0, 1)     # takes commands again
        board.entry_points = {"reset": 0, "step": 1}
        assert list(board.generate([3], 20)) == expected_chain(3, 20)


def test_a_generation_closed_early_is_aborted(virtual_board):
    with Board(virtual_board, timeout=5.0) as board:
        board.entry_points = {"reset": 0, "step": 1}
        with contextlib.closing(board.generate([11], 50_000)) as tokens:
            first = [next(tokens) for _ in range(10)]
        assert first == expected_chain(11, 10)
        assert not board.status().running
        board.write_memory(MemorySpace.VECTOR, 0, [1, 2, 3])


def test_ctrl_c_while_waiting_for_a_token_aborts_the_run(virtual_board, monkeypatch):
    with Board(virtual_board, timeout=5.0) as board:
        board.entry_points = {"reset": 0, "step": 1}
        tokens = board.generate([11], 50_000)
        first = [next(tokens) for _ in range(5)]

        def interrupted(*args):
            raise KeyboardInterrupt

        with monkeypatch.context() as patch:
            # Ctrl-C as the host waits for a notification or reads tokens back; what was read
            # back already is taken first.
            patch.setattr(board.link, "notification", interrupted)
            patch.setattr(board, "_tokens", interrupted)
            with pytest.raises(KeyboardInterrupt):
                for _ in range(1000):
                    next(tokens)
        assert first == expected_chain(11, 5)
        status = board.status()
        assert not status.running and status.tokens < 50_000
        board.write_memory(MemorySpace.VECTOR, 0, [1, 2, 3])    # takes commands again


def test_a_generation_left_open_after_its_board_closed_is_left_to_the_board(virtual_board):
    board = Board(virtual_board, timeout=5.0)
    board.entry_points = {"reset": 0, "step": 1}
    tokens = board.generate([11], 50_000)
    next(tokens)
    board.close()
    tokens.close()      # as when it is collected: no ABORT through the closed port, no error
    with Board(virtual_board, timeout=5.0) as again:
        assert again.status().running
        assert again.abort() > 0


def test_no_such_virtual_board_is_a_clear_error():
    with pytest.raises(TransportError, match="nothing listens at socket://127.0.0.1:9: is the "
                                             "virtual board running"):
        Board("socket://127.0.0.1:9")


@pytest.mark.skipif(not hasattr(os, "openpty"), reason="needs a pseudo-terminal")
def test_missing_and_busy_ports_are_clear_errors():
    with pytest.raises(TransportError, match="serial port /dev/ttyTERN9 does not exist; check "
                                             "that the board is plugged in"):
        SerialTransport("/dev/ttyTERN9")
    controller, device = os.openpty()
    try:
        first = SerialTransport(os.ttyname(device))
        with pytest.raises(TransportError, match="is busy: another program has it open"):
            SerialTransport(os.ttyname(device))
        first.close()
    finally:
        os.close(controller)
        os.close(device)
