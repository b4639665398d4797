"""The profile-guided build of the virtual board: trained by the host's workload on a slice of
an export, it serves the same board; a workload that fails leaves no binary behind."""

import subprocess

import numpy as np
import pytest

from tern_fpga.host.driver import Board
from tern_fpga.host.profile_run import SLICE_BYTES, profile_workload, slice_export
from tern_fpga.sim.rtl import virtual_board
from tern_fpga.sim.rtl.virtual_board import (
    ProfileWorkload,
    VirtualBoard,
    VirtualBoardError,
    build_board,
)

from support.link import LINK_PARAMS, random_export


def test_a_slice_keeps_the_program_and_cuts_each_section_to_whole_words():
    params = LINK_PARAMS.replace(weight_memory_words=4096, vector_memory_words=8192)
    export = random_export(3, params)
    sliced = slice_export(export)
    weight_word_bytes = params.ternary_lanes // 4
    for name, array in export.sections.items():
        cut = sliced.sections[name]
        if name in ("program", "entry_points") or array.nbytes <= SLICE_BYTES:
            assert cut is array, name
        else:
            assert 0 < cut.nbytes <= SLICE_BYTES and cut.shape[1:] == array.shape[1:], name
            np.testing.assert_array_equal(cut, array[:len(cut)])
    assert export.sections["weights"].nbytes > SLICE_BYTES
    assert len(sliced.sections["weights"]) % weight_word_bytes == 0
    assert sliced.params == export.params and sliced.model_config == export.model_config


def test_a_profile_guided_board_is_trained_and_serves_the_same_board(board_top):
    profile = profile_workload(board_top, LINK_PARAMS, random_export(5))
    binary = build_board(board_top, "link-test", profile=profile)
    directory = binary.parent
    assert directory.name.endswith("-pgo")
    assert binary != build_board(board_top, "link-test")
    log = (directory / "build.log").read_text()
    assert f"-- profile run {profile.key!r}" in log
    assert "-fprofile-generate" in log and "-fprofile-use" in log
    assert (directory / "Vtop__ALL.gcda").stat().st_size > 0
    assert not (directory / "uart_bridge-instrumented").exists()
    with VirtualBoard(board_top, LINK_PARAMS, name="link-test", profile=profile) as url, \
            Board(url) as board:
        assert board.identity.build_id == 0x1234ABCD


def test_a_failed_profile_run_leaves_no_binary(board_top, monkeypatch, tmp_path):
    monkeypatch.setattr(virtual_board, "BUILD_ROOT", tmp_path)

    def crash(binary):
        raise RuntimeError("the workload broke")

    with pytest.raises(VirtualBoardError, match=r"profile run .* failed \(the workload broke\)"):
        build_board(board_top, "link-test", profile=ProfileWorkload("crashing-v1", crash))
    assert list(tmp_path.rglob("Vtop.mk")), "the build did not get as far as the profile run"
    assert [path.name for path in tmp_path.rglob("uart_bridge*")
            if path.suffix not in (".o", ".d", ".gcda")] == []


def test_the_build_key_follows_the_processor(monkeypatch):
    key = virtual_board.build_key("module top; endmodule", ())
    monkeypatch.setattr(virtual_board, "native_target", lambda: "-march= some-other-cpu")
    assert virtual_board.build_key("module top; endmodule", ()) != key


def test_native_target_names_the_processor():
    target = virtual_board.native_target()
    assert "-march=" in target
    assert target == subprocess.run(["c++", "-march=native", "-Q", "--help=target"],
                                    capture_output=True, text=True, check=True).stdout
