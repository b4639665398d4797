"""Shared set-up of the host-link tests: a small parameter set, the simulated board, exports."""

import numpy as np
import pytest

from hw.test_boards import MemoryOnlyBoard
from sim.golden import numerics
from sim.virtual_board import VirtualBoard, build_board
from tern.export_format import TernExport
from tern.params import PRESETS

# Small memories keep the Verilog and the loads short; 4 cycles a bit (12 MHz, 3 Mbaud) keeps
# the simulated UART fast. Every test that uses the virtual board shares this one build.
LINK_PARAMS = PRESETS["micro"].replace(
    name="link-test", weight_memory_words=256, vector_memory_words=512, vector_work_words=256,
    embedding_memory_words=1024, program_words=64, clock_hz=12_000_000)
BAUD = 3_000_000
VOCAB = 256
BOARD_OPTIONS = {"baud": BAUD, "vocab": VOCAB, "run_cycles": 40, "build_id": 0x1234ABCD,
                 "board_id": 7, "frame_timeout_cycles": 20_000}


def make_board():
    return MemoryOnlyBoard(LINK_PARAMS, **BOARD_OPTIONS)


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


def random_export(seed: int, params=LINK_PARAMS, *, fill: float = 0.8) -> TernExport:
    """An export whose sections fill about ``fill`` of each memory with random values."""
    rng = np.random.default_rng(seed)

    def count(words):
        return max(1, int(words * fill))

    lanes = params.ternary_lanes
    sections = {
        "program": rng.integers(0, 1 << 32, 4 * count(params.program_words), dtype=np.uint32),
        "entry_points": np.array([0, 3], dtype=np.uint32),
        "weights": rng.integers(0, 256, count(params.weight_memory_words) * lanes // 4,
                                dtype=np.uint8),
        "vector_init": rng.integers(-(1 << 31), 1 << 31, count(params.vector_memory_words),
                                    dtype=np.int32),
        "constants": rng.integers(-(1 << 62), 1 << 62, count(params.program_words),
                                  dtype=np.int64),
        "embeddings": rng.integers(-(1 << 15), 1 << 15, (16, count(params.embedding_memory_words)
                                                         // 16), dtype=np.int16),
        "sigmoid_table": numerics.sigmoid_table(params).astype(np.int32),
        "rsqrt_table": numerics.rsqrt_table(params).astype(np.int32),
    }
    return TernExport({"vocab_size": 16}, params, sections)
