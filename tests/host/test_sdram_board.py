"""The virtual board of the ``stdlib`` preset: the accelerator with its weights in a simulated
SDRAM (LiteDRAM's controller and memory model, sim/rtl/sdram_board.py), driven by the host's own
code. A small random model goes in through the UART in base-3; the shipped stdlib model (20.6 M
ternary weights, no block RAM holds it) is preloaded in base-3 and generates 64 tokens, every one
equal to the golden model's, at a cycle count near the SDRAM's bandwidth bound; a 2-bit model
loaded over it switches the packing back."""

import dataclasses
import shutil

import numpy as np
import pytest

from tern_fpga.contracts.export_format import read_export
from tern_fpga.contracts.params import PRESETS
from tern_fpga.contracts.paths import CHECKPOINTS
from tern_fpga.contracts.protocol import MemorySpace, to_words
from tern_fpga.contracts.sdram_image import packing_register_address, sdram_weight_words
from tern_fpga.host import session
from tern_fpga.host.driver import Board
from tern_fpga.quant.compiler import compile_model
from tern_fpga.quant.export import export_checkpoint, to_export
from tern_fpga.sim.golden.model import golden_from_export
from tern_fpga.sim.rtl.sdram_board import SDRAMAccelerator, bank_addresses, write_preload
from tern_fpga.sim.rtl.virtual_board import VirtualBoard

from support.random_model import random_model

PARAMS = PRESETS["stdlib"]
pytestmark = [pytest.mark.skipif(shutil.which("verilator") is None, reason="needs verilator"),
              pytest.mark.xdist_group("sdram_board")]


@pytest.fixture(scope="module")
def stdlib_export(tmp_path_factory):
    path = tmp_path_factory.mktemp("stdlib") / "stdlib.tern"
    export_checkpoint(CHECKPOINTS / "stdlib", PARAMS, path, packing="base3")
    return read_export(path)


def test_bank_addresses_follow_litedrams_row_bank_column_mapping():
    # address = row (13 bits) | bank (2) | column (9); a bank's model memory is row * 512 + col
    bank, index = bank_addresses(np.array([0, 511, 512, 3 * 512 + 7, 4 * 512, 4 * 512 * 9 + 5]))
    assert bank.tolist() == [0, 0, 1, 3, 0, 0]
    assert index.tolist() == [0, 511, 0, 7, 512, 9 * 512 + 5]


def test_a_small_model_loads_through_the_uart_into_sdram_and_runs_bit_exact():
    export = to_export(compile_model(random_model(11, d=64, layers=1), PARAMS))
    export = dataclasses.replace(export, metadata={**export.metadata, "weight_packing": "base3"})
    prompt, count = [3, 141, 59], 8
    expected = golden_from_export(export).generate(prompt, count)
    with session.connect("sim", PARAMS) as (board, virtual):
        board.check_memory()              # waits out the SDRAM's initialisation
        assert board.status().memory_status == 0
        assert session.reuse_if_loaded(board, export) is None
        session.load(board, export, progress=False)        # every section through the UART
        weights = sdram_weight_words(export.sections["weights"], "base3")
        assert len(weights) < 0.81 * len(to_words(export.sections["weights"]))
        np.testing.assert_array_equal(board.read_memory(MemorySpace.WEIGHTS, 0, 300),
                                      weights[:300])
        register = packing_register_address(PARAMS)
        assert board.read_memory(MemorySpace.WEIGHTS, register, 1).tolist() == [1]
        report = session.generate_text(board, export, prompt, count, show=False)
        assert report.generated == expected
    assert not virtual.messages, virtual.messages[:5]    # LiteDRAM's timing checker: silent


def test_the_stdlib_model_generates_64_tokens_bit_exact_from_preloaded_sdram(stdlib_export,
                                                                           tmp_path):
    export, prompt, count = stdlib_export, list(b"import "), 64
    expected = golden_from_export(export).generate(prompt, count)
    with session.connect("sim", PARAMS, export=export) as (board, virtual):
        assert board.preloaded == ("weights", "embeddings")
        loaded = session.reuse_if_loaded(board, export) is not None or \
            session.load(board, export, progress=False)
        assert loaded
        report = session.generate_text(board, export, prompt, count, show=False)
    assert report.generated == expected
    assert not virtual.messages, virtual.messages[:5]
    # The SDRAM gives at most one 16-bit word a cycle: a token needs every weight's 1.6 bits.
    assert export.metadata["weight_packing"] == "base3"
    bound = -(-export.sections["weights"].size * 4 // 10)
    ratio = bound / report.cycles_per_token
    print(f"stdlib: {report.cycles_per_token:,.0f} cycles a token, {bound:,} at the SDRAM's "
          f"bandwidth bound ({ratio:.1%})")
    assert 0.85 <= ratio < 1.0


def test_a_preload_that_differs_from_the_export_is_written_and_checked(stdlib_export, tmp_path):
    """The stdlib model preloaded in base-3; a 2-bit random model loaded over it."""
    export = to_export(compile_model(random_model(12, d=64, layers=1), PARAMS))
    plusargs = write_preload(stdlib_export, tmp_path)   # the wrong model's weights
    assert [arg.split("=")[0] for arg in plusargs] == [f"+tern_sdram_bank{n}" for n in range(4)]
    design = SDRAMAccelerator(PARAMS)
    with VirtualBoard(design, PARAMS, name=PARAMS.name, plusargs=plusargs) as url, \
            Board(url, baud=design.baud, preloaded=("weights", "embeddings"), timeout=60) as board:
        first = board.read_memory(MemorySpace.WEIGHTS, 0, 4)
        np.testing.assert_array_equal(
            first, sdram_weight_words(stdlib_export.sections["weights"], "base3")[:4])
        session.load(board, export, progress=False)     # CRC differs: the section is written
        assert board.holds_export(export)
        register = packing_register_address(PARAMS)
        assert board.read_memory(MemorySpace.WEIGHTS, register, 1).tolist() == [0]   # 2-bit
        np.testing.assert_array_equal(board.read_memory(MemorySpace.WEIGHTS, 0, 4),
                                      to_words(export.sections["weights"])[:4])
