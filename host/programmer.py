"""The FPGA programmers (openFPGALoader, iceprog): found without any self-reference, run with a
time limit, their output streamed as it comes, and an absent board told in one line.

The ``openfpgaloader`` package puts a console script on PATH that looks for ``openFPGALoader``
on PATH before its own bundled binary; a link of that name to the script would run itself
without end. So a programmer is located here by the real binary's own path: an environment
variable (``OPENFPGALOADER``, ``ICEPROG``, Amaranth's convention) first, then the binary inside
the installed Python package, then a program on PATH (or beside this Python) that is not a
Python wrapper script. The same answer comes whether or not the virtual environment is
activated.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from tern_fpga.contracts.errors import TernError

__all__ = ["NO_BOARD_MARKERS", "ProgrammerError", "find_programmer", "is_wrapper_script",
           "run_programmer"]

# Python packages that bundle a programmer's binary, by the binary's name.
_PACKAGED = {"openFPGALoader": ("openfpgaloader", "bin/openFPGALoader")}
_INSTALL_HINT = {"openFPGALoader": "run `make setup` (the openfpgaloader package), or install "
                                   "Debian's openfpgaloader",
                 "iceprog": "install Debian's fpga-icestorm (`apt-get install fpga-icestorm`)"}
# What the programmers print when no board or cable answers.
NO_BOARD_MARKERS = ("unable to open ftdi device", "no device", "cannot find", "can't find",
                    "failed to open", "no cable", "jtag init failed")


class ProgrammerError(TernError):
    """The programmer is missing, failed, or outran its time limit."""


def environment_variable(name: str) -> str:
    """Amaranth's name for a tool's override variable: ``openFPGALoader`` -> ``OPENFPGALOADER``."""
    return name.upper().replace("-", "_")


def is_wrapper_script(path: Path) -> bool:
    """True for a Python console script (``#!...python`` that imports a ``cli``): such a wrapper
    may look its own name up on PATH, so it is never taken for the programmer itself."""
    try:
        with open(path, "rb") as file:
            head = file.read(512)
    except OSError:
        return False
    return head.startswith(b"#!") and b"python" in head.split(b"\n", 1)[0] and b"import" in head


def _packaged_binary(name: str) -> Path | None:
    if name not in _PACKAGED:
        return None
    package, relative = _PACKAGED[name]
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    binary = Path(next(iter(spec.submodule_search_locations))) / relative
    return binary if binary.is_file() and os.access(binary, os.X_OK) else None


def find_programmer(name: str) -> Path:
    """The real executable of programmer ``name`` (``openFPGALoader`` or ``iceprog``)."""
    override = os.environ.get(environment_variable(name))
    if override:
        found = shutil.which(override)
        if found is None or is_wrapper_script(Path(found).resolve()):
            raise ProgrammerError(f"{environment_variable(name)}={override} is not a programmer "
                                  f"binary; unset it or point it at the real {name}")
        return Path(found)
    packaged = _packaged_binary(name)
    if packaged is not None:
        return packaged
    search_path = os.pathsep.join([os.environ.get("PATH", ""), str(Path(sys.executable).parent)])
    for folder in search_path.split(os.pathsep):
        candidate = shutil.which(name, path=folder) if folder else None
        if candidate and not is_wrapper_script(Path(candidate).resolve()):
            return Path(candidate)
    raise ProgrammerError(f"{name} is not installed; {_INSTALL_HINT.get(name, 'install it')}")


def _stop(process: subprocess.Popen) -> None:
    """Ends the programmer and anything it started (it runs in its own process group)."""
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=3)
    except ProcessLookupError:
        return
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def run_programmer(command: list[str], timeout_s: float, echo=None,
                   hold_s: float = 0.5) -> str:
    """Runs ``command`` (a programmer and its arguments) and streams its output to ``echo``
    (default: standard error) as it comes, progress lines included. The first ``hold_s``
    seconds of output are held back: a programmer that finds no board answers within them, and
    then only the one-line error is shown. Returns the whole output; raises
    :class:`ProgrammerError` with one line on a failure, an absent board or a timeout, leaving
    no process behind."""
    echo = echo or sys.stderr
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               stdin=subprocess.DEVNULL, start_new_session=True)
    output = bytearray()
    shown = 0
    started = time.monotonic()
    name = Path(command[0]).name

    def show():
        nonlocal shown
        if time.monotonic() - started >= hold_s and shown < len(output):
            echo.write(output[shown:].decode(errors="replace"))
            echo.flush()
            shown = len(output)

    try:
        os.set_blocking(process.stdout.fileno(), False)
        while True:
            chunk = process.stdout.read(4096)
            if chunk:
                output += chunk
            elif process.poll() is not None:
                output += process.stdout.read() or b""
                break
            elif time.monotonic() - started > timeout_s:
                _stop(process)
                raise ProgrammerError(
                    f"{name} gave no result within {timeout_s:g} s and was stopped; check the "
                    f"board and cable, or raise --timeout")
            else:
                time.sleep(0.05)
            show()
    except BaseException:
        _stop(process)
        raise
    finally:
        process.stdout.close()
    if process.returncode == 0:
        started = -hold_s  # a success shows everything
        show()
    text = output.decode(errors="replace").strip()
    if process.returncode:
        lowered = text.lower()
        if any(marker in lowered for marker in NO_BOARD_MARKERS):
            raise ProgrammerError(f"{name}: no board found: plug in the board's USB port, check "
                                  f"the cable and permissions (udev rules), then try again")
        last = text.splitlines()[-1] if text else f"exit status {process.returncode}"
        raise ProgrammerError(f"{name} failed (exit status {process.returncode}): {last}")
    return text
