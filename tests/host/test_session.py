"""What ``tern generate`` does with a board: it loads an export only when the board lacks it
(by the chip's CRCs), and it refuses a prompt outside the export's vocabulary before running."""

import numpy as np
import pytest

from tern_fpga.contracts.errors import TernError
from tern_fpga.contracts.protocol import MemorySpace, to_words
from tern_fpga.host import session
from tern_fpga.host.driver import Board

from support.link import random_export


def test_an_export_the_board_holds_is_not_loaded_again(virtual_board):
    export = random_export(4)     # its vector section reaches into the constants bank
    params = export.params
    with Board(virtual_board) as board:
        assert session.reuse_if_loaded(board, export) is None
        assert board.entry_points is None
        session.load(board, export, progress=False)
        board.entry_points = None  # as in a new session: nothing known but the chip's CRCs
        # A run since the load changed the work bank (state, buffers): still the same export,
        # and the work bank is written back as the export has it.
        board.write_memory(MemorySpace.VECTOR, 3, [0xDEADBEEF])
        before = board.status().bytes_received
        assert session.reuse_if_loaded(board, export) == 4 * params.work_words
        assert board.entry_points == {"reset": 0, "step": 3}
        # CRC commands and the work bank, not a load
        assert board.status().bytes_received - before < 4 * params.work_words + 400
        work = to_words(export.sections["vector_init"])[:params.work_words]
        np.testing.assert_array_equal(board.read_memory(MemorySpace.VECTOR, 0, len(work)), work)
        # One word of the constants bank differs: the export must be loaded again.
        address = params.work_words + 5
        word = board.read_memory(MemorySpace.VECTOR, address, 1)
        board.write_memory(MemorySpace.VECTOR, address, word ^ 1)
        assert session.reuse_if_loaded(board, export) is None


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
