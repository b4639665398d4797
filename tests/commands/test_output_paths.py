"""Every command that writes files checks each output path before it starts work: one line,
exit status 1, nothing written, nothing overwritten (tern_fpga.contracts.output_paths)."""

import os
import shutil
import stat

import pytest

from tern_fpga.commands.golden import TRACE_KIND
from tern_fpga.contracts.export_format import MAGIC


def state(*paths):
    """What each path is and holds (None: absent), to show that nothing changed."""
    result = {}
    for path in paths:
        path = str(path)
        if not os.path.lexists(path):
            result[path] = None
        elif os.path.islink(path):
            result[path] = ("link", os.readlink(path))
        elif os.path.isfile(path):
            result[path] = ("file", open(path, "rb").read())  # noqa: SIM115
        else:
            result[path] = ("other", stat.S_IFMT(os.lstat(path).st_mode))
    return result


@pytest.fixture
def place(tmp_path, checkpoint):
    """A folder with a copy of the checkpoint (ck/), a text file, a folder, and a link to the
    text file."""
    shutil.copytree(checkpoint, tmp_path / "ck")
    (tmp_path / "notes.txt").write_text("my notes\n")
    (tmp_path / "folder").mkdir()
    (tmp_path / "link.tern").symlink_to(tmp_path / "notes.txt")
    return tmp_path


def test_export_never_writes_over_its_inputs_or_what_is_not_an_export(place, one_line_error):
    ck = place / "ck"
    every = [*ck.iterdir(), place / "notes.txt", place / "link.tern", place / "folder",
             place / "missing", "/dev/full"]
    before = state(*every)

    def refused(output, *extra):
        return one_line_error(1, "export", ck, "--preset", "micro", "-o", output, *extra)

    for force in ([], ["--force"]):
        assert refused(ck / "model.safetensors", *force) == (
            f"-o {ck / 'model.safetensors'}: it is one of this command's inputs "
            f"({ck / 'model.safetensors'}); writing it would destroy it: choose another path")
        assert "it is one of this command's inputs" in refused(ck / "config.json", *force)
        assert refused("/dev/full", *force) == (
            "-o /dev/full: it is a character device, not a file tern may write; choose a path "
            "for a new file")
        assert refused(place / "folder", *force).endswith("it is a folder, not a file tern may "
                                                          "write; choose a path for a new file")
        assert refused(place / "link.tern", *force) == (
            f"-o {place / 'link.tern'}: it is a symbolic link (to {place / 'notes.txt'}); tern "
            f"neither writes through a link nor replaces it: pass the file itself, or remove "
            f"the link")
        assert refused(place / "missing" / "m.tern", *force) == (
            f"-o {place / 'missing' / 'm.tern'}: the folder {place / 'missing'} does not exist; "
            f"create it first (mkdir -p {place / 'missing'}) or choose another path")
    assert refused(place / "notes.txt") == (
        f"-o {place / 'notes.txt'}: it is not a .tern export (it starts with b'my notes\\n'); "
        f"pass --force to overwrite it, or choose another path")
    assert state(*every) == before
    assert stat.S_ISCHR(os.stat("/dev/full").st_mode)


def test_export_replaces_an_export_and_with_force_another_file(place, run):
    for output, extra in ((place / "notes.txt", ["--force"]), (place / "notes.txt", [])):
        status, out, _ = run("export", place / "ck", "--preset", "micro", "-o", output, *extra)
        assert status == 0 and out.startswith(f"wrote {output} (")
        assert output.read_bytes().startswith(MAGIC)
    assert sorted(os.listdir(place)) == ["ck", "folder", "link.tern", "notes.txt"]


def test_golden_checks_its_trace_before_generating(place, exported, one_line_error, run):
    def refused(trace, *extra):
        return one_line_error(1, "golden", exported, "--ids", "1,2", "-n", "3", "--trace",
                              trace, *extra)

    before = state(exported, place / "notes.txt")
    assert refused(exported, "--force") == (
        f"--trace {exported}: it is one of this command's inputs ({exported}); writing it "
        f"would destroy it: choose another path")
    assert refused(place / "missing" / "trace.txt").startswith(
        f"--trace {place / 'missing' / 'trace.txt'}: the folder {place / 'missing'} does not "
        f"exist")
    assert refused("/dev/null").startswith("--trace /dev/null: it is a character device")
    assert refused(place / "notes.txt").startswith(
        f"--trace {place / 'notes.txt'}: it is not a golden-model trace (it starts with")
    assert state(exported, place / "notes.txt") == before
    trace = place / "trace.txt"
    for _ in range(2):  # a trace is replaced by the next
        status, out, _ = run("golden", exported, "--ids", "1,2", "-n", "3", "--trace", trace)
        assert status == 0 and out.splitlines()[0].count(",") == 3
    assert TRACE_KIND.recognise(trace.read_bytes())


@pytest.mark.parametrize("argv, message", [
    (["verilog", "--preset", "micro", "-o", "{notes}"],
     "-o {notes}: it is a file, not a folder; choose a folder (it is created if missing)"),
    (["verilog", "--preset", "micro", "-o", "{folder}"],
     ("-o {folder}: {folder}/core.v is not Verilog written by Amaranth (it starts with "
     "b'// mine\\n'); pass --force to overwrite it, or choose another path")),
    (["build", "--board", "ulx3s-85f", "-o", "{notes}"], ("-o {notes}: it is a file, not a "
                                                        "folder")),
    (["build", "--board", "ulx3s-85f", "-o", "{missing}/out"],
     "-o {missing}/out: the folder {missing} does not exist"),
    (["power", "--board", "ulx3s-85f", "--preset", "micro", "--json", "{ck}/config.json"],
     "--json {ck}/config.json: it is not a tern power report (it starts with b'{{"),
    (["power", "--board", "ulx3s-85f", "--preset", "micro", "--json", "/dev/full", "--force"],
     "--json /dev/full: it is a character device"),
    (["sweep", "--quick", "--plot", "{notes}"], "--plot {notes}: it is not a PNG image"),
    (["bench", "--quick", "-o", "{folder}"],
     ("-o {folder}: {folder}/report.md is not a tern bench report (it starts with b'# my "
     "report\\n'); pass --force")),
    (["train", "--preset", "tiny", "-o", "{ck}"],
     "-o {ck}: the folder {ck} is not empty; choose another -o or pass --force"),
    (["train", "--preset", "tiny", "-o", "{notes}/run", "--force"],
     "-o {notes}/run: {notes} is not a folder; choose another path"),
])
def test_every_writing_command_checks_first(place, one_line_error, argv, message):
    """Each refusal comes before the command's work (a build, a power simulation, a sweep, a
    training run would take minutes): in the time of parsing, with nothing written."""
    (place / "folder" / "core.v").write_text("// mine\n")
    (place / "folder" / "report.md").write_text("# my report\n")
    names = {"notes": place / "notes.txt", "folder": place / "folder", "ck": place / "ck",
             "missing": place / "missing"}
    everything = [*place.rglob("*"), place / "missing"]
    before = state(*everything)
    error = one_line_error(1, *(arg.format(**names) for arg in argv))
    assert error.startswith(message.format(**names)), error
    assert state(*everything) == before
