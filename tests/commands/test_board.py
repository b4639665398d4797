"""``tern load`` and ``tern generate`` check what they can before they touch a board, and
``tern generate`` does not load an export the board already holds, and says so."""

import types

import pytest

from tern_fpga.host import session


@pytest.mark.parametrize("holds, says", [
    (True, ("the board already holds {export} (every section's CRC matches): not loading it "
           "again, only its working memory (16,384 bytes)")),
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


def test_a_board_still_running_is_refused_without_abort(exported, one_line_error, stand_in):
    stand_in.running = True
    assert one_line_error(1, "generate", exported, "--port", "/dev/ttyUSB9", "--ids", "1") == (
        "the board is still running an earlier generation (its host left without ending it); "
        "pass --abort to end that run, or wait until it finishes")
    assert stand_in.aborts == 0 and stand_in.loads == 0


@pytest.mark.parametrize("command", ["load", "generate"])
def test_abort_ends_the_earlier_run_first(exported, run, stand_in, command):
    stand_in.running = True
    extra = ("--ids", "1", "-n", "2") if command == "generate" else ()
    status, _, err = run(command, exported, "--port", "/dev/ttyUSB9", "--abort", *extra)
    assert status == 0, err
    assert err.startswith("ended the board's earlier run after 1234 steps (ABORT)")
    assert stand_in.aborts == 1 and stand_in.loads == 1


def test_a_run_that_ends_before_the_abort_is_reported_as_ended(exported, run, stand_in):
    stand_in.running = stand_in.ends_before_abort = True
    status, _, err = run("load", exported, "--port", "/dev/ttyUSB9", "--abort")
    assert status == 0, err
    assert err.startswith("the board's earlier run ended by itself; its memories are as that "
                          "run left them")
    assert stand_in.aborts == 1 and stand_in.loads == 1


def test_ctrl_c_during_generation_says_the_run_was_ended(exported, run, stand_in):
    stand_in.interrupt_after = 3
    status, out, err = run("generate", exported, "--port", "/dev/ttyUSB9", "--ids", "1", "-n",
                           "50")
    assert status == 130
    assert out == "AAA"
    assert err.rstrip().endswith("interrupted: the board's run was ended at a token boundary "
                                 "(ABORT); the export is still loaded")


class StandInMeter:
    """A power meter for ``--meter``: its idle baseline, or Ctrl-C during it."""

    def __init__(self, interrupt_idle=False):
        self.interrupt_idle, self.closed = interrupt_idle, False

    def idle_baseline(self, seconds):
        if self.interrupt_idle:
            raise KeyboardInterrupt
        return 1.0

    def close(self):
        self.closed = True


@pytest.fixture
def stand_in_meter(monkeypatch):
    from tern_fpga.commands import board as board_command

    meter = StandInMeter()
    monkeypatch.setattr(board_command, "open_meter", lambda spec: meter)
    monkeypatch.setattr(board_command, "measure_generation", lambda meter, generate: (
        generate(), types.SimpleNamespace(mean_watts=2.0, joules_per_token=0.5))[1])
    return meter


def test_generate_with_a_meter_reports_its_power_and_closes_it(exported, run, stand_in,
                                                               stand_in_meter):
    status, out, err = run("generate", exported, "--port", "/dev/ttyUSB9", "--ids", "1", "-n",
                           "3", "--meter", "hwmon:stand-in")
    assert status == 0, err
    assert out.startswith("AAA")
    assert out.splitlines()[-1] == ("power measured by hwmon:stand-in: 2.00 W mean, 0.5000 J "
                                    "per token")
    assert stand_in_meter.closed


def test_ctrl_c_during_the_idle_baseline_claims_no_abort(exported, run, stand_in,
                                                         stand_in_meter):
    stand_in_meter.interrupt_idle = True
    status, out, err = run("generate", exported, "--port", "/dev/ttyUSB9", "--ids", "1",
                           "--meter", "hwmon:stand-in")
    assert status == 130 and out == ""
    assert err.rstrip().endswith("tern generate: interrupted") and "ABORT" not in err
    assert stand_in_meter.closed
