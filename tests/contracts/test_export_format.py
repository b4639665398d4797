"""The .tern container: round trips, and one clear error for each way a file can be wrong."""

import json
import os
import re
import struct
import zlib

import numpy as np
import pytest

import tern_fpga
from tern_fpga.commands import cli
from tern_fpga.contracts import export_format
from tern_fpga.contracts.export_format import (
    DTYPES,
    FIXED_HEADER,
    ExportFile,
    ExportFormatError,
    TernExport,
    read_export,
    write_export,
)
from tern_fpga.contracts.output_paths import OutputPathError
from tern_fpga.contracts.packing import pack_2bit
from tern_fpga.contracts.params import preset


def random_array(rng, dtype, shape):
    dtype = np.dtype(dtype)
    if dtype.kind == "f":
        return rng.standard_normal(shape).astype(dtype)
    info = np.iinfo(dtype)
    return rng.integers(info.min, info.max, size=shape, dtype=dtype, endpoint=True)


def make_export(seed=0, params=None):
    rng = np.random.default_rng(seed)
    sections = {
        "program": random_array(rng, np.uint32, 37),
        "weights": pack_2bit(rng.integers(-1, 2, 4 * 301)),
    }
    shapes = [(5,), (3, 4), (2, 3, 2), (), (0,), (7,)]
    for index, name in enumerate(DTYPES):
        sections[f"s_{name}"] = random_array(rng, name, shapes[index % len(shapes)])
    sections["big_endian"] = random_array(rng, np.int32, (6,)).astype(">i4")
    config = {"hidden_size": 64, "num_hidden_layers": 2, "vocab_size": 256, "rms_norm_eps": 1e-6,
              "intermediate_size": None, "ratio": np.float32(0.5)}
    return TernExport(config, params or preset("micro"), sections,
                      {"source_checkpoint": "checkpoints/micro", "source_sha256": "ab" * 32})


@pytest.fixture
def written(tmp_path):
    path = tmp_path / "model.tern"
    write_export(path, make_export())
    return path


def rewrite_header(path, change):
    """Edit the JSON header of ``path`` in place with a valid CRC, keeping every offset."""
    data = bytearray(path.read_bytes())
    header_length = FIXED_HEADER.unpack_from(data)[3]
    end = FIXED_HEADER.size + header_length
    header = json.loads(data[FIXED_HEADER.size:end])
    change(header)
    text = json.dumps(header).encode()
    assert len(text) <= header_length, "the edit must not lengthen the header"
    data[FIXED_HEADER.size:end] = text.ljust(header_length)
    crc = zlib.crc32(data[FIXED_HEADER.size:end], zlib.crc32(data[:28]))
    data[28:32] = struct.pack("<I", crc)
    path.write_bytes(data)


def error_of(path, **kwargs) -> str:
    with pytest.raises(ExportFormatError) as info:
        read_export(path, **kwargs)
    assert str(info.value).startswith(f"{path}: ") or "cannot read" in str(info.value)
    return str(info.value)


@pytest.mark.parametrize("packing", ["2bit", "base3"])
def test_round_trip_every_dtype(tmp_path, packing):
    export = make_export(seed=1)
    path = tmp_path / "model.tern"
    write_export(path, export, packing=packing)
    back = read_export(path, expected_params=preset("micro"))
    assert list(back.sections) == list(export.sections)
    for name, array in export.sections.items():
        assert back.sections[name].dtype == array.dtype.newbyteorder("<"), name
        assert back.sections[name].shape == array.shape, name
        np.testing.assert_array_equal(back.sections[name], array, err_msg=name)
    assert back.params == export.params
    assert back.model_config == {**export.model_config, "ratio": 0.5}
    assert back.metadata.pop("weight_packing") == packing
    assert back.metadata.pop("tern_version") == tern_fpga.__version__
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", back.metadata.pop("created_utc"))
    assert back.metadata == export.metadata
    assert os.listdir(tmp_path) == ["model.tern"]


def test_layout_is_aligned_little_endian(written):
    data = written.read_bytes()
    magic, version, flags, header_length, file_length, reserved, crc = FIXED_HEADER.unpack_from(
        data)
    assert (magic, version, flags, reserved, file_length) == (b"\x89TERN\r\n\x1a", 1, 0, 0,
                                                              len(data))
    header = json.loads(data[32:32 + header_length])
    assert crc == zlib.crc32(data[32:32 + header_length], zlib.crc32(data[:28]))
    table = {entry["name"]: entry for entry in header["sections"]}
    assert all(entry["offset"] % 64 == 0 for entry in table.values())
    entry = table["big_endian"]
    stored = data[entry["offset"]:entry["offset"] + entry["length"]]
    assert entry["dtype"] == "int32" and zlib.crc32(stored) == entry["crc32"]
    np.testing.assert_array_equal(np.frombuffer(stored, "<i4"), make_export().sections[
        "big_endian"])


def test_base3_is_smaller_and_expands_to_the_same_image(tmp_path):
    export = make_export(seed=2)
    sizes = {}
    for packing in ("2bit", "base3"):
        path = tmp_path / f"{packing}.tern"
        write_export(path, export, packing=packing)
        sizes[packing] = path.stat().st_size
        np.testing.assert_array_equal(read_export(path).sections["weights"],
                                      export.sections["weights"])
    weights = export.sections["weights"].size
    assert sizes["2bit"] - sizes["base3"] >= weights - (-(-4 * weights // 5)) - 64


def test_base3_refuses_invalid_2bit_code(tmp_path):
    export = make_export()
    export.sections["weights"][7] = 0b00100001
    with pytest.raises(ValueError, match=r"cannot be stored in base-3: 2-bit byte 7 is 0x21"):
        write_export(tmp_path / "x.tern", export, packing="base3")


def test_not_a_tern_file(tmp_path):
    path = tmp_path / "model.tern"
    path.write_bytes(b"PK\x03\x04" + bytes(100))
    assert "not a .tern file (it starts with b'PK\\x03\\x04" in error_of(path)
    path.write_bytes(b"")
    assert "the file is empty, not a .tern file" in error_of(path)
    assert "cannot read" in error_of(tmp_path / "missing.tern")


@pytest.mark.parametrize("keep", [5, 31, 100, -1])
def test_truncated(written, keep):
    data = written.read_bytes()
    keep %= len(data)
    written.write_bytes(data[:keep])
    expected = 32 if keep < 32 else len(data)
    assert f"truncated: expected {expected} bytes, found {keep}" in error_of(written)


def test_appended(written):
    size = written.stat().st_size
    with open(written, "ab") as file:
        file.write(b"junk")
    assert f"4 bytes after its end (expected {size} bytes, found {size + 4})" in error_of(written)


def flip(path, offset):
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x10
    path.write_bytes(data)


@pytest.mark.parametrize("offset", [16, 28, 40, 200])
def test_header_crc(written, offset):
    flip(written, offset)
    assert "header CRC mismatch" in error_of(written)


@pytest.mark.parametrize("name", ["program", "weights", "s_float32", "s_int16"])
def test_section_crc(written, name):
    entry = ExportFile(written).sections[name]
    rng = np.random.default_rng(entry.offset)
    flip(written, entry.offset + int(rng.integers(entry.length)))
    assert f"section {name!r} CRC mismatch (stored 0x{entry.crc32:08x})" in error_of(written)
    damaged = ExportFile(written)
    assert [n for n in damaged.sections if not damaged.section_ok(n)] == [name]


def test_the_optional_tokenizer_section_travels_under_its_crc(tmp_path):
    """A checkpoint's tokenizer.json rides along as the optional ``tokenizer`` section (uint8
    bytes): read back byte for byte, its damage refused like any section's, and a file without
    it as valid as before (format version 1 either way)."""
    data = json.dumps({"version": "1.0", "model": {"type": "WordLevel"}}).encode()
    export = make_export()
    export.sections["tokenizer"] = np.frombuffer(data, np.uint8)
    path = tmp_path / "model.tern"
    write_export(path, export)
    assert read_export(path).sections["tokenizer"].tobytes() == data
    assert FIXED_HEADER.unpack_from(path.read_bytes())[1] == 1
    entry = ExportFile(path).sections["tokenizer"]
    assert (entry.dtype, entry.shape, entry.encoding) == ("uint8", (len(data),), "raw")
    flip(path, entry.offset + 5)
    assert f"section 'tokenizer' CRC mismatch (stored 0x{entry.crc32:08x})" in error_of(path)


def test_unknown_version(written):
    data = bytearray(written.read_bytes())
    data[8:10] = struct.pack("<H", 2)
    written.write_bytes(data)
    message = error_of(written)
    assert (f"format version 2, but this tern ({tern_fpga.__version__}) reads version 1 only; "
            f"re-export the model with this tern") in message


def test_params_mismatch(written):
    demo, micro = preset("demo"), preset("micro")
    message = error_of(written, expected_params=demo)
    assert (f"was exported for accelerator parameters 'micro' (hash 0x{micro.hash:016x}), not "
            f"'demo' (hash 0x{demo.hash:016x})") in message
    assert f"ternary_lanes (32 in the file, {demo.ternary_lanes} here)" in message
    assert "activation_bits" not in message  # equal in both presets: not listed
    assert message.endswith("re-export with `tern export --preset demo`")
    custom = micro.replace(clock_hz=12_000_000)
    assert f"they differ in clock_hz ({micro.clock_hz} in the file, 12000000 here);" in error_of(
        written, expected_params=custom)


def test_params_hash_mismatch(written):
    def change(header):
        header["params"]["clock_hz"] = 12_000_000
    rewrite_header(written, change)
    changed = preset("micro").replace(clock_hz=12_000_000)
    assert (f"parameters hash 0x{preset('micro').hash:016x} does not match the hash of its own "
            f"parameters, 0x{changed.hash:016x}") in error_of(written)


def test_unknown_params_field(written):
    rewrite_header(written, lambda header: header["params"].pop("clock_hz") and
                   header["params"].update(clock_mhz=1))
    assert "its accelerator parameters are not valid for this tern (unknown" in error_of(written)


@pytest.mark.parametrize("name", ["program", "weights"])
def test_missing_required_section(written, name):
    def change(header):
        header["sections"] = [entry for entry in header["sections"] if entry["name"] != name]
    rewrite_header(written, change)
    message = error_of(written)
    assert f"has no {name!r} section (it has " in message
    assert message.endswith("re-export the model with `tern export`")


def test_inconsistent_section_table(written):
    def change(header):
        header["sections"][2]["length"] += 1
    rewrite_header(written, change)
    assert "section table entry {'name': 's_int8'" in error_of(written)


@pytest.mark.parametrize("change, message", [
    (lambda e: e.sections.pop("program"), "missing ['program']"),
    (lambda e: e.sections.update(c=np.zeros(3, complex)), "'c' has dtype complex128"),
    (lambda e: e.sections.update({"a b": np.zeros(3)}), "section name 'a b' must be"),
    (lambda e: e.sections.update(program=np.zeros(3, np.int32)), "'program' must be 1-D uint"),
    (lambda e: e.sections.update(weights=np.zeros((2, 2), np.uint8)), "'weights' must be the"),
    (lambda e: e.metadata.update(x=object()), "JSON values only"),
    (lambda e: e.model_config.update(eps=float("nan")), "JSON values only"),
])
def test_write_refuses(tmp_path, change, message):
    export = make_export()
    change(export)
    with pytest.raises(ValueError, match=re.escape(message)):
        write_export(tmp_path / "x.tern", export)
    assert os.listdir(tmp_path) == []


class FailingFile:
    """Wraps a real file; writing past ``limit`` bytes raises like a full disk."""

    def __init__(self, file, limit):
        self.file, self.limit = file, limit

    def write(self, data):
        if self.file.tell() + len(data) > self.limit:
            self.file.write(data[:self.limit - self.file.tell()])
            raise OSError(28, "No space left on device")
        return self.file.write(data)

    def __getattr__(self, name):
        return getattr(self.file, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.file.close()


@pytest.mark.parametrize("limit", [10, 700, 3000])
def test_atomic_write(tmp_path, monkeypatch, limit):
    path = tmp_path / "model.tern"
    write_export(path, make_export(seed=3))
    before = path.read_bytes()
    # The wrapper closes the real file in its __exit__.
    monkeypatch.setattr(export_format, "open",
                        lambda *args: FailingFile(open(*args), limit),  # noqa: SIM115
                        raising=False)
    with pytest.raises(OSError, match="No space left"):
        write_export(path, make_export(seed=4))
    assert os.listdir(tmp_path) == ["model.tern"]
    assert path.read_bytes() == before
    path.unlink()
    with pytest.raises(OSError, match="No space left"):
        write_export(path, make_export(seed=4))
    assert os.listdir(tmp_path) == []


def random_program(rng, count):
    isa = pytest.importorskip("tern_fpga.contracts.isa")
    opcodes = rng.integers(len(isa.Opcode), size=count)
    instructions = [isa.Instruction(isa.Opcode(int(opcode)), dst=int(rng.integers(1 << 12)),
                                    a=int(rng.integers(1 << 12)), length=int(rng.integers(512)))
                    for opcode in opcodes]
    return isa.encode(instructions), [instruction.text() for instruction in instructions]


def test_inspect(tmp_path, capsys):
    export = make_export(seed=7)
    export.sections["program"], texts = random_program(np.random.default_rng(7), 30)
    path = tmp_path / "model.tern"
    write_export(path, export, packing="base3")
    assert cli.main(["inspect", str(path), "-n", "4"]) == 0
    out = capsys.readouterr().out
    micro = preset("micro")
    assert f"parameters   micro (hash 0x{micro.hash:016x})" in out
    assert "stored base3 in 241 bytes (1.60 bits/weight)" in out
    assert "program: 120 words, 30 instructions; the first 4:" in out
    assert out.rstrip().splitlines()[-4:] == [f"  {i:5d}  {texts[i]}" for i in range(4)]
    assert out.count(" ok\n") == len(export.sections)

    assert cli.main(["inspect", str(path), "--json", "-n", "100"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["params"]["hash"] == f"0x{micro.hash:016x}"
    assert report["file_bytes"] == path.stat().st_size
    assert report["weights"] == {"packing": "base3", "weights": 4 * 301, "image_bytes": 301,
                                 "stored_bytes": 241}
    assert [s["name"] for s in report["sections"] if s["crc_ok"]] == list(export.sections)
    assert report["program"]["disassembly"] == texts


def test_inspect_bad_files(written, capsys):
    entry = ExportFile(written).sections["s_int64"]
    flip(written, entry.offset + 3)
    assert cli.main(["inspect", str(written)]) == 1
    captured = capsys.readouterr()
    assert "s_int64          int64" in captured.out and captured.out.count("CRC MISMATCH") == 1
    assert captured.err == (f"tern inspect: error: {written}: section 's_int64' CRC mismatch "
                            f"(stored 0x{entry.crc32:08x}): its bytes are damaged; copy the file "
                            f"again or re-export it\n")
    written.write_bytes(written.read_bytes()[:100])
    assert cli.main(["inspect", str(written), "--json"]) == 1
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.count("\n") == 1
    assert "truncated: expected" in captured.err


def test_write_refuses_what_is_not_a_file_to_replace(tmp_path):
    (tmp_path / "folder").mkdir()
    (tmp_path / "other.bin").write_bytes(b"not an export")
    (tmp_path / "link.tern").symlink_to(tmp_path / "other.bin")
    for path, message in ((tmp_path / "folder", "it is a folder"),
                          ("/dev/null", "it is a character device"),
                          (tmp_path / "link.tern", "it is a symbolic link"),
                          (tmp_path / "no" / "x.tern", f"the folder {tmp_path / 'no'} does not")):
        with pytest.raises(OutputPathError, match=f"^{re.escape(f'{path}: {message}')}"):
            write_export(path, make_export())
    assert (tmp_path / "other.bin").read_bytes() == b"not an export"
    write_export(tmp_path / "other.bin", make_export())  # a library caller may replace a file
    assert read_export(tmp_path / "other.bin").params == preset("micro")


def test_a_header_nested_too_deep(written):
    """JSON nested deeper than Python's recursion limit, behind a right CRC."""
    data = bytearray(written.read_bytes())
    deep = b'{"model_config": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    data = data[:32] + deep + data[32 + FIXED_HEADER.unpack_from(data)[3]:]
    data[12:16] = struct.pack("<I", len(deep))
    data[16:24] = struct.pack("<Q", len(data))
    data[28:32] = struct.pack("<I", zlib.crc32(deep, zlib.crc32(bytes(data[:28]))))
    written.write_bytes(data)
    assert "the header nests JSON values too deeply to be an export's" in error_of(written)
