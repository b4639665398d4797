"""The command line's own rules: a usage mistake is one line and exit status 2; a reader that
goes away (``| head``) ends the command quietly."""

import subprocess
import sys
from pathlib import Path

import pytest

from tern_fpga.commands.cli import BROKEN_PIPE_STATUS

TERN = Path(sys.executable).parent / "tern"


@pytest.mark.parametrize("argv, message", [
    (["load", "x.tern", "--port", "sim", "--baud", "0"],
     ("argument --baud: 0 baud is not a line rate tern uses: give 9,600 to 12,000,000 (the "
     "bitstream's own rate, 3,000,000 unless it was built with another)")),
    (["generate", "x.tern", "--port", "sim", "--ids", "1", "--baud", "1"],
     "argument --baud: 1 baud is not a line rate tern uses"),
    (["build", "--board", "ulx3s-85f", "--baud", "fast"],
     "argument --baud: 'fast' is not a whole number of baud"),
    (["build", "--board", "ulx3s-85f", "--preset", "huge"],
     "argument --preset: invalid choice: 'huge' (choose from 'demo', 'large', 'micro', 'micro-dataflow', 'stdlib')"),
])
def test_a_usage_mistake_is_one_line(one_line_error, argv, message):
    assert one_line_error(2, *argv).startswith(message)


def test_a_line_rate_the_clock_cannot_make(one_line_error, tmp_path):
    assert one_line_error(1, "build", "--board", "ulx3s-85f", "--preset", "micro", "--baud",
                          "12000000", "--skip-fit-check", "-o", tmp_path) == (
        "--baud 12000000: baud 12000000 is too fast for a 20000000 Hz clock: a bit must last "
        "at least 4 cycles; use at most 5000000 baud")


@pytest.mark.skipif(not TERN.exists(), reason="the tern script is not installed")
def test_a_closed_pipe_ends_the_command_quietly(exported):
    """``tern golden ... | head -c 8``: the reader leaves after 8 bytes, the command follows
    with SIGPIPE's status and not a word on stderr."""
    process = subprocess.Popen([str(TERN), "golden", str(exported), "--ids", "1", "-n", "5000"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert len(process.stdout.read(8)) == 8
    process.stdout.close()
    _, err = process.communicate(timeout=60)
    assert (process.returncode, err) == (BROKEN_PIPE_STATUS, b"")
