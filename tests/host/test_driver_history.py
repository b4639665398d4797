"""The driver when it falls behind the chip's token history (no board: a scripted link)."""

import types

import pytest

from tern_fpga.contracts.protocol import TOKEN_NOTIFICATION, Code, Frame, Status
from tern_fpga.host.driver import Board, BoardError


def scripted_board(notifications, history=4):
    """A Board whose link yields ``notifications`` (None: a silent poll) and whose chip has
    already overwritten every token the host asks for (TOKENS answers OUT_OF_RANGE)."""
    board = Board.__new__(Board)
    script = list(notifications)
    board.link = types.SimpleNamespace(
        seq=7, timeout=0.01, notification=lambda timeout: script.pop(0) if script else None)
    board.identity = types.SimpleNamespace(token_history=history)

    def command(code, payload, what, **timing):
        if code == Code.TOKENS:
            raise BoardError(f"the board refused {what}: OUT_OF_RANGE", Status.OUT_OF_RANGE)
        return b""

    board._command = command
    return board


def token(index, value, seq=7):
    return Frame(seq, Code.TOKEN, TOKEN_NOTIFICATION.pack(index, value))


def test_late_notifications_past_the_history_are_still_read():
    board = scripted_board([None, token(0, 10), None, token(1, 11), token(2, 12)])
    assert list(board._run(b"", 3, "RUN", step_timeout=5)) == [10, 11, 12]


def test_a_token_lost_past_the_history_is_a_clear_error():
    board = scripted_board([token(0, 10), token(2, 12)])
    with pytest.raises(BoardError, match=r"RUN: token 1 was lost: its notification never "
                                         r"arrived and the chip's history of 4 tokens"):
        list(board._run(b"", 3, "RUN", step_timeout=5))
