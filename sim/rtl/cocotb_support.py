"""cocotb + Verilator for Amaranth components: build once per parameter set, drive streams.

Host side (pytest, benchmarks)
    :func:`build_component` writes a component's Verilog into ``build/cocotb/<name>-<key>/`` and
    builds it with Verilator the way cocotb's Python runner does (reusing Verilator's runtime
    objects between builds); :meth:`VerilatorBuild.run` runs a cocotb test module on it through
    ``cocotb_tools.runner`` and raises :class:`AssertionError` if a test failed. A lock file
    makes concurrent pytest workers share one build instead of racing on it.
Simulator side (inside a cocotb test module)
    :class:`StreamDriver` and :class:`StreamSink` speak Amaranth 0.5's flattened stream ports
    ``<port>__valid``, ``<port>__ready`` and ``<port>__payload`` with random stalls;
    :func:`start_clock_and_reset` starts the clock and pulses Amaranth's synchronous ``rst``;
    :func:`test_config` reads the JSON configuration that :meth:`VerilatorBuild.run` passed.

Each handshake is decided in the same way on both sides: after a rising edge the coroutine
writes its outputs for the coming cycle, then waits for ``ReadOnly`` and reads the settled
``valid`` and ``ready``; a transfer happens at the next edge exactly when both are high.
"""

from __future__ import annotations

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

from tern_fpga.contracts import paths

__all__ = [
    "BUILD_ROOT",
    "CONFIG_ENVIRONMENT",
    "REPOSITORY",
    "VERILATOR_BUILD_ARGS",
    "StreamDriver",
    "StreamSink",
    "VerilatorBuild",
    "build_component",
    "locked_directory",
    "pack_lanes",
    "start_clock_and_reset",
    "test_config",
    "write_verilog",
]

REPOSITORY = paths.SOURCE_ROOT
BUILD_ROOT = paths.BUILD / "cocotb"
# The environment variable that carries a run's JSON configuration into the simulator.
CONFIG_ENVIRONMENT = "TERN_COCOTB_CONFIG"
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
def locked_directory(directory: Path):
    """Create ``directory`` and hold an exclusive lock on it: concurrent builders (pytest
    workers, a virtual board) take turns instead of racing on one build."""
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


@dataclasses.dataclass(frozen=True)
class VerilatorBuild:
    """One Verilator build of one component; run cocotb test modules on it with :meth:`run`."""

    toplevel: str
    build_dir: Path

    def run(self, test_module: str, config: dict, *, testcase: str | None = None,
            module_dir: Path | None = None, seed: int = 1, plusargs: tuple[str, ...] = ()) -> Path:
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

        Returns
        -------
        pathlib.Path
            The xUnit results file.

        Raises
        ------
        AssertionError
            If the simulator failed or a test did not pass; the message names the log file.
        """
        # here, not at the top: loads cocotb
        from cocotb_tools.runner import get_results, get_runner

        # One name per (module, test, configuration): runs in parallel never share a file.
        digest = hashlib.sha1(json.dumps(config, sort_keys=True).encode()).hexdigest()[:12]
        name = f"{test_module}.{testcase or 'all'}.{digest}"
        log_file, results = self.build_dir / f"{name}.log", self.build_dir / f"{name}.xml"
        # cocotb's runner hands the simulator this process's sys.path as PYTHONPATH.
        if module_dir is not None and str(module_dir) not in sys.path:
            sys.path.append(str(module_dir))
        try:
            get_runner("verilator").test(
                test_module=test_module, hdl_toplevel=self.toplevel, hdl_toplevel_lang="verilog",
                testcase=testcase, plusargs=list(plusargs),
                build_dir=self.build_dir, test_dir=self.build_dir, seed=seed,
                results_xml=str(results.resolve()), log_file=log_file,
                extra_env={CONFIG_ENVIRONMENT: json.dumps(config),
                           "COCOTB_TRUST_INERTIAL_WRITES": "1",
                           # cocotb rewrites the asserts of every imported module by default,
                           # which costs about a second per run: only the test module's.
                           "COCOTB_REWRITE_ASSERTION_FILES":
                               test_module.rpartition(".")[2] + ".py"})
            tests, failed = get_results(results)
        except (SystemExit, RuntimeError) as error:
            raise AssertionError(f"cocotb run of {test_module} failed ({error!r}); "
                                 f"see {log_file}:\n{_log_tail(log_file)}") from None
        if failed or not tests:
            raise AssertionError(f"{failed} of {tests} cocotb tests of {test_module} failed; "
                                 f"see {log_file}:\n{_log_tail(log_file)}")
        return results


def _log_tail(log_file: Path, lines: int = 40) -> str:
    try:
        return "\n".join(log_file.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def build_component(component, toplevel: str, key: str, *,
                    optimize: str = "-O1",
                    verilator_args: tuple[str, ...] = ()) -> VerilatorBuild:
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
    build_dir = BUILD_ROOT / f"{toplevel}-{key}"
    libraries = cocotb_tools.config.libs_dir
    with locked_directory(build_dir):
        source = write_verilog(component, toplevel, build_dir / f"{toplevel}.v")
        log_file = build_dir / "build.log"
        with open(log_file, "w") as log:
            _run([verilator, "-cc", "--exe", "-Mdir", str(build_dir), "--top-module", toplevel,
                  "--vpi", "--public-flat-rw", "--prefix", "Vtop", "-o", toplevel,
                  "-LDFLAGS", f"-Wl,-rpath,{libraries} -L{libraries} -lcocotbvpi_verilator",
                  *VERILATOR_BUILD_ARGS, *verilator_args,
                  str(cocotb_tools.config.share_dir / "lib" / "verilator" / "verilator.cpp"),
                  str(source)], log, log_file)
            _reuse_runtime(build_dir)
            _run(["make", "-j", str(os.cpu_count() or 1), "-C", str(build_dir), "-f", "Vtop.mk",
                  "VM_TRACE=0", f"OPT_FAST={optimize}", "OPT_SLOW=-O0"], log, log_file)
        _keep_runtime(build_dir)
    return VerilatorBuild(toplevel=toplevel, build_dir=build_dir)


def _run(command, log, log_file: Path) -> None:
    log.flush()
    if subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, check=False).returncode:
        raise RuntimeError(f"{Path(command[0]).name} failed; see {log_file}:\n"
                           f"{_log_tail(log_file)}")


# Verilator's runtime library (verilated*.cpp) is the same for every design built with the same
# flags: keep its objects from the first build and copy them into later ones. The copies get the
# current time, newer than the Vtop.mk just written, so make sees them as up to date.
_RUNTIME_OBJECTS = ("verilated", "verilated_vpi", "verilated_threads", "verilated_dpi")


def _runtime_cache() -> Path:

    return BUILD_ROOT / f"runtime-verilator{version('verilator')}-cocotb{version('cocotb')}"


def _reuse_runtime(build_dir: Path) -> None:
    cache = _runtime_cache()
    for name in _RUNTIME_OBJECTS:
        for suffix in (".d", ".o"):
            cached, target = cache / (name + suffix), build_dir / (name + suffix)
            if cached.exists() and not target.exists():
                shutil.copyfile(cached, target)


def _keep_runtime(build_dir: Path) -> None:
    cache = _runtime_cache()
    cache.mkdir(parents=True, exist_ok=True)
    for name in _RUNTIME_OBJECTS:
        for suffix in (".d", ".o"):
            built, cached = build_dir / (name + suffix), cache / (name + suffix)
            if built.exists() and not cached.exists():
                # Copy, then rename: another worker may be reading the cache at the same time.
                partial = cache / f"{name}{suffix}.{os.getpid()}.partial"
                shutil.copyfile(built, partial)
                partial.rename(cached)


# Simulator side -------------------------------------------------------------------------------


def test_config() -> dict:
    """The configuration that :meth:`VerilatorBuild.run` handed to this simulation."""
    return json.loads(os.environ[CONFIG_ENVIRONMENT])


test_config.__test__ = False  # not a pytest test despite the name


async def start_clock_and_reset(dut, cycles: int = 2):
    """Start ``dut.clk`` and hold ``dut.rst`` high for ``cycles`` rising edges."""
    import cocotb  # here, not at the top: loads cocotb
    from cocotb.clock import Clock  # here, not at the top: loads cocotb
    from cocotb.triggers import RisingEdge  # here, not at the top: loads cocotb

    cocotb.start_soon(Clock(dut.clk, CLOCK_PERIOD_NS, unit="ns").start())
    dut.rst.value = 1
    for _ in range(cycles):
        await RisingEdge(dut.clk)
    dut.rst.value = 0


def pack_lanes(values, bits: int) -> int:
    """Lane ``j`` of ``values`` (two's complement, ``bits`` wide) into bits ``bits*j`` up:
    the flattened form of an Amaranth ``ArrayLayout`` payload."""
    mask = (1 << bits) - 1
    word = 0
    for lane, value in enumerate(values):
        word |= (int(value) & mask) << (bits * lane)
    return word


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

    def _note_transfer(self) -> None:  # here, not at the top: loads cocotb
        # here, not at the top: loads cocotb
        from cocotb.simtime import get_sim_time

        self.transfer_cycles.append(int(get_sim_time("ns")) // CLOCK_PERIOD_NS)


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

