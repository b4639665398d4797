"""``tern golden`` on clumsy and hostile input: bad prompts and inconsistent exports end in one
line naming the value and the fix, before anything is generated."""

import numpy as np
import pytest

from tern_fpga.contracts.export_format import read_export, write_export


@pytest.mark.parametrize("ids, token", [("300", 300), ("1,70000", 70000), ("-1", -1)])
def test_token_ids_outside_the_vocabulary(exported, one_line_error, ids, token):
    assert one_line_error(1, "golden", exported, "--ids", ids) == (
        f"--ids: token {token} is outside the model's vocabulary of 256 (ids 0 to 255)")


def test_ids_that_are_not_integers(exported, one_line_error):
    assert one_line_error(1, "golden", exported, "--ids", "") == (
        "--ids takes comma-separated integers, not ''")


def test_a_prompt_that_is_not_utf8(exported, one_line_error, run):
    # How Python hands over a command line that is not UTF-8: its bytes as surrogate escapes.
    prompt = b"ab\xffc".decode("utf-8", errors="surrogateescape")
    assert one_line_error(1, "golden", exported, "--prompt", prompt, "-n", "2") == (
        "--prompt is not valid UTF-8 text (byte 0xff at offset 2); pass text, or its bytes as "
        "token ids: --ids 97,98,255,99")
    status, out, _ = run("golden", exported, "--ids", "97,98,255,99", "-n", "2")
    assert status == 0 and out.splitlines()[0].count(",") == 2  # the bytes as ids do


def changed(exported, folder, **sections):
    """A copy of the export with some sections replaced: intact CRCs, inconsistent contents."""
    export = read_export(exported)
    export.sections.update(sections)
    path = folder / "changed.tern"
    write_export(path, export)
    return path


def test_sections_that_do_not_fit_together(exported, tmp_path, one_line_error):
    embeddings = read_export(exported).sections["embeddings"]
    path = changed(exported, tmp_path, embeddings=embeddings.reshape(-1))
    assert one_line_error(1, "golden", path, "--ids", "1") == (
        f"{path}: its 'embeddings' section (int16 of shape [16384]) is not a 2-D integer table "
        f"(at most 16384 elements) with a row for each of the model's vocab_size 256 tokens: "
        f"the file is inconsistent although its CRCs match (edited, or written by another "
        f"tern?); re-export it with `tern export`")
    path = changed(exported, tmp_path, entry_points=np.array([0, 5000], np.uint32))
    assert "its 'entry_points' section (uint32 of shape [2]) is not two instruction numbers " \
        "below" in one_line_error(1, "golden", path, "--ids", "1")


def test_a_program_the_golden_model_cannot_run(exported, tmp_path, one_line_error):
    constants = read_export(exported).sections["constants"]
    path = changed(exported, tmp_path, constants=np.full_like(constants, -7))
    assert one_line_error(1, "golden", path, "--ids", "1", "-n", "2") == (
        f"{path}: the golden model cannot run this export (ValueError: rsqrt needs a positive "
        f"value, not -7): its program or constants are inconsistent although its CRCs match "
        f"(edited, or written by another tern?); re-export it with `tern export`")
