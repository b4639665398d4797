"""``tern flash``: the shipped bitstream goes to the programmer; a missing or stale bitstream,
a missing programmer and an unplugged board each give one clear error."""

import argparse
import json
import os
import stat

import pytest

from host import board_commands
from tern.errors import TernError
from tern.params import preset


def _parse(argv):
    parser = argparse.ArgumentParser(prog="tern")
    board_commands.register(parser.add_subparsers())
    return parser.parse_args(argv)


def _programmer(directory, name, exit_code=0, output="Done"):
    """A stand-in programmer on PATH that records its arguments."""
    script = directory / name
    script.write_text(f"#!/bin/sh\necho \"$@\" > {directory / 'arguments'}\n"
                      f"echo '{output}'\nexit {exit_code}\n")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return directory / "arguments"


@pytest.fixture
def shipped(tmp_path, monkeypatch):
    """bitstreams/ with a demo bitstream for the ULX3S and its manifest, and a PATH of fakes."""
    folder = tmp_path / "bitstreams"
    folder.mkdir()
    (folder / "ulx3s-85f-demo.bit").write_bytes(b"\xff\x00bitstream")
    (folder / "ulx3s-85f-demo.json").write_text(json.dumps(
        {"board": "ulx3s-85f", "preset": "demo",
         "params_hash": f"0x{preset('demo').hash:016x}"}))
    monkeypatch.setattr(board_commands, "BITSTREAMS", folder)
    tools = tmp_path / "tools"
    tools.mkdir()
    monkeypatch.setenv("PATH", f"{tools}{os.pathsep}{os.environ['PATH']}")
    return folder, tools


def test_the_default_preset_is_flashed(shipped, capsys):
    folder, tools = shipped
    arguments = _programmer(tools, "openFPGALoader")
    args = _parse(["flash", "--board", "ulx3s-85f"])
    assert args.func(args) == 0
    assert arguments.read_text().split() == ["--board", "ulx3s", str(folder / "ulx3s-85f-demo.bit")]
    assert capsys.readouterr().out.strip() == "Done"


def test_an_unplugged_board_is_named(shipped):
    _, tools = shipped
    _programmer(tools, "openFPGALoader", 1, "unable to open ftdi device: -3 (device not found)")
    args = _parse(["flash", "--board", "ulx3s-85f"])
    with pytest.raises(TernError, match="no board or cable found: plug in the board's USB port"):
        args.func(args)


def test_a_missing_or_stale_bitstream_is_refused(shipped):
    folder, tools = shipped
    _programmer(tools, "openFPGALoader")
    args = _parse(["flash", "--board", "ulx3s-85f", "--preset", "micro"])
    with pytest.raises(TernError, match=r"no bitstream .*ulx3s-85f-micro.bit; build it with "
                                        r"`tern build --board ulx3s-85f --preset micro`"):
        args.func(args)
    (folder / "ulx3s-85f-demo.json").write_text(json.dumps({"params_hash": "0x0"}))
    args = _parse(["flash", "--board", "ulx3s-85f"])
    with pytest.raises(TernError, match=r"built for other parameters .* rebuild it: tern build "
                                        r"--board ulx3s-85f --preset demo"):
        args.func(args)
    (folder / "ulx3s-85f-demo.json").unlink()
    with pytest.raises(TernError, match=r"ulx3s-85f-demo.bit has no manifest .* pass it as "
                                        r"--bitstream FILE to flash it anyway"):
        args.func(args)
    arguments = _programmer(tools, "openFPGALoader")
    args = _parse(["flash", "--board", "ulx3s-85f", "--bitstream",
                   str(folder / "ulx3s-85f-demo.bit")])
    assert args.func(args) == 0 and "ulx3s-85f-demo.bit" in arguments.read_text()


def test_a_missing_programmer_is_named(shipped, monkeypatch):
    monkeypatch.setattr(board_commands.shutil, "which", lambda name: None)
    args = _parse(["flash", "--board", "ulx3s-85f"])
    with pytest.raises(TernError, match="openFPGALoader is not installed; run `make setup`"):
        args.func(args)
