"""What ``tern generate`` does with a board: it loads an export only when the board lacks it
(by the chip's CRCs), and it refuses a prompt outside the export's vocabulary before running."""

import numpy as np
import pytest

from tern_fpga.contracts.errors import TernError
from tern_fpga.contracts.protocol import MemorySpace
from tern_fpga.host import session
from tern_fpga.host.driver import Board

from support.link import random_export


def test_an_export_the_board_holds_is_not_loaded_again(virtual_board):
    export = random_export(4, fill=0.3)
    with Board(virtual_board) as board:
        assert not session.is_loaded(board, export)
        assert board.entry_points is None
        session.load(board, export, progress=False)
        board.entry_points = None  # as in a new session: nothing known but the chip's CRCs
        before = board.status().bytes_received
        assert session.is_loaded(board, export)
        assert board.entry_points == {"reset": 0, "step": 3}
        assert board.status().bytes_received - before < 200  # CRC commands, not a load
        # One word of one section differs: the export must be loaded again.
        word = board.read_memory(MemorySpace.VECTOR, 5, 1)
        board.write_memory(MemorySpace.VECTOR, 5, word ^ 1)
        assert not session.is_loaded(board, export)


def test_a_prompt_outside_the_vocabulary_is_refused_before_running(virtual_board):
    export = random_export(5, fill=0.3)  # vocabulary of 16
    with Board(virtual_board) as board:
        session.load(board, export, progress=False)
        runs = board.status().tokens
        with pytest.raises(TernError, match=r"^the prompt: token 16 is outside the model's "
                                            r"vocabulary of 16 \(ids 0 to 15\)$"):
            session.generate_text(board, export, [3, 16], 4, show=False)
        assert board.status().tokens == runs
        np.testing.assert_array_equal(session.generate_text(board, export, [3], 2,
                                                            show=False).generated,
                                      [(3 * 31 + 7) % 256, ((3 * 31 + 7) % 256 * 31 + 7) % 256])
