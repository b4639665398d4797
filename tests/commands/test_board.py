"""``tern load`` and ``tern generate`` check what they can before they touch a board, and
``tern generate`` does not load an export the board already holds, and says so."""

import contextlib
import types

import pytest

from tern_fpga.host import session


class StandInBoard:
    """What ``tern generate`` asks of a board, answered without one."""

    def __init__(self, holds: bool):
        self.holds, self.loads = holds, 0
        self.identity = types.SimpleNamespace(board_id=0xFFFF)

    def holds_export(self, export):
        return self.holds

    def load_export(self, export, progress=True):
        self.loads += 1
        return 1024

    def reset(self):
        pass

    def status(self):
        return types.SimpleNamespace(cycles=0, tokens=0)

    def generate(self, prompt, count):
        return iter([65] * count)


@pytest.fixture
def stand_in(monkeypatch):
    """Connects every port to a :class:`StandInBoard` (``stand_in.holds`` set by the test)."""
    board = StandInBoard(holds=False)

    @contextlib.contextmanager
    def connect(port, params, *, baud, waves=None):
        yield board, None

    monkeypatch.setattr(session, "connect", connect)
    return board


@pytest.mark.parametrize("holds, says", [
    (True, ("the board already holds {export} (every section's CRC matches): not loading it "
           "again")),
    (False, "loaded and verified {export}: 1,024 bytes in "),
])
def test_generate_loads_only_what_the_board_lacks(exported, run, stand_in, holds, says):
    stand_in.holds = holds
    status, out, err = run("generate", exported, "--port", "/dev/ttyUSB9", "--ids", "1", "-n", "3")
    assert status == 0, err
    assert err.startswith(says.format(export=exported))
    assert stand_in.loads == (0 if holds else 1)
    assert "(3 tokens in " in out


@pytest.mark.parametrize("ids", ["300", "70000", "-1"])
def test_generate_checks_the_prompt_before_connecting(exported, one_line_error, monkeypatch,
                                                      ids):
    def connect(*args, **kwargs):
        raise AssertionError("connected before the prompt was checked")

    monkeypatch.setattr(session, "connect", connect)
    assert one_line_error(1, "generate", exported, "--port", "sim", "--ids", ids).startswith(
        f"--ids: token {int(ids)} is outside the model's vocabulary of 256 (ids 0 to 255)")
