"""Output paths: what a command may write over, refused in one line before any work."""

import os
import tempfile

import pytest

from tern_fpga.contracts.output_paths import (
    OutputKind,
    OutputPathError,
    check_output_file,
    check_output_folder,
)

KIND = OutputKind.starting_with("a test report", b"REPORT")
JSON_KIND = OutputKind.json_with_keys("a JSON report", ("board", "preset"))


def refusal(call, *args, **kwargs) -> str:
    with pytest.raises(OutputPathError) as info:
        call(*args, **kwargs)
    message = str(info.value)
    assert "\n" not in message
    return message


def snapshot(folder):
    """Every entry under ``folder`` with its type and bytes: to show nothing was touched."""
    found = {}
    for root, folders, files in os.walk(folder):
        for name in folders + files:
            path = os.path.join(root, name)
            found[path] = (os.lstat(path).st_mode,
                           None if os.path.islink(path) or not os.path.isfile(path)
                           else open(path, "rb").read())  # noqa: SIM115
    return found


def unwritable_folder(tmp_path):
    """A folder nobody may create a file in: one without write permission, unless we are root
    (who may), then a read-only system folder, else None."""
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    for folder in (locked, "/sys", "/proc/self"):
        try:
            tempfile.TemporaryFile(dir=folder).close()
        except OSError:
            return folder
    return None


def test_a_new_file_in_an_existing_folder_is_fine(tmp_path):
    assert check_output_file(tmp_path / "out.bin", KIND) == tmp_path / "out.bin"
    assert os.listdir(tmp_path) == []  # the write test leaves nothing behind


def test_own_kind_and_empty_files_are_overwritten(tmp_path):
    (tmp_path / "old.bin").write_bytes(b"REPORT 1")
    (tmp_path / "empty.bin").write_bytes(b"")
    (tmp_path / "report.json").write_text('{"board": "x", "preset": "y", "more": 1}')
    check_output_file(tmp_path / "old.bin", KIND)
    check_output_file(tmp_path / "empty.bin", KIND)
    check_output_file(tmp_path / "report.json", JSON_KIND, option="--json")


def test_another_kind_needs_force(tmp_path):
    path = tmp_path / "config.json"
    path.write_text('{"model_type": "hgrn_bit"}')
    message = refusal(check_output_file, path, JSON_KIND, option="--json")
    assert message == (f"--json {path}: it is not a JSON report (it starts with "
                       f"b'{{\"model_type'); pass --force to overwrite it, or choose another path")
    check_output_file(path, JSON_KIND, force=True)
    assert "already exists" in refusal(check_output_file, path, None)


@pytest.mark.parametrize("force", [False, True])
def test_never_a_folder_device_link_or_input(tmp_path, force):
    (tmp_path / "folder").mkdir()
    (tmp_path / "weights.bin").write_bytes(b"REPORT, but an input")
    os.link(tmp_path / "weights.bin", tmp_path / "hard.bin")
    (tmp_path / "link.bin").symlink_to(tmp_path / "weights.bin")
    before = snapshot(tmp_path)
    inputs = [tmp_path / "weights.bin"]
    cases = {
        tmp_path / "folder": "it is a folder, not a file tern may write",
        "/dev/null": "it is a character device, not a file tern may write",
        tmp_path / "link.bin": (f"it is a symbolic link (to {tmp_path / 'weights.bin'}); tern "
                                f"neither writes through a link nor replaces it"),
        tmp_path / "weights.bin": (f"it is one of this command's inputs ({inputs[0]}); writing "
                                   f"it would destroy it: choose another path"),
        tmp_path / "hard.bin": "it is one of this command's inputs",
    }
    for path, expected in cases.items():
        message = refusal(check_output_file, path, KIND, force=force, inputs=inputs)
        assert message.startswith(f"-o {path}: {expected}"), message
    assert snapshot(tmp_path) == before
    assert os.path.exists("/dev/null") and not os.path.isfile("/dev/null")


def test_a_read_only_file_is_refused(tmp_path):
    path = tmp_path / "old.bin"
    path.write_bytes(b"REPORT")
    path.chmod(0o444)
    assert refusal(check_output_file, path, KIND, force=True) == (
        f"-o {path}: it is read-only; make it writable (chmod u+w {path}) or choose another "
        f"path")


def test_the_folder_must_exist_and_be_writable(tmp_path):
    (tmp_path / "file").write_text("")
    assert refusal(check_output_file, tmp_path / "missing" / "out.bin", KIND) == (
        f"-o {tmp_path / 'missing' / 'out.bin'}: the folder {tmp_path / 'missing'} does not "
        f"exist; create it first (mkdir -p {tmp_path / 'missing'}) or choose another path")
    assert refusal(check_output_file, tmp_path / "file" / "out.bin", KIND).endswith(
        f"{tmp_path / 'file'} is not a folder; choose another path")
    locked = unwritable_folder(tmp_path)
    if locked is None:
        pytest.skip("every folder is writable here")
    message = refusal(check_output_file, f"{locked}/out.bin", KIND, option="--trace")
    assert message.startswith(f"--trace {locked}/out.bin: cannot write into the folder {locked}: ")
    assert message.endswith("; choose a folder you can write to")


def test_an_output_folder(tmp_path):
    out = tmp_path / "out"
    check_output_folder(out, {"a.v": KIND})  # missing: created by the command
    assert not out.exists()
    assert refusal(check_output_folder, tmp_path / "no" / "out").startswith(
        f"-o {tmp_path / 'no' / 'out'}: the folder {tmp_path / 'no'} does not exist")
    (tmp_path / "file").write_text("x")
    assert refusal(check_output_folder, tmp_path / "file") == (
        f"-o {tmp_path / 'file'}: it is a file, not a folder; choose a folder (it is created if "
        f"missing)")
    assert "is a character device, not a folder" in refusal(check_output_folder, "/dev/null")
    out.mkdir()
    (out / "a.v").write_bytes(b"REPORT")
    (out / "b.v").write_bytes(b"hand-written")
    (out / "c.v").mkdir()
    check_output_folder(out, {"a.v": KIND, "new.v": KIND})
    assert refusal(check_output_folder, out, {"b.v": KIND}) == (
        f"-o {out}: {out / 'b.v'} is not a test report (it starts with b'hand-written'); pass "
        f"--force to overwrite it, or choose another path")
    check_output_folder(out, {"b.v": KIND}, force=True)
    assert f"-o {out}: {out / 'c.v'} is a folder" in refusal(
        check_output_folder, out, {"c.v": KIND}, force=True)
    assert refusal(check_output_folder, out, empty=True) == (
        f"-o {out}: the folder {out} is not empty; choose another -o or pass --force to "
        f"overwrite an earlier run's files in it")
    check_output_folder(out, empty=True, force=True)
    (tmp_path / "linked").symlink_to(out)
    check_output_folder(tmp_path / "linked", {"a.v": KIND})  # a link to a folder is a folder
