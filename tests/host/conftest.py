"""Shared set-up of the host-link tests: the simulated board, built once."""

import pytest

from tern_fpga.sim.rtl.virtual_board import VirtualBoard, build_board

from support.link import LINK_PARAMS, make_board


@pytest.fixture(scope="session")
def board_top():
    top = make_board()
    build_board(top, "link-test")
    return top


@pytest.fixture
def virtual_board(board_top):
    """A fresh simulated board (new process, memories cleared); yields its URL."""
    with VirtualBoard(board_top, LINK_PARAMS, name="link-test") as url:
        yield url
