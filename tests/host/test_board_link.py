"""The host driver against the simulated board (engine + UART + memory-only stand-in core)."""

import os

import numpy as np
import pytest

from tern_fpga.contracts.errors import TernError
from tern_fpga.contracts.params import PRESETS
from tern_fpga.contracts.protocol import (
    MemorySpace,
    crc32_words,
    space_words,
    to_words,
)
from tern_fpga.host.driver import Board, BoardError, WrongBoardError
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


def test_virtual_board_ends_with_its_client(board_top):
    virtual = VirtualBoard(board_top, LINK_PARAMS, name="link-test")
    with virtual as url:
        Board(url).close()
        assert virtual.wait(10)
    stats = virtual.stats
    assert stats["connections"] == 1 and stats["framing_errors"] == 0
    assert stats["cycles"] > 0 and stats["cycles_per_second"] > 1e5
    assert stats["bytes_to_design"] == 7 and stats["bytes_from_design"] > 7


def test_no_such_virtual_board_is_a_clear_error():
    from tern_fpga.host.transport import TransportError

    with pytest.raises(TransportError, match="nothing listens at socket://127.0.0.1:9: is the "
                                             "virtual board running"):
        Board("socket://127.0.0.1:9")


@pytest.mark.skipif(not hasattr(os, "openpty"), reason="needs a pseudo-terminal")
def test_missing_and_busy_ports_are_clear_errors():
    from tern_fpga.host.transport import SerialTransport, TransportError

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
