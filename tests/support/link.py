"""The link tests' shared set-up: a small parameter set, the memory-only board, random exports
and what the stand-in core answers."""

import numpy as np

from tern_fpga.contracts import numerics
from tern_fpga.contracts.export_format import TernExport
from tern_fpga.contracts.params import PRESETS
from tern_fpga.contracts.protocol import crc32_words, table_offsets, to_words
from tern_fpga.host.driver import SECTION_SPACES
from tern_fpga.sim.rtl.link_test_board import MemoryOnlyBoard, stand_in_token

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


def expected_chain(token, count):
    out = []
    for _ in range(count):
        token = stand_in_token(token, VOCAB)
        out.append(token)
    return out


def section_crcs_match(board, export) -> bool:
    offsets = table_offsets(export.params)
    return all(board.memory_crc(space, offsets.get(name, 0), len(to_words(export.sections[name])))
               == crc32_words(to_words(export.sections[name]))
               for name, space in SECTION_SPACES.items())
