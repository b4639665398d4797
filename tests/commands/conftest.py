"""Shared set-up of the command tests: a small checkpoint and its export, made once, a way
to run a command as the shell does and read its one-line error, and a stand-in board."""

import contextlib

import pytest

from tern_fpga.commands.cli import main
from tern_fpga.host import session

from support.stand_in_board import StandInBoard


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory):
    """A random byte-level model of one layer, d=64: exported for micro in about a second."""
    import torch  # here, not at the top: the other command tests do without it

    from tern_fpga.quant.config import HGRNBitConfig
    from tern_fpga.quant.model import HGRNBitForCausalLM

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("checkpoint")
    config = HGRNBitConfig(vocab_size=256, hidden_size=64, num_hidden_layers=1)
    HGRNBitForCausalLM(config).save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def exported(checkpoint, tmp_path_factory):
    """``tern export`` of :func:`checkpoint` for micro (read-only: copy it to change it)."""
    path = tmp_path_factory.mktemp("export") / "model.tern"
    assert main(["export", str(checkpoint), "--preset", "micro", "-o", str(path)]) == 0
    return path


@pytest.fixture
def run(capsys):
    """``run(*argv)``: the command's exit status, stdout and stderr."""
    def run_command(*argv):
        capsys.readouterr()
        try:
            status = main([str(arg) for arg in argv])
        except SystemExit as exit_:  # argparse's usage errors
            status = exit_.code
        captured = capsys.readouterr()
        return status, captured.out, captured.err
    return run_command


@pytest.fixture
def one_line_error(run):
    """``one_line_error(status, *argv)``: run the command, assert it failed with ``status`` and
    one line on stderr, and return that line without the ``tern CMD: error: `` prefix."""
    def error(status, *argv):
        code, _, err = run(*argv)
        assert code == status, err
        assert err.count("\n") == 1 and err.endswith("\n"), err
        prefix = f"tern {argv[0]}: error: "
        assert err.startswith(prefix), err
        return err[len(prefix):-1]
    return error


@pytest.fixture
def stand_in(monkeypatch):
    """Connects every port to a :class:`StandInBoard` (its members set by the test)."""
    board = StandInBoard()

    @contextlib.contextmanager
    def connect(port, params, *, baud, waves=None, export=None, core="instruction"):
        yield board, None

    monkeypatch.setattr(session, "connect", connect)
    return board
