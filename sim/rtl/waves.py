"""Waveforms of a Verilator run: the names a viewer needs, and a GTKWave save file.

A traced build (:func:`tern_fpga.sim.rtl.cocotb_support.build_component` with ``waves=True``, or
the virtual board's) writes an FST file. Beside it :func:`write_save_file` writes a GTKWave save
file (``.gtkw``) that opens it with the signals a reader wants first, in groups:

1. *state*: clock and reset, then every state machine, enum register, program counter and
   busy flag, each scope's in turn, the top level first (state machines show their state names,
   the core's program counter the instruction it points at);
2. one group per unit (each scope with streams): the handshakes ``valid`` and ``ready`` of
   each of its stream ports, and its ``busy``;
3. *memory ports*: the address, enable and data signals of the memories' read and write ports.

The groups come from the design's Verilog (Amaranth's, as Yosys writes it: one module per
elaboratable, ``(* enum_value_... *)`` attributes on enum signals) and from the names of the
state machines' states, which the Verilog does not carry: :func:`write_state_names` takes them
from the elaborated design when the traced build is made. Surfer opens the FST too, but not the
save file.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from pathlib import Path

from vcd.gtkw import GTKWSave, make_translation_filter

__all__ = ["CYCLE_PS", "STATE_NAMES_FILE", "VIEW_CYCLES", "Scope", "read_scopes", "state_names",
           "write_save_file", "write_state_names"]

STATE_NAMES_FILE = "state_names.json"
# Simulation time of one clock cycle in the waveforms, picoseconds (Verilator's unit): cycle n
# starts at n * 10 ns in every tern simulation, whatever the preset's clock.
CYCLE_PS = 10_000
# The save file's first view: this many cycles across about this many pixels.
VIEW_CYCLES = 200
VIEW_PIXELS = 1100

_MODULE = re.compile(r"^module (\\?\S+)\s*\(")
_DECLARATION = re.compile(r"^\s*(input|output|inout|reg|wire)\s+(?:signed\s+)?"
                          r"(?:\[(\d+):(\d+)\]\s+)?(\\?[^\s;=]+)\s*[;=]")
_ENUM_VALUE = re.compile(r'^\s*\(\* enum_value_([01]+) = "([^"]*)" \*\)')
_INSTANCE = re.compile(r"^\s*(\\?[\w.$]+)\s+([\w$]+)\s*\($")
# Signals of the state group, besides state machines and enum registers.
_STATE_NAMES = re.compile(r"^(pc|\w+_pc|busy|\w+_busy|running|idle|cycles)$")
# Memory ports as Amaranth names them (``<memory>_read0_addr``, ``<port>__en``, ...).
_MEMORY_PORT = re.compile(r"^\w+(_read\d*|_write|_read__|_write__)_?(addr|en|data|pc)$")


@dataclasses.dataclass
class Scope:
    """One module instance of the design as the waveform names it.

    Members
    -------
    path : str
        Dotted name inside the waveform, e.g. ``core.matvec``.
    relative : str
        The name below the top level, e.g. ``matvec`` (``""`` for the top level).
    widths : dict of str to int
        Every plainly named signal (no ``$`` or ``.`` in it) and its width.
    ports : list of str
        The module's ports, in the order declared.
    enums : dict of str to dict of int to str
        The enum signals' value names.
    """

    path: str
    relative: str
    widths: dict
    ports: list
    enums: dict


def _parse_modules(verilog: str) -> dict:
    """Each module's declarations, enums and instances, by module name."""
    modules, current, pending = {}, None, {}
    for line in verilog.splitlines():
        if (match := _MODULE.match(line)) is not None:
            current = modules[match.group(1).lstrip("\\")] = {
                "widths": {}, "ports": [], "enums": {}, "instances": []}
        elif current is None:
            continue
        elif (match := _ENUM_VALUE.match(line)) is not None:
            pending[int(match.group(1), 2)] = match.group(2)
        elif (match := _DECLARATION.match(line)) is not None:
            kind, high, low, name = match.groups()
            if not re.search(r"[$.\\]", name):
                current["widths"][name] = int(high) - int(low) + 1 if high else 1
                if kind in ("input", "output", "inout"):
                    current["ports"].append(name)
                if pending:
                    current["enums"][name] = pending
            pending = {}
        elif (match := _INSTANCE.match(line)) is not None:
            # (a module's instances may come before the module: read_scopes skips unknowns)
            current["instances"].append((match.group(1).lstrip("\\"), match.group(2)))
    return modules


def read_scopes(verilog: Path, toplevel: str, root: str = "") -> list[Scope]:
    """The module instances of ``verilog`` under ``toplevel``, top first, depth first; the
    toplevel's path is ``root.toplevel`` (just ``toplevel`` without a root), as Verilator
    names it in its traces."""
    modules = _parse_modules(Path(verilog).read_text())
    scopes = []

    def visit(module: str, relative: tuple):
        info = modules.get(module)
        if info is None:
            return
        path = ".".join((*filter(None, [root]), toplevel, *relative))
        scopes.append(Scope(path, ".".join(relative), info["widths"], info["ports"],
                            info["enums"]))
        for child, instance in info["instances"]:
            visit(child, (*relative, instance))

    visit(toplevel, ())
    return scopes


def state_names(component) -> dict[str, dict[int, str]]:
    """The value names of ``component``'s state machines (Amaranth's FSM state signals, whose
    names the Verilog does not keep), by ``"sub.scope.signal"`` (the top level's signals
    without a scope), e.g. ``{"fsm_state": {0: "IDLE", 1: "FETCH", ...}}``."""
    from amaranth.hdl import Fragment  # here, not at the top: loads Amaranth

    design = Fragment.get(component, None).prepare()
    names = {}
    for info in design.fragments.values():
        for signal, name in info.signal_names.items():
            if signal.decoder is None or len(signal) > 8:
                continue
            values = {}
            for value in range(1 << len(signal)):
                try:
                    values[value] = signal.decoder(value).partition("/")[0]
                except (KeyError, IndexError, ValueError):
                    continue
            names[".".join((*info.name[1:], name))] = values
    return names


def write_state_names(component, directory: Path) -> Path:
    """Write :func:`state_names` of ``component`` to ``directory / STATE_NAMES_FILE`` (JSON),
    for :func:`write_save_file`."""
    path = Path(directory) / STATE_NAMES_FILE
    text = json.dumps(state_names(component), indent=1, sort_keys=True)
    if not path.exists() or path.read_text() != text:
        path.write_text(text)
    return path


def _translations(scope: Scope, names: dict) -> dict:
    """Value names by signal name in ``scope``: its enums, and those of ``names`` (keyed by
    the path below the toplevel, like :func:`state_names`)."""
    found = dict(scope.enums)
    for key, values in names.items():
        where, _, signal = key.rpartition(".")
        if where == scope.relative and signal in scope.widths:
            found[signal] = {int(value): name for value, name in values.items()}
    return found


def write_save_file(fst: Path, verilog: Path, toplevel: str, *, state_file: Path | None = None,
                    translations: dict | None = None, root: str = "",
                    view_cycles: int = VIEW_CYCLES) -> Path:
    """Write ``fst`` with the suffix ``.gtkw``: a GTKWave save file that opens ``fst`` with the
    groups of the module docstring, and the translation filters that name states and enum
    values (``<stem>.filters/``).

    Parameters
    ----------
    fst : pathlib.Path
        The waveform.
    verilog : pathlib.Path
        The design's Verilog, as simulated.
    toplevel : str
        Its top module.
    state_file : pathlib.Path, optional
        A :func:`write_state_names` file.
    translations : dict, optional
        More value names: ``{"signal" or "sub.scope.signal": {value: "text"}}`` (the core's
        program counter to its instructions).
    root : str
        The name above the toplevel in the waveform, if any (``TOP`` in a Verilator model
        whose main names it so, as the virtual board's does; cocotb's does not).
    view_cycles : int
        How many cycles the first view shows, from the waveform's start (GTKWave opens at the
        first time the file holds, the start of its window).

    Returns
    -------
    pathlib.Path
        The save file.
    """
    fst = Path(fst).resolve()
    save = fst.with_suffix(".gtkw")
    filters = fst.with_name(f"{fst.stem}.filters")
    filters.mkdir(exist_ok=True)
    names = json.loads(Path(state_file).read_text()) if state_file else {}
    names.update(translations or {})
    scopes = read_scopes(verilog, toplevel, root)

    with open(save, "w") as handle:
        gtkw = GTKWSave(handle)
        gtkw.comment(f"tern: {fst.name}, groups from {Path(verilog).name}")
        gtkw.dumpfile(str(fst))
        gtkw.savefile(str(save))
        gtkw.size(1500, 950)
        gtkw.sst_expanded(True)
        gtkw.signals_width(320)
        gtkw.treeopen(scopes[0].path)
        # GTKWave's zoom z shows 2**-z time units (picoseconds here) in 200 pixels.
        gtkw.zoom_markers(-math.log2(200 * view_cycles * CYCLE_PS / VIEW_PIXELS))

        def trace(scope: Scope, name: str, labels: dict | None = None, *, qualify=True):
            width = scope.widths[name]
            full = f"{scope.path}.{name}" + (f"[{width - 1}:0]" if width > 1 else "")
            # Outside a unit's own group, a name says which unit (GTKWave shows the last part).
            alias = f"{scope.relative.replace('.', '/')}/{name}" if qualify and scope.relative \
                else None
            if not labels:
                gtkw.trace(full, alias, datafmt="hex" if width > 1 else "bin")
                return
            table = filters / f"{scope.path}.{name}.txt"
            table.write_text(make_translation_filter(sorted(labels.items()), datafmt="hex",
                                                     size=width) + "\n")
            gtkw.trace(full, alias, datafmt="hex", translate_filter_file=str(table))

        with gtkw.group("state"):
            top = scopes[0]
            for name in ("clk", "rst"):
                if name in top.widths:
                    trace(top, name)
            for scope in scopes:
                labels = _translations(scope, names)
                for name in scope.widths:
                    # (a unit's busy goes with its streams, below)
                    if name in labels or _STATE_NAMES.match(name) and \
                            not (scope is not top and name == "busy"):
                        trace(scope, name, labels.get(name))
        for scope in scopes:
            # A stream port's ready may be gone from the module's ports (tied off outside).
            streams = [port.removesuffix("__valid") for port in scope.ports
                       if port.endswith("__valid")]
            if not streams:
                continue
            with gtkw.group(scope.relative or toplevel):
                for name in [name for stream in streams
                             for name in (f"{stream}__valid", f"{stream}__ready")] + ["busy"]:
                    if name in scope.widths:
                        trace(scope, name, qualify=False)
        ports = [(scope, name) for scope in scopes for name in scope.widths
                 if _MEMORY_PORT.match(name)]
        if ports:
            with gtkw.group("memory ports"):
                for scope, name in ports:
                    trace(scope, name)
    return save
