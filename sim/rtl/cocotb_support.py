"""cocotb + Verilator for Amaranth components: build once per parameter set, drive streams.

Host side (pytest, benchmarks)
    :func:`build_component` writes a component's Verilog into ``build/cocotb/<name>-<key>/`` and
    builds it with Verilator the way cocotb's Python runner does (reusing Verilator's runtime
    objects between builds); :meth:`VerilatorBuild.run` runs a cocotb test module on it through
    ``cocotb_tools.runner`` and raises :class:`AssertionError` if a test failed. A lock file
    makes concurrent pytest workers share one build instead of racing on it. A build with
    ``waves=True`` traces to FST in a folder of its own (``<name>-<key>-fst``), so that the
    untraced build that the tests use stays as fast as it was; a run given ``waves=FILE`` dumps
    only the cycles of its window.
Simulator side (inside a cocotb test module)
    :class:`StreamDriver` and :class:`StreamSink` speak Amaranth 0.5's flattened stream ports
    ``<port>__valid``, ``<port>__ready`` and ``<port>__payload`` with random stalls;
    :func:`start_clock_and_reset` starts the clock and pulses Amaranth's synchronous ``rst``;
    :func:`test_config` reads the JSON configuration that :meth:`VerilatorBuild.run` passed;
    :func:`trace_window` moves the window of cycles that a traced run dumps.

Each handshake is decided in the same way on both sides: after a rising edge the coroutine
writes its outputs for the coming cycle, then waits for ``ReadOnly`` and reads the settled
``valid`` and ``ready``; a transfer happens at the next edge exactly when both are high.
"""

from __future__ import annotations

import ctypes
import dataclasses
import fcntl
import hashlib
import json
import os
import random
import shutil
import subprocess
import sys
from contextlib import contextmanager
from importlib.metadata import version
from pathlib import Path
from xml.etree import ElementTree

from tern_fpga.contracts import paths
from tern_fpga.contracts.lanes import (  # re-exported: the testbenches' helpers
    pack_lanes,
    unpack_lanes,
)
from tern_fpga.sim.rtl.waves import write_state_names

__all__ = [
    "BUILD_ROOT",
    "CONFIG_ENVIRONMENT",
    "REPOSITORY",
    "VERILATOR_BUILD_ARGS",
    "WINDOW_ENVIRONMENT",
    "RunFailed",
    "StreamDriver",
    "StreamSink",
    "VerilatorBuild",
    "announce_prefetches",
    "await_memory_ready",
    "build_component",
    "current_cycle",
    "failure_message",
    "keep_runtime",
    "locked_directory",
    "pack_lanes",
    "reuse_runtime",
    "simulated_cycles",
    "start_clock_and_reset",
    "test_config",
    "trace_window",
    "unpack_lanes",
    "write_verilog",
]

REPOSITORY = paths.SOURCE_ROOT
BUILD_ROOT = paths.BUILD / "cocotb"
# The environment variable that carries a run's JSON configuration into the simulator.
CONFIG_ENVIRONMENT = "TERN_COCOTB_CONFIG"
# The environment variable that carries a traced run's window, "FIRST:END" in clock cycles
# (END empty: to the end), which :func:`start_clock_and_reset` applies.
WINDOW_ENVIRONMENT = "TERN_WAVES_WINDOW"
# Amaranth's Verilog widens and truncates implicitly; Verilator's width warnings about that are
# not errors (tern_fpga/commands/verilog.py lists every lint waiver). One output file: splitting
# would need precompiled headers, which the PyPI wheel's verilated.mk does not set up.
VERILATOR_BUILD_ARGS = ("-Wno-fatal", "-Wno-WIDTHEXPAND", "-Wno-WIDTHTRUNC", "--output-split", "0")
CLOCK_PERIOD_NS = 10


# Host side ------------------------------------------------------------------------------------


def write_verilog(component, toplevel: str, path: Path) -> Path:
    """Write ``component``'s Verilog as module ``toplevel`` to ``path``.

    The file is rewritten only when its text changes, so that Verilator's incremental build
    sees an unchanged design as up to date.
    """
    from amaranth.back import verilog  # here, not at the top: loads Amaranth

    text = verilog.convert(component, name=toplevel, emit_src=False)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists() or path.read_text() != text:
        path.write_text(text)
    return path


@contextmanager
def locked_directory(directory: Path, *, shared: bool = False):
    """Create ``directory`` and hold a lock on it: exclusive for a builder, so that concurrent
    builders (pytest workers, a virtual board) take turns instead of racing on one build;
    ``shared`` for a run of the built simulator, so that no builder relinks the binary while
    another worker executes it (which fails with "Permission denied")."""
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / ".lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


@dataclasses.dataclass(frozen=True)
class VerilatorBuild:
    """One Verilator build of one component; run cocotb test modules on it with :meth:`run`."""

    toplevel: str
    build_dir: Path
    traced: bool = False

    def run(self, test_module: str, config: dict, *, testcase: str | None = None,
            module_dir: Path | None = None, seed: int = 1, plusargs: tuple[str, ...] = (),
            waves: Path | None = None, window: tuple[int, int | None] | None = None) -> Path:
        """Run the cocotb tests of ``test_module`` on this build.

        Parameters
        ----------
        test_module : str
            Importable name of the cocotb test module.
        config : dict
            JSON-serialisable configuration; the tests read it with :func:`test_config`.
        testcase : str, optional
            Run only this test of the module.
        module_dir : pathlib.Path, optional
            Folder that ``test_module`` imports from; it is added to ``sys.path``, which cocotb's
            runner hands to the simulator as its ``PYTHONPATH``.
        seed : int
            cocotb's random seed (the tests draw their own data from seeds in ``config``).
        plusargs : tuple of str
            Passed to the simulator, e.g. ``+verilator+coverage+file+PATH`` for a coverage build.
        waves : pathlib.Path, optional
            Write an FST waveform there (a build made with ``waves=True``).
        window : (int, int or None), optional
            With ``waves``: the clock cycles ``[first, end)`` to dump (``end`` None: to the end
            of the run), applied by :func:`start_clock_and_reset`; by default none is dumped
            until the test module calls :func:`trace_window`.

        Returns
        -------
        pathlib.Path
            The xUnit results file.

        Raises
        ------
        AssertionError
            If the simulator failed or a test did not pass; the message names the log file.
        ValueError
            If ``waves`` is asked of a build without tracing.
        """
        # here, not at the top: loads cocotb
        from cocotb_tools.runner import get_results, get_runner

        environment, test_args = {}, []
        if waves is not None:
            if not self.traced:
                raise ValueError(f"{self.build_dir.name} was built without tracing; build it "
                                 f"with build_component(..., waves=True) to write waves")
            waves = Path(waves).resolve()
            waves.parent.mkdir(parents=True, exist_ok=True)
            test_args = ["--trace", "--trace-file", str(waves)]
            if window is not None:
                first, end = window
                environment[WINDOW_ENVIRONMENT] = f"{first}:{'' if end is None else end}"
        # One name per (module, test, configuration): runs in parallel never share a file.
        digest = hashlib.sha1(json.dumps([config, str(waves), window],
                                         sort_keys=True).encode()).hexdigest()[:12]
        name = f"{test_module}.{testcase or 'all'}.{digest}"
        log_file, results = self.build_dir / f"{name}.log", self.build_dir / f"{name}.xml"
        # cocotb's runner hands the simulator this process's sys.path as PYTHONPATH.
        if module_dir is not None and str(module_dir) not in sys.path:
            sys.path.append(str(module_dir))
        try:
            with locked_directory(self.build_dir, shared=True):
                get_runner("verilator").test(
                    test_module=test_module, hdl_toplevel=self.toplevel,
                    hdl_toplevel_lang="verilog", testcase=testcase, plusargs=list(plusargs),
                    test_args=test_args,
                    build_dir=self.build_dir, test_dir=self.build_dir, seed=seed,
                    results_xml=str(results.resolve()), log_file=log_file,
                    extra_env={**environment, CONFIG_ENVIRONMENT: json.dumps(config),
                               "COCOTB_TRUST_INERTIAL_WRITES": "1",
                               # cocotb rewrites the asserts of every imported module by default,
                               # which costs about a second per run: only the test module's.
                               "COCOTB_REWRITE_ASSERTION_FILES":
                                   test_module.rpartition(".")[2] + ".py"})
            tests, failed = get_results(results)
        except (SystemExit, RuntimeError) as error:
            raise RunFailed(f"cocotb run of {test_module} failed ({error!r}); "
                            f"see {log_file}:\n{_log_tail(log_file)}",
                            results, log_file) from None
        if failed or not tests:
            raise RunFailed(f"{failed} of {tests} cocotb tests of {test_module} failed; "
                            f"see {log_file}:\n{_log_tail(log_file)}", results, log_file)
        return results


class RunFailed(AssertionError):
    """A cocotb run that did not pass: the message names the log and shows its end.

    Members
    -------
    results, log : pathlib.Path
        The xUnit results file (it may be missing if the simulator did not start) and the log.
    """

    def __init__(self, message: str, results: Path, log: Path):
        super().__init__(message)
        self.results, self.log = results, log

    @property
    def reason(self) -> str:
        """The first failed test's own message (its assertion), else this one's."""
        return failure_message(self.results) or str(self)


def _testcases(results: Path):
    try:
        return ElementTree.parse(results).getroot().iter("testcase")
    except (OSError, ElementTree.ParseError):
        return iter(())


def simulated_cycles(results: Path) -> int:
    """Clock cycles that the tests of an xUnit results file simulated, together."""
    total = 0.0
    for case in _testcases(results):
        for item in case.iter("property"):
            if item.get("name") == "sim_time_duration":
                total += float(item.get("value"))
    return round(total) // CLOCK_PERIOD_NS


def failure_message(results: Path) -> str | None:
    """The message of the first failed test in an xUnit results file, if any."""
    for case in _testcases(results):
        for failure in (*case.iter("failure"), *case.iter("error")):
            return failure.get("message") or failure.text
    return None


def _log_tail(log_file: Path, lines: int = 40) -> str:
    try:
        return "\n".join(log_file.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def build_component(component, toplevel: str, key: str, *,
                    optimize: str = "-O1",
                    verilator_args: tuple[str, ...] = (), waves: bool = False) -> VerilatorBuild:
    """Build ``component`` with Verilator under ``build/cocotb/<toplevel>-<key>/``.

    The build is the one cocotb's Verilator runner makes (its ``verilator.cpp`` main, its VPI
    library), run here in two steps so that Verilator's runtime library, the same for every
    design, is compiled once and reused (it is ~85% of a clean build's time), and so that the
    design's C++ is compiled at ``optimize`` (the tests' time goes into Python, not into the
    model). A no-op rebuild of an unchanged design takes a fraction of a second.

    Parameters
    ----------
    component : amaranth.lib.wiring.Component
        The design; its ports keep Amaranth's flattened names (``<port>__valid``, ...).
    toplevel : str
        Verilog module name.
    key : str
        Names the parameter set, so that each set gets its own folder (for example
        ``f"P{params.ternary_lanes}-{params.hash:016x}"``).
    optimize : str
        The C++ compiler's optimisation flag for the design's code.
    verilator_args : tuple of str
        More Verilator options (e.g. ``--coverage-toggle``); give such a build its own ``key``.
    waves : bool
        Build with FST tracing, in ``<toplevel>-<key>-fst/``, with cocotb's main changed to dump
        only inside the window that :func:`trace_window` sets. Also writes the names of the
        design's state machine states there for the waveform viewer
        (:func:`tern_fpga.sim.rtl.waves.write_state_names`).

    Returns
    -------
    VerilatorBuild

    Raises
    ------
    RuntimeError
        If Verilator or the C++ build fails; the message names the log file.
    """
    import cocotb_tools.config  # here, not at the top: loads cocotb

    verilator = shutil.which("verilator")
    if verilator is None:
        raise RuntimeError("verilator is not on PATH; run `make setup` or put .venv/bin on PATH")
    build_dir = BUILD_ROOT / f"{toplevel}-{key}{'-fst' if waves else ''}"
    libraries = cocotb_tools.config.libs_dir
    main = cocotb_tools.config.share_dir / "lib" / "verilator" / "verilator.cpp"
    linker = f"-Wl,-rpath,{libraries} -L{libraries} -lcocotbvpi_verilator"
    with locked_directory(build_dir):
        source = write_verilog(component, toplevel, build_dir / f"{toplevel}.v")
        if waves:
            main = _windowed_main(main, build_dir)
            linker += " -rdynamic"  # so that the testbench finds tern_trace_window (ctypes)
            verilator_args = ("--trace-fst", *verilator_args)
            write_state_names(component, build_dir)
        log_file = build_dir / "build.log"
        with open(log_file, "w") as log:
            _run([verilator, "-cc", "--exe", "-Mdir", str(build_dir), "--top-module", toplevel,
                  "--vpi", "--public-flat-rw", "--prefix", "Vtop", "-o", toplevel,
                  "-LDFLAGS", linker, *VERILATOR_BUILD_ARGS, *verilator_args,
                  str(main), str(source)], log, log_file)
            reuse_runtime(_runtime_cache(waves), _runtime_objects(waves), build_dir)
            _run(["make", "-j", str(os.cpu_count() or 1), "-C", str(build_dir), "-f", "Vtop.mk",
                  f"VM_TRACE={int(waves)}", f"OPT_FAST={optimize}", "OPT_SLOW=-O0"],
                 log, log_file)
        keep_runtime(_runtime_cache(waves), _runtime_objects(waves), build_dir)
    return VerilatorBuild(toplevel=toplevel, build_dir=build_dir, traced=waves)


# What cocotb's Verilator main is given to dump only inside a window of simulation time, which
# the testbench moves through tern_trace_window() (:func:`trace_window`): none until it does.
_WINDOW_DECLARATION = """
// tern: dump the trace only in [tern_trace_first, tern_trace_end), simulation time steps.
static vluint64_t tern_trace_first = ~0ULL, tern_trace_end = ~0ULL;
extern "C" void tern_trace_window(unsigned long long first, unsigned long long end) {
    tern_trace_first = first;
    tern_trace_end = end;
}

"""
_DUMP = "tfp->dump(main_time);"
_WINDOWED_DUMP = ("if (main_time >= tern_trace_first && main_time < tern_trace_end) "
                  "tfp->dump(main_time);")
_MAIN_ANCHOR = "double sc_time_stamp()"


def _windowed_main(main: Path, build_dir: Path) -> Path:
    """cocotb's Verilator main with the dump limited to a window, written into ``build_dir``
    (only when its text changes, so that make sees an unchanged one as up to date)."""
    text = main.read_text()
    if text.count(_DUMP) != 1 or text.count(_MAIN_ANCHOR) != 1:
        raise RuntimeError(f"{main} (cocotb {version('cocotb')}) no longer has one "
                           f"'{_DUMP}' and one '{_MAIN_ANCHOR}'; adapt "
                           f"tern_fpga.sim.rtl.cocotb_support._windowed_main to it")
    text = text.replace(_MAIN_ANCHOR, _WINDOW_DECLARATION + _MAIN_ANCHOR).replace(
        _DUMP, _WINDOWED_DUMP)
    windowed = build_dir / "verilator_windowed.cpp"
    if not windowed.exists() or windowed.read_text() != text:
        windowed.write_text(text)
    return windowed


def _run(command, log, log_file: Path) -> None:
    log.flush()
    if subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, check=False).returncode:
        raise RuntimeError(f"{Path(command[0]).name} failed; see {log_file}:\n"
                           f"{_log_tail(log_file)}")


# Verilator's runtime library (verilated*.cpp) is the same for every design built with the same
# flags: keep its objects from the first build and copy them into later ones. The copies get the
# current time, newer than the Vtop.mk just written, so make sees them as up to date. Traced
# builds keep theirs apart (compiled with VM_TRACE, and one more object: the FST writer).
_RUNTIME_OBJECTS = ("verilated", "verilated_vpi", "verilated_threads", "verilated_dpi")
_TRACE_OBJECTS = ("verilated_fst_c",)


def _runtime_cache(traced: bool) -> Path:
    return BUILD_ROOT / (f"runtime-verilator{version('verilator')}-cocotb{version('cocotb')}"
                         + ("-fst" if traced else ""))


def _runtime_objects(traced: bool) -> tuple[str, ...]:
    return tuple(name + suffix for name in _RUNTIME_OBJECTS + (_TRACE_OBJECTS if traced else ())
                 for suffix in (".d", ".o"))


def reuse_runtime(cache: Path, objects, build_dir: Path) -> None:
    """Copy Verilator's runtime ``objects`` kept in ``cache`` into ``build_dir``, after Verilator
    wrote Vtop.mk: the copies are newer than it, so make takes them as up to date."""
    for name in objects:
        cached = cache / name
        if cached.exists():
            shutil.copyfile(cached, build_dir / name)


def keep_runtime(cache: Path, objects, build_dir: Path) -> None:
    """Keep the runtime ``objects`` a build of ``build_dir`` compiled, for the next build."""
    cache.mkdir(parents=True, exist_ok=True)
    for name in objects:
        built, cached = build_dir / name, cache / name
        if built.exists() and not cached.exists():
            # Copy, then rename: another worker may be reading the cache at the same time.
            partial = cache / f"{name}.{os.getpid()}.partial"
            shutil.copyfile(built, partial)
            partial.rename(cached)


# Simulator side -------------------------------------------------------------------------------


def test_config() -> dict:
    """The configuration that :meth:`VerilatorBuild.run` handed to this simulation."""
    return json.loads(os.environ[CONFIG_ENVIRONMENT])


test_config.__test__ = False  # not a pytest test despite the name


def trace_window(first_cycle: int, end_cycle: int | None = None) -> None:
    """Dump the waveform of clock cycles ``[first_cycle, end_cycle)`` (``None``: to the end) in
    a run given ``waves`` (:meth:`VerilatorBuild.run`); cycle ``n`` starts at ``n`` clock
    periods of simulation time. A cycle already past is not dumped any more.

    Raises
    ------
    RuntimeError
        If the simulator was not built with ``waves=True``.
    """
    from cocotb.simtime import convert  # here, not at the top: loads cocotb

    try:
        window = ctypes.CDLL(None).tern_trace_window
    except AttributeError:
        raise RuntimeError("this simulator was built without tracing: build_component(..., "
                           "waves=True)") from None
    window.argtypes = (ctypes.c_ulonglong, ctypes.c_ulonglong)
    first = int(convert(first_cycle * CLOCK_PERIOD_NS, "ns", to="step"))
    end = (1 << 64) - 1 if end_cycle is None else \
        int(convert(end_cycle * CLOCK_PERIOD_NS, "ns", to="step"))
    window(first, end)


def current_cycle() -> int:
    """The clock cycle now (simulation time over the clock period)."""
    from cocotb.simtime import get_sim_time  # here, not at the top: loads cocotb

    return int(get_sim_time("ns")) // CLOCK_PERIOD_NS


async def announce_prefetches(dut, runs, prefetch_word_bits: int):
    """Offer each ``(start, words)`` of ``runs`` on a weight memory's ``prefetch`` stream
    (:class:`~tern_fpga.hw.weight_memory.WeightMemorySignature`, the payload ``start`` below
    ``words``), each as soon as the one before was taken: TMVs announced back to back."""
    from cocotb.triggers import FallingEdge, RisingEdge  # here, not at the top: loads cocotb

    for start, words in runs:
        dut.prefetch__payload.value = start | words << prefetch_word_bits
        dut.prefetch__valid.value = 1
        await RisingEdge(dut.clk)
        while not int(dut.prefetch__ready.value):
            await RisingEdge(dut.clk)
        await FallingEdge(dut.clk)
        dut.prefetch__valid.value = 0


async def await_memory_ready(dut, cycles: int, failure: str):
    """Wait until a weight memory's ``status`` reads 0 (its controller initialised), for at
    most ``cycles`` rising edges; then raise :class:`AssertionError` with ``failure``."""
    from cocotb.triggers import RisingEdge  # here, not at the top: loads cocotb

    for _ in range(cycles):
        await RisingEdge(dut.clk)
        if int(dut.status.value) == 0:
            return
    raise AssertionError(failure)


async def start_clock_and_reset(dut, cycles: int = 2):
    """Start ``dut.clk`` and hold ``dut.rst`` high for ``cycles`` rising edges; in a traced run
    with a window of cycles (:meth:`VerilatorBuild.run`), set that window first."""
    import cocotb  # here, not at the top: loads cocotb
    from cocotb.clock import Clock  # here, not at the top: loads cocotb
    from cocotb.triggers import RisingEdge  # here, not at the top: loads cocotb

    if os.environ.get(WINDOW_ENVIRONMENT):
        first, _, end = os.environ[WINDOW_ENVIRONMENT].partition(":")
        trace_window(int(first), int(end) if end else None)
    cocotb.start_soon(Clock(dut.clk, CLOCK_PERIOD_NS, unit="ns").start())
    dut.rst.value = 1
    for _ in range(cycles):
        await RisingEdge(dut.clk)
    dut.rst.value = 0


class _StreamPort:
    def __init__(self, dut, name: str, *, probability: float, seed: int):
        if not 0 < probability <= 1:
            raise ValueError(f"probability must be in (0, 1], not {probability!r}")
        self.name = name
        self.clock = dut.clk
        self.valid = getattr(dut, f"{name}__valid")
        self.ready = getattr(dut, f"{name}__ready")
        self.payload = getattr(dut, f"{name}__payload")
        self.probability = probability
        self.random = random.Random(seed)
        # Clock cycle (simulation time over the clock period) of each transfer.
        self.transfer_cycles: list[int] = []

    def _stall(self) -> bool:
        return self.random.random() >= self.probability

    def _note_transfer(self) -> None:
        self.transfer_cycles.append(current_cycle())


class StreamDriver(_StreamPort):
    """Sends payloads on the input stream ``<name>__*`` of ``dut``.

    Parameters
    ----------
    dut : cocotb handle
    name : str
        Port name as in the component's signature.
    probability : float
        Chance that ``valid`` is offered in a given cycle (1 sends back to back).
    seed : int
        Seed of the stall pattern.
    """

    def __init__(self, dut, name: str, *, probability: float = 1.0, seed: int = 0):
        super().__init__(dut, name, probability=probability, seed=seed)
        self.valid.value = 0

    async def send(self, payloads) -> None:
        """Send each payload (an int) in order; returns after the last one was taken."""
        from cocotb.triggers import ReadOnly, RisingEdge  # here, not at the top: loads cocotb

        pending = list(payloads)
        sent = 0
        while sent < len(pending):
            await RisingEdge(self.clock)
            offer = not self._stall()
            self.valid.value = int(offer)
            if offer:
                self.payload.value = pending[sent]
            await ReadOnly()
            if offer and self.ready.value:
                self._note_transfer()
                sent += 1
        await RisingEdge(self.clock)
        self.valid.value = 0


class StreamSink(_StreamPort):
    """Receives payloads from the output stream ``<name>__*`` of ``dut``.

    Parameters
    ----------
    dut : cocotb handle
    name : str
    probability : float
        Chance that ``ready`` is given in a given cycle (1 never stalls the sender).
    signed : bool
        Read payloads as two's complement.
    seed : int
    """

    def __init__(self, dut, name: str, *, probability: float = 1.0, signed: bool = False,
                 seed: int = 0):
        super().__init__(dut, name, probability=probability, seed=seed)
        self.signed = signed
        self.ready.value = 0

    async def receive(self, count: int) -> list[int]:  # here, not at the top: loads cocotb
        """The next ``count`` payloads, in order."""
        from cocotb.triggers import ReadOnly, RisingEdge  # here, not at the top: loads cocotb

        received = []
        while len(received) < count:
            await RisingEdge(self.clock)
            accept = not self._stall()
            self.ready.value = int(accept)
            await ReadOnly()
            if accept and self.valid.value:
                value = self.payload.value
                received.append(value.to_signed() if self.signed else value.to_unsigned())
                self._note_transfer()
        await RisingEdge(self.clock)
        self.ready.value = 0
        return received

